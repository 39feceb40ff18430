"""The tested snippet of docs/sqs.md, run against a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.docs.snippets import marked_snippets
from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DOCS_URL = "http://127.0.0.1:8888"


def test_boto3_snippet_sends_receives_and_deletes(sqlite_server: ServerProcess,
                                                  project: str) -> None:
    snippets = [s for s in marked_snippets(ROOT / "docs" / "sqs.md") if s.language == "python"]
    assert len(snippets) == 1  # losing the marker would make this pass on nothing
    code = snippets[0].code.replace(DOCS_URL, sqlite_server.url).replace('"demo"',
                                                                          repr(project))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["resize 44 640"]
