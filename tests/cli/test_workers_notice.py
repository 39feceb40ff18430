"""`serve --workers N` on SQLite says once at start that one process is
recommended; other drivers and one process say nothing."""

from __future__ import annotations

from tidings.app import workers_notice
from tidings.config import Settings


def test_two_sqlite_workers_are_told_one_is_recommended() -> None:
    notice = workers_notice(Settings(workers=2, storage="sqlite:///./data/t.db"))
    assert notice is not None
    assert "one process is recommended" in notice and "docs/deployment.md" in notice


def test_one_process_and_other_drivers_get_no_notice() -> None:
    assert workers_notice(Settings(workers=1, storage="sqlite:///./data/t.db")) is None
    assert workers_notice(Settings(workers=2, storage="redis://127.0.0.1:6379/0")) is None
    assert workers_notice(Settings(workers=2, storage="postgres://u@127.0.0.1/db")) is None
