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
address is a permanent failure. Redirects are not followed (they could
point anywhere) and proxy variables are ignored.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from typing import Any

import httpx

from tidings.notify.addresses import AddressPolicy, RefusedAddress
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
# Bytes of a response body read before the connection is given up on.
MAX_RESPONSE_READ = 64 * 1024
# Connection pools kept open (one per target), least recently used dropped.
MAX_POOLS = 256
USER_AGENT = "tidings-notifier"


class Target:
    """A parsed webhook URL: what to resolve, and what to send as Host."""

    __slots__ = ("host", "host_header", "port", "scheme", "url")

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

    @property
    def key(self) -> str:
        """The per-target concurrency key."""
        return f"{self.scheme}://{self.host_header}"


def target_key(delivery: Delivery) -> str:
    try:
        return Target(delivery.subscriber).key
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


def request_headers(delivery: Delivery, target: Target) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    extra = delivery.options.get("post_headers")
    if isinstance(extra, dict):
        for name, value in extra.items():
            if (isinstance(name, str) and isinstance(value, (str, int, float))
                    and not isinstance(value, bool) and name.lower() not in RESERVED_HEADERS
                    and "\n" not in name + str(value) and "\r" not in name + str(value)):
                headers[name] = str(value)
    headers.update(id_headers(delivery))
    headers["Host"] = target.host_header
    return headers


class WebhookSender:
    """One small connection pool per target (scheme, host name, port): a
    connection made and verified for one name never carries another name's
    requests, and each pool stays as small as the per-target limit (httpx's
    pool scans all its connections for every request)."""

    def __init__(self, addresses: AddressPolicy, *, timeout: float = 10.0,
                 connect_timeout: float = 5.0, max_connections: int = 16,
                 max_pools: int = MAX_POOLS) -> None:
        self.addresses = addresses
        self.timeout = timeout
        self.max_pools = max_pools
        self._timeouts = httpx.Timeout(timeout, connect=min(connect_timeout, timeout))
        self._limits = httpx.Limits(max_connections=max_connections,
                                    max_keepalive_connections=max_connections)
        self._pools: OrderedDict[str, httpx.AsyncClient] = OrderedDict()

    def _client_for(self, target: Target) -> httpx.AsyncClient:
        client = self._pools.get(target.key)
        if client is None:
            client = self._pools[target.key] = httpx.AsyncClient(
                timeout=self._timeouts, limits=self._limits, follow_redirects=False,
                trust_env=False)
            while len(self._pools) > self.max_pools:
                _, old = self._pools.popitem(last=False)
                # Requests still running on it finish first.
                asyncio.get_running_loop().call_later(
                    self.timeout + 1, lambda c=old: asyncio.ensure_future(c.aclose()))
        else:
            self._pools.move_to_end(target.key)
        return client

    async def send(self, delivery: Delivery, doc: dict[str, Any]) -> None:
        """Raises SendFailed (PermanentFailure for a refused address)."""
        target = Target(delivery.subscriber)
        try:
            async with asyncio.timeout(self.timeout):
                await self._send(delivery, doc, target)
        except TimeoutError:
            raise SendFailed(f"no answer from {target.key} in {self.timeout:g}s") from None

    async def _send(self, delivery: Delivery, doc: dict[str, Any], target: Target) -> None:
        try:
            addresses = await self.addresses.resolve(target.host, target.port)
        except RefusedAddress as exc:
            raise PermanentFailure(str(exc)) from None
        except OSError as exc:  # resolution failed: DNS may recover
            raise SendFailed(f"cannot resolve {target.host}: {exc}") from None
        content = render(delivery, doc)
        headers = request_headers(delivery, target)
        client = self._client_for(target)
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        errors: list[str] = []
        for address in addresses:
            request = client.build_request(
                "POST", target.url.copy_with(host=address), content=content,
                headers=headers, extensions=extensions)
            try:
                response = await client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                errors.append(f"{address}: {exc or type(exc).__name__}")
                continue  # the next address of the name may answer
            except httpx.TimeoutException as exc:
                raise SendFailed(f"{target.key} timed out: {type(exc).__name__}") from None
            except httpx.HTTPError as exc:
                raise SendFailed(f"{target.key}: {type(exc).__name__}: {exc}") from None
            try:
                status = response.status_code
                read = 0
                if 200 <= status < 300:
                    # Drain a small answer so the connection can be reused.
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read > MAX_RESPONSE_READ:
                            break
            except httpx.HTTPError:
                pass  # the status is what counts
            finally:
                await response.aclose()
            if 200 <= status < 300:
                return
            raise SendFailed(f"{target.key} answered HTTP {status}")
        raise SendFailed(f"cannot connect to {target.key}: " + "; ".join(errors))

    async def aclose(self) -> None:
        clients = list(self._pools.values())
        self._pools.clear()
        for client in clients:
            await client.aclose()
