"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /v2/openapi.json``.

Built from small helpers rather than written out as one literal, and from
the server's ``Limits``, so the ranges it states are the ones enforced.
tests/http/test_openapi.py checks that every route and method of
``app.routes()`` is documented and every documented one exists;
tests/reliability/test_schemathesis.py fuzzes the live server with it.

What goes beyond Zaqar v2 is marked ``x-tidings-extension: true``. The
document itself is one of those: unlike every other ``/v2`` path it needs
neither ``Client-ID`` nor ``X-Project-ID`` (nor a token under Keystone
auth): it describes the service, not a project.
"""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi
import msgspec

from tidings import __version__
from tidings.config import Limits
from tidings.transport.http.openapi_components import (
    component_parameters,
    component_responses,
    component_schemas,
)
from tidings.transport.http.openapi_helpers import (
    EXTENSION,
    INT32_MAX,
    JSON_HOME,
    JSON_PATCH,
    LOCATION,
    PATH,
    QUEUE,
    TOPIC,
    Operation,
    Schema,
    array,
    body,
    integer,
    obj,
    ok,
    operation,
    path_param,
    query,
    ref,
    string,
)

# What the server and the tests use; the building blocks are in
# openapi_helpers.py and the components in openapi_components.py.
__all__ = ["EXTENSION", "JSON_HOME", "JSON_PATCH", "PATH", "OpenAPIDocument", "build"]


# --- the paths ----------------------------------------------------------------------


def listing_params(limits: Limits) -> list[Schema]:
    return [
        query("marker", string(), "Page after this name."),
        query("limit", integer(1, limits.max_queues_per_page)),
        query("detailed", {"type": "boolean"}, "Include each one's metadata."),
        query("name", string(), "Only names starting with this.", extension=True),
        query("with_count", {"type": "boolean"}, "Add `count`, the total."),
    ]


LISTING_NOTE = ("Any other query parameter filters on a metadata value "
                "(`?key=value`).")


def message_list_params(limits: Limits) -> list[Schema]:
    return [
        query("marker", string()),
        query("limit", integer(1, limits.max_messages_per_page)),
        query("echo", {"type": "boolean"}, "Include this client's own messages."),
        query("include_claimed", {"type": "boolean"}),
        query("include_delayed", {"type": "boolean"}, extension=True),
        query("wait", integer(0, limits.max_wait), "Long polling: seconds to wait for a "
              "message when there is none.", extension=True),
        query("ids", string(pattern="^[^,]*(,[^,]*)*$"),
              f"Comma-separated ids (at most {limits.max_messages_per_page}): a bulk get "
              "instead of a listing; 404 when none exists."),
    ]


def entity_paths(limits: Limits, base: str, kind: str, tag: str) -> dict[str, Any]:
    """The paths a queue and a topic share: item, stats, purge, messages."""
    cap = kind.capitalize()
    extension = kind == "topic"
    parent = path_param(f"{kind}_name", f"The {kind}'s name.", ref("Name"))
    message_id = path_param("message_id", "The message's id.")
    item_params = [parent]

    def op(summary: str, op_id: str, responses: dict[str, Schema], **kw: Any) -> Operation:
        result = operation(summary, op_id, responses, extension=extension, **kw)
        result["tags"] = [tag]
        return result

    return {
        base: {
            "parameters": item_params,
            "put": op(f"Create a {kind}", f"create{cap}", {
                "201": ok("Created.", headers=LOCATION),
                "204": ok("It already exists; its metadata is left as it was.",
                          headers=LOCATION)},
                request=body(ref("QueueMetadata"), required=False)),
            "get": op(f"A {kind}'s metadata", f"get{cap}", {
                "200": ok(f"The metadata (defaults for a {kind} that does not exist).",
                          ref("QueueMetadataWithDefaults"))}),
            "patch": op(f"Change a {kind}'s metadata", f"update{cap}", {
                "200": ok("The whole metadata after the change.",
                          ref("QueueMetadataWithDefaults"))},
                request=body(ref("JsonPatch"), media=JSON_PATCH),
                error_codes=(400, 401, 403, 404, 409, 415, 503)),
            "delete": op(f"Delete a {kind}", f"delete{cap}", {"204": ok("Deleted.")}),
        },
        base + "/stats": {
            "parameters": item_params,
            "get": op(f"A {kind}'s message counts", f"get{cap}Stats",
                      {"200": ok("Counts (zeros for a missing one).", ref("Stats"))}),
        },
        base + "/purge": {
            "parameters": item_params,
            "post": op(f"Empty a {kind}", f"purge{cap}", {"204": ok("Purged.")},
                       request=body(ref("PurgeRequest"), required=False,
                                    description="Without a body: everything.")),
        },
        base + "/messages": {
            "parameters": item_params,
            "post": op("Post messages", f"post{cap}Messages", {
                "201": ok("Posted, all or none.", ref("Posted"))},
                request=body(ref("MessagePost"))),
            "get": op("List messages, or get some by id", f"list{cap}Messages", {
                "200": ok("A page, or the messages found by id.", ref("Messages")),
                "404": {"$ref": "#/components/responses/Error404"}},
                params=message_list_params(limits)),
            "delete": op("Delete messages by id, or pop some", f"delete{cap}Messages", {
                "200": ok("The popped messages.", ref("Messages")),
                "204": ok("Deleted (unknown ids are skipped).")},
                params=[
                    query("ids", string(), "Comma-separated ids to delete."),
                    query("claim_ids", string(), "Comma-separated claims the ids hold.",
                          extension=True),
                    query("pop", integer(1, limits.max_messages_per_claim_or_pop),
                          "Delete and return up to this many messages."),
                ], description="Exactly one of `ids` and `pop`.",
                error_codes=(400, 401, 403, 503)),
        },
        base + "/messages/{message_id}": {
            "parameters": [parent, message_id],
            "get": op("A message", f"get{cap}Message", {"200": ok("The message.",
                                                                   ref("Message"))},
                      error_codes=(400, 401, 403, 404, 503)),
            "delete": op("Delete a message", f"delete{cap}Message", {
                "204": ok("Deleted (also when it did not exist).")},
                params=[query("claim_id", string(), "Needed for a claimed message.")],
                error_codes=(400, 401, 403, 503)),
        },
    }


def subscription_paths(limits: Limits, base: str, kind: str, tag: str) -> dict[str, Any]:
    cap = kind.capitalize()
    extension = kind == "topic"
    parent = path_param(f"{kind}_name", f"The {kind}'s name.", ref("Name"))
    sub_id = path_param("subscription_id", "The subscription's id.")
    path = base + "/subscriptions"
    item = path + "/{subscription_id}"
    paging = [query("marker", string()),
              query("limit", integer(1, limits.max_subscriptions_per_page))]

    def op(summary: str, op_id: str, responses: dict[str, Schema], *, ext: bool = False,
           **kw: Any) -> Operation:
        result = operation(summary, op_id, responses, extension=extension or ext, **kw)
        result["tags"] = [tag]
        return result

    signed = [{"name": name, "in": "header", "required": False, "schema": string(),
               "description": "A pre-signed confirmation URL's field (the confirmation "
               "notification gives them)."}
              for name in ("URL-Signature", "URL-Expires", "URL-Methods", "URL-Paths")]
    return {
        path: {
            "parameters": [parent],
            "post": op("Subscribe", f"create{cap}Subscription", {
                "201": ok("Subscribed.", ref("SubscriptionCreated"), headers=LOCATION)},
                request=body(ref("SubscriptionRequest")),
                error_codes=(400, 401, 403, 409, 503)),
            "get": op("List subscriptions", f"list{cap}Subscriptions", {
                "200": ok("A page.", ref("Subscriptions"))}, params=paging),
        },
        item: {
            "parameters": [parent, sub_id],
            "get": op("A subscription", f"get{cap}Subscription", {
                "200": ok("The subscription.", ref("Subscription"))},
                error_codes=(400, 401, 403, 404, 503)),
            "patch": op("Change a subscription", f"update{cap}Subscription", {
                "204": ok("Changed.")}, request=body(ref("SubscriptionUpdate")),
                error_codes=(400, 401, 403, 404, 409, 503)),
            "delete": op("Unsubscribe", f"delete{cap}Subscription", {
                "204": ok("Deleted (also when it did not exist).")}),
        },
        item + "/confirm": {
            "parameters": [parent, sub_id],
            "put": op("Confirm (or unconfirm) a subscription", f"confirm{cap}Subscription", {
                "204": ok("Done.")}, params=signed, request=body(ref("Confirmation")),
                error_codes=(400, 401, 403, 404, 503)),
        },
        item + "/deliveries": {
            "parameters": [parent, sub_id],
            "get": op("The notifications owed to or given up on", f"list{cap}Deliveries", {
                "200": ok("A page, oldest first.", ref("Deliveries"))}, ext=True,
                params=[query("status", string(enum=["dead", "pending"]),
                              "Which ones (default: dead)."), *paging],
                error_codes=(400, 401, 403, 404, 503)),
        },
    }


def system_paths() -> dict[str, Any]:
    def op(summary: str, op_id: str, responses: dict[str, Schema], **kw: Any) -> Operation:
        result = operation(summary, op_id, responses, **kw)
        result["tags"] = ["system"]
        return result

    home = op("The JSON home document", "getHome", {
        "200": ok("The home document.", ref("Home"), media=JSON_HOME)},
        error_codes=(400, 401))
    return {
        "/": {"get": op("API versions", "listVersions", {
            "300": ok("The versions. The same path serves the WebSocket API (an "
                      "upgrade request).", ref("Versions"))},
            headers=False, error_codes=())},
        "/v2": {"get": {**home, "operationId": "getHomeNoSlash"}},
        "/v2/": {"get": home},
        "/v2/ping": {
            "get": op("Is the service up?", "ping", {"204": ok("Up.")}),
            "head": op("Is the service up?", "pingHead", {"204": ok("Up.")}),
        },
        "/v2/health": {
            "get": op("Health details", "health", {"200": ok("Details.", ref("Health"))}),
            "head": op("Is the service up?", "healthHead", {"204": ok("Up.")}),
        },
        "/metrics": {"get": op("Prometheus metrics", "getMetrics", {
            "200": ok("The metrics of the process that answered, in the Prometheus text "
                      "format.", string(), media="text/plain")},
            headers=False, extension=True, error_codes=(404,),
            description="Needs no identifying headers. 404 when metrics are disabled.")},
        "/healthz": {
            "get": op("Is the process up?", "healthz", {
                "200": ok("Up: the body is ok.", string(), media="text/plain")},
                headers=False, extension=True, error_codes=(),
                description="A liveness probe: no identifying headers, nor a token."),
            "head": op("Is the process up?", "healthzHead", {"200": ok("Up.")},
                       headers=False, extension=True, error_codes=()),
        },
        "/readyz": {
            "get": op("Can the process serve?", "readyz", {
                "200": ok("Ready: the storage answers. The body is ready.", string(),
                          media="text/plain"),
                "503": ok("Not ready: the body is one line with the reason.", string(),
                          media="text/plain")},
                headers=False, extension=True, error_codes=(),
                description="A readiness probe: no identifying headers, nor a token."),
            "head": op("Can the process serve?", "readyzHead", {
                "200": ok("Ready."), "503": ok("Not ready.")},
                headers=False, extension=True, error_codes=()),
        },
        PATH: {"get": op("This document", "getOpenAPI", {
            "200": ok("The OpenAPI document.", {"type": "object"})},
            headers=False, extension=True, error_codes=(),
            description="Needs no identifying headers, nor a token under Keystone auth.")},
    }


def console_paths() -> dict[str, Any]:
    """The web console's static files (transport/http/console.py): no
    identifying headers, nor a token under Keystone auth; the page asks for
    them. See docs/console.md."""
    unchanged = ok("Unchanged since the ETag in If-None-Match.")

    def get(summary: str, op_id: str, ok_response: Schema, error_codes: tuple[int, ...]
            ) -> Operation:
        return {**operation(summary, op_id, {"200": ok_response, "304": unchanged},
                            headers=False, extension=True, error_codes=error_codes,
                            description="Needs no identifying headers, nor a token."),
                "tags": ["system"]}

    page = ok("The console's page.", string(), media="text/html")
    file = {"description": "The file.", "content": {
        media: {"schema": string()}
        for media in ("text/html", "text/javascript", "text/css", "image/png", "image/svg+xml")}}
    return {
        "/console": {"get": get("The web console", "getConsole", page, ())},
        "/console/": {"get": get("The web console", "getConsoleSlash", page, ())},
        "/console/{name}": {
            "parameters": [path_param("name", "A file of the console, by exact name.")],
            "get": get("A file of the web console", "getConsoleFile", file, (404,))},
    }


def admin_paths() -> dict[str, Any]:
    """Pools and flavors (Zaqar's admin API). Without pooling on, every one
    of them is a 404, as in Zaqar."""
    name = path_param("name", "The pool's or flavor's name.", ref("Name"))
    paths: dict[str, Any] = {}
    for kind, plural in (("pool", "pools"), ("flavor", "flavors")):
        cap = kind.capitalize()
        collection = f"/v2/{plural}"
        listing = operation(f"List {plural}", f"list{cap}s", {
            "200": ok("A page.", ref(f"{cap}s"))}, params=[
                query("marker", string()), query("limit", integer(1, 20)),
                query("detailed", {"type": "boolean"})],
            error_codes=(400, 401, 403, 404, 503))
        detailed = query("detailed", {"type": "boolean"},
                         "Include options (pools) or capabilities (flavors).")
        paths[collection] = {"get": listing}
        paths[collection + "/{name}"] = {
            "parameters": [name],
            "put": operation(f"Create or replace a {kind}", f"create{cap}", {
                "201": ok("Created or replaced.", headers=LOCATION)},
                request=body(ref(f"{cap}Request")), error_codes=(400, 401, 403, 404, 503)),
            "get": operation(f"A {kind}", f"get{cap}", {"200": ok(f"The {kind}.", ref(cap))},
                             params=[detailed], error_codes=(400, 401, 403, 404, 503)),
            "patch": operation(f"Change a {kind}", f"update{cap}", {
                "200": ok(f"The {kind}.", ref(cap))}, request=body(ref(f"{cap}Update")),
                error_codes=(400, 401, 403, 404, 503)),
            "delete": operation(f"Delete a {kind}", f"delete{cap}", {
                "204": ok("Deleted (also when it did not exist).")},
                error_codes=(400, 401, 403, 404, 503)),
        }
        for op in paths[collection]["get"], *paths[collection + "/{name}"].values():
            if isinstance(op, dict) and "operationId" in op:
                op["tags"] = ["admin"]
    return paths


def redrive_path(limits: Limits, queue: Schema) -> dict[str, Any]:
    """Dead-letter redrive (docs/redrive.md)."""
    request = obj({
        "to": ref("Name"),
        "limit": integer(1, INT32_MAX, "Move at most this many (default: all)."),
    }, (), additional=False)
    moved = obj({"moved": integer(0), "to": ref("Name"), "messages": array(
        string("The path of a moved message in the target queue."))},
        ("moved", "to", "messages"))
    return {
        "parameters": [queue],
        "post": {**operation("Move dead letters back to a queue", "redriveQueue", {
            "200": ok("Moved: each message once, its body unchanged.", moved)},
            request=body(request, required=False), extension=True, description=(
                "Moves up to `limit` messages of this (dead letter) queue to the tail of "
                "`to` (default: the one queue whose `_dead_letter_queue` names this one), "
                "oldest first, as fresh messages (unclaimed, claim count 0). "
                "Policy `queues:redrive`. See docs/redrive.md.")),
            "tags": ["queues"]},
    }


def build(limits: Limits | None = None) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for these limits."""
    limits = limits or Limits()
    queue_listing = operation("List queues", "listQueues", {
        "200": ok("A page.", ref("QueueListing"))}, params=listing_params(limits),
        description=LISTING_NOTE)
    queue_listing["tags"] = ["queues"]
    topic_listing = operation("List topics", "listTopics", {
        "200": ok("A page.", ref("TopicListing"))}, params=listing_params(limits),
        description=LISTING_NOTE, extension=True)
    topic_listing["tags"] = ["topics"]
    queue = path_param("queue_name", "The queue's name.", ref("Name"))
    claim_id = path_param("claim_id", "The claim's id.")
    claims_tag = ["claims"]
    paths: dict[str, Any] = {
        **system_paths(),
        "/v2/queues": {"get": queue_listing},
        **entity_paths(limits, QUEUE, "queue", "queues"),
        QUEUE + "/share": {
            "parameters": [queue],
            "post": {**operation("A pre-signed URL for the queue", "shareQueue", {
                "200": ok("The signed URL's fields.", ref("Share"))},
                request=body(ref("ShareRequest"), required=False),
                description="Signed with auth.secret_key, or the key kept with the data; "
                            "503 when there is neither."),
                "tags": ["queues"]},
        },
        QUEUE + "/claims": {
            "parameters": [queue],
            "post": {**operation("Claim messages", "createClaim", {
                "201": ok("Claimed.", ref("Claimed"), headers=LOCATION),
                "204": ok("Nothing to claim.")},
                params=[query("limit", integer(1, limits.max_messages_per_claim_or_pop)),
                        query("wait", integer(0, limits.max_wait),
                              "Long polling: seconds to wait for a message.",
                              extension=True)],
                request=body(ref("ClaimRequest"), required=False)), "tags": claims_tag},
        },
        QUEUE + "/claims/{claim_id}": {
            "parameters": [queue, claim_id],
            "get": {**operation("A claim", "getClaim", {"200": ok("The claim.", ref("Claim"))},
                                error_codes=(400, 401, 403, 404, 503)), "tags": claims_tag},
            "patch": {**operation("Renew a claim", "updateClaim", {"204": ok("Renewed.")},
                                  request=body(ref("ClaimUpdate")),
                                  error_codes=(400, 401, 403, 404, 503)), "tags": claims_tag},
            "delete": {**operation("Release a claim", "deleteClaim", {
                "204": ok("Released (also when it did not exist).")}), "tags": claims_tag},
        },
        QUEUE + "/redrive": redrive_path(limits, queue),
        **subscription_paths(limits, QUEUE, "queue", "subscriptions"),
        "/v2/topics": {"get": topic_listing},
        **entity_paths(limits, TOPIC, "topic", "topics"),
        **subscription_paths(limits, TOPIC, "topic", "topics"),
        **admin_paths(),
        **console_paths(),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tidings",
            "version": __version__,
            "summary": "The OpenStack Zaqar v2 messaging API, as Tidings serves it.",
            "description": (
                "Every `/v2` request names its project (`X-Project-ID`) and its client "
                "(`Client-ID`, a UUID), except this document. Operations and fields "
                "marked `x-tidings-extension: true` go beyond Zaqar v2. Errors are "
                "`{\"title\", \"description\"}`. The WebSocket API is served at `/`."),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [{"name": name} for name in ("system", "queues", "messages", "claims",
                                              "subscriptions", "topics", "admin")],
        "paths": _tag_messages(paths),
        "components": {
            "schemas": component_schemas(limits),
            "parameters": component_parameters(limits),
            "responses": component_responses(),
        },
    }


def _tag_messages(paths: dict[str, Any]) -> dict[str, Any]:
    """Queue message operations are tagged "messages" rather than "queues"."""
    for path, item in paths.items():
        if path.startswith(QUEUE + "/messages"):
            for value in item.values():
                if isinstance(value, dict) and "tags" in value:
                    value["tags"] = ["messages"]
    return paths


class OpenAPIDocument:
    """``GET /v2/openapi.json``: the document for the server's limits,
    encoded once."""

    def __init__(self, limits: Limits) -> None:
        self.data = msgspec.json.encode(build(limits))

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.data
