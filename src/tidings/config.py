"""One typed settings object, read from a TOML file and TIDINGS_* variables.

Precedence, lowest first: defaults, the TOML file, environment variables,
then command-line flags (applied by the CLI). A nested field is named in the
environment with a double underscore: ``TIDINGS_LIMITS__MAX_MESSAGES_PER_PAGE``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

import msgspec

ENV_PREFIX = "TIDINGS_"
# Not settings themselves: where to find them.
CONFIG_ENV = ENV_PREFIX + "CONFIG"
WORKER_SETTINGS_ENV = ENV_PREFIX + "WORKER_SETTINGS"
# serve --workers N: the directory where workers share their metrics
# (tidings.metric_snapshots); set by the supervisor, never a setting.
WORKER_METRICS_ENV = ENV_PREFIX + "WORKER_METRICS_DIR"


class Limits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Zaqar's default limits; every one can be changed. Times are in seconds,
    sizes in bytes."""

    # Characters in a queue (or topic) name, of A-Z, a-z, 0-9, _ and -.
    max_queue_name_length: int = 64
    # Characters in a project id (X-Project-ID).
    max_project_id_length: int = 256
    # The largest ``limit`` of a queue listing.
    max_queues_per_page: int = 20
    # The largest ``limit`` of a message listing, and ids in one bulk get or delete.
    max_messages_per_page: int = 20
    # The largest ``limit`` of a claim or a pop.
    max_messages_per_claim_or_pop: int = 20
    # The largest message post (its JSON body), and the largest value of a
    # queue's _max_messages_post_size.
    max_messages_post_size: int = 256 * 1024
    # The largest queue metadata document (its JSON).
    max_queue_metadata: int = 64 * 1024
    # A message's ttl: the longest allowed.
    max_message_ttl: int = 1_209_600
    # A message's ttl: the shortest allowed.
    min_message_ttl: int = 60
    # The ttl of a message posted without one, unless the queue's
    # _default_message_ttl says otherwise.
    default_message_ttl: int = 3600
    # The longest delay of a message (its ``delay``, or the queue's
    # _default_message_delay) before it can be read or claimed.
    max_message_delay: int = 900
    # A claim's ttl: the longest allowed.
    max_claim_ttl: int = 43_200
    # A claim's ttl: the shortest allowed.
    min_claim_ttl: int = 60
    # A claim's grace: the longest allowed.
    max_claim_grace: int = 43_200
    # A claim's grace: the shortest allowed.
    min_claim_grace: int = 60
    # The ttl of a claim made without one (or with a null one).
    default_claim_ttl: int = 300
    # The grace of a claim made without one (or with a null one).
    default_claim_grace: int = 60
    # Messages in a listing without ``limit``.
    default_messages_per_page: int = 10
    # Messages in a claim without ``limit``.
    default_messages_per_claim: int = 10
    # Queues in a listing without ``limit``.
    default_queues_per_page: int = 10
    # A subscription's ttl: the shortest allowed (Zaqar: 60).
    min_subscription_ttl: int = 60
    # A subscription's ttl: the longest allowed.
    max_subscription_ttl: int = 2**31 - 1
    # The ttl of a subscription made without one (Zaqar: 3600).
    default_subscription_ttl: int = 3600
    # The largest ``limit`` of a subscription (or delivery) listing.
    max_subscriptions_per_page: int = 20
    # Subscriptions (or deliveries) in a listing without ``limit``.
    default_subscriptions_per_page: int = 10
    # Long polling: the largest ``wait`` (seconds) on listings and claims.
    max_wait: int = 20


class WebSocketSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The WebSocket transport, served at ``/`` on the HTTP port."""

    # Seconds between keepalive pings to each open socket; 0 disables them.
    ping_interval: float = 20.0
    # Seconds to wait for the pong before the socket is closed.
    ping_timeout: float = 20.0
    # A second port for the API, as Zaqar serves WebSocket apart; 0: none.
    port: int = 0
    # The largest request frame answered; a larger one gets an error reply
    # and the socket stays open. (A frame over 16 times this closes it.)
    max_frame_size: int = 1024 * 1024


class QuotaSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Per-project quotas and rate limits (tidings.api.quotas); 0 = unlimited.

    Quotas answer 403 "Quota exceeded" and write nothing; the rate limit
    answers 429 with Retry-After. The rate limit is a token bucket per
    project in each server process: with ``--workers N`` a project may send
    up to N times the rate in all.
    """

    # Queues one project may have.
    max_queues_per_project: int = 0
    # Live messages (claimed or not, delayed included) in one queue.
    max_messages_per_queue: int = 0
    # Requests a second a project may make (HTTP requests and WebSocket
    # actions alike); 0 disables the limit.
    requests_per_second_per_project: float = 0.0
    # How many requests may come at once after a quiet spell; 0: the rate
    # rounded up (at least 1).
    burst: int = 0


class HttpSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Connection limits of the HTTP server (tidings.transport.http.protocol)."""

    # Seconds an idle keep-alive connection stays open between requests.
    keep_alive_timeout: float = 30.0
    # Seconds a client has to send a request's headers, counted from the
    # connection's start or the request's first byte: slowloris clients
    # that dribble headers, or open connections and send nothing, are cut.
    header_timeout: float = 10.0
    # Bytes of request line and headers one request may send.
    max_header_size: int = 64 * 1024
    # Seconds a client has to send a request's body once the headers are
    # in (a slowly dribbled body is cut with the connection).
    body_timeout: float = 30.0
    # Connections and tasks at once before new requests get 503; 0: no cap.
    limit_concurrency: int = 0


class KeystoneSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The Keystone v3 service that validates tokens, and the service user
    Tidings logs in as to validate them."""

    # The identity endpoint without /v3, e.g. http://keystone:5000.
    url: str = ""
    # Sent to clients in WWW-Authenticate on a 401; the url when empty.
    www_authenticate_uri: str = ""
    # The service user's name and password, and the project it logs in to.
    username: str = ""
    password: str = ""
    project_name: str = ""
    # The domains of the service user and of its project.
    user_domain_id: str = "default"
    project_domain_id: str = "default"
    # Seconds a validated token is trusted without asking Keystone again
    # (keystonemiddleware's token_cache_time); never past its expiry.
    cache_time: float = 300.0
    # Seconds to wait for Keystone before answering 503.
    timeout: float = 5.0


class AuthSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Who may call the API: the authentication strategy, the policy and
    pre-signed URLs (tidings.auth)."""

    # "noauth": the project comes from X-Project-ID and everything is allowed;
    # "keystone": X-Auth-Token is validated and the policy applies.
    strategy: Literal["noauth", "keystone"] = "noauth"
    # Under noauth, the project of a request that names none (no
    # X-Project-ID): for clients that cannot send the header, such as the
    # ``openstack messaging`` CLI with ``--os-auth-type none``, whose auth
    # options carry no project. Empty: such requests get 400, as in Zaqar.
    noauth_project: str = ""
    # A YAML or JSON file of policy rules over Zaqar's defaults.
    policy_file: str = ""
    # The HMAC key of pre-signed URLs (POST /v2/queues/{name}/share).
    # Empty: a random key generated once and kept with the data (beside the
    # SQLite file, in Redis or PostgreSQL), shared by every process.
    secret_key: str = ""
    keystone: KeystoneSettings = msgspec.field(default_factory=KeystoneSettings)


class RetryPolicySettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The server's defaults for Zaqar's ``_retry_policy`` (a subscription
    option or queue metadata); see tidings.notify.policy. Delays in seconds."""

    # Retries at once after the first failed attempt.
    retries_with_no_delay: int = 3
    # Then this many retries, minimum_delay apart.
    minimum_delay_retries: int = 3
    minimum_delay: float = 5.0
    # Then the back-off from minimum_delay up to maximum_delay, and this
    # many retries maximum_delay apart; then the delivery is dead.
    maximum_delay: float = 30.0
    maximum_delay_retries: int = 3
    # linear, arithmetic, geometric or exponential.
    retry_backoff_function: str = "linear"
    # Seconds of the minimum..maximum range per back-off step (Zaqar: 5).
    backoff_interval: float = 5.0
    # At most this many retries in all (a Tidings extension); none: no cap.
    maximum_retries: int | None = None
    # True: queue policies (and these defaults) win over subscriptions'.
    ignore_subscription_override: bool = False


class SmtpSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The mail server mailto: subscriptions are sent through."""

    # The SMTP server's address and port.
    host: str = "localhost"
    port: int = 25
    # The From address when the subscription's options give none.
    sender: str = msgspec.field(default="tidings@localhost", name="from")
    # STARTTLS after connecting; tls: TLS from the start (port 465).
    starttls: bool = False
    tls: bool = False
    # Credentials to log in with; empty: no login.
    username: str = ""
    password: str = ""
    # Seconds each exchange with the SMTP server may take.
    timeout: float = 30.0


class NotificationSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Subscriptions and their notifications (see docs/design/notifications.md)."""

    # Create every subscription unconfirmed and send it a confirmation
    # request first (per subscription: options.require_confirmation).
    require_confirmation: bool = False
    # The HMAC key of the pre-signed confirmation URLs. Empty: auth.secret_key,
    # and when that is empty too a random key made at start-up (confirmation
    # URLs then stop working on restart and differ between processes).
    signing_secret: str = ""
    # Seconds a confirmation URL stays valid.
    confirmation_url_lifetime: int = 7 * 24 * 3600
    # The absolute base of the confirmation URL (e.g. https://mq.example.com);
    # empty: the scheme and host of the request that created the subscription.
    public_url: str = ""
    # Webhook targets: loopback, private, link-local and other internal
    # addresses are refused unless in allowed_networks (CIDRs); anything in
    # denied_networks is refused. A list, or one comma-separated string.
    allowed_networks: list[str] | str = msgspec.field(default_factory=list)
    denied_networks: list[str] | str = msgspec.field(default_factory=list)

    # --- The delivery worker (tidings.notify) --------------------------------
    # Run the delivery worker inside the server process; false: run
    # `tidings notifier` beside the servers instead.
    worker_in_server: bool = True
    # Notifications in flight at once in one worker, and per target (a
    # webhook's host and port, the SMTP server).
    max_in_flight: int = 64
    max_in_flight_per_target: int = 16
    # Deliveries leased per storage round trip, and for how long: a worker
    # that dies holds its deliveries until their lease runs out.
    lease_batch: int = 64
    lease_seconds: float = 60.0
    # The longest pause between polls when idle. A post in this process
    # wakes the worker at once; this bounds the wait for posts made by other
    # processes.
    poll_interval: float = 1.0
    # Seconds a webhook request may take in all, and to connect.
    webhook_timeout: float = 10.0
    webhook_connect_timeout: float = 5.0
    # A notification its WebSocket did not take (closed, or its process
    # unreachable) is tried again after this many seconds, at most
    # socket_max_attempts times.
    socket_retry_delay: float = 0.5
    socket_max_attempts: int = 1000
    # Seconds to wait for the process holding a WebSocket to say it wrote a
    # pushed frame (tidings.notify.relay) before trying again later.
    socket_ack_timeout: float = 5.0
    retry_policy: RetryPolicySettings = msgspec.field(default_factory=RetryPolicySettings)
    smtp: SmtpSettings = msgspec.field(default_factory=SmtpSettings)


class EncryptionSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Message bodies encrypted at rest (tidings.api.crypto)."""

    # The AES-256-GCM key of queues with _enable_encrypt_messages: 32 bytes,
    # base64. Empty: such queues cannot be created.
    key: str = ""


class PoolingSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Queues spread over many backends (Zaqar's pools, flavors and catalogue;
    see tidings.storage.pooling). When enabled, ``storage`` is not used: the
    pools registered through /v2/pools (or `tidings pool add`) hold the data."""

    # Route each queue to one of the registered pools.
    enabled: bool = False
    # Where pools, flavors and the catalogue live: sqlite://, redis:// or
    # postgres:// (see tidings.storage.pooling.control).
    control_storage: str = "sqlite:///./data/tidings-control.db"
    # Seconds a process trusts its cached placements and pool list; also how
    # long a drain waits for every process to see a queue's new state. All
    # processes of a deployment must agree on it.
    cache_seconds: float = 2.0
    # Seconds a request on a queue being moved waits before a 503.
    move_wait: float = 30.0
    # A drain's margin for operations in flight: at least the longest a
    # pool's operation can take (its backend timeouts).
    drain_grace: float = 5.0
    # Seconds a drain waits for a queue's claims to end before it leaves
    # the queue where it is (run the drain again later).
    drain_claim_wait: float = 600.0


class LoggingSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The access log: one line per HTTP request (tidings.transport.http.access).
    A line names the request id, method, path, route, status, duration and
    project; never a body nor a query string."""

    # Write the access log.
    access_log: bool = True
    # "text": key=value pairs; "json": one JSON object a line.
    access_format: Literal["text", "json"] = "text"
    # A file to append the lines to; empty: standard error.
    access_log_file: str = ""


class MetricsSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Prometheus metrics at ``GET /metrics`` (tidings.metrics)."""

    # Serve /metrics and count; false: /metrics answers 404.
    enabled: bool = True
    # Seconds between samples of queue depth and oldest-message age; 0: none.
    sample_interval: float = 15.0
    # Queues given their own labels (the deepest); the rest are summed
    # under project="_other", queue="_other".
    sample_top_queues: int = 20
    # Queues this process remembers (those it saw messages posted to) and
    # samples; beyond it the least recently posted are forgotten.
    sample_max_queues: int = 1000


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The server: where it listens, where data lives, and every section below."""

    # The address to listen on (``--host``); 0.0.0.0 for every IPv4 interface.
    host: str = "127.0.0.1"
    # The port of the HTTP and WebSocket API (``--port``).
    port: int = 8888
    # Server processes sharing the port; each holds no state the others need.
    workers: int = 1
    # Where data lives; the scheme picks the driver (see storage.registry).
    storage: str = "sqlite:///./data/tidings.db"
    # "full": a write is acknowledged only after fsync (the default);
    # "normal": survives a crash of the process but not of the machine.
    sqlite_sync: str = "full"
    # Seconds between garbage-collection passes in the server; 0 disables.
    gc_interval: float = 30.0
    # The server's log level: debug, info, warning, error or critical.
    log_level: str = "info"
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    limits: Limits = msgspec.field(default_factory=Limits)
    websocket: WebSocketSettings = msgspec.field(default_factory=WebSocketSettings)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    quotas: QuotaSettings = msgspec.field(default_factory=QuotaSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    notifications: NotificationSettings = msgspec.field(default_factory=NotificationSettings)
    encryption: EncryptionSettings = msgspec.field(default_factory=EncryptionSettings)
    pooling: PoolingSettings = msgspec.field(default_factory=PoolingSettings)
    # Pipeline stages around the operations ("module:Class", Zaqar's names);
    # a list or one comma-separated string. See docs/pipeline.md.
    message_pipeline: list[str] | str = msgspec.field(default_factory=list)
    queue_pipeline: list[str] | str = msgspec.field(default_factory=list)
    claim_pipeline: list[str] | str = msgspec.field(default_factory=list)
    subscription_pipeline: list[str] | str = msgspec.field(default_factory=list)
    topic_pipeline: list[str] | str = msgspec.field(default_factory=list)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn TIDINGS_A__B=v into {"a": {"b": v}}; values stay strings."""
    tree: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key in (CONFIG_ENV, WORKER_SETTINGS_ENV,
                                                     WORKER_METRICS_ENV):
            continue
        path = key[len(ENV_PREFIX):].lower().split("__")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from a TOML file, the environment and overrides.

    Raises ``ValueError`` with a readable message when a value is invalid.
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV)
    data: dict[str, Any] = {}
    if path:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    data = _merge(data, _env_overrides(environ))
    data = _merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        # strict=False lets "8888" from the environment become an int.
        return msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid configuration: {exc}") from exc
