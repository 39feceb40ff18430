"""The server's log on a normal start: `serve --workers 2` on a real Redis.

Every line has the text format (uvicorn's included); one line says what
runs (version, storage driver and URL, config file, worker count); the
signing notice comes once per start, not once per worker; no third-party
warning.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import httpx

from tests.support.redis_server import RedisServer
from tests.support.server import ServerProcess

TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
                       r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+ \[[^\]]+\]: .*")


def test_a_normal_start_logs_one_format_and_says_what_runs(tmp_path: Path) -> None:
    redis = RedisServer().start()
    log = tmp_path / "server.log"
    url = redis.url
    config = tmp_path / "tidings.toml"
    config.write_text('log_format = "text"\n')
    server = ServerProcess(storage=url, log_path=log, workers=2,
                           env={"TIDINGS_CONFIG": str(config)})
    try:
        server.start()
        headers = {"X-Project-ID": "log-p", "Client-ID": str(uuid.uuid4()),
                   "X-Request-ID": "log-line-1"}
        assert httpx.put(server.url + "/v2/queues/lq", headers=headers,
                         timeout=10).status_code == 201
        deadline = time.monotonic() + 10
        while "[log-line-1]: " not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
        redis.cleanup()
    lines = log.read_text().splitlines()
    assert any("[log-line-1]: method=PUT" in line for line in lines)
    # One access line per request: uvicorn's own stays off in the workers.
    assert sum("[log-line-1]" in line for line in lines) == 1, lines
    for line in lines:
        assert TEXT_LINE.fullmatch(line), line
        assert "Warning" not in line, line
    started = [line for line in lines if " INFO tidings [-]: tidings " in line]
    assert len(started) == 1, lines
    assert f"storage redis at {url}" in started[0]
    assert f"config file {config}" in started[0] and "2 workers" in started[0]
    assert sum("signing_secret is not set" in line for line in lines) == 1
    assert not any("one process" in line for line in lines)  # SQLite's notice only
    # Both workers started, in the same format.
    assert sum("Started server process" in line for line in lines) >= 2
