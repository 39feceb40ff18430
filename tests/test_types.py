"""src/tidings passes mypy with the project's configuration
([tool.mypy] in pyproject.toml), and each ``# type: ignore`` left says
on its own line which error it silences and why."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# mypy's incremental cache, beside the test suite's other caches: a clean
# checkout checks every module; later runs recheck what changed since.
MYPY_CACHE = ROOT / ".cache" / "mypy"


def test_mypy_finds_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(MYPY_CACHE)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues found" in done.stdout


# "# type: ignore[code]  # why": mypy's warn_unused_ignores removes those
# that silence nothing; this keeps the rest explained where they stand.
EXPLAINED_IGNORE = re.compile(r"# type: ignore\[[a-z-]+(, *[a-z-]+)*\]  # \S")


def test_each_type_ignore_names_its_error_and_says_why() -> None:
    unexplained = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "src").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "# type: ignore" in line and not EXPLAINED_IGNORE.search(line)
    ]
    assert not unexplained, "\n".join(unexplained)
