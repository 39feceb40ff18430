"""The SQLite group commit (storage/sqlite/writer.py): the writes of
concurrent requests share a transaction, and a job that fails undoes only
its own writes, whether it fails alone or among others."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tidings import errors
from tidings.storage.sqlite.writer import CommitThread, Writer


def connector(path: Path) -> Callable[[], sqlite3.Connection]:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS rows (name TEXT PRIMARY KEY)")
        return conn
    return connect


def rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return sorted(name for (name,) in conn.execute("SELECT name FROM rows"))


def insert(name: str) -> Callable[[sqlite3.Connection], str]:
    def job(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO rows VALUES (?)", (name,))
        return name
    return job


def insert_then_fail(name: str, error: Exception) -> Callable[[sqlite3.Connection], Any]:
    def job(conn: sqlite3.Connection) -> Any:
        conn.execute("INSERT INTO rows VALUES (?)", (name,))
        raise error
    return job


@pytest.fixture
async def writer(tmp_path: Path) -> Any:
    commits: list[int] = []
    made = Writer(connector(tmp_path / "w.db"), on_commit=lambda: commits.append(1))
    made.start()
    made.commits = commits  # type: ignore[attr-defined]
    yield made
    await made.stop()


async def test_concurrent_jobs_share_one_commit(writer: Writer, tmp_path: Path) -> None:
    names = [f"r{i}" for i in range(20)]
    results = await asyncio.gather(*(writer.run(insert(n)) for n in names))
    assert results == names
    assert rows(tmp_path / "w.db") == sorted(names)
    assert writer.commits == [1]  # type: ignore[attr-defined]


@pytest.mark.parametrize("error, expected", [
    (errors.MessageIsClaimed("claimed"), errors.MessageIsClaimed),
    # Anything else is the storage's fault: a 503, never a 500.
    (RuntimeError("bug"), errors.ServiceUnavailable),
])
async def test_a_failing_job_among_others_undoes_only_its_own_writes(
        writer: Writer, tmp_path: Path, error: Exception, expected: type) -> None:
    jobs = [insert("a"), insert("b"), insert_then_fail("bad", error), insert("c")]
    outcomes = await asyncio.gather(*(writer.run(job) for job in jobs), return_exceptions=True)
    assert outcomes[:2] == ["a", "b"] and outcomes[3] == "c"
    assert isinstance(outcomes[2], expected)
    assert rows(tmp_path / "w.db") == ["a", "b", "c"]
    assert writer.commits == [1]  # type: ignore[attr-defined]


async def test_a_job_failing_alone_leaves_nothing(writer: Writer, tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound):
        await writer.run(insert_then_fail("bad", errors.NotFound("gone")))
    assert await writer.run(insert("after")) == "after"
    assert rows(tmp_path / "w.db") == ["after"]


async def test_every_job_of_a_group_may_fail(writer: Writer, tmp_path: Path) -> None:
    jobs = [insert_then_fail(f"bad{i}", errors.Conflict("no")) for i in range(5)]
    outcomes = await asyncio.gather(*(writer.run(job) for job in jobs), return_exceptions=True)
    assert all(isinstance(outcome, errors.Conflict) for outcome in outcomes)
    assert rows(tmp_path / "w.db") == []


async def test_a_duplicate_key_fails_its_job_only(writer: Writer, tmp_path: Path) -> None:
    # The second insert of "x" breaks the primary key: an sqlite3 error
    # inside a job is that job's 503, not the group's.
    outcomes = await asyncio.gather(writer.run(insert("x")), writer.run(insert("x")),
                                    writer.run(insert("y")), return_exceptions=True)
    assert outcomes[0] == "x" and outcomes[2] == "y"
    assert isinstance(outcomes[1], errors.ServiceUnavailable)
    assert rows(tmp_path / "w.db") == ["x", "y"]


async def test_heavy_jobs_run_in_the_commit_thread_and_report_to_the_loop(
        writer: Writer, tmp_path: Path) -> None:
    threads: list[str] = []

    def heavy(conn: sqlite3.Connection) -> str:
        threads.append(threading.current_thread().name)
        return insert("heavy")(conn)

    assert await writer.run(heavy, heavy=True) == "heavy"
    with pytest.raises(errors.Conflict):
        await writer.run(insert_then_fail("bad", errors.Conflict("no")), heavy=True)
    assert threads == ["tidings-commit"]
    assert rows(tmp_path / "w.db") == ["heavy"]


async def test_the_commit_thread_hands_back_results_and_errors_and_drains_on_stop() -> None:
    commits = CommitThread(asyncio.get_running_loop())
    assert await commits.call(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        await commits.call(divmod, 1, 0)
    queued = [commits.call(pow, 2, n) for n in range(5)]
    commits.stop()  # returns once the calls queued before it ran
    assert await asyncio.gather(*queued) == [1, 2, 4, 8, 16]
