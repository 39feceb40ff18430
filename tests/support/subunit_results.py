"""Read a subunit v2 stream (what tempest and ``subunit.run`` write) into JSON.

Run by the OpenStack suites' venv's interpreter, which has python-subunit
and testtools: ``python subunit_results.py < results.subunit`` prints one
JSON list of ``{"id", "status", "details"}``, one entry per test, with the
status subunit gives (``success``, ``fail``, ``skip``, ``xfail``, ...) and
the failure's traceback or the skip's reason as ``details``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def read_results(stream: Any) -> list[dict[str, str]]:
    import subunit
    import testtools

    results: list[dict[str, str]] = []

    def keep(test: dict[str, Any]) -> None:
        # Attachments tempest and stestr add to every test (its captured
        # log, pythonlogging) are noise; keep what explains a failure.
        details = "\n".join(
            content.as_text() for name, content in test["details"].items()
            if name in ("traceback", "reason"))
        results.append({"id": test["id"], "status": test["status"], "details": details})

    case = subunit.ByteStreamToStreamResult(stream, non_subunit_name="stdout")
    summary = testtools.StreamToDict(keep)
    summary.startTestRun()
    try:
        case.run(summary)
    finally:
        summary.stopTestRun()
    # Non-test output (the runner's own prints) arrives as "stdout" files
    # attached to no test; StreamToDict reports them with no status.
    return [r for r in results if r["status"] not in ("", "exists")]


if __name__ == "__main__":
    # Run as a script, this file's directory leads sys.path: its modules
    # (keystone.py, server.py, ...) must not shadow the suites' imports.
    sys.path.remove(str(Path(__file__).resolve().parent))
    json.dump(read_results(sys.stdin.buffer), sys.stdout)
