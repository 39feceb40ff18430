"""OpenStack's own test suites for Zaqar, run against a real Tidings server.

- tempest with zaqar-tempest-plugin: the API tests OpenStack runs to accept
  a messaging service. They need Keystone: tempest logs in as an admin,
  creates a project and a user for each test class (dynamic credentials)
  and finds the server as the ``messaging`` endpoint of Keystone's catalog.
  Most of its run is one test sleeping, so it runs in a thread beside the
  other tests, with a Keystone of its own (``start_tempest``).
- python-zaqarclient's functional tests (``tests/functional/queues/v2`` of
  its sdist, which the wheel does not ship): noauth, one endpoint, the
  project ``my-project``.

Both run in one venv under ``<repo>/.cache/``, keyed on the pinned versions
(tests/support/venvs.py), and write a subunit stream that
tests/support/subunit_results.py turns into one result per test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.keystone import ADMIN_PASSWORD, KeystoneServer, auth_env, start_keystone
from tests.support.server import ServerProcess
from tests.support.venvs import CACHE, QUIET, ensure_venv, keyed_path, prebuild

TEMPEST_VERSION = "47.0.0"
ZAQAR_TEMPEST_PLUGIN_VERSION = "4.3.0"
ZAQARCLIENT_VERSION = "4.7.0"
REQUIREMENTS = (
    f"tempest=={TEMPEST_VERSION}",
    f"zaqar-tempest-plugin=={ZAQAR_TEMPEST_PLUGIN_VERSION}",
    f"python-zaqarclient=={ZAQARCLIENT_VERSION}",
    # What the client's functional tests import besides the client: its
    # test-requirements.txt, and openstacksdk for openstack.config.
    "ddt==1.7.2",
    "fixtures==4.3.2",
    "testtools==2.9.1",
    "python-subunit==1.4.6",
    "openstacksdk==4.22.0",
)
CHECK = "import tempest, zaqar_tempest_plugin, zaqarclient, ddt, subunit, openstack.config"
TEMPEST_REGEX = "^zaqar_tempest_plugin"
# Every test of the plugin, and each must pass (Zaqar 23.0.1 passes them all).
TEMPEST_TESTS = 135
CLIENT_TESTS = "tests/functional/queues/v2"
SUBUNIT_READER = Path(__file__).with_name("subunit_results.py")
# tempest: ~150 s on two cores, 140 of them test_dead_letter_queue's two
# sleeps of 70 s; the client's suite: a few seconds.
TEMPEST_TIMEOUT = 1200.0
CLIENT_TIMEOUT = 300.0


class SuiteUnavailable(RuntimeError):
    """A suite could not be installed (no network, a failed install)."""


class SuiteBroken(RuntimeError):
    """A suite was installed but gave no results: never a reason to skip."""


def suites_venv() -> Path:
    """The cached venv holding both suites (built once, ~1.5 min)."""
    return ensure_venv(keyed_path("openstack-suites-venv", REQUIREMENTS), REQUIREMENTS,
                       CHECK, SuiteUnavailable)


def prebuild_suites_venv() -> None:
    """Start ``suites_venv`` in the background (tests/support/venvs.py)."""
    prebuild(keyed_path("openstack-suites-venv", REQUIREMENTS), REQUIREMENTS,
             CHECK, SuiteUnavailable)


def zaqarclient_sdist(venv: Path) -> Path:
    """python-zaqarclient's sdist, unpacked once under ``<repo>/.cache/``."""
    target = CACHE / f"python-zaqarclient-{ZAQARCLIENT_VERSION}-sdist"
    if (target / CLIENT_TESTS).is_dir():
        return target
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        done = subprocess.run(
            [str(venv / "bin" / "pip"), "download", "-q", "--disable-pip-version-check",
             "--no-binary", ":all:", "--no-deps", "-d", scratch,
             f"python-zaqarclient=={ZAQARCLIENT_VERSION}"],
            env=QUIET, capture_output=True, text=True, timeout=300)
        archives = list(Path(scratch).glob("*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise SuiteUnavailable("pip download python-zaqarclient failed:\n"
                                   + done.stderr[-2000:])
        with tarfile.open(archives[0]) as archive:
            # Extraction filters came in 3.11.4; Debian 12's Python is 3.11.2.
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(scratch, **safe)
        unpacked = next(p for p in Path(scratch).iterdir() if p.is_dir())
        try:
            unpacked.rename(target)
        except OSError:  # another run unpacked it first
            pass
    return target


@dataclass(frozen=True)
class Outcome:
    id: str
    status: str  # subunit's: success, fail, skip, xfail, uxsuccess
    details: str

    @property
    def name(self) -> str:
        """The id without tempest's attributes (``[id-...,smoke]``)."""
        return self.id.split("[", 1)[0]


@dataclass(frozen=True)
class SuiteResult:
    suite: str
    outcomes: tuple[Outcome, ...]
    seconds: float
    # The run's subunit stream and log, beside the servers' logs.
    workdir: Path | None = None

    def count(self, *statuses: str) -> int:
        return sum(1 for o in self.outcomes if o.status in statuses)

    @property
    def passed(self) -> int:
        return self.count("success", "xfail")

    @property
    def failed(self) -> int:
        return self.count("fail", "uxsuccess")

    @property
    def skipped(self) -> int:
        return self.count("skip")

    def failures(self) -> list[Outcome]:
        """The tests that did not pass: failed, or skipped."""
        return [o for o in self.outcomes if o.status not in ("success", "xfail")]

    def summary(self) -> str:
        return (f"{self.suite}: {self.passed} passed, {self.failed} failed, "
                f"{self.skipped} skipped in {self.seconds:.0f} s")

    def report(self, failures: Sequence[Outcome] | None = None) -> str:
        """The summary, then each failing (or skipped) test by name with its
        exception: what a red CI run has to show."""
        shown = self.failures() if failures is None else failures
        parts = [self.summary()]
        for outcome in sorted(shown, key=lambda o: o.id):
            parts.append(f"- {outcome.status.upper()} {outcome.name}")
            parts.extend(f"    {line}" for line in exception_lines(outcome.details))
        if shown and self.workdir is not None:
            parts.append(f"(logs and the subunit stream: {self.workdir})")
        return "\n".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "seconds": self.seconds, "outcomes": [
            {"id": o.id, "status": o.status, "details": o.details} for o in self.outcomes]}


# The first line of an exception in a traceback: "KeyError: 'location'",
# "tempest.lib.exceptions.BadRequest: Bad request" (not tempest's
# "Details: ..." line that follows it).
EXCEPTION_LINE = re.compile(r"^(\w+(\.\w+)+|\w*(Error|Exception|Failure)\w*): ")


def exception_lines(details: str, limit: int = 20) -> list[str]:
    """The last exception of a traceback (its message may span lines), or
    the end of ``details`` (a skip's reason) when none is found."""
    lines = [line for line in details.rstrip().splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if EXCEPTION_LINE.match(line)]
    first = starts[-1] if starts else max(0, len(lines) - limit)
    return lines[first:first + limit]


def read_subunit(venv: Path, stream: Path) -> list[Outcome]:
    with stream.open("rb") as source:
        done = subprocess.run([str(venv / "bin" / "python"), str(SUBUNIT_READER)], stdin=source,
                              env=QUIET, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SuiteBroken(f"reading {stream} failed:\n{done.stderr[-2000:]}")
    return [Outcome(r["id"], r["status"], r["details"]) for r in json.loads(done.stdout)]


def suite_env(**extra: str) -> dict[str, str]:
    """The environment of a suite: none of the caller's OS_* (OpenStack
    credentials) or TIDINGS_* variables, so a developer's shell changes nothing."""
    env = {k: v for k, v in QUIET.items() if not k.startswith(("OS_", "TIDINGS_", "ZAQAR"))}
    return {**env, **extra}


# The suites' processes now running, for stop_running_suites.
_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()


def stop_running_suites() -> None:
    """Kill every suite run still going (each with its workers)."""
    with _running_lock:
        for process in _running:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:  # it has just ended
                pass


def _run_suite(suite: str, venv: Path, args: list[str], cwd: Path, env: dict[str, str],
               out: Path, timeout: float) -> SuiteResult:
    """Run a suite writing subunit to ``out``, then read its outcomes. The
    runner's exit status only repeats what the outcomes say; a run that
    produced no outcome at all is the error."""
    log = out.with_suffix(".log")
    started = time.monotonic()
    with out.open("wb") as stdout, log.open("wb") as stderr:
        # Its own session: tempest's test workers are its children, and a
        # run that hangs (or outlives the test session) is stopped whole.
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=stdout, stderr=stderr,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        with _running_lock:
            _running.add(process)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise SuiteBroken(f"{suite} did not finish in {timeout:.0f} s; see {log}") from None
        finally:
            with _running_lock:
                _running.discard(process)
    if process.returncode < 0:
        raise SuiteBroken(f"{suite} was stopped (signal {-process.returncode})")
    seconds = time.monotonic() - started
    outcomes = read_subunit(venv, out)
    if not outcomes:
        raise SuiteBroken(f"{suite} ran no test; its log ({log}) ends:\n"
                          + log.read_text(errors="replace")[-3000:])
    return SuiteResult(suite, tuple(outcomes), seconds, out.parent)


# --- tempest ------------------------------------------------------------------------

TEMPEST_CONF = """\
[DEFAULT]
log_dir = {workspace}/logs
log_file = tempest.log
use_stderr = false

[oslo_concurrency]
lock_path = {workspace}/locks

[auth]
# tempest creates a project and a member user for each test class.
use_dynamic_credentials = true
create_isolated_networks = false
admin_username = admin
admin_password = {admin_password}
admin_project_name = admin
admin_domain_name = Default

[identity]
uri_v3 = {identity}
auth_version = v3
region = RegionOne

[service_available]
zaqar = true
nova = false
neutron = false
glance = false
cinder = false
swift = false

[validation]
run_validation = false

[messaging]
catalog_type = messaging
"""


def run_tempest(workdir: Path, tidings_url: str, keystone: KeystoneServer,
                venv: Path | None = None) -> SuiteResult:
    """zaqar-tempest-plugin's tests against the Tidings at ``tidings_url``,
    which must validate tokens with ``keystone``."""
    venv = venv or suites_venv()
    keystone.register_messaging_endpoint(tidings_url)
    workspace = workdir / "tempest"
    shutil.rmtree(workspace, ignore_errors=True)
    env = suite_env()
    # --workspace-path: tempest's registry of workspaces, else in ~/.tempest.
    init = subprocess.run(
        [str(venv / "bin" / "tempest"), "init", "--workspace-path",
         str(workdir / "workspaces.yaml"), str(workspace)],
        env=env, capture_output=True, text=True, timeout=300)
    if init.returncode != 0:
        raise SuiteBroken(f"tempest init failed:\n{init.stderr[-2000:]}")
    conf = workspace / "etc" / "tempest.conf"
    conf.write_text(TEMPEST_CONF.format(workspace=workspace, identity=keystone.api,
                                        admin_password=ADMIN_PASSWORD))
    return _run_suite(
        f"tempest {TEMPEST_VERSION} + zaqar-tempest-plugin {ZAQAR_TEMPEST_PLUGIN_VERSION}",
        venv, [str(venv / "bin" / "tempest"), "run", "--config-file", str(conf),
               "--regex", TEMPEST_REGEX, "--subunit"],
        workspace, env, workdir / "tempest.subunit", TEMPEST_TIMEOUT)


def tempest_verdict(result: SuiteResult) -> tuple[bool, str]:
    """Whether tempest reached the goal (every test passed), and its report."""
    return result.passed == TEMPEST_TESTS and not result.failures(), result.report()


def tempest_server_env(keystone: KeystoneServer) -> dict[str, str]:
    """Settings of the Tidings that tempest tests: Keystone auth, and
    notifications allowed to loopback, where test_trust_subscription's
    ``trust+http`` subscriber (this same server) listens."""
    # Tempest's dynamic credentials make Keystone busy (a user, project and
    # role per test class); on a loaded 2-core machine a token check then
    # outlasted the 5 s default and a class setup got 503.
    return auth_env(keystone, TIDINGS_NOTIFICATIONS__ALLOWED_NETWORKS="127.0.0.0/8",
                    TIDINGS_AUTH__KEYSTONE__TIMEOUT="30")


# --- tempest beside the other tests -----------------------------------------------

# This session's tempest run: started once, by whichever asks first.
_tempest: Future[SuiteResult] | None = None
_tempest_lock = threading.Lock()


def start_tempest(tmp_path_factory: pytest.TempPathFactory) -> Future[SuiteResult]:
    """tempest against a Tidings and a Keystone of its own (in a new
    temporary directory), run in a background thread; the session's first
    call starts it, later calls return the same run.

    Run inline, test_dead_letter_queue's 140 s of sleep were the suite's
    longest wait; started with the session, they pass while the other
    tests run (tests/conftest.py starts it, and runs tempest's tests last).
    The run needs little CPU besides its first seconds of class setups.
    Its own Keystone, because Keystone on SQLite answers 500 ("database is
    locked") when two requests write at once, as tempest's dynamic
    credentials and the session's other Keystone tests then would; and a
    test that registers its own server as the ``messaging`` endpoint would
    take tempest's away."""
    global _tempest
    with _tempest_lock:
        if _tempest is None:
            _tempest = Future()
            workdir = tmp_path_factory.mktemp("tempest")
            threading.Thread(target=_tempest_into, args=(_tempest, workdir),
                             name="tempest", daemon=True).start()
        return _tempest


def _tempest_into(result: Future[SuiteResult], workdir: Path) -> None:
    try:
        result.set_result(tempest_on(f"sqlite:///{workdir}/tidings.db", workdir))
    except BaseException as exc:  # handed to the test that waits for the result
        result.set_exception(exc)


def tempest_on(storage: str, workdir: Path, venv: Path | None = None) -> SuiteResult:
    """tempest against a Tidings on ``storage`` and a Keystone, both its
    own, started in ``workdir`` and stopped after the run."""
    venv = venv or suites_venv()
    keystone = start_keystone(workdir / "keystone")
    try:
        server = ServerProcess(storage=storage, env=tempest_server_env(keystone),
                               log_path=workdir / "tempest-server.log").start()
        try:
            return run_tempest(workdir, server.url, keystone, venv)
        finally:
            server.stop()
    finally:
        keystone.stop()


def stop_tempest() -> None:
    """At the end of the session: a run still going (the session was cut
    short) is killed, and its server stopped, instead of outliving pytest."""
    if _tempest is None or _tempest.done():
        return
    stop_running_suites()
    try:
        _tempest.result(timeout=60)
    except Exception:  # noqa: BLE001 - the run was killed; nothing waits for it
        pass


# --- python-zaqarclient ---------------------------------------------------------------

# The client's tests that fail against Zaqar 23 as well, and why
# (docs/compatibility.md says more). Every other test must pass.
CLIENT_EXPECTED_FAILURES = {
    **{f"test_pool.QueuesV2PoolHttpFunctionalTest.test_pool_{op}":
       "registers a pool at mongodb://127.0.0.1:27017" for op in
       ("create", "delete", "get", "list", "update")},
    **{f"test_flavor.QueuesV2FlavorHttpFunctionalTest.test_flavor_{op}":
       "registers a pool at mongodb://127.0.0.1:27017" for op in
       ("create", "delete", "get", "list", "update")},
    "test_queues.QueuesV2QueueHttpFunctionalTest.test_queue_metadata_functional":
        "expects no _enable_encrypt_messages in the metadata, which Zaqar 23 returns",
    "test_queues.QueuesV2QueueHttpFunctionalTest.test_queue_metadata_reload_functional":
        "expects no _enable_encrypt_messages in the metadata, which Zaqar 23 returns",
    "test_queues.QueuesV2QueueHttpFunctionalTest.test_queue_exists_functional":
        "expects queue.exists() to raise, written for API v1.1; v2 answers HEAD with 405",
}
CLIENT_TESTS_TOTAL = 36
CLIENT_FLOOR = CLIENT_TESTS_TOTAL - len(CLIENT_EXPECTED_FAILURES)


def expected_client_failure(outcome: Outcome) -> str | None:
    """Why the client's test fails against Zaqar too, or None."""
    module_prefix = CLIENT_TESTS.replace("/", ".") + "."
    return CLIENT_EXPECTED_FAILURES.get(outcome.name.removeprefix(module_prefix))


def unexpected_client_failures(result: SuiteResult) -> list[Outcome]:
    """The client's failing tests that pass against Zaqar."""
    return [o for o in result.failures() if expected_client_failure(o) is None]


def client_report(result: SuiteResult) -> str:
    """The failures Zaqar does not have, with their exceptions, then those
    it has too, with the reason."""
    unexpected = unexpected_client_failures(result)
    lines = [result.report(unexpected), "failing against Zaqar 23 too (docs/compatibility.md):"]
    lines += [f"- {o.name}: {expected_client_failure(o)}"
              for o in result.failures() if o not in unexpected]
    return "\n".join(lines)


def client_verdict(result: SuiteResult) -> tuple[bool, str]:
    """Whether the client's suite reached the goal (no failure Zaqar does not
    have, at least the floor passed), and its report."""
    ok = not unexpected_client_failures(result) and result.passed >= CLIENT_FLOOR
    return ok, client_report(result)


def run_zaqarclient_functional(workdir: Path, endpoint: str,
                               venv: Path | None = None) -> SuiteResult:
    """python-zaqarclient's functional tests against the noauth server at
    ``endpoint``, as its tox environment "functional" runs them."""
    venv = venv or suites_venv()
    sdist = zaqarclient_sdist(venv)
    workdir.mkdir(parents=True, exist_ok=True)
    # The tests read their endpoint at import; ZAQAR_SERVICE_HOST spares
    # them finding this machine's outward address.
    env = suite_env(ZAQARCLIENT_TEST_FUNCTIONAL="1", ZAQAR_ENDPOINT=endpoint,
                    ZAQAR_SERVICE_HOST="127.0.0.1")
    return _run_suite(
        f"python-zaqarclient {ZAQARCLIENT_VERSION} functional",
        venv, [str(venv / "bin" / "python"), "-m", "subunit.run", "discover",
               "-s", CLIENT_TESTS, "-t", "."],
        sdist, env, workdir / "zaqarclient.subunit", CLIENT_TIMEOUT)

