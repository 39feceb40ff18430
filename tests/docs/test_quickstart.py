"""The tested snippets of docs/quickstart.md, run against a real server.

The docs speak of http://127.0.0.1:8888 and the project "demo"; here they
run against the session's server, in a project of their own.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.docs.snippets import Snippet, marked_snippets
from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "docs" / "quickstart.md"
DOCS_URL = "http://127.0.0.1:8888"


def require_command(name: str) -> None:
    """Skip without ``name``, but fail under CI, where a skip would hide it."""
    if shutil.which(name) is None:
        message = f"{name} is not on PATH (Debian: scripts/test.sh installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def for_server(snippet: Snippet, url: str, project: str) -> str:
    return re.sub(r"\bdemo\b", project, snippet.code.replace(DOCS_URL, url))


def snippets(language: str) -> list[Snippet]:
    return [s for s in marked_snippets(QUICKSTART) if s.language == language]


def json_values(text: str) -> list[object]:
    """The JSON values printed one after another (curl adds no newline)."""
    decoder = json.JSONDecoder()
    values, index = [], 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index == len(text):
            return values
        value, index = decoder.raw_decode(text, index)
        values.append(value)


def stats(url: str, project: str) -> dict[str, int]:
    headers = {"X-Project-ID": project, "Client-ID": "3a6a4b6e-0e6f-4e0b-9a43-1b1f2d6c0d10"}
    reply = httpx.get(f"{url}/v2/queues/jobs/stats", headers=headers, timeout=10)
    reply.raise_for_status()
    return reply.json()["messages"]


def test_the_quickstart_marks_its_snippets() -> None:
    # Losing the markers would make the tests below pass on nothing.
    assert len(snippets("sh")) >= 6
    assert len(snippets("python")) >= 1


def test_curl_snippets_create_post_claim_and_delete(server: ServerProcess, project: str) -> None:
    require_command("bash")
    require_command("curl")
    script = "".join(for_server(s, server.url, project) for s in snippets("sh"))
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    created, posted, listed, claimed, *deleted, last = json_values(run.stdout)
    assert created == 201
    assert len(posted["resources"]) == 2  # type: ignore[index]
    assert [m["body"]["id"] for m in listed["messages"]] == [42, 43]  # type: ignore[index]
    assert [m["body"]["id"] for m in claimed["messages"]] == [42, 43]  # type: ignore[index]
    assert all("?claim_id=" in m["href"] for m in claimed["messages"])  # type: ignore[index]
    assert deleted == [204, 204]  # each claimed message deleted with its claim
    assert last == {"messages": {"claimed": 0, "free": 0, "total": 0}}
    assert stats(server.url, project)["total"] == 0


def test_python_snippet_posts_claims_and_deletes(server: ServerProcess, project: str) -> None:
    code = "".join(for_server(s, server.url, project) for s in snippets("python"))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    printed = [ast.literal_eval(line) for line in run.stdout.splitlines()]
    assert printed[:2] == [{"task": "resize", "id": 44}, {"task": "resize", "id": 45}]
    assert printed[2]["total"] == 0
    assert stats(server.url, project) == {"claimed": 0, "free": 0, "total": 0}
