"""The SQS endpoint: SQS requests in, SQS answers out.

botocore (and so boto3, the aws CLI and kombu) speaks AWS JSON 1.0 to SQS:
``POST`` with ``X-Amz-Target: AmazonSQS.<Action>``, a JSON body of the
action's parameters, signed with SigV4. Older SDKs speak the query protocol
(a form with ``Action=<Action>``, XML answers: transport/sqs/query.py).
Both post to the endpoint (``/``) or to the queue's URL
(``/<account>/<queue>``); all are served here. Every failure, expected or
not, is answered in SQS's error shape (transport/sqs/errors.py).
"""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from typing import Any

import falcon
import falcon.asgi
import msgspec

from tidings import errors
from tidings.api.context import Service, make_context
from tidings.auth.authenticator import Authenticator
from tidings.auth.identity import Identity
from tidings.transport.sqs import query, sigv4
from tidings.transport.sqs.actions import ACTIONS, UNSUPPORTED, Call
from tidings.transport.sqs.errors import SqsError, answer, from_domain

log = logging.getLogger(__name__)

TARGET_PREFIX = "AmazonSQS."
ROUTE_PREFIX = "sqs:"
CONTENT_TYPE = "application/x-amz-json-1.0"
# A SendMessageBatch holds at most 256 KiB of messages; JSON escaping and
# base64 binary attributes can grow that several times over.
MAX_BODY = 2 * 1024 * 1024
# The region of unsigned requests (noauth with auth.noauth_project).
DEFAULT_REGION = "us-east-1"
# Queue URLs: /<account>/<queue>, where the account is not the Zaqar API's v2.
QUEUE_URL = re.compile(r"^/(?!v2/)[^/]+/[^/]+$")
# A namespace for the Client-ID of SQS callers (Tidings' operations want
# one): a stable id per access key.
_CLIENT_NAMESPACE = uuid.UUID("6f0c5f3e-5b8e-4e8b-9d3c-1a2b3c4d5e6f")


def serves(method: str, path: str) -> bool:
    """Whether a request can only reach the SQS endpoint (its routes take
    POST at ``/`` and at queue URLs). Keystone token checks skip these:
    SQS requests prove who they are with their signature, checked here."""
    return method == "POST" and (path == "/" or bool(QUEUE_URL.match(path)))


class Endpoint:
    """Serves SQS requests with the service's operations."""

    def __init__(self, service: Service, auth: Authenticator | None = None,
                 receipt_key: bytes | None = None) -> None:
        self.service = service
        self.auth = auth
        # receipts.key_for(settings) in a server; a random key (this
        # process only) where there are no settings.
        self.receipt_key = receipt_key or secrets.token_bytes(32)

    async def __call__(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        # The query protocol: a form without X-Amz-Target, answered in XML.
        xml = req.get_header("X-Amz-Target") is None and query.is_query(req.content_type)
        action = ""
        try:
            action, document = await self.respond(req, xml)
            status, headers, error = 200, dict[str, str](), None
        except SqsError as exc:
            error = exc
        except errors.TidingsError as exc:
            error = from_domain(exc)
        except Exception:  # never a trace to the client; the log has it
            log.exception("unexpected error on SQS %s (request %s)",
                          action or req.get_header("X-Amz-Target"),
                          getattr(req.context, "request_id", "-"))
            error = SqsError("InternalFailure", "The request processing has failed because of "
                             "an unknown error, exception or failure.")
        if error is not None:
            status, headers, document = answer(error)
        request_id = getattr(req.context, "request_id", None) or str(uuid.uuid4())
        resp.status = falcon.code_to_http_status(status)
        for name, value in headers.items():
            resp.set_header(name, value)
        resp.set_header("x-amzn-RequestId", request_id)
        if not xml:
            resp.content_type = CONTENT_TYPE
            resp.data = msgspec.json.encode(document)
            return
        resp.content_type = query.CONTENT_TYPE
        if error is None:
            resp.data = query.answer(action, document, request_id)
        else:
            resp.data = query.error_answer(error.kind.code, error.kind.sender, error.message,
                                           request_id)

    async def respond(self, req: falcon.asgi.Request, xml: bool
                      ) -> tuple[str, dict[str, Any]]:
        """(action, result) of a request in either protocol."""
        if xml:
            body = await self.read(req)
            action, params = query.parse(body)
            self.check_action(action, action)
        else:
            action = self.action_of(req)
            body = await self.read(req)
        # One route per action in the metrics and the access log, not "/".
        req.uri_template = ROUTE_PREFIX + action
        project, identity, region, access_key = await self.identify(req, body)
        ctx = make_context(self.service, project,
                           str(uuid.uuid5(_CLIENT_NAMESPACE, access_key)), identity)
        # Names the project in the access log and the metrics (under noauth
        # too); nothing after this point reads it to authorize anything.
        req.context.identity = identity or Identity(project=ctx.project)
        quotas = self.service.quotas
        if quotas is not None and quotas.rate_limited:
            quotas.take(ctx.project)
        if not xml:
            params = self.decode(body)
        call = Call(ctx=ctx, params=params, base_url=req.forwarded_prefix, region=region,
                    receipt_key=self.receipt_key)
        return action, await ACTIONS[action](call)

    @classmethod
    def action_of(cls, req: falcon.asgi.Request) -> str:
        target = req.get_header("X-Amz-Target")
        if target is None:
            raise SqsError("InvalidAction", "The request names no action (X-Amz-Target).")
        action = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else ""
        cls.check_action(action, target)
        return action

    @staticmethod
    def check_action(action: str, named: str) -> None:
        if action in UNSUPPORTED:
            raise SqsError("UnsupportedOperation", f"{action} is not supported by this service.")
        if action not in ACTIONS:
            raise SqsError("InvalidAction",
                           f"The action or operation requested is invalid: {named}.")

    @staticmethod
    async def read(req: falcon.asgi.Request) -> bytes:
        if req.content_length is not None and req.content_length > MAX_BODY:
            raise SqsError("InvalidParameterValue",
                           f"The request is too large: at most {MAX_BODY} bytes.")
        body = await req.stream.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise SqsError("InvalidParameterValue",
                           f"The request is too large: at most {MAX_BODY} bytes.")
        return body

    @staticmethod
    def decode(body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            params = msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            raise SqsError("InvalidParameterValue", "The request body is not valid JSON."
                           ) from None
        if not isinstance(params, dict):
            raise SqsError("InvalidParameterValue", "The request body must be a JSON object.")
        return params

    async def identify(self, req: falcon.asgi.Request, body: bytes
                       ) -> tuple[str | None, Identity | None, str, str]:
        """(project, identity, region, access key) of a request."""
        authorization = req.get_header("Authorization")
        auth = self.auth
        if auth is None or not auth.enabled:
            # noauth: the access key id names the project; nothing is checked.
            if authorization is None and self.service.default_project:
                project = self.service.default_project
                return project, None, DEFAULT_REGION, project
            signature = sigv4.parse(authorization)
            return signature.access_key, None, signature.region, signature.access_key
        signature = sigv4.parse(authorization)
        sigv4.check_date(req.get_header("X-Amz-Date"), signature, auth.clock())
        credentials = sigv4.ec2_credentials(signature, req.method, req.path, body,
                                            req.get_header)
        identity, reason = await auth.for_ec2_signature(credentials)
        if identity is None:
            if "not found" in reason.lower():
                raise SqsError("InvalidClientTokenId",
                               "The security token included in the request is invalid.")
            raise SqsError("SignatureDoesNotMatch",
                           "The request signature we calculated does not match the signature "
                           "you provided. Check your AWS Secret Access Key and signing method.")
        return identity.project, identity, signature.region, signature.access_key


class QueueUrl:
    """A Falcon sink for queue URLs (``/<account>/<queue>``): SDKs post a
    queue's actions there. The queue itself is named by the body's
    QueueUrl; any other method is not found, as on any unknown path."""

    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint

    async def __call__(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                       **fields: str) -> None:
        if req.method != "POST":
            raise falcon.HTTPNotFound()
        await self.endpoint(req, resp)
