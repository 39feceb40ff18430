"""A real OpenStack Keystone for the auth tests (recipe: /work/shared/keystone.md).

keystone 30.0.0 from PyPI lives in its own virtual environment, cached in
``<repo>/.cache/keystone-venv`` between runs (reused when it imports). Each
session gets a fresh SQLite database and fernet keys in a temporary
directory, and one gunicorn process on a free loopback port:

- project ``admin``: user ``admin`` (role admin), Tidings' service user;
- project ``tidings-a``: ``a-member`` (member), ``a-admin`` (admin);
- project ``tidings-b``: ``b-member`` (member).

Setting up and seeding takes ~25 s (keystone-manage imports keystone four
times), so the seeded database and keys are kept as a template in
``<repo>/.cache/keystone-template-<hash>``; later sessions copy it, start
and re-point the catalog's endpoints at their own port (~3 s).
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.ports import free_port
from tests.support.venvs import CACHE, QUIET, ensure_venv, prebuild, run_checked

VENV = CACHE / "keystone-venv"
KEYSTONE_VERSION = "30.0.0"
ADMIN_PASSWORD = "s3cret"
PASSWORD = "pass-word"
# user -> (project, role)
USERS = {
    "a-member": ("tidings-a", "member"),
    "a-admin": ("tidings-a", "admin"),
    "b-member": ("tidings-b", "member"),
}

CONF = """\
[DEFAULT]
log_file = {base}/log/keystone.log
use_stderr = false

[database]
connection = sqlite:///{base}/keystone.db
# A test's Keystone need not survive a power cut: commits without fsync.
sqlite_synchronous = false

[token]
provider = fernet
expiration = 3600

[fernet_tokens]
key_repository = {base}/fernet-keys
max_active_keys = 3

[fernet_receipts]
key_repository = {base}/fernet-keys

[credential]
provider = fernet
key_repository = {base}/credential-keys

[identity]
# bcrypt's default 12 rounds cost ~250 ms a login; set before any user exists.
password_hash_rounds = 4

[resource]
# Without it every token claims is_admin_project=True.
admin_project_name = admin
admin_project_domain_name = Default

[cache]
# Without a cache one validation runs ~400 queries (~1 s). In-process, so
# gunicorn runs one worker: revocations are then seen at once.
enabled = true
backend = dogpile.cache.memory
"""

# keystone's app factory parses sys.argv with oslo.config; under gunicorn
# that is gunicorn's command line, which it rejects (workers exit with 2).
WSGI = """\
import sys

sys.argv = sys.argv[:1]

from keystone.wsgi.api import application  # noqa: E402,F401
"""


class KeystoneUnavailable(RuntimeError):
    """Keystone could not be installed or started."""


def _run(args: list[str], timeout: float, what: str) -> None:
    run_checked(args, timeout, what, KeystoneUnavailable)


VENV_REQUIREMENTS = (f"keystone=={KEYSTONE_VERSION}", "gunicorn")
VENV_CHECK = "import keystone, gunicorn"


def ensure_keystone_venv(venv: Path = VENV) -> Path:
    """The cached venv with keystone and gunicorn, created when missing or broken."""
    return ensure_venv(venv, VENV_REQUIREMENTS, VENV_CHECK, KeystoneUnavailable)


def prebuild_keystone_venv() -> None:
    """Start ``ensure_keystone_venv`` in the background (tests/support/venvs.py)."""
    prebuild(VENV, VENV_REQUIREMENTS, VENV_CHECK, KeystoneUnavailable)


@dataclass
class KeystoneServer:
    base: Path
    venv: Path = VENV
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # name -> id, filled by seed()
    projects: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return self.url + "/v3"

    @property
    def conf(self) -> Path:
        return self.base / "keystone.conf"

    def setup_files(self) -> None:
        """The configuration, the WSGI entry module and the directories."""
        for sub in ("fernet-keys", "credential-keys"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
            (self.base / sub).chmod(0o700)  # else "world readable" on every request
        (self.base / "log").mkdir(exist_ok=True)
        self.conf.write_text(CONF.format(base=self.base))
        (self.base / "ks_wsgi.py").write_text(WSGI)

    def setup(self) -> None:
        """Configuration, keys, schema and the bootstrap admin (~15 s)."""
        self.setup_files()
        manage = [str(self.venv / "bin" / "keystone-manage"), "--config-file", str(self.conf)]
        owner = ["--keystone-user", pwd.getpwuid(os.getuid()).pw_name,
                 "--keystone-group", grp.getgrgid(os.getgid()).gr_name]
        _run(manage + ["fernet_setup", *owner], 120, "keystone-manage fernet_setup")
        _run(manage + ["credential_setup", *owner], 120, "keystone-manage credential_setup")
        _run(manage + ["db_sync"], 300, "keystone-manage db_sync")
        _run(manage + ["bootstrap", "--bootstrap-password", ADMIN_PASSWORD,
                       "--bootstrap-admin-url", self.api, "--bootstrap-public-url", self.api,
                       "--bootstrap-internal-url", self.api,
                       "--bootstrap-region-id", "RegionOne"], 300, "keystone-manage bootstrap")

    def start(self, timeout: float = 60) -> None:
        log = open(self.base / "log" / "gunicorn.out", "ab")
        try:
            self.process = subprocess.Popen(
                [str(self.venv / "bin" / "gunicorn"), "--chdir", str(self.base),
                 # One thread: oslo.db opens SQLite transactions with a
                 # deferred BEGIN, so two concurrent logins (each reads the
                 # user, then writes its last_active_at) can deadlock, and
                 # SQLite fails one at once with "database is locked" (a 500).
                 "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--threads", "1",
                 "--timeout", "60", "--no-control-socket",
                 "--error-logfile", str(self.base / "log" / "gunicorn.log"),
                 "ks_wsgi:application"],
                env={**QUIET, "OS_KEYSTONE_CONFIG_FILES": str(self.conf)},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise KeystoneUnavailable(f"gunicorn exited with {self.process.returncode}; "
                                          f"see {self.base / 'log'}")
            try:
                if httpx.get(self.api, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise KeystoneUnavailable(f"keystone did not answer on {self.api} in {timeout}s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # gunicorn's master stops its workers on SIGTERM.
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session, started here
            self.process.wait(5)

    # --- the identity API -------------------------------------------------------

    def token(self, user: str, password: str = PASSWORD, project: str | None = None) -> str:
        """A project-scoped token (POST /v3/auth/tokens, password)."""
        if project is None:
            project = "admin" if user == "admin" else USERS[user][0]
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}},
        }}
        response = httpx.post(self.api + "/auth/tokens?nocatalog", json=body, timeout=10)
        response.raise_for_status()
        return response.headers["X-Subject-Token"]

    def admin_token(self) -> str:
        return self.token("admin", ADMIN_PASSWORD, "admin")

    def revoke(self, token: str) -> None:
        response = httpx.delete(self.api + "/auth/tokens", timeout=10, headers={
            "X-Auth-Token": self.admin_token(), "X-Subject-Token": token})
        response.raise_for_status()

    def seed(self) -> None:
        """Projects tidings-a and tidings-b and their users."""
        headers = {"X-Auth-Token": self.admin_token()}
        with httpx.Client(base_url=self.api, headers=headers, timeout=10) as api:
            listed = api.get("/roles").raise_for_status().json()["roles"]
            roles = {r["name"]: r["id"] for r in listed}
            for name in sorted({project for project, _ in USERS.values()}):
                created = api.post("/projects", json={"project": {
                    "name": name, "domain_id": "default"}}).raise_for_status()
                self.projects[name] = created.json()["project"]["id"]
            self.projects["admin"] = api.get("/projects", params={"name": "admin"}
                                             ).raise_for_status().json()["projects"][0]["id"]
            for user, (project, role) in USERS.items():
                project_id = self.projects[project]
                created = api.post("/users", json={"user": {
                    "name": user, "domain_id": "default", "password": PASSWORD,
                    "default_project_id": project_id}}).raise_for_status()
                user_id = created.json()["user"]["id"]
                api.put(f"/projects/{project_id}/users/{user_id}/roles/{roles[role]}"
                        ).raise_for_status()

    def register_messaging_endpoint(self, url: str) -> None:
        """``url`` as the catalog's public ``messaging`` endpoint, where
        OpenStack clients and tempest look Zaqar up; replaces an earlier one."""
        with httpx.Client(base_url=self.api, timeout=10,
                          headers={"X-Auth-Token": self.admin_token()}) as admin:
            services = admin.get("/services", params={"type": "messaging"}).raise_for_status()
            for service in services.json()["services"]:
                admin.delete(f"/services/{service['id']}").raise_for_status()
            service = admin.post("/services", json={"service": {
                "type": "messaging", "name": "tidings", "enabled": True}}).raise_for_status()
            admin.post("/endpoints", json={"endpoint": {
                "service_id": service.json()["service"]["id"], "interface": "public",
                "url": url, "region_id": "RegionOne"}}).raise_for_status()

    def repoint_endpoints(self) -> None:
        """The catalog's identity endpoints at this server's port."""
        headers = {"X-Auth-Token": self.admin_token()}
        with httpx.Client(base_url=self.api, headers=headers, timeout=10) as api:
            for endpoint in api.get("/endpoints").raise_for_status().json()["endpoints"]:
                api.patch(f"/endpoints/{endpoint['id']}",
                          json={"endpoint": {"url": self.api}}).raise_for_status()


TEMPLATE_FILES = ("keystone.db", "fernet-keys", "credential-keys")


def template_dir() -> Path:
    recipe = json.dumps([KEYSTONE_VERSION, CONF, ADMIN_PASSWORD, PASSWORD, USERS])
    return CACHE / f"keystone-template-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def _copy(names: tuple[str, ...], source: Path, target: Path) -> None:
    for name in names:
        if (source / name).is_dir():
            shutil.copytree(source / name, target / name, dirs_exist_ok=True)
        else:
            shutil.copy2(source / name, target / name)


# Held while a Keystone builds the template: tempest's Keystone starts in a
# thread beside the session's (tests/support/openstack_suites.py), and the
# second to come then copies the template instead of building it again.
_template_lock = threading.Lock()


def start_keystone(base: Path) -> KeystoneServer:
    """Install (or reuse) the venv, then start a seeded Keystone: from the
    template when there is one, else set up and seed it and save the template."""
    ensure_keystone_venv()
    template = template_dir()
    with _template_lock:
        if not (template / "projects.json").exists():
            return _start_and_save_template(base, template)
    server = KeystoneServer(base=base)
    try:
        server.setup_files()
        _copy(TEMPLATE_FILES, template, base)
        server.start()
        server.projects = json.loads((template / "projects.json").read_text())
        server.repoint_endpoints()
    except Exception:
        server.stop()
        raise
    return server


def _start_and_save_template(base: Path, template: Path) -> KeystoneServer:
    server = KeystoneServer(base=base)
    try:
        server.setup()
        server.start()
        server.seed()
    except Exception:
        server.stop()
        raise
    partial = template.with_name(template.name + f".tmp{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # SQLite is consistent on disk between requests; nothing writes now.
    _copy(TEMPLATE_FILES, base, partial)
    (partial / "projects.json").write_text(json.dumps(server.projects))
    try:
        partial.rename(template)
    except OSError:  # another session saved it first
        shutil.rmtree(partial, ignore_errors=True)
    return server


def auth_env(keystone: KeystoneServer, **extra: str) -> dict[str, str]:
    """Settings for a Tidings server validating tokens with ``keystone``."""
    return {
        "TIDINGS_AUTH__STRATEGY": "keystone",
        "TIDINGS_AUTH__KEYSTONE__URL": keystone.url,
        "TIDINGS_AUTH__KEYSTONE__USERNAME": "admin",
        "TIDINGS_AUTH__KEYSTONE__PASSWORD": ADMIN_PASSWORD,
        "TIDINGS_AUTH__KEYSTONE__PROJECT_NAME": "admin",
        **extra,
    }
