"""Who is asking, and the service they are asking: built once per request."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from tidings import errors
from tidings.auth.identity import Identity
from tidings.auth.policy import Policy
from tidings.auth.signed import SigningKey
from tidings.config import Limits, NotificationSettings, QuotaSettings
from tidings.shared_calls import SharedCalls
from tidings.storage.base import DataDriver

if TYPE_CHECKING:
    # For the annotations only: importing them costs every command that
    # builds a context (Keystone's client, Prometheus').
    from tidings.auth.trusts import Trusts
    from tidings.metrics.registry import Metrics

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The form nearly every client sends; uuid.UUID() (which also takes braces,
# a urn: prefix or no hyphens) costs five times as much.
_CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class Stages(Protocol):
    """The pipeline (api/pipeline.py's Pipeline) as an operation runs it;
    a protocol, since the pipeline's stages take the Context defined here."""

    def wants(self, resource: str, operation: str) -> bool: ...

    async def before(self, resource: str, operation: str, ctx: Context,
                     arguments: dict[str, Any]) -> None: ...

    async def after(self, resource: str, operation: str, ctx: Context, result: Any,
                    arguments: dict[str, Any]) -> None: ...


class Limiter(Protocol):
    """The quotas and rate limiter (api/quotas.py's Quotas) as the
    operations and transports use them."""

    settings: QuotaSettings

    @property
    def rate_limited(self) -> bool: ...

    def take(self, project: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Service:
    """Everything an operation needs besides the request itself.

    Built once, complete (app.build_service for the server; the command
    line tools give storage and limits only) and never changed: every
    request of every transport shares it, so a field set later would be
    seen by some requests and not others. The one value known only once
    the storage is open, the stored signing key, lives in a set-once
    holder (auth.signed.SigningKey) that is itself part of the service.
    """

    storage: DataDriver
    limits: Limits
    policy: Policy = field(default_factory=Policy)
    # The HMAC key of pre-signed URLs, shared with the authenticator; its
    # value None disables them.
    signing_key: SigningKey = field(default_factory=SigningKey)
    # Notifications, encryption and pipeline (api/subscriptions.py,
    # crypto.py, api/pipeline.py). ``notifications`` is the settings'
    # NotificationSettings; ``confirm_key`` signs confirmation URLs.
    notifications: NotificationSettings | None = None
    confirm_key: bytes | None = None
    # AES-256-GCM key of queues with _enable_encrypt_messages.
    encryption_key: bytes | None = None
    pipeline: Stages | None = None
    # The delivery worker of this process, if it runs one: called after
    # each post (the pipeline's notifier stage) and each redrive.
    wake_notifier: Callable[[], None] | None = None
    # Per-project quotas and the rate limiter (tidings.api.quotas.Quotas);
    # None: unlimited.
    quotas: Limiter | None = None
    # Prometheus metrics of this process; None: off.
    metrics: Metrics | None = None
    # Under noauth, the project of requests without X-Project-ID
    # (auth.noauth_project); None: they are refused.
    default_project: str | None = None
    # Keystone trusts for trust+http(s) subscribers; None under noauth.
    trusts: Trusts | None = None
    # The storage's liveness check, shared by the pings and probes that
    # arrive while one runs (api/system.readiness).
    liveness: SharedCalls[str, bool] = field(default_factory=SharedCalls)


@dataclass(slots=True)
class Context:
    service: Service
    project: str
    client_id: str | None = None
    # None under noauth: every operation is allowed.
    identity: Identity | None = None
    # Where the queues of this context live in URLs: /v2/topics for topics.
    href_root: str = "/v2/queues"
    # The Keystone token the request came with (trust+ subscriptions make a
    # trust with it); None under noauth and for pre-signed URLs.
    auth_token: str | None = None
    # Who that token is, where ``identity`` is dropped because authorization
    # is done already (a topic's subscriptions, api/topics.py).
    trustor: Identity | None = None

    @property
    def storage(self) -> DataDriver:
        return self.service.storage

    @property
    def limits(self) -> Limits:
        return self.service.limits

    def require_client_id(self) -> str:
        if self.client_id is None:
            raise errors.MissingHeader("The header Client-ID was missing.")
        return self.client_id


def check_client_id(value: str | None) -> str:
    """Client-ID must be present and a UUID, as Zaqar requires."""
    if value is None:
        raise errors.MissingHeader("The header Client-ID was missing.")
    if _CANONICAL_UUID.fullmatch(value):
        return value
    try:
        uuid.UUID(value)
    except ValueError:
        raise errors.InvalidUUID(f"Malformed hexadecimal UUID: {value!r}") from None
    return value


def check_project(value: str | None, limits: Limits) -> str:
    if value is None:
        raise errors.ProjectMissing("The header X-Project-ID was missing.")
    if not value.strip():
        raise errors.ProjectEmpty("X-Project-ID cannot be an empty string.")
    if len(value) > limits.max_project_id_length:
        raise errors.InvalidQueueName(
            f"Project ids may not be more than {limits.max_project_id_length} characters long."
        )
    if _CONTROL.search(value):
        # Topics live in a shadow project: project + "\x1ftopics".
        raise errors.InvalidQueueName("Project ids may not contain control characters.")
    return value


def make_context(service: Service, project: str | None, client_id: str | None,
                 identity: Identity | None = None, auth_token: str | None = None) -> Context:
    """Check the identifying headers of a request and build its context.
    The project is the identity's when there is one (a Keystone token, a
    pre-signed URL), else X-Project-ID's (noauth), else the service's
    default project when it has one."""
    client_id = check_client_id(client_id)
    if identity is not None:
        project = identity.project
    elif project is None:
        project = service.default_project
    project = check_project(project, service.limits)
    token = auth_token if identity is not None and not identity.signed else None
    return Context(service=service, project=project, client_id=client_id, identity=identity,
                   auth_token=token)


# The project of the operator's context: the pool and admin commands act on
# the whole service, or name a project themselves.
OPERATOR_PROJECT = "admin"


def operator_context(service: Service, project: str = OPERATOR_PROJECT) -> Context:
    """The context of the operator at the command line (``tidings pool``,
    the admin commands). It has no identity, as under noauth: the operator
    may do anything, but every other rule of the operation applies as it
    does over HTTP."""
    return Context(service=service, project=project)
