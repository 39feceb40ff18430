"""A short bench run against a real ``tidings serve`` (the server_url fixture).

Checks that every role does work without errors; never asserts throughput,
which depends on the machine.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tidings.bench import main


def _run(capsys: pytest.CaptureFixture[str], url: str, project: str, *extra: str) -> dict:
    argv = ["--url", url, "--project", project, "--time", "1", "--warmup", "0", "--json",
            *extra]
    assert main(argv) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    report["stderr"] = captured.err
    return report


def test_every_role_runs_without_errors(
    server_url: str, project: str, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _run(capsys, server_url, project, "--prefill", "500", "--queue-prefix", "bench-all")
    roles = report["roles"]
    assert list(roles) == ["ping", "producer", "observer", "consumer"]
    for name, figures in roles.items():
        assert figures["requests"] > 0, name
        assert figures["errors"] == 0, (name, figures["errors_by_status"])
        if name != "ping":
            assert figures["messages_per_s"] > 0, name
    assert roles["consumer"]["messages"] > 0
    assert roles["consumer"]["claims"] > 0
    assert roles["producer"]["fraction_of_ping"] > 0
    assert report["bench_cpu"]["cpu_seconds"] > 0
    # Progress on standard error (not a terminal here: lines), the report
    # alone on standard output.
    progress = report["stderr"].splitlines()
    for number, role in enumerate(roles, 1):
        assert f"tidings bench: {role} (phase {number} of 4): 0/1 s" in progress
    assert any(line.startswith("tidings bench: posting 500 messages") for line in progress)


def test_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split("options:", 1)[1].split())
    for option, default in (("--url URL", "http://127.0.0.1:8888"), ("--time TIME", "5.0"),
                            ("--warmup WARMUP", "1.0"), ("--workers WORKERS", "2"),
                            ("--messages-per-post MESSAGES_PER_POST", "1"),
                            ("--messages-per-claim MESSAGES_PER_CLAIM", "10"),
                            ("--roles ROLES", "ping,producer,observer,consumer")):
        after = text.split(option, 1)[1].split(" --", 1)[0]
        assert f"(default: {default})" in after, option
    # Every option that takes a value says its default.
    options = re.findall(r"(--[a-z-]+) [A-Z_]+ ", text)
    assert len(options) >= 14
    for option in options:
        after = text.split(f"{option} ", 1)[1].split(" --", 1)[0]
        assert "(default: " in after, option


def test_two_processes_over_two_queues(
    server_url: str, project: str, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _run(
        capsys, server_url, project,
        "--processes", "2", "--workers", "2", "--queues", "2",
        "--roles", "producer,consumer", "--messages-per-post", "5",
        "--prefill", "200", "--queue-prefix", "bench-multi",
    )
    roles = report["roles"]
    assert list(roles) == ["producer", "consumer"]
    for name, figures in roles.items():
        assert figures["requests"] > 0 and figures["errors"] == 0, (name, figures)
        assert figures["fraction_of_ping"] is None  # no ping phase, no ceiling
    # Messages go in batches of five.
    assert roles["producer"]["messages"] == 5 * roles["producer"]["requests"]
    assert roles["consumer"]["messages"] > 0


def _total(http: httpx.Client, queue: str) -> int:
    """Messages in a queue (free and claimed), read through the Zaqar API."""
    response = http.get(f"/v2/queues/{queue}/stats")
    assert response.status_code == 200, response.text
    return response.json()["messages"]["total"]


@pytest.mark.parametrize("per_request", ["1", "10"])
def test_sqs_producer_sends_what_it_counts(
    server_url: str, project: str, http: httpx.Client, capsys: pytest.CaptureFixture[str],
    per_request: str,
) -> None:
    # SendMessage with 1, SendMessageBatch with 10; with no warm-up every
    # request counts, so the report and the queue must agree exactly.
    prefix = f"bench-sqs-send{per_request}"
    report = _run(capsys, server_url, project, "--roles", "sqs_producer",
                  "--messages-per-post", per_request, "--keep-queues", "--queue-prefix", prefix)
    figures = report["roles"]["sqs_producer"]
    assert figures["errors"] == 0, figures["errors_by_status"]
    assert "failed_entries" not in figures
    assert figures["messages"] > 0
    assert figures["messages"] == figures["requests"] * int(per_request)
    assert _total(http, f"{prefix}-0") == figures["messages"]


def test_sqs_consumer_deletes_what_it_counts(
    server_url: str, project: str, http: httpx.Client, capsys: pytest.CaptureFixture[str],
) -> None:
    report = _run(capsys, server_url, project, "--roles", "sqs_consumer", "--prefill", "300",
                  "--keep-queues", "--queue-prefix", "bench-sqs-receive")
    figures = report["roles"]["sqs_consumer"]
    assert report["config"]["prefilled_messages"] == 300
    assert figures["errors"] == 0, figures["errors_by_status"]
    assert "failed_entries" not in figures
    assert figures["receives"] > 0
    assert 0 < figures["messages"] <= 300
    # Received and deleted through SQS: gone from the queue the Zaqar API sees.
    assert _total(http, "bench-sqs-receive-0") == 300 - figures["messages"]
