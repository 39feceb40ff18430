"""Unit tests for the bench's pieces: HTTP parsing, percentiles, safety check."""

from __future__ import annotations

import asyncio
import json
import math
import random

import pytest

from tidings.bench import main, sqs, zaqar
from tidings.bench.histogram import LatencyHistogram
from tidings.bench.http import HttpConnection, HttpError, build_request
from tidings.bench.options import BenchOptions
from tidings.bench.report import to_document, to_table
from tidings.bench.runner import BenchResult, prefill_size
from tidings.bench.stats import PhaseStats
from tidings.bench.target import (
    TargetError,
    check_target,
    is_loopback_address,
    parse_target,
)

# --- HTTP client -----------------------------------------------------------


async def _canned_server(chunks: list[bytes]) -> tuple[asyncio.Server, int]:
    """A server that answers each request with the next canned response.

    Each canned response is written in two pieces to exercise the parser's
    handling of data that arrives split across reads.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for chunk in chunks:
            await reader.readuntil(b"\r\n\r\n")
            half = len(chunk) // 2
            writer.write(chunk[:half])
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(chunk[half:])
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_client_parses_keep_alive_responses_in_sequence() -> None:
    responses = [
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b'HTTP/1.1 201 Created\r\nContent-Length: 11\r\n\r\n{"a": "bc"}',
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    ]
    server, port = await _canned_server(responses)
    async with server:
        conn = HttpConnection("127.0.0.1", port)
        request = build_request("GET", "/v2/ping", "h", {"Client-ID": "x"})
        got = [await conn.request(request) for _ in responses]
        conn.close()
    assert [(r.status, r.body) for r in got] == [
        (204, b""),
        (201, b'{"a": "bc"}'),
        (200, b"abcde"),
    ]
    assert conn.connects == 1  # one connection reused for all three


async def test_client_reconnects_after_connection_close() -> None:
    server, port = await _canned_server(
        [b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"]
    )
    async with server:
        conn = HttpConnection("127.0.0.1", port)
        request = build_request("GET", "/", "h", {})
        assert (await conn.request(request)).status == 204
        assert not conn.connected
        assert (await conn.request(request)).status == 204  # a fresh connection
        conn.close()
    assert conn.connects == 2


async def test_client_reports_lost_connection_and_garbage() -> None:
    server, port = await _canned_server([b"not http at all\r\n\r\n"])
    async with server:
        conn = HttpConnection("127.0.0.1", port)
        with pytest.raises(HttpError):
            await conn.request(build_request("GET", "/", "h", {}))
        conn.close()
    with pytest.raises(HttpError):
        await HttpConnection("127.0.0.1", port).connect()  # nobody listens now


def test_build_request_adds_length_only_with_a_body() -> None:
    get = build_request("GET", "/v2/ping", "127.0.0.1:8888", {"Client-ID": "c"})
    assert get == b"GET /v2/ping HTTP/1.1\r\nHost: 127.0.0.1:8888\r\nClient-ID: c\r\n\r\n"
    post = build_request("POST", "/q", "h", {}, b"{}")
    assert post.endswith(b"Content-Length: 2\r\n\r\n{}")


# --- Zaqar bodies ------------------------------------------------------------


def test_post_body_carries_the_payload_size() -> None:
    import json

    doc = json.loads(zaqar.post_body(3, 50, 300))
    assert len(doc["messages"]) == 3
    assert doc["messages"][0]["ttl"] == 300
    assert len(doc["messages"][0]["body"]["payload"]) == 50


def test_claim_and_page_parsing() -> None:
    claim = b'{"messages": [{"href": "/v2/queues/q/messages/1?claim_id=c"}, {"id": "2"}]}'
    assert zaqar.claimed_hrefs(claim) == ["/v2/queues/q/messages/1?claim_id=c"]
    assert zaqar.claimed_hrefs(b"") == []
    assert zaqar.claimed_hrefs(b"<html>") == []
    page = (
        b'{"messages": [{}, {}], "links": [{"rel": "next", '
        b'"href": "/v2/queues/q/messages?marker=7&limit=2"}]}'
    )
    assert zaqar.listed_page(page) == (2, "/v2/queues/q/messages?marker=7&limit=2")
    assert zaqar.listed_page(b'{"messages": []}') == (0, None)
    assert zaqar.with_echo("/m?marker=7") == "/m?marker=7&echo=true"
    assert zaqar.with_echo("/m?echo=true&marker=7") == "/m?echo=true&marker=7"


def test_bulk_delete_path_names_every_id_and_the_claim_once() -> None:
    hrefs = ["/v2/queues/q/messages/0a?claim_id=c1", "/v2/queues/q/messages/0b?claim_id=c1"]
    assert zaqar.bulk_delete_path("q", hrefs) == "/v2/queues/q/messages?ids=0a,0b&claim_ids=c1"
    assert zaqar.bulk_delete_path("q", ["/v2/queues/q/messages/0c"]) == (
        "/v2/queues/q/messages?ids=0c")


# --- percentiles -------------------------------------------------------------


def _exact_percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def test_histogram_percentiles_are_within_one_percent() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-7, 1.0) for _ in range(20_000)]  # ~1 ms median
    hist = LatencyHistogram()
    for v in values:
        hist.record(v)
    for q in (1, 50, 90, 99, 99.9):
        assert hist.percentile(q) == pytest.approx(_exact_percentile(values, q), rel=0.01)
    assert hist.percentile(100) == max(values)
    assert hist.mean() == pytest.approx(sum(values) / len(values))


def test_histograms_merge_like_one() -> None:
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for i in range(1, 1000):
        (a if i % 2 else b).record(i / 1e4)
        both.record(i / 1e4)
    a.merge(LatencyHistogram.from_dict(b.to_dict()))  # through the pipe format
    assert a.counts == both.counts
    assert (a.count, a.min, a.max) == (both.count, both.min, both.max)
    assert a.percentile(99) == both.percentile(99)


def test_empty_histogram_reports_zero() -> None:
    assert LatencyHistogram().percentile(99) == 0.0
    assert LatencyHistogram().mean() == 0.0


def test_phase_rates_add_up_over_processes() -> None:
    merged = PhaseStats()
    for _ in range(2):
        part = PhaseStats(requests=100, messages=50, duration=2.0, processes=1)
        part.latency.record(0.001)
        merged.merge(part)
    summary = merged.summary(ping_rps=400.0)
    assert summary["requests_per_s"] == 100.0  # 2 processes x 100 req / 2 s
    assert summary["messages_per_s"] == 50.0
    assert summary["fraction_of_ping"] == 0.25


# --- loopback check ------------------------------------------------------------


@pytest.mark.parametrize(
    "address, loopback",
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("192.168.1.1", False),
        ("::", False),
        ("2001:db8::1", False),
        ("not-an-ip", False),
    ],
)
def test_is_loopback_address(address: str, loopback: bool) -> None:
    assert is_loopback_address(address) is loopback


def test_check_target_allows_loopback_hosts() -> None:
    assert check_target("http://127.0.0.1:8888").address == "127.0.0.1"
    assert check_target("http://[::1]:8888/").address == "::1"
    assert is_loopback_address(check_target("http://localhost:8888").address)


def test_check_target_refuses_remote_unless_allowed() -> None:
    with pytest.raises(TargetError, match="--allow-remote"):
        check_target("http://10.1.2.3:8888")
    assert check_target("http://10.1.2.3:8888", allow_remote=True).address == "10.1.2.3"


def test_parse_target_keeps_host_header_and_base_path() -> None:
    t = parse_target("https://[::1]:9443/messaging/")
    assert (t.tls, t.host, t.port, t.host_header) == (True, "::1", 9443, "[::1]:9443")
    assert t.path("/v2/ping") == "/messaging/v2/ping"
    assert t.path("/messaging/v2/ping") == "/messaging/v2/ping"
    with pytest.raises(TargetError):
        parse_target("ftp://127.0.0.1/")


def test_main_refuses_a_remote_url_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "http://10.1.2.3:8888"]) == 2
    assert "not loopback" in capsys.readouterr().err


def test_main_rejects_unknown_roles() -> None:
    assert main(["--roles", "ping,dancer"]) == 2


def test_main_refuses_sqs_batches_over_ten(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--roles", "sqs_producer", "--messages-per-post", "11"]) == 2
    assert "at most 10" in capsys.readouterr().err


# --- the SQS wire -----------------------------------------------------------------


def test_sqs_requests_name_the_project_and_the_queue() -> None:
    headers = sqs.headers("bench-p")
    assert headers["Content-Type"] == "application/x-amz-json-1.0"
    # noauth reads the project from the credential scope's access key id.
    assert "Credential=bench-p/20260101/us-east-1/sqs/aws4_request," in headers["Authorization"]
    assert sqs.target("SendMessage") == {"X-Amz-Target": "AmazonSQS.SendMessage"}
    url = sqs.queue_url("http://127.0.0.1:1/", "bench p", "q-0")
    assert url == "http://127.0.0.1:1/bench%20p/q-0"
    one = json.loads(sqs.send_body(url, 50))
    assert one["QueueUrl"] == url and len(json.loads(one["MessageBody"])["payload"]) == 50
    batch = json.loads(sqs.send_batch_body(url, 10, 5))["Entries"]
    assert [e["Id"] for e in batch] == [str(i) for i in range(10)]
    assert json.loads(sqs.receive_body(url, 10, 30)) == {
        "QueueUrl": url, "MaxNumberOfMessages": 10, "VisibilityTimeout": 30}
    entries = json.loads(sqs.delete_batch_body(url, ["a", "b"]))["Entries"]
    assert entries == [{"Id": "0", "ReceiptHandle": "a"}, {"Id": "1", "ReceiptHandle": "b"}]


def test_sqs_answers_are_parsed() -> None:
    received = (b'{"Messages": [{"ReceiptHandle": "h1"}, {"Body": "no handle"}, '
                b'{"ReceiptHandle": "h2"}]}')
    assert sqs.receipt_handles(received) == ["h1", "h2"]
    assert sqs.receipt_handles(b"{}") == [] and sqs.receipt_handles(b"not json") == []
    assert sqs.batch_counts(b'{"Successful": [{}, {}], "Failed": [{}]}') == (2, 1)
    assert sqs.batch_counts(b'{"Successful": [{}]}') == (1, 0)


# --- sizing and report -----------------------------------------------------------


def _options(**kw: object) -> BenchOptions:
    return BenchOptions(target=check_target("http://127.0.0.1:1"), **kw)  # type: ignore[arg-type]


def test_prefill_size() -> None:
    assert prefill_size(_options(prefill=123), {}) == 123
    assert prefill_size(_options(), {}) == 20_000
    ping = PhaseStats(requests=1000, duration=1.0, processes=1)  # 1000 req/s
    producer = PhaseStats(messages=1000, duration=1.0, processes=1)
    opts = _options(time=4.0, warmup=1.0, queues=2)
    assert prefill_size(opts, {"ping": ping}) == 2500  # 1000/s x 5 s / 2 queues
    assert prefill_size(opts, {"ping": ping, "producer": producer}) == 2000


def test_table_and_document_shape() -> None:
    result = BenchResult(_options(), cpu_seconds=1.0, wall_seconds=4.0)
    for role, rps in (("ping", 1000), ("producer", 500)):
        stats = PhaseStats(requests=rps, messages=rps if role != "ping" else 0,
                           duration=1.0, processes=1)
        stats.latency.record(0.002)
        result.roles[role] = stats
    result.roles["producer"].errors["503"] = 2
    doc = to_document(result)
    assert set(doc) == {"config", "roles", "bench_cpu"}
    assert doc["roles"]["producer"]["fraction_of_ping"] == 0.5
    assert doc["bench_cpu"]["pct_of_one_core"] == 25.0
    table = to_table(result)
    assert "producer" in table and "503 x2" in table


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_a_line_a_second_off_a_terminal() -> None:
    import io

    from tidings.bench.progress import Progress

    clock, out = _Clock(), io.StringIO()
    progress = Progress(("ping", "producer"), 2.0, out, interactive=False, clock=clock)
    progress.phase("ping")
    for now in (100.4, 100.9, 101.0, 101.5, 102.0, 103.0):
        clock.now = now
        progress.tick()
    progress.finish()
    assert out.getvalue().splitlines() == [
        "tidings bench: ping (phase 1 of 2): 0/2 s",
        "tidings bench: ping (phase 1 of 2): 1/2 s",
        "tidings bench: ping (phase 1 of 2): 2/2 s",
    ]


def test_progress_is_a_bar_rewritten_in_place_on_a_terminal() -> None:
    import io

    from tidings.bench.progress import Progress

    clock, out = _Clock(), io.StringIO()
    progress = Progress(("ping", "producer"), 4.0, out, interactive=True, clock=clock)
    progress.phase("producer")
    clock.now = 102.0
    progress.tick()
    clock.now = 104.0
    progress.tick()
    progress.say("done")
    frames = out.getvalue().split("\r")[1:]
    assert frames[0].startswith("tidings bench: producer (phase 2 of 2) [" + "." * 24)
    assert "[" + "#" * 12 + "." * 12 + "]  2.0/4 s" in frames[1]
    assert frames[2].startswith("tidings bench: producer (phase 2 of 2) [" + "#" * 24 + "]")
    # The bar's line ends before the next line of its own.
    assert frames[2].endswith(" 4.0/4 s\ntidings bench: done\n")
