"""The OpenAPI document's components: the schemas of the bodies, the
shared header parameters and the error responses, from the server's Limits."""

from __future__ import annotations

from tidings.config import Limits
from tidings.transport.http.openapi_helpers import (
    ERROR_DESCRIPTIONS,
    EXTENSION,
    INT32_MAX,
    NAME_PATTERN,
    Schema,
    array,
    integer,
    links,
    obj,
    ok,
    ref,
    string,
)

# --- the schemas --------------------------------------------------------------------


def component_schemas(limits: Limits) -> dict[str, Schema]:
    name = string(minLength=1, maxLength=limits.max_queue_name_length, pattern=NAME_PATTERN)
    message_ttl = integer(limits.min_message_ttl, limits.max_message_ttl,
                          "Seconds the message lives.")
    delay = integer(0, limits.max_message_delay,
                    "Seconds before the message can be read or claimed (honoured per "
                    "message, unlike Zaqar).")
    claim_ttl = integer(limits.min_claim_ttl, limits.max_claim_ttl, nullable=True,
                        description="Seconds the claim lasts (null: the default).")
    claim_grace = integer(limits.min_claim_grace, limits.max_claim_grace, nullable=True,
                          description="Seconds added to the claimed messages' lives.")
    subscription_ttl = integer(limits.min_subscription_ttl, limits.max_subscription_ttl,
                               "Seconds the subscription lives.")
    reserved = {
        "_max_messages_post_size": integer(1, limits.max_messages_post_size),
        "_default_message_ttl": integer(limits.min_message_ttl, limits.max_message_ttl),
        "_default_message_delay": integer(0, limits.max_message_delay),
        "_dead_letter_queue": {**name, "type": ["string", "null"]},
        "_dead_letter_queue_messages_ttl": integer(limits.min_message_ttl,
                                                   limits.max_message_ttl, nullable=True),
        "_max_claim_count": integer(1, INT32_MAX, nullable=True),
        "_enable_encrypt_messages": {
            "type": "boolean",
            "description": "Store bodies encrypted (needs encryption.key on the server)."},
    }
    retry_policy = obj(
        {**{key: integer(0, INT32_MAX) for key in (
            "retries_with_no_delay", "minimum_delay_retries", "minimum_delay",
            "maximum_delay", "maximum_delay_retries", "maximum_retries",
            "backoff_interval")},
         "retry_backoff_function": string(enum=["linear", "arithmetic", "geometric",
                                                "exponential"]),
         "ignore_subscription_override": {"type": "boolean"}},
    )
    options = obj({"_retry_policy": retry_policy,
                   "require_confirmation": {"type": "boolean"}},
                  description="Free-form; the keys shown are interpreted.")
    subscriber = string("A webhook (`http`, `https`; `trust+http`, `trust+https` under "
                        "Keystone) or `mailto:` URI. Internal addresses are refused; "
                        "host names are resolved and checked at delivery.", format="uri",
                        pattern="^((trust\\+)?https?://[^/?#]+|mailto:[^@]+@.+)")
    message = obj({
        "id": string(), "href": string(), "ttl": {"type": "integer"},
        "age": {"type": "integer"}, "body": {},
        "claim_id": {"type": ["string", "null"],
                     "description": "Popped messages only (elsewhere the href carries it)."},
        "claim_count": {"type": "integer", "description": "Popped messages only."},
    }, ("id", "href", "ttl", "age", "body"))
    message_stat = obj({"age": {"type": "integer"}, "body": {},
                        "claim_count": {"type": "integer"},
                        "claim_id": {"type": ["string", "null"]},
                        "created": string(format="date-time"), "href": string(),
                        "ttl": {"type": "integer"}},
                       ("age", "body", "claim_count", "claim_id", "created", "href", "ttl"))
    listing_entry = obj({"name": string(), "href": string(), "metadata": {"type": "object"}},
                        ("name", "href"))
    return {
        "Error": obj({"title": string(), "description": string()}, ("title",),
                     description="Every 4xx and 5xx answer. Falcon's own 404 and 405 "
                     "(unknown route, wrong method) carry only a title."),
        "Name": name,
        "QueueMetadata": obj(reserved, description=(
            "Free-form metadata; the reserved keys (leading underscore) are checked. "
            f"At most {limits.max_queue_metadata} bytes of JSON.")),
        "QueueMetadataWithDefaults": obj(reserved, tuple(
            k for k in reserved), description="The metadata with every reserved key "
            "shown, defaults filled in."),
        "JsonPatch": array(obj({
            "op": string(enum=["add", "replace", "remove"]),
            "path": string(pattern="^/metadata/.+"),
            "value": {},
        }, ("op", "path"))),
        "Listing": obj({"links": links(), "count": {"type": "integer", "minimum": 0}},
                       ("links",)),
        "QueueListing": {"allOf": [ref("Listing"), obj({"queues": array(listing_entry)},
                                                       ("queues",))]},
        "TopicListing": {"allOf": [ref("Listing"), obj({"topics": array(listing_entry)},
                                                       ("topics",))]},
        "Stats": obj({"messages": obj({
            "claimed": {"type": "integer", "minimum": 0},
            "free": {"type": "integer", "minimum": 0},
            "total": {"type": "integer", "minimum": 0},
            "oldest": message_stat, "newest": message_stat,
        }, ("claimed", "free", "total"))}, ("messages",)),
        "PurgeRequest": obj({"resource_types": array(
            string(enum=["messages", "subscriptions"]), minItems=1, uniqueItems=True)}),
        "ShareRequest": obj({
            "paths": array(string(enum=["messages", "subscriptions", "claims"])),
            "methods": array(string(enum=["GET", "POST", "PUT", "DELETE", "PATCH"])),
            "expires": string("ISO 8601 time, in the future and at most "
                              "limits.max_share_lifetime (7 days) away.", format="date-time"),
        }, additional=False),
        "Share": obj({"signature": string(), "expires": string(),
                      "paths": array(string()), "methods": array(string()),
                      "project": {"type": ["string", "null"]}},
                     ("signature", "expires", "paths", "methods", "project")),
        "NewMessage": obj({"body": {"description": "Any JSON value."}, "ttl": message_ttl,
                           "delay": delay}, ("body",)),
        "MessagePost": obj({"messages": array(ref("NewMessage"), minItems=1)},
                           ("messages",), description=(
                               f"At most {limits.max_messages_post_size} bytes (or the "
                               "queue's _max_messages_post_size).")),
        "Posted": obj({"resources": array(string())}, ("resources",)),
        "Message": message,
        "Messages": obj({"messages": array(ref("Message")), "links": links()},
                        ("messages",)),
        "ClaimRequest": obj({"ttl": claim_ttl, "grace": claim_grace, "limit": {
            **integer(1, limits.max_messages_per_claim_or_pop),
            "description": "As openstacksdk sends it; the `limit` query parameter wins.",
            EXTENSION: True}}),
        "ClaimUpdate": obj({"ttl": claim_ttl, "grace": claim_grace}),
        "Claimed": obj({"messages": array(ref("Message"))}, ("messages",)),
        "Claim": obj({"age": {"type": "integer"}, "ttl": {"type": "integer"},
                      "href": string(), "messages": array(ref("Message"))},
                     ("age", "ttl", "href", "messages")),
        "SubscriptionRequest": obj({"subscriber": subscriber, "ttl": subscription_ttl,
                                    "options": options}, ("subscriber",)),
        "SubscriptionUpdate": obj({"subscriber": subscriber, "ttl": subscription_ttl,
                                   "options": options}, additional=False, minProperties=1),
        "SubscriptionCreated": obj({"subscription_id": string()}, ("subscription_id",)),
        "Subscription": obj({
            "id": string(), "subscriber": string(), "source": string(),
            "ttl": {"type": "integer"}, "age": {"type": "integer"},
            "options": {"type": "object"}, "confirmed": {"type": "boolean"},
        }, ("id", "subscriber", "source", "ttl", "age", "options", "confirmed")),
        "Subscriptions": obj({"subscriptions": array(ref("Subscription")), "links": links()},
                             ("subscriptions", "links")),
        "Confirmation": obj({"confirmed": {"type": "boolean"}}, ("confirmed",)),
        "Delivery": obj({
            "id": string(), "kind": string(enum=["message", "confirmation"]),
            "status": string(enum=["pending", "dead"]),
            "attempts": {"type": "integer", "minimum": 0},
            "last_error": {"type": ["string", "null"]},
            "created": string(format="date-time"), "payload": {},
        }, ("id", "kind", "status", "attempts", "created", "payload")),
        "Deliveries": obj({"deliveries": array(ref("Delivery")), "links": links()},
                          ("deliveries", "links"), **{EXTENSION: True}),
        "PoolRequest": obj({
            "uri": string("A storage URL, as for `storage`.", minLength=1),
            "weight": integer(0), "flavor": {**name, "type": ["string", "null"]},
            "options": {"type": "object"}}, ("uri", "weight")),
        "PoolUpdate": obj({
            "uri": string(minLength=1), "weight": integer(0),
            "flavor": {**name, "type": ["string", "null"]}, "options": {"type": "object"}},
            minProperties=1),
        "Pool": obj({"name": string(), "uri": string(), "weight": {"type": "integer"},
                     "flavor": {"type": ["string", "null"]}, "options": {"type": "object"},
                     "href": string()}, ("name", "uri", "weight", "href")),
        "Pools": obj({"pools": array(ref("Pool")), "links": links()}, ("pools", "links")),
        "FlavorRequest": obj({"pool_list": array(name), "capabilities": {"type": "object"},
                              "pool_group": {**name, "deprecated": True}}),
        "FlavorUpdate": obj({"pool_list": array(name), "capabilities": {"type": "object"}},
                            minProperties=1),
        "Flavor": obj({"name": string(), "pool_list": array(string()),
                       "capabilities": {"type": "object"}, "href": string()},
                      ("name", "pool_list", "href")),
        "Flavors": obj({"flavors": array(ref("Flavor")), "links": links()},
                       ("flavors", "links")),
        "Versions": obj({"versions": array(obj({
            "id": string(), "status": string(), "updated": string(),
            "media-types": array(obj({"base": string(), "type": string()})),
            "links": links(),
        }, ("id", "status", "links")))}, ("versions",)),
        "Home": obj({"resources": {"type": "object"}}, ("resources",)),
        "Health": obj({
            "storage_reachable": {"type": "boolean"}, "driver": string(),
            "capabilities": array(string()), "version": string(),
            "details": {"type": "object", "description":
                        "The driver's report: message counts per project and queue "
                        "(message_counts) for an admin, totals (message_totals) for "
                        "anyone else; a problem the storage knows of (problem)."},
        }, ("storage_reachable", "driver", "capabilities", "version", "details"),
            **{EXTENSION: True}),
    }


def component_parameters(limits: Limits) -> dict[str, Schema]:
    return {
        "ClientID": {"name": "Client-ID", "in": "header", "required": True,
                     "description": "The client's identity: a UUID.",
                     "schema": string(format="uuid")},
        "ProjectID": {"name": "X-Project-ID", "in": "header", "required": True,
                      "description": "The project (tenant) the request acts in (under "
                      "Keystone auth, the token's project wins).",
                      "schema": string(minLength=1, maxLength=limits.max_project_id_length,
                                       pattern="^[^\\x00-\\x1f\\x7f]*[^\\s\\x00-\\x1f\\x7f]"
                                       "[^\\x00-\\x1f\\x7f]*$")},
    }


def component_responses() -> dict[str, Schema]:
    return {f"Error{code}": ok(text, ref("Error")) for code, text in ERROR_DESCRIPTIONS.items()}
