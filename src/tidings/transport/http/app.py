"""Build the Falcon ASGI application: the routes of Zaqar's v2 API."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi

from tidings import errors
from tidings.api.context import Service
from tidings.auth.authenticator import Authenticator
from tidings.transport.http import access, admin, console, openapi, probes, subscriptions
from tidings.transport.http import resources as r
from tidings.transport.http.errors import handle_domain_error, handle_unexpected
from tidings.transport.http.middleware import RateLimit, RequestId
from tidings.transport.sqs import QUEUE_URL, QueueUrl
from tidings.transport.sqs import serves as sqs_serves

QUEUE = "/v2/queues/{queue_name}"
TOPIC = "/v2/topics/{topic_name}"


def entity_routes(service: Service, collection: str, item: str, ops: r.EntityOps,
                  subscription_ops: subscriptions.SubscriptionOps) -> list[tuple[str, Any]]:
    """The routes queues and topics share, under ``collection`` and ``item``."""
    return [
        (collection, r.Collection(service, ops)),
        (item, r.Item(service, ops)),
        (item + "/stats", r.Stats(service, ops)),
        (item + "/purge", r.Purge(service, ops)),
        (item + "/messages", r.MessageCollection(service, ops)),
        (item + "/messages/{message_id}", r.MessageItem(service, ops)),
        *subscriptions.routes(service, item, subscription_ops),
    ]


def routes(service: Service, socket: r.SocketHandler | None = None,
           sqs: r.PostHandler | None = None) -> list[tuple[str, Any]]:
    return [
        ("/", r.Versions(service, socket, sqs)),
        ("/v2", r.Home(service)),
        ("/v2/", r.Home(service)),
        ("/v2/ping", r.Ping(service)),
        ("/v2/health", r.Health(service)),
        (openapi.PATH, openapi.OpenAPIDocument(service.limits)),
        (access.PATH, access.MetricsEndpoint(service)),
        *entity_routes(service, "/v2/queues", QUEUE, r.QUEUE_ENTITY, subscriptions.QUEUE_OPS),
        (QUEUE + "/share", r.QueueShare(service)),
        (QUEUE + "/redrive", r.QueueRedrive(service)),
        (QUEUE + "/claims", r.ClaimCollection(service)),
        (QUEUE + "/claims/{claim_id}", r.ClaimItem(service)),
        *entity_routes(service, "/v2/topics", TOPIC, r.TOPIC_ENTITY, subscriptions.TOPIC_OPS),
        *admin.routes(service),
        *console.routes(),
        *probes.routes(service),
    ]


class Authenticate:
    """Falcon middleware: the identity of each request, before routing (an
    unknown path without a token is a 401, as behind keystonemiddleware)."""

    def __init__(self, auth: Authenticator, sqs: bool = False) -> None:
        self.auth = auth
        self.sqs = sqs

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response
                              ) -> None:
        if self.sqs and sqs_serves(req.method, req.path):
            return  # signed with SigV4: the SQS endpoint checks the signature
        req.context.identity = await self.auth.for_request(req.method, req.path, req.get_header)


def create_http_app(service: Service, middleware: list[Any] | None = None,
                    socket: r.SocketHandler | None = None,
                    auth: Authenticator | None = None,
                    request_id: RequestId | None = None,
                    sqs: r.PostHandler | None = None) -> falcon.asgi.App:
    """The HTTP API; ``socket``, if given, serves WebSocket upgrades at ``/``.
    Under noauth (``auth`` None or disabled) no middleware checks requests.
    Every request gets its id first (from ``request_id``, a ``RequestId``
    that may also observe the request); the rate limit (if on) counts it
    once the project is known, after authentication. ``sqs``, if given,
    serves the SQS API: POST at ``/`` and at queue URLs."""
    middleware = [request_id or RequestId(), *(middleware or [])]
    if auth is not None and auth.enabled:
        middleware.append(Authenticate(auth, sqs=sqs is not None))
    if service.quotas is not None and service.quotas.rate_limited:
        middleware.append(RateLimit(service.quotas, service.default_project))
    app = falcon.asgi.App(middleware=middleware)
    # Query values like ids=a,b stay one string; list_param splits them.
    app.req_options.auto_parse_qs_csv = False
    app.req_options.keep_blank_qs_values = False
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(errors.TidingsError, handle_domain_error)
    for path, resource in routes(service, socket, sqs):
        app.add_route(path, resource)
    if sqs is not None:
        # SDKs post a queue's SQS actions to its URL, /<account>/<queue>: a
        # sink, which only sees what no route of the Zaqar API matched.
        # Falcon types a sink as taking **kwargs: Any; QueueUrl names the
        # route's fields it takes.
        app.add_sink(QueueUrl(sqs), QUEUE_URL)  # type: ignore[arg-type]  # see the comment above
    return app
