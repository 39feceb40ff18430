"""Virtual environments for the real OpenStack parts the tests run.

Keystone, tempest and python-zaqarclient's functional tests each need
dozens of OpenStack packages whose pins clash with nothing of ours only
while they stay out of the project's own venv. Each gets a venv under
``<repo>/.cache/``, built once (a pip install takes ~1 min) and reused
while its check still imports.

A clean checkout has none of them, and building them one after the other,
each when a test first needs it, kept minutes of pip downloads and installs
on the suite's critical path. ``prebuild`` starts a build in a background
thread at the start of the session (tests/conftest.py), so the builds
overlap with each other and with the tests that need none of them;
``ensure_venv`` then waits for that build instead of starting its own.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
# OpenStack's libraries (oslo.service, eventlet, ...) warn on every import.
QUIET = {**os.environ, "PYTHONWARNINGS": "ignore"}


class VenvUnavailable(RuntimeError):
    """A cached venv could not be built (no network, a failed install)."""


def run_checked(args: Sequence[str], timeout: float, what: str,
                error: type[RuntimeError] = VenvUnavailable) -> None:
    """Run a setup command; raise ``error`` with its output when it fails."""
    result = subprocess.run(list(args), env=QUIET, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise error(f"{what} failed ({result.returncode}):\n"
                    f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def keyed_path(name: str, requirements: Sequence[str]) -> Path:
    """``<repo>/.cache/<name>-<hash of the requirements>``: a change of a pin
    builds a new venv beside the old one instead of patching it in place."""
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    return CACHE / f"{name}-{digest}"


# venv -> its build (or check), started by prebuild() or the first ensure_venv().
_builds: dict[Path, Future[Path]] = {}
_builds_lock = threading.Lock()


def _claim(venv: Path) -> tuple[Future[Path], bool]:
    """The build of ``venv``, and whether the caller must run it."""
    with _builds_lock:
        if venv in _builds:
            return _builds[venv], False
        _builds[venv] = Future()
        return _builds[venv], True


def _run_build(future: Future[Path], venv: Path, requirements: Sequence[str], check: str,
               error: type[RuntimeError]) -> None:
    try:
        future.set_result(_ensure_venv(venv, requirements, check, error))
    except BaseException as exc:  # handed to whoever waits for this venv
        future.set_exception(exc)


def prebuild(venv: Path, requirements: Sequence[str], check: str,
             error: type[RuntimeError] = VenvUnavailable) -> None:
    """Start making sure of ``venv`` (as ``ensure_venv`` does) in a background
    thread; a later ``ensure_venv`` of it waits for this and raises its error.
    The thread is a daemon: a session that ends first does not wait for pip."""
    future, mine = _claim(venv)
    if mine:
        threading.Thread(target=_run_build, args=(future, venv, requirements, check, error),
                         name=f"prebuild {venv.name}", daemon=True).start()


def ensure_venv(venv: Path, requirements: Sequence[str], check: str,
                error: type[RuntimeError] = VenvUnavailable) -> Path:
    """The venv at ``venv`` with ``requirements`` installed, built when
    missing or broken: reused when ``check`` (Python source) runs in it.
    Made sure of once a session; a build ``prebuild`` started is waited for."""
    future, mine = _claim(venv)
    if mine:
        _run_build(future, venv, requirements, check, error)
    return future.result()


def _ensure_venv(venv: Path, requirements: Sequence[str], check: str,
                 error: type[RuntimeError]) -> Path:
    python = venv / "bin" / "python"
    probe = [str(python), "-c", check]
    if python.exists() and subprocess.run(probe, env=QUIET, capture_output=True).returncode == 0:
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    run_checked([sys.executable, "-m", "venv", "--clear", str(venv)], 120,
                f"creating {venv.name}", error)
    run_checked([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                 *requirements], 900, f"pip install into {venv.name}", error)
    run_checked(probe, 120, f"the check of {venv.name}", error)
    return venv
