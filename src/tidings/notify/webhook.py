"""Webhook notifications: one HTTP POST per delivery.

The body is Zaqar's notification document as JSON (or the subscription's
``post_data`` template with ``"$zaqar_message$"`` replaced by it, as in
Zaqar), with the subscription's ``post_headers``. Tidings adds
``X-Tidings-Delivery-ID`` and ``X-Tidings-Message-ID`` so receivers can
deduplicate: delivery is at-least-once.

A 2xx answer means delivered; any other status, a timeout or a connection
error is a failed attempt (retried by the policy). (Zaqar counted 3xx and
4xx as delivered too; here a receiver must say 2xx.) The host is resolved
at send time and every address is checked against the allow/deny lists;
the request goes to a checked address, with the original Host header and,
for https, the original name for SNI and certificate checks. A refused
IP address is a permanent failure; a name that does not resolve, or
resolves to refused addresses only, is a failed attempt (DNS may
change). Redirects are not followed (they could point anywhere) and
proxy variables are ignored. The requests go over http1.py's kept-alive
connections (httpx only parses the URL and makes the TLS context).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import ssl
import time
from collections import OrderedDict
from typing import Any

import httpx

from tidings.auth.trusts import strip_prefix
from tidings.notify.addresses import AddressPolicy, RefusedAddress, RefusedResolution
from tidings.notify.http1 import (
    KEEPALIVE_SECONDS,
    ConnectFailed,
    HostPool,
    HttpError,
    encode_request,
)
from tidings.notify.payload import (
    DELIVERY_ID_HEADER,
    MESSAGE_ID_HEADER,
    PermanentFailure,
    SendFailed,
    id_headers,
)
from tidings.storage.base import Delivery

log = logging.getLogger(__name__)

ZAQAR_PLACEHOLDER = '"$zaqar_message$"'
# Headers a subscription's post_headers may not set.
RESERVED_HEADERS = frozenset(h.lower() for h in (
    "host", "content-length", "transfer-encoding", "connection",
    DELIVERY_ID_HEADER, MESSAGE_ID_HEADER))
# Connection pools kept open (one per target), least recently used dropped.
MAX_POOLS = 256
USER_AGENT = "tidings-notifier"
# RFC 9110 token: what a header name may be made of.
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class Target:
    """A parsed webhook URL: what to resolve, and what to send as Host."""

    __slots__ = ("host", "host_header", "path", "port", "scheme", "url")

    def __init__(self, subscriber: str) -> None:
        try:
            url = httpx.URL(subscriber)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise PermanentFailure(f"invalid webhook URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.raw_host:
            raise PermanentFailure(f"not an http(s) URL: {subscriber!r}")
        if url.userinfo:
            raise PermanentFailure("webhook URLs may not carry credentials")
        self.url = url
        self.scheme = url.scheme
        # raw_host is the ASCII (IDNA) form: what DNS, Host and SNI use.
        self.host = url.raw_host.decode("ascii")
        self.port = url.port or (443 if url.scheme == "https" else 80)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = shown if url.port is None else f"{shown}:{url.port}"
        # Path and query as sent (percent-encoded ASCII); no fragment.
        self.path = url.raw_path.decode("ascii") or "/"

    @property
    def key(self) -> str:
        """The per-target concurrency key."""
        return f"{self.scheme}://{self.host_header}"


@functools.lru_cache(maxsize=4096)
def parse_target(subscriber: str) -> Target:
    """The subscriber's Target, parsed once per subscriber URL (every
    delivery to it needs one, twice); a ``trust+`` subscriber's is the URL
    after the prefix. Raises PermanentFailure."""
    return Target(strip_prefix(subscriber))


def target_key(delivery: Delivery) -> str:
    try:
        return parse_target(delivery.subscriber).key
    except PermanentFailure:
        return "invalid"


def render(delivery: Delivery, doc: dict[str, Any]) -> bytes:
    """The request body: the document as JSON, or Zaqar's post_data."""
    encoded = json.dumps(doc, ensure_ascii=False)
    template = delivery.options.get("post_data")
    if isinstance(template, str):
        return template.replace(ZAQAR_PLACEHOLDER, encoded).encode()
    if isinstance(template, (dict, list)):
        # Stored as JSON rather than as a string: substitute inside it.
        text = json.dumps(template, ensure_ascii=False)
        return text.replace(json.dumps("$zaqar_message$"), encoded).encode()
    return encoded.encode()


def request_headers(delivery: Delivery, target: Target,
                    added: dict[str, str] | None = None) -> dict[str, str]:
    """The subscription's ``post_headers`` (those allowed), then ``added``
    (a trust token: the receiver must see the one Tidings got), the ids and
    Host."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    extra = delivery.options.get("post_headers")
    if isinstance(extra, dict):
        for name, value in extra.items():
            if (isinstance(name, str) and isinstance(value, (str, int, float))
                    and not isinstance(value, bool) and name.lower() not in RESERVED_HEADERS
                    and HEADER_NAME.fullmatch(name) and _header_value_ok(str(value))):
                headers[name] = str(value)
    if added:
        replaced = {name.lower() for name in added}
        headers = {k: v for k, v in headers.items() if k.lower() not in replaced}
        headers.update(added)
    headers.update(id_headers(delivery))
    headers["Host"] = target.host_header
    return headers


def _header_value_ok(value: str) -> bool:
    # No line breaks (they would start a header of the tenant's choosing),
    # and bytes on the wire are latin-1.
    if "\n" in value or "\r" in value or "\0" in value:
        return False
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


class WebhookSender:
    """One small connection pool per target (http1.HostPool), the least
    recently used dropped beyond ``max_pools``; one TLS context for all."""

    def __init__(self, addresses: AddressPolicy, *, timeout: float = 10.0,
                 connect_timeout: float = 5.0, max_connections: int = 16,
                 max_pools: int = MAX_POOLS, tls: ssl.SSLContext | None = None) -> None:
        self.addresses = addresses
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.max_connections = max_connections
        self.max_pools = max_pools
        self._tls = tls
        self._pools: OrderedDict[str, HostPool] = OrderedDict()
        self._next_sweep = 0.0

    def _tls_context(self) -> ssl.SSLContext:
        # Made once: loading the CA bundle costs milliseconds (it was paid
        # per target, as each httpx client made its own).
        if self._tls is None:
            self._tls = httpx.create_ssl_context(trust_env=False)
        return self._tls

    def _pool_for(self, target: Target) -> HostPool:
        pool = self._pools.get(target.key)
        if pool is None:
            https = target.scheme == "https"
            pool = self._pools[target.key] = HostPool(
                limit=self.max_connections, connect_timeout=self.connect_timeout,
                tls=self._tls_context() if https else None,
                server_hostname=target.host if https else None)
            while len(self._pools) > self.max_pools:
                _, old = self._pools.popitem(last=False)
                old.close()  # requests still running on it finish first
        else:
            self._pools.move_to_end(target.key)
        self._sweep_idle()
        return pool

    def _sweep_idle(self) -> None:
        """Closes connections idle too long in every pool, now and then:
        a target that is not sent to again would keep them open."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + KEEPALIVE_SECONDS
        for pool in self._pools.values():
            pool.close_expired()

    async def send(self, delivery: Delivery, doc: dict[str, Any],
                   headers: dict[str, str] | None = None) -> None:
        """Raises SendFailed (PermanentFailure for a refused address);
        ``headers`` are added to the subscription's own."""
        target = parse_target(delivery.subscriber)
        try:
            async with asyncio.timeout(self.timeout):
                await self._send(delivery, doc, target, headers)
        except TimeoutError:
            raise SendFailed(f"no answer from {target.key} in {self.timeout:g}s") from None

    async def _send(self, delivery: Delivery, doc: dict[str, Any], target: Target,
                    headers: dict[str, str] | None = None) -> None:
        try:
            addresses = await self.addresses.resolve(target.host, target.port)
        except RefusedResolution as exc:  # a name: its DNS may change
            raise SendFailed(str(exc)) from None
        except RefusedAddress as exc:  # an address: it never will
            raise PermanentFailure(str(exc)) from None
        except (OSError, UnicodeError) as exc:  # resolution failed: DNS may recover
            raise SendFailed(f"cannot resolve {target.host}: {exc}") from None
        request = encode_request(target.path, request_headers(delivery, target, headers),
                                 render(delivery, doc))
        pool = self._pool_for(target)
        errors: list[str] = []
        for address in addresses:
            try:
                status = await pool.post(address, target.port, request)
            except ConnectFailed as exc:
                errors.append(str(exc))
                continue  # the next address of the name may answer
            except HttpError as exc:
                raise SendFailed(f"{target.key}: {exc}") from None
            if 200 <= status < 300:
                return
            raise SendFailed(f"{target.key} answered HTTP {status}")
        raise SendFailed(f"cannot connect to {target.key}: " + "; ".join(errors))

    @property
    def idle_connections(self) -> int:
        return sum(pool.idle for pool in self._pools.values())

    async def aclose(self) -> None:
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            pool.close()
