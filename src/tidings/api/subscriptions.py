"""Subscription operations (queues and topics alike: a topic is a queue of
the shadow project, see api/topics.py).

Zaqar's wire format, with its bugs fixed: the subscriber must be a string
with a known scheme and ``options`` an object. A second subscription of the
same subscriber on the same queue answers with the first one's id, as
Zaqar does (OpenStack's tempest plugin relies on it); see ``_existing``.

With ``options.require_confirmation`` (or ``notifications.require_confirmation``)
a subscription starts unconfirmed and a CONFIRMATION delivery is enqueued:
Zaqar's confirmation notification, with a pre-signed URL for
``PUT .../subscriptions/<id>/confirm``. Storage writes MESSAGE deliveries
only for confirmed subscriptions.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from tidings import errors
from tidings.api import targets, validate
from tidings.api.authorization import authorize
from tidings.api.context import Context
from tidings.api.links import QUEUES_PATH, next_links, queue_part_href
from tidings.api.pipeline import stage
from tidings.auth import signed, trusts
from tidings.config import Limits
from tidings.storage.base import DeliveryKind, NewSubscription, Subscription

SCHEMES = ("http", "https", "mailto", "trust+http", "trust+https")
WEBHOOK_SCHEMES = frozenset({"http", "https", "trust+http", "trust+https"})
# Over the WebSocket API an omitted subscriber is the socket itself.
WEBSOCKET_PREFIX = "websocket:"
UPDATABLE = frozenset({"subscriber", "ttl", "options"})
RETRY_POLICY_INTS = ("retries_with_no_delay", "minimum_delay_retries", "minimum_delay",
                     "maximum_delay", "maximum_delay_retries", "maximum_retries",
                     "backoff_interval")
BACKOFF_FUNCTIONS = ("linear", "arithmetic", "geometric", "exponential")
CONFIRM_MESSAGE = "You have chosen to subscribe to the queue: {queue}"
UNSUBSCRIBE_MESSAGE = ("You have unsubscribed successfully to the queue: {queue}, "
                       "you can resubscribe it by using confirmed=True.")


def subscriptions_path(queue: str, root: str = QUEUES_PATH) -> str:
    return queue_part_href(queue, "subscriptions", root)


def real_project(project: str) -> str:
    """The client's project (topics live in ``project + "\\x1ftopics"``)."""
    return project.split("\x1f", 1)[0]


# --- checks -------------------------------------------------------------------


def check_subscriber(value: Any) -> str:
    if not isinstance(value, str):
        raise errors.InvalidBody(
            f"subscriber must be a string (a URL), not {validate.type_name(value)}."
        )
    try:
        parts = urlsplit(value)
    except ValueError:
        raise errors.ValidationFailed(f"The subscriber {value!r} is not a valid URI.") from None
    if parts.scheme not in SCHEMES:
        raise errors.ValidationFailed(
            f"The subscriber type of subscription must be supported in the list "
            f"{list(SCHEMES)}."
        )
    if parts.scheme == "mailto":
        if "@" not in parts.path:
            raise errors.ValidationFailed(f"The subscriber {value!r} has no e-mail address.")
    elif not parts.hostname:
        raise errors.ValidationFailed(f"The subscriber {value!r} has no host.")
    return value


def check_ttl(ctx: Context, value: Any) -> int:
    limits = ctx.limits
    ttl = validate.integer(value, "ttl")
    return validate.in_range(ttl, limits.min_subscription_ttl, limits.max_subscription_ttl,
                             "TTL of a subscription")


def _check_retry_policy(policy: Any) -> None:
    if policy is None:
        return
    if not isinstance(policy, dict):
        raise errors.InvalidBody("_retry_policy must be an object.")
    for key in RETRY_POLICY_INTS:
        value = policy.get(key)
        if value is not None:
            validate.in_range(validate.integer(value, f"_retry_policy.{key}"), 0, 2**31 - 1,
                              f"_retry_policy.{key}")
    function = policy.get("retry_backoff_function")
    if function is not None and function not in BACKOFF_FUNCTIONS:
        raise errors.ValidationFailed(
            f"_retry_policy.retry_backoff_function must be one of {', '.join(BACKOFF_FUNCTIONS)}."
        )
    override = policy.get("ignore_subscription_override")
    if override is not None and not isinstance(override, bool):
        raise errors.InvalidBody("_retry_policy.ignore_subscription_override must be a boolean.")


def check_options(value: Any, limits: Limits) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidBody(f"options must be an object, not {validate.type_name(value)}.")
    validate.nesting(value, limits, "subscription options")
    _check_retry_policy(value.get("_retry_policy"))
    confirmation = value.get("require_confirmation")
    if confirmation is not None and not isinstance(confirmation, bool):
        raise errors.InvalidBody("options.require_confirmation must be a boolean.")
    return value


def check_target(ctx: Context, subscriber: str) -> None:
    """Webhooks must not point at internal addresses (api/targets.py)."""
    if urlsplit(subscriber).scheme in WEBHOOK_SCHEMES:
        targets.check_webhook_target(trusts.strip_prefix(subscriber),
                                     ctx.service.notifications)


async def with_trust(ctx: Context, subscriber: str, options: dict[str, Any], ttl: int, *,
                     kept: str | None = None) -> dict[str, Any]:
    """The options of a ``trust+`` subscriber, with the ``trust_id`` of a new
    Keystone trust from the requesting user to the service user, lasting as
    long as the subscription (as Zaqar does), or the one it ``kept``; other
    subscribers' options as they are.

    Unlike Zaqar, a ``trust_id`` in the request is never used: it could name
    another user's trust, whose tokens would then go where this subscriber
    says (docs/compatibility.md)."""
    if not trusts.is_trust_subscriber(subscriber):
        return options
    options = {key: value for key, value in options.items() if key != "trust_id"}
    if kept is not None:
        return {**options, "trust_id": kept}
    issuer = ctx.service.trusts
    if issuer is None:
        raise errors.ValidationFailed(
            "trust+http and trust+https subscribers need Keystone authentication "
            "(auth.strategy = \"keystone\"): the trust is made with the subscriber's token.")
    identity = ctx.identity or ctx.trustor
    if ctx.auth_token is None or identity is None or identity.user_id is None:
        raise errors.ValidationFailed(
            "A trust+ subscription must be made with a Keystone user token "
            "(not a pre-signed URL): the trust is made with it.")
    trust_id = await issuer.create(ctx.auth_token, trustor=identity.user_id,
                                   project=real_project(ctx.project), roles=identity.roles,
                                   expires_at=time.time() + ttl)
    return {**options, "trust_id": trust_id}


def _settings_require_confirmation(ctx: Context) -> bool:
    return bool(getattr(ctx.service.notifications, "require_confirmation", False))


def needs_confirmation(ctx: Context, subscriber: str, options: Mapping[str, Any]) -> bool:
    if subscriber.startswith(WEBSOCKET_PREFIX):
        return False  # the socket subscribed itself
    requested = options.get("require_confirmation")
    if requested is not None:
        return bool(requested) or _settings_require_confirmation(ctx)
    return _settings_require_confirmation(ctx)


# --- shaping ------------------------------------------------------------------


def format_subscription(subscription: Subscription) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "subscriber": subscription.subscriber,
        "source": subscription.queue,
        "ttl": subscription.ttl,
        "age": subscription.age,
        "options": subscription.options,
        "confirmed": subscription.confirmed,
    }


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime(signed.DATE_FORMAT)


def confirmation_payload(ctx: Context, queue: str, subscription_id: str, ttl: int,
                         base_url: str | None = None, now: float | None = None, *,
                         unsubscribed: bool = False) -> dict[str, Any]:
    """Zaqar's SubscriptionConfirmation notification (UnsubscribeConfirmation
    once the subscriber confirmed false), with a URL pre-signed for
    ``PUT <root>/<queue>/subscriptions/<id>/confirm``: the same URL takes
    the subscriber back with ``{"confirmed": true}``."""
    key = ctx.service.confirm_key
    if key is None:
        raise errors.ServiceUnavailable("No key to sign confirmation URLs with.")
    settings = ctx.service.notifications
    lifetime = int(getattr(settings, "confirmation_url_lifetime", 7 * 24 * 3600))
    now = time.time() if now is None else now
    expires = _iso(now + min(ttl, lifetime))
    path = f"{subscriptions_path(queue, ctx.href_root)}/{subscription_id}/confirm"
    project = real_project(ctx.project)
    url = signed.create(key, [path], project, ["PUT"], expires, now=now)
    base = (getattr(settings, "public_url", "") or base_url or "").rstrip("/")
    kind, message = ("UnsubscribeConfirmation", UNSUBSCRIBE_MESSAGE) if unsubscribed \
        else ("SubscriptionConfirmation", CONFIRM_MESSAGE)
    return {
        "Message_Type": kind,
        "Message": message.format(queue=queue),
        "queue_name": queue,
        "subscription_id": subscription_id,
        "URL-Signature": url["signature"],
        "URL-Methods": url["methods"][0],
        "URL-Paths": url["paths"][0],
        "URL-Expires": url["expires"],
        "X-Project-ID": project,
        "SubscribeBody": {"confirmed": True},
        "UnsubscribeBody": {"confirmed": False},
        "WSGISubscribeURL": base + path,
    }


async def _request_confirmation(ctx: Context, queue: str, subscription_id: str, ttl: int,
                                base_url: str | None, *, unsubscribed: bool = False) -> None:
    payload = confirmation_payload(ctx, queue, subscription_id, ttl, base_url,
                                   unsubscribed=unsubscribed)
    await ctx.storage.deliveries.enqueue(ctx.project, queue, subscription_id,
                                         DeliveryKind.CONFIRMATION, payload)


def verify_signed_confirmation(ctx: Context, method: str, path: str,
                               header: Callable[[str], str | None]) -> bool:
    """Check a pre-signed confirmation request (headers URL-Signature,
    URL-Expires, URL-Methods, URL-Paths, X-Project-ID) against the
    confirmation key: True if it is one and it verifies, False if the
    request is not signed; Forbidden for a bad signature."""
    signature_value = header("URL-Signature")
    if signature_value is None:
        return False
    if ctx.identity is not None and ctx.identity.signed:
        return True  # the auth middleware verified it already
    key = ctx.service.confirm_key
    if key is None:
        raise errors.Forbidden("Pre-signed confirmation URLs are not accepted here.")
    identity = signed.verify(key, method, path, project=header("X-Project-ID"),
                             signature_value=signature_value, expires=header("URL-Expires"),
                             methods=header("URL-Methods"), paths=header("URL-Paths"))
    if not hmac.compare_digest(real_project(ctx.project), identity.project):
        raise errors.Forbidden("The pre-signed URL is for another project.")
    return True


# --- operations ---------------------------------------------------------------


@stage("subscription", "create")
async def create(ctx: Context, queue: str, document: Any, *, base_url: str | None = None,
                 socket_subscriber: str | None = None) -> dict[str, Any]:
    """Subscribe; ``{"subscription_id": ...}``. ``socket_subscriber`` (the
    WebSocket API) is the subscriber when the document names none."""
    authorize(ctx, "subscription:create")
    validate.queue_name(queue, ctx.limits)
    document = validate.json_object({} if document is None else document, "subscription")
    if document.get("subscriber") is None:
        if socket_subscriber is None:
            raise errors.ValidationFailed("Missing parameter subscriber in body.")
        subscriber = socket_subscriber
    else:
        subscriber = check_subscriber(document["subscriber"])
    ttl_value = document.get("ttl")
    ttl = check_ttl(ctx, ctx.limits.default_subscription_ttl if ttl_value is None else ttl_value)
    options = check_options(document.get("options"), ctx.limits)
    check_target(ctx, subscriber)
    if trusts.is_trust_subscriber(subscriber):
        # A duplicate answers before a trust is made that nothing would use.
        existing = await ctx.storage.subscriptions.find(ctx.project, queue, subscriber)
        if existing is not None:
            return {"subscription_id": await _existing(ctx, queue, existing, base_url)}
        options = await with_trust(ctx, subscriber, options, ttl)
    confirm_first = needs_confirmation(ctx, subscriber, options)
    request = None
    if confirm_first:
        now = time.time()

        def request(subscription_id: str) -> dict[str, Any]:
            return confirmation_payload(ctx, queue, subscription_id, ttl, base_url, now)

    new = NewSubscription(subscriber=subscriber, ttl=ttl, options=options,
                          confirmed=not confirm_first)
    # Twice at most: a duplicate that vanishes (deleted, expired) before it
    # is read back leaves the subscriber free for a second try.
    for _ in range(2):
        # One write: the subscription and its confirmation request stand or fall together.
        subscription_id = await ctx.storage.subscriptions.create(ctx.project, queue, new, request)
        if subscription_id is not None:
            return {"subscription_id": subscription_id}
        existing = await ctx.storage.subscriptions.find(ctx.project, queue, subscriber)
        if existing is not None:
            return {"subscription_id": await _existing(ctx, queue, existing, base_url)}
    raise _duplicate()


def _duplicate() -> errors.Conflict:
    return errors.Conflict(
        "Such subscription already exists. Subscriptions are unique by project + queue "
        "+ subscriber URI."
    )


async def _existing(ctx: Context, queue: str, existing: Subscription,
                    base_url: str | None) -> str:
    """The id a second create of the same subscriber answers with, as in
    Zaqar: the subscription as it is (the new ttl and options are ignored),
    its confirmation asked again while it is unconfirmed; 409 only once a
    subscriber that had to confirm did. A socket subscribing itself twice
    is a 409 too, as in Zaqar's WebSocket API."""
    if existing.subscriber.startswith(WEBSOCKET_PREFIX):
        raise _duplicate()
    required = needs_confirmation(ctx, existing.subscriber, existing.options)
    if required and existing.confirmed:
        raise _duplicate()
    if required:
        await _request_confirmation(ctx, queue, existing.id, existing.ttl, base_url)
    return existing.id


@stage("subscription", "get")
async def get(ctx: Context, queue: str, subscription_id: str) -> dict[str, Any]:
    authorize(ctx, "subscription:get")
    validate.queue_name(queue, ctx.limits)
    subscription = await ctx.storage.subscriptions.get(ctx.project, queue, subscription_id)
    return format_subscription(subscription)


@stage("subscription", "list")
async def list_subscriptions(ctx: Context, queue: str, *, marker: str | None,
                             limit: int | None) -> dict[str, Any]:
    authorize(ctx, "subscription:get_all")
    limits = ctx.limits
    validate.queue_name(queue, limits)
    size = validate.limit(limit, limits.default_subscriptions_per_page,
                          limits.max_subscriptions_per_page, "subscriptions")
    page = await ctx.storage.subscriptions.list(ctx.project, queue, marker=marker, limit=size)
    result: dict[str, Any] = {"subscriptions": [format_subscription(s) for s in page],
                              "links": []}
    if page:
        result["links"] = next_links(subscriptions_path(queue, ctx.href_root),
                                     {"limit": limit}, page[-1].id)
    return result


@stage("subscription", "update")
async def update(ctx: Context, queue: str, subscription_id: str, document: Any, *,
                 base_url: str | None = None) -> None:
    """Change subscriber, ttl and/or options. A new subscriber that needs
    confirmation makes the subscription unconfirmed again."""
    authorize(ctx, "subscription:update")
    validate.queue_name(queue, ctx.limits)
    document = validate.json_object(document, "subscription update")
    if not document:
        raise errors.ValidationFailed("No subscription fields to update.")
    unknown = sorted(set(document) - UPDATABLE)
    if unknown:
        raise errors.ValidationFailed(
            f"Unknown subscription fields: {', '.join(unknown)}; use subscriber, ttl, options."
        )
    # A null field is left as it is, as in Zaqar: ``openstack messaging
    # subscription update`` sends every field, null when not given.
    document = {key: value for key, value in document.items() if value is not None}
    subscriber = None
    if "subscriber" in document:
        subscriber = check_subscriber(document["subscriber"])
    ttl = check_ttl(ctx, document["ttl"]) if "ttl" in document else None
    options = check_options(document["options"], ctx.limits) if "options" in document else None
    current = await ctx.storage.subscriptions.get(ctx.project, queue, subscription_id)
    if subscriber == current.subscriber:
        subscriber = None
    if subscriber is not None:
        check_target(ctx, subscriber)
    target = subscriber or current.subscriber
    if trusts.is_trust_subscriber(target):
        # A trust+ subscriber keeps the trust the server made for it through
        # an options or ttl change. A new subscriber URL gets a new trust, from
        # whoever changes it: the old one's tokens must not follow the
        # subscription somewhere its trustor never chose.
        kept = current.options.get("trust_id") if subscriber is None else None
        asked = current.options if options is None else options
        trusted = await with_trust(ctx, target, asked, current.ttl if ttl is None else ttl,
                                   kept=kept if isinstance(kept, str) else None)
        if trusted != asked:
            options = trusted
    await ctx.storage.subscriptions.update(ctx.project, queue, subscription_id,
                                           subscriber=subscriber, ttl=ttl, options=options)
    new_options = current.options if options is None else options
    if subscriber is not None and needs_confirmation(ctx, subscriber, new_options):
        await ctx.storage.subscriptions.confirm(ctx.project, queue, subscription_id, False)
        await _request_confirmation(ctx, queue, subscription_id,
                                    current.ttl if ttl is None else ttl, base_url)


@stage("subscription", "delete")
async def delete(ctx: Context, queue: str, subscription_id: str) -> None:
    authorize(ctx, "subscription:delete")
    validate.queue_name(queue, ctx.limits)
    await ctx.storage.subscriptions.delete(ctx.project, queue, subscription_id)


@stage("subscription", "confirm")
async def confirm(ctx: Context, queue: str, subscription_id: str, document: Any, *,
                  base_url: str | None = None) -> None:
    """``{"confirmed": true|false}``: start (or stop) deliveries.

    As Zaqar does, ``false`` on a subscription that needs confirmation
    sends the subscriber an UnsubscribeConfirmation notification, whose
    signed URL takes it back with ``{"confirmed": true}``."""
    authorize(ctx, "subscription:confirm")
    validate.queue_name(queue, ctx.limits)
    document = validate.json_object({} if document is None else document, "confirmation")
    confirmed = document.get("confirmed")
    if not isinstance(confirmed, bool):
        raise errors.ValidationFailed("The 'confirmed' should be boolean.")
    await ctx.storage.subscriptions.confirm(ctx.project, queue, subscription_id, confirmed)
    if confirmed:
        return
    subscription = await ctx.storage.subscriptions.get(ctx.project, queue, subscription_id)
    if needs_confirmation(ctx, subscription.subscriber, subscription.options):
        # Enqueued after the change: a crash in between leaves the
        # subscriber unsubscribed without the notice, never notified of an
        # unsubscription that did not happen.
        await _request_confirmation(ctx, queue, subscription_id, subscription.ttl, base_url,
                                    unsubscribed=True)
