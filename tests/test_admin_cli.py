"""The admin commands (tidings.cli.admin) as subprocesses on a temp SQLite
storage: check, queues, peek, purge, redrive."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tidings.storage.base import DeadLetterPolicy, NewMessage
from tidings.storage.registry import driver_from_url

CLIENT = "3b7e2a1c-4d5e-4f60-8a9b-0c1d2e3f4a5b"


def tidings(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tidings", *args], capture_output=True,
                          text=True, timeout=60, check=check)


@pytest.fixture
def storage(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/admin.db"
    tidings("migrate", "--storage", url)
    return url


def seed(url: str, project: str = "demo") -> None:
    """q with 2 messages, dlq with 3 dead-lettered from q."""

    async def main() -> None:
        driver = driver_from_url(url)
        await driver.open()
        try:
            await driver.messages.post(project, "q", [
                NewMessage(body={"job": i}, ttl=3600) for i in range(5)], CLIENT)
            policy = DeadLetterPolicy(max_claim_count=1, queue="dlq", ttl=None)
            result = await driver.claims.create(project, "q", ttl=60, grace=0, limit=3,
                                                dead_letter=policy)
            assert result.claim_id is not None
            await driver.claims.delete(project, "q", result.claim_id)
            await driver.claims.create(project, "q", ttl=60, grace=0, limit=3,
                                       dead_letter=policy)
        finally:
            await driver.close()

    asyncio.run(main())


def test_check_ok(storage: str) -> None:
    out = tidings("check", "--storage", storage)
    assert "backend: sqlite reachable" in out.stdout
    assert "schema: current" in out.stdout
    assert out.stdout.strip().endswith("ok")


def test_check_fails_on_missing_database(tmp_path: Path) -> None:
    out = tidings("check", "--storage", f"sqlite:///{tmp_path}/none.db", check=False)
    assert out.returncode != 0
    assert "does not exist" in out.stderr and "tidings migrate" in out.stderr
    assert not (tmp_path / "none.db").exists()  # check creates nothing


def test_check_fails_on_outdated_schema(storage: str, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "admin.db")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    out = tidings("check", "--storage", storage, check=False)
    assert out.returncode != 0
    assert "outdated" in out.stderr
    conn = sqlite3.connect(tmp_path / "admin.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1  # left alone
    conn.close()


def test_check_fails_on_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("no_such_setting = 1\n")
    out = tidings("check", "--config", str(config), check=False)
    assert out.returncode != 0 and out.stderr.startswith("tidings:")


def test_check_fails_on_unreachable_backend() -> None:
    out = tidings("check", "--storage", "redis://127.0.0.1:1/0?socket_connect_timeout=1",
                  check=False)
    assert out.returncode != 0
    assert "cannot open the storage" in out.stderr


def test_queues(storage: str) -> None:
    assert "no queues in project demo" in tidings("queues", "--storage", storage).stdout
    seed(storage)
    lines = tidings("queues", "--storage", storage).stdout.splitlines()
    assert lines[0].split() == ["QUEUE", "DEPTH", "FREE", "CLAIMED", "OLDEST"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["dlq"][:3] == ["3", "3", "0"]
    assert rows["q"][:3] == ["2", "0", "2"]  # the last claim holds the other two
    assert rows["q"][3].endswith("s")
    assert "no queues" in tidings("queues", "--storage", storage, "--project", "p2").stdout


def test_peek(storage: str) -> None:
    seed(storage)
    lines = tidings("peek", "dlq", "--storage", storage, "--limit", "2").stdout.splitlines()
    assert len(lines) == 2
    assert '{"job": 0}' in lines[0] and '{"job": 1}' in lines[1]
    assert "free" in lines[0]
    unknown = tidings("peek", "nothing", "--storage", storage, check=False)
    assert unknown.returncode == 1 and "queue nothing does not exist" in unknown.stderr


def test_purge(storage: str) -> None:
    seed(storage)
    assert "purged 3 messages from dlq" in tidings("purge", "dlq", "--storage", storage).stdout
    rows = tidings("queues", "--storage", storage).stdout.splitlines()[1:]
    assert {r.split()[0]: r.split()[1] for r in rows} == {"dlq": "0", "q": "2"}


def test_redrive(storage: str) -> None:
    seed(storage)
    out = tidings("redrive", "dlq", "--to", "q", "--limit", "2", "--storage", storage)
    assert "moved 2 messages from dlq to q" in out.stdout
    out = tidings("redrive", "dlq", "--to", "q", "--storage", storage)
    assert "moved 1 messages from dlq to q" in out.stdout
    peeked = tidings("peek", "q", "--storage", storage).stdout.splitlines()
    jobs = Counter(int(line.rsplit('"job": ', 1)[1].rstrip("}")) for line in peeked)
    assert jobs == Counter(range(5))  # none lost, none twice
    assert "has no messages" in tidings("peek", "dlq", "--storage", storage).stdout


def test_redrive_back_to_the_queue_that_names_the_dlq(storage: str) -> None:
    seed(storage)
    out = tidings("redrive", "dlq", "--storage", storage, check=False)
    assert out.returncode == 1 and "No queue names dlq" in out.stderr
    assert "--to QUEUE" in out.stderr

    async def name_the_dlq() -> None:
        driver = driver_from_url(storage)
        await driver.open()
        try:
            await driver.queues.set_metadata("demo", "q", {"_dead_letter_queue": "dlq",
                                                              "_max_claim_count": 1})
        finally:
            await driver.close()

    asyncio.run(name_the_dlq())
    out = tidings("redrive", "dlq", "--storage", storage)
    assert "moved 3 messages from dlq to q" in out.stdout


def test_pool_list_says_when_pooling_is_off(tmp_path: Path) -> None:
    out = tidings("pool", "list", "--storage", f"sqlite:///{tmp_path}/t.db")
    assert "pooling is off" in out.stdout and "TIDINGS_POOLING__ENABLED=true" in out.stdout
    # Nothing was opened, so nothing was created.
    assert list(tmp_path.iterdir()) == []


def test_the_project_is_the_servers_default(storage: str) -> None:
    seed(storage, project="ops")
    env = {**os.environ, "TIDINGS_AUTH__NOAUTH_PROJECT": "ops"}
    listed = subprocess.run([sys.executable, "-m", "tidings", "queues", "--storage", storage],
                            capture_output=True, text=True, timeout=60, env=env, check=True)
    assert {line.split()[0] for line in listed.stdout.splitlines()[1:]} == {"dlq", "q"}
