"""The wheel, as users get it: built from a copy of the source tree (a build
in place would leave build/ and egg-info directories behind), installed
into a fresh virtual environment, and run from there.

Building and installing take about a minute (the build backend and the
dependencies come from pip's cache), so it happens once per test run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess

REPO = Path(__file__).resolve().parents[2]
# What the build reads from the checkout.
SOURCE_FILES = ("pyproject.toml", "README.md")


@dataclass(frozen=True)
class Installed:
    source: Path  # the copy of the source tree the wheel was built from
    wheel: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


def clean_env() -> dict[str, str]:
    """The test run's environment without what would make the installed
    package import from the checkout, or configure its server."""
    return {k: v for k, v in os.environ.items()
            if k != "PYTHONPATH" and not k.startswith("TIDINGS_")}


def run(args: list[str | Path], timeout: float, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], check=False, env=clean_env(), cwd=cwd,
                          text=True, capture_output=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{args} -> {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def copy_source(target: Path) -> Path:
    target.mkdir()
    shutil.copytree(REPO / "src", target / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    for name in SOURCE_FILES:
        shutil.copy2(REPO / name, target / name)
    return target


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    source = copy_source(base / "source")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", base / "dist", source],
        timeout=600, cwd=source)
    wheels = list((base / "dist").glob("tidings-*.whl"))
    assert len(wheels) == 1, wheels
    venv = base / "venv"
    run([sys.executable, "-m", "venv", venv], timeout=120)
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheels[0]], timeout=900,
        cwd=base)
    return Installed(source, wheels[0], venv)


def test_the_wheel_holds_every_file_of_the_package(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    package = installed.source / "src" / "tidings"
    expected = {"tidings/" + path.relative_to(package).as_posix()
                for path in package.rglob("*") if path.is_file()}
    data = {name for name in expected if not name.endswith(".py")}
    assert data, "the package has files besides its modules (the web console's)"
    assert sorted(data - names) == []
    assert sorted(expected - names) == []
    assert [name for name in names if name.endswith(".pyc")] == []
    assert {name.split("/", 1)[0] for name in names} == {
        "tidings", f"tidings-{version(installed)}.dist-info"}


def version(installed: Installed) -> str:
    with open(installed.source / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]["version"]


def test_tidings_version(installed: Installed) -> None:
    done = run([installed.bin / "tidings", "--version"], timeout=60)
    assert done.stdout.strip() == f"tidings {version(installed)}"


@pytest.fixture
def installed_server(installed: Installed, tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(storage=f"sqlite:///{tmp_path}/tidings.db",
                           program=[str(installed.bin / "tidings")],
                           env={"PYTHONPATH": ""}, log_path=tmp_path / "server.log")
    server.start(timeout=60)
    yield server
    server.stop()


def test_the_installed_server_serves(installed: Installed, installed_server: ServerProcess,
                                     tmp_path: Path) -> None:
    # The module comes from the environment, not from the checkout.
    where = run([installed.bin / "python", "-c", "import tidings; print(tidings.__file__)"],
                timeout=60, cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(installed.venv), where

    headers = {"X-Project-ID": "wheel", "Client-ID": str(uuid.uuid4())}
    with httpx.Client(base_url=installed_server.url, headers=headers, timeout=10) as http:
        assert http.get("/v2/ping").status_code == 204
        assert http.put("/v2/queues/jobs").status_code == 201
        posted = http.post("/v2/queues/jobs/messages",
                           json={"messages": [{"body": {"task": "resize"}, "ttl": 300}]})
        assert posted.status_code == 201, posted.text
        claimed = http.post("/v2/queues/jobs/claims", json={"ttl": 60, "grace": 60})
        assert claimed.status_code == 201, claimed.text
        assert [m["body"] for m in claimed.json()["messages"]] == [{"task": "resize"}]


def test_the_installed_server_serves_the_console(installed_server: ServerProcess) -> None:
    """The console's static files came with the wheel."""
    with httpx.Client(base_url=installed_server.url, timeout=10) as http:
        page = http.get("/console")
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert "<title>" in page.text and "Tidings" in page.text
        for asset in ("app.js", "app.css"):
            assert http.get(f"/console/{asset}").status_code == 200, asset
