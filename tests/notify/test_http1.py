"""The webhook connections (http1.py) against real asyncio servers on
127.0.0.1 that answer the way real servers do, kindly or not."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.notify.helpers import delivery
from tests.support.clock import FakeClock
from tidings.notify.addresses import AddressPolicy
from tidings.notify.http1 import (
    KEEPALIVE_SECONDS,
    MAX_RESPONSE_READ,
    HostPool,
    HttpError,
    encode_request,
)
from tidings.notify.payload import SendFailed, document
from tidings.notify.webhook import WebhookSender

LOCAL = AddressPolicy(allow=["127.0.0.1/32"])
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"

Answer = Callable[[int, bytes], Awaitable[bytes | None]]


class Server:
    """Reads requests (Content-Length bodies) and writes what ``answer(n,
    request)`` gives for the n-th request of all (None: close without
    answering). Counts connections and the most open at once."""

    def __init__(self, answer: Answer, *, close_after_answer: bool = False) -> None:
        self.answer = answer
        self.close_after_answer = close_after_answer
        self.requests: list[bytes] = []
        self.port = 0
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = head + await reader.readexactly(length)
                n = len(self.requests)
                self.requests.append(request)
                reply = await self.answer(n, request)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    def close(self) -> None:
        assert self.server is not None
        self.server.close()


async def no_content(n: int, request: bytes) -> bytes:
    return NO_CONTENT


@pytest.fixture
async def sender():
    s = WebhookSender(LOCAL, timeout=2, connect_timeout=1)
    yield s
    await s.aclose()


async def send(sender: WebhookSender, url: str) -> None:
    d = delivery(url)
    await sender.send(d, document(d))


async def test_one_connection_carries_request_after_request(sender):
    server = await Server(no_content).start()
    try:
        for _ in range(5):
            await send(sender, f"http://127.0.0.1:{server.port}/hook")
    finally:
        server.close()
    assert len(server.requests) == 5
    assert server.connections == 1
    assert sender.idle_connections == 1


async def test_a_connection_dropped_while_idle_is_replaced_without_a_failure(sender):
    # The server takes the second request on the kept connection and closes
    # it unanswered, as a server ending an idle connection does at that
    # moment: the request is sent again on a new connection.
    async def drop_the_second(n: int, request: bytes) -> bytes | None:
        return None if n == 1 else NO_CONTENT

    server = await Server(drop_the_second).start()
    try:
        await send(sender, f"http://127.0.0.1:{server.port}/hook")
        await send(sender, f"http://127.0.0.1:{server.port}/hook")
    finally:
        server.close()
    assert len(server.requests) == 3  # at-least-once: the dropped one came twice
    assert server.connections == 2


async def test_a_fresh_connection_closed_unanswered_is_a_failed_attempt(sender):
    async def never(n: int, request: bytes) -> bytes | None:
        return None

    server = await Server(never).start()
    try:
        with pytest.raises(SendFailed, match="closed the connection"):
            await send(sender, f"http://127.0.0.1:{server.port}/hook")
    finally:
        server.close()
    assert len(server.requests) == 1


async def test_chunked_and_sized_answers_keep_the_connection(sender):
    answers = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
               b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
               b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"]

    async def varied(n: int, request: bytes) -> bytes:
        return answers[n]

    server = await Server(varied).start()
    try:
        for _ in answers:
            await send(sender, f"http://127.0.0.1:{server.port}/hook")
    finally:
        server.close()
    assert server.connections == 1


async def test_a_large_answer_is_not_read_to_the_end(sender):
    big = b"x" * (4 * MAX_RESPONSE_READ)

    async def large(n: int, request: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big

    server = await Server(large).start()
    try:
        await send(sender, f"http://127.0.0.1:{server.port}/hook")
        await send(sender, f"http://127.0.0.1:{server.port}/hook")
    finally:
        server.close()
    assert server.connections == 2  # given up on, not drained


async def test_an_answer_ended_by_closing_counts(sender):
    async def http10(n: int, request: bytes) -> bytes | None:
        return b"HTTP/1.0 200 OK\r\n\r\nbody until the close"

    server = await Server(http10, close_after_answer=True).start()
    try:
        await send(sender, f"http://127.0.0.1:{server.port}/hook")
        await send(sender, f"http://127.0.0.1:{server.port}/hook")
    finally:
        server.close()
    assert server.connections == 2
    assert sender.idle_connections == 0


async def test_garbage_is_a_failed_attempt(sender):
    async def garbage(n: int, request: bytes) -> bytes:
        return b"SMTP ready\r\n\r\n"

    server = await Server(garbage).start()
    try:
        with pytest.raises(SendFailed, match="invalid HTTP answer"):
            await send(sender, f"http://127.0.0.1:{server.port}/hook")
    finally:
        server.close()


async def test_connections_per_target_stay_within_the_limit():
    release = asyncio.Event()

    async def slow(n: int, request: bytes) -> bytes:
        await release.wait()
        return NO_CONTENT

    server = await Server(slow).start()
    sender = WebhookSender(LOCAL, timeout=5, max_connections=2)
    try:
        sends = [asyncio.create_task(send(sender, f"http://127.0.0.1:{server.port}/{i}"))
                 for i in range(6)]
        while len(server.requests) < 2:
            await asyncio.sleep(0.01)
        assert server.open == 2
        release.set()
        await asyncio.gather(*sends)
    finally:
        await sender.aclose()
        server.close()
    assert len(server.requests) == 6
    assert server.most_open == 2


async def test_a_timed_out_connection_is_not_reused():
    async def first_is_slow(n: int, request: bytes) -> bytes:
        if n == 0:
            await asyncio.sleep(2)
        return NO_CONTENT

    server = await Server(first_is_slow).start()
    sender = WebhookSender(LOCAL, timeout=0.3)
    try:
        with pytest.raises(SendFailed):
            await send(sender, f"http://127.0.0.1:{server.port}/hook")
        await send(sender, f"http://127.0.0.1:{server.port}/hook")
    finally:
        await sender.aclose()
        server.close()
    assert server.connections == 2


async def test_idle_connections_expire():
    clock = FakeClock()
    server = await Server(no_content).start()
    pool = HostPool(limit=4, connect_timeout=1, clock=clock)
    request = encode_request("/", {"Host": "x"}, b"{}")
    try:
        assert await pool.post("127.0.0.1", server.port, request) == 204
        clock.advance(KEEPALIVE_SECONDS / 2)
        assert await pool.post("127.0.0.1", server.port, request) == 204
        assert server.connections == 1
        clock.advance(KEEPALIVE_SECONDS + 1)
        pool.close_expired()
        assert pool.idle == 0
        assert await pool.post("127.0.0.1", server.port, request) == 204
        assert server.connections == 2
    finally:
        pool.close()
        server.close()


async def test_post_headers_cannot_smuggle_header_lines(sender):
    server = await Server(no_content).start()
    try:
        d = delivery(f"http://127.0.0.1:{server.port}/hook", options={"post_headers": {
            "X-Good": "yes", "X-Bad: injected\r\nX-Evil": "1", "X-Split": "a\r\nX-Evil: 2",
            "X Space": "no", "X-Wide": "\u2603"}})
        await sender.send(d, document(d))
    finally:
        server.close()
    [request] = server.requests
    head = request.split(b"\r\n\r\n", 1)[0].lower()
    assert b"x-good: yes" in head
    assert b"x-evil" not in head and b"x space" not in head and b"x-wide" not in head


# --- https --------------------------------------------------------------------


def _certificates(tmp: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for ``name`` from a fresh CA, and
    a client context trusting that CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tidings test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (tmp / "cert.pem").write_bytes(cert.public_bytes(pem))
    (tmp / "key.pem").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    client = ssl.create_default_context(cadata=ca.public_bytes(pem).decode())
    return server, client


async def test_https_goes_to_the_checked_address_and_verifies_the_name(tmp_path):
    server_tls, client_tls = _certificates(tmp_path, "localhost")
    server = await Server(no_content).start(server_tls)
    sender = WebhookSender(AddressPolicy(allow=["127.0.0.0/8", "::1/128"]), timeout=2,
                           tls=client_tls)
    try:
        await send(sender, f"https://localhost:{server.port}/secure")
        await send(sender, f"https://localhost:{server.port}/secure")
    finally:
        await sender.aclose()
        server.close()
    assert server.connections == 1
    assert b"host: localhost:%d" % server.port in server.requests[0].lower()


async def test_https_refuses_a_certificate_for_another_name(tmp_path):
    server_tls, client_tls = _certificates(tmp_path, "elsewhere.example")
    server = await Server(no_content).start(server_tls)
    sender = WebhookSender(AddressPolicy(allow=["127.0.0.0/8", "::1/128"]), timeout=2,
                           tls=client_tls)
    try:
        with pytest.raises(SendFailed, match="cannot connect"):
            await send(sender, f"https://localhost:{server.port}/secure")
    finally:
        await sender.aclose()
        server.close()
    assert server.requests == []


async def test_http_error_names_the_target():
    # The pool alone: a refused connection is a ConnectFailed, an HttpError.
    pool = HostPool(limit=1, connect_timeout=1)
    with pytest.raises(HttpError):
        await pool.post("127.0.0.1", 9, encode_request("/", {"Host": "x"}, b""))
