"""A full disk under SQLite: refused writes say so, health shows it, and
service comes back by itself once space is freed.

The database lives on a 2 MiB tmpfs mounted for the test (the tests run as
root in CI; elsewhere, without the right to mount, the test skips, and
under CI=true it fails). A filler file takes nearly all the space, posts
then fill the rest: each refused post answers 507 with a description that
names the lack of space, nothing half written; `/v2/health` and
`/v2/ping` report the storage as out of space, also after the failed
write; the delivery worker, which keeps retrying a webhook at the same
time, logs no traceback. Deleting the filler frees the space: the next
post succeeds without a restart and health is green again.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.notify.receiver import Receiver
from tests.support.server import ServerProcess

SIZE = "2m"
BODY = "x" * 8000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs: {mounted.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path, leave: int) -> None:
    """A file taking all of the file system's free space but ``leave`` bytes."""
    stat = os.statvfs(path.parent)
    size = max(0, stat.f_bavail * stat.f_frsize - leave)
    with open(path, "wb") as fh:
        fh.write(b"\0" * size)


def test_a_full_disk_answers_507_shows_in_health_and_recovers(
        small_disk: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    proc = ServerProcess(storage=f"sqlite:///{small_disk}/tidings.db",
                         log_path=log_path,
                         env={"TIDINGS_NOTIFICATIONS__ALLOWED_NETWORKS": "127.0.0.1/32",
                              "TIDINGS_NOTIFICATIONS__POLL_INTERVAL": "0.1",
                              "TIDINGS_NOTIFICATIONS__RETRY_POLICY__MINIMUM_DELAY": "0.05",
                              "TIDINGS_NOTIFICATIONS__RETRY_POLICY__MAXIMUM_DELAY": "0.05"})
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "full"}
    proc.start()
    try:
        with Receiver(status=lambda n: 503) as failing, \
                httpx.Client(base_url=proc.url, headers=headers, timeout=20) as http:
            # A webhook that always fails keeps the delivery worker writing.
            policy = {"retries_with_no_delay": 0, "minimum_delay_retries": 1000,
                      "maximum_delay_retries": 0}
            assert http.post("/v2/queues/q/subscriptions", json={
                "subscriber": failing.url, "ttl": 3600,
                "options": {"_retry_policy": policy}}).status_code == 201
            assert post(http).status_code == 201
            failing.wait_for(2)
            fill(small_disk / "filler", leave=64 * 1024)

            refused = None
            acknowledged = 1
            for _ in range(200):
                answer = post(http)
                if answer.status_code == 201:
                    acknowledged += 1
                    continue
                refused = answer
                break
            assert refused is not None, "the disk never filled"
            assert refused.status_code == 507, refused.text
            assert "out of space" in refused.json()["description"], refused.text
            failing.wait_for(len(failing.requests) + 3)  # the worker ran meanwhile

            health = http.get("/v2/health")
            assert health.status_code == 200
            assert "out of space" in health.json()["details"]["problem"], health.text
            ping = http.get("/v2/ping")
            assert ping.status_code == 503
            assert "out of space" in ping.json()["description"], ping.text
            # The probe needs no headers and names the cause too.
            ready = httpx.get(f"{proc.url}/readyz")
            assert ready.status_code == 503 and "out of space" in ready.text, ready.text

            (small_disk / "filler").unlink()
            freed = time.monotonic()
            assert post(http).status_code == 201  # no restart
            recovered = time.monotonic() - freed
            acknowledged += 1
            assert http.get("/v2/ping").status_code == 204
            assert httpx.get(f"{proc.url}/readyz").status_code == 200
            health = http.get("/v2/health").json()
            assert health["storage_reachable"] is True and "problem" not in health["details"]
            stored = http.get("/v2/queues/q/stats").json()["messages"]["total"]
            print(f"\nacknowledged {acknowledged}, stored {stored}, refused with "
                  f"{refused.status_code} once full; the first post after freeing space "
                  f"succeeded {recovered:.3f} s later, without a restart; "
                  f"{len(failing.requests)} webhook attempts meanwhile")
            assert stored == acknowledged  # nothing lost, nothing half written
    finally:
        proc.stop()
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


def post(http: httpx.Client) -> httpx.Response:
    return http.post("/v2/queues/q/messages", json={"messages": [{"body": BODY}]})
