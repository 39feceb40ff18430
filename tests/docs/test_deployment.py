"""The files of deploy/ are sound: the systemd unit verifies, the
Containerfile's commands name what exists and its healthcheck tells a live
server from a dead one, and nginx carries HTTP and WebSocket requests to a
real server with the example configuration."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.support.ports import free_port
from tests.support.server import ServerProcess
from tidings.cli import parser
from tidings.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "tidings.service"
CONTAINERFILE = DEPLOY / "Containerfile"
NGINX_CONF = DEPLOY / "nginx.conf"
INSTALL_PREFIX = "/opt/tidings/bin/"


def find_command(name: str, *extra_dirs: str) -> str:
    """The path of ``name``; skip without it, but fail under CI."""
    path = shutil.which(name) or next(
        (str(Path(d) / name) for d in extra_dirs if (Path(d) / name).exists()), None)
    if path is None:
        message = f"{name} is not installed (Debian: scripts/test.sh installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def unit_entries(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file, every value of repeated keys."""
    entries: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            entries.setdefault(key.strip(), []).append(value.strip())
    return entries


# --- the systemd unit ----------------------------------------------------------


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = find_command("systemd-analyze")
    # The unit names the installed command; here it is the checkout's.
    installed = Path(sys.executable).parent / "tidings"
    unit = tmp_path / "tidings.service"
    unit.write_text(UNIT.read_text().replace(INSTALL_PREFIX + "tidings", str(installed)))
    run = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                         timeout=60)
    # Unknown keys are only warned about, so the output must be empty too.
    assert run.returncode == 0 and run.stderr.strip() == "", run.stderr


def test_systemd_unit_is_hardened_and_runs_a_real_command() -> None:
    entries = unit_entries(UNIT.read_text())
    for key, value in {"DynamicUser": "yes", "StateDirectory": "tidings",
                       "Restart": "on-failure", "NoNewPrivileges": "yes",
                       "ProtectSystem": "strict", "PrivateTmp": "yes"}.items():
        assert entries.get(key) == [value], key
    assert entries["CapabilityBoundingSet"] == [""]
    command = shlex.split(entries["ExecStart"][0])
    assert command[0] == INSTALL_PREFIX + "tidings"
    args = parser().parse_args(command[1:])
    assert args.command == "serve" and args.config == "/etc/tidings/tidings.toml"
    # The TOML file decides the storage: a TIDINGS_* variable would override it.
    assert not any(v.startswith("TIDINGS_") for v in entries.get("Environment", []))
    settings = load_settings(DEPLOY / "tidings.toml", environ={})
    # The data lives in the state directory.
    assert settings.storage == "sqlite:////var/lib/tidings/tidings.db"
    assert entries["WorkingDirectory"] == ["/var/lib/tidings"]
    # Started means ready: the readiness probe of the same configuration.
    post = shlex.split(entries["ExecStartPost"][0])
    assert post[0] == INSTALL_PREFIX + "tidings"
    ready = parser().parse_args(post[1:])
    assert ready.command == "ready" and ready.config == args.config and ready.wait > 0
    # Documentation= may name only what an installation has.
    assert "Documentation" not in entries


# --- the Containerfile ---------------------------------------------------------


def containerfile_instructions() -> list[tuple[str, str]]:
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def test_containerfile_copies_what_exists_and_runs_tidings_serve() -> None:
    instructions = containerfile_instructions()
    bases = [rest for word, rest in instructions if word == "FROM"]
    assert bases and all(re.match(r"python:3\.1[1-9]-slim-\w+", b) for b in bases)
    for word, rest in instructions:
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("VOLUME", "/var/lib/tidings") in instructions
    environ = dict(re.findall(r"(TIDINGS_\w+)=(\S+)", " ".join(
        rest for word, rest in instructions if word == "ENV")))
    settings = load_settings(environ=environ)
    assert settings.host == "0.0.0.0"
    # The SQLite file (a relative path by default) lands in the volume.
    assert "TIDINGS_STORAGE" not in environ and settings.storage.startswith("sqlite:///./")
    workdirs = [rest for word, rest in instructions if word == "WORKDIR"]
    assert workdirs[-1] == "/var/lib/tidings"
    command = json.loads(next(rest for word, rest in instructions if word == "CMD"))
    assert command[0] == "tidings" and parser().parse_args(command[1:]).command == "serve"


def healthcheck_command() -> list[str]:
    rest = next(rest for word, rest in containerfile_instructions() if word == "HEALTHCHECK")
    return json.loads(rest[rest.index("CMD") + 3:].strip())


def test_container_healthcheck_passes_on_a_live_server_and_fails_on_a_dead_one(
        server: ServerProcess) -> None:
    command = healthcheck_command()
    assert command[:2] == ["tidings", "ready"]
    # The image's environment, as the healthcheck sees it: every interface.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    environ["TIDINGS_HOST"] = "0.0.0.0"
    program = [sys.executable, "-m", "tidings", *command[1:]]
    live = subprocess.run(program, capture_output=True, text=True,
                          env={**environ, "TIDINGS_PORT": str(server.port)}, timeout=30)
    assert live.returncode == 0, live.stderr
    assert live.stdout.strip().endswith("/readyz: ready")
    dead = subprocess.run(program, capture_output=True, text=True,
                          env={**environ, "TIDINGS_PORT": str(free_port())}, timeout=30)
    assert dead.returncode != 0
    assert dead.stderr.startswith("tidings:") and "/readyz is not ready" in dead.stderr


# --- nginx in front of a server --------------------------------------------------


@pytest.fixture(scope="session")
def nginx_proxy(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[str]:
    """nginx with deploy/nginx.conf, its upstreams and port pointed at the
    session's server; the proxy's URL."""
    nginx = find_command("nginx", "/usr/sbin")
    prefix = tmp_path_factory.mktemp("nginx")
    port = free_port()
    conf = NGINX_CONF.read_text()
    conf = re.sub(r"server 127\.0\.0\.1:\d+", f"server 127.0.0.1:{server.port}", conf)
    conf = re.sub(r"listen \d+;", f"listen 127.0.0.1:{port};", conf)
    conf = re.sub(r"^pid .*;$", f"pid {prefix}/nginx.pid;", conf, flags=re.M)
    (prefix / "nginx.conf").write_text(conf)
    base = [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
    check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([*base, "-g", "daemon off;"], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "nginx did not answer"
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def test_nginx_config_carries_http_requests(nginx_proxy: str, project: str) -> None:
    headers = {"X-Project-ID": project, "Client-ID": str(uuid.uuid4())}
    with httpx.Client(base_url=nginx_proxy, headers=headers, timeout=10) as http:
        assert http.put("/v2/queues/jobs").status_code == 201
        posted = http.post("/v2/queues/jobs/messages",
                           json={"messages": [{"ttl": 300, "body": {"n": 1}}]})
        assert posted.status_code == 201
        listed = http.get("/v2/queues/jobs/messages", params={"echo": "true"})
        assert [m["body"] for m in listed.json()["messages"]] == [{"n": 1}]


def test_nginx_config_passes_the_probes_without_headers(nginx_proxy: str) -> None:
    assert httpx.get(nginx_proxy + "/readyz", timeout=10).text == "ready\n"
    assert httpx.get(nginx_proxy + "/healthz", timeout=10).text == "ok\n"


def test_nginx_config_carries_websocket_upgrades(nginx_proxy: str, project: str) -> None:
    headers = {"X-Project-ID": project, "Client-ID": str(uuid.uuid4())}
    ws_url = nginx_proxy.replace("http://", "ws://") + "/"
    with connect(ws_url, open_timeout=10) as socket:
        for action, body in (("queue_create", {"queue_name": "ws-jobs"}),
                             ("queue_list", {})):
            socket.send(json.dumps({"action": action, "headers": headers, "body": body}))
            reply = json.loads(socket.recv(timeout=10))
            assert reply["request"]["action"] == action
            assert reply["headers"]["status"] in (200, 201), reply
    assert [q["name"] for q in reply["body"]["queues"]] == ["ws-jobs"]
