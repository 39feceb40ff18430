"""The ``openstack`` command (python-openstackclient) for the end-to-end tests.

Starting ``openstack`` costs seconds of imports, most of a command's time.
``OpenStackShell`` keeps one process for a cloud and runs each command in
it exactly as the console script does (``openstackclient.shell.main(argv)``,
a fresh shell per command), one JSON line in and one out. ``run_openstack``
runs the console script itself.

Run as a script, this file is that process's side:
``{"argv": [...]}`` in, ``{"returncode", "stdout", "stderr"}`` out.
"""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The console script beside this interpreter (both from the test environment).
OPENSTACK = Path(sys.executable).with_name("openstack")
TIMEOUT = 180.0


@dataclass
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def ok(self) -> Result:
        assert self.returncode == 0, self.failure()
        return self

    def json(self) -> Any:
        return json.loads(self.ok().stdout)

    def failure(self) -> str:
        return f"openstack {' '.join(self.args)} -> {self.returncode}\n{self.stderr[-3000:]}"


def cloud_env(clouds: Path, cloud: str, client_id: str) -> dict[str, str]:
    """The environment of a command for one cloud of ``clouds`` (a
    clouds.yaml): none of the caller's OS_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_CLIENT_CONFIG_FILE=str(clouds), OS_CLOUD=cloud,
               OS_MESSAGE_CLIENT_ID=client_id, PYTHONWARNINGS="ignore")
    return env


def run_openstack(env: dict[str, str], *args: str) -> Result:
    """The ``openstack`` console script, in a process of its own."""
    done = subprocess.run([str(OPENSTACK), *args], check=False, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    return Result(args, done.returncode, done.stdout, done.stderr)


class OpenStackShell:
    """``openstack`` commands for one cloud, one after another in one process."""

    def __init__(self, clouds: Path, cloud: str, client_id: str) -> None:
        self.env = cloud_env(clouds, cloud, client_id)
        self.process = subprocess.Popen(
            [sys.executable, __file__], env=self.env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def run(self, *args: str) -> Result:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"argv": list(args)}) + "\n")
        self.process.stdin.flush()
        # One request is in flight, so its one line is all there is to read.
        ready, _, _ = select.select([self.process.stdout], [], [], TIMEOUT)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"openstack {' '.join(args)}: no answer in {TIMEOUT}s "
                               f"(exit status {self.process.poll()})")
        answer = json.loads(line)
        return Result(args, answer["returncode"], answer["stdout"], answer["stderr"])

    def json(self, *args: str) -> Any:
        return self.run(*args, "-f", "json").json()

    def run_all(self, *commands: tuple[str, ...]) -> list[Result]:
        return [self.run(*command) for command in commands]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def serve() -> None:
    from openstackclient import shell

    answers = sys.stdout
    for line in sys.stdin:
        argv = json.loads(line)["argv"]
        out, err = io.StringIO(), io.StringIO()
        # The shell takes its streams from sys.* when it is made.
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = shell.main(argv)
            except SystemExit as exc:  # argparse refusing the arguments
                code = exc.code if isinstance(exc.code, int) else 1
        answers.write(json.dumps({"returncode": code, "stdout": out.getvalue(),
                                  "stderr": err.getvalue()}) + "\n")
        answers.flush()


if __name__ == "__main__":
    # Run as a script, this file's directory leads sys.path: its modules
    # (keystone.py, server.py, ...) must not shadow the client's imports.
    sys.path.remove(str(Path(__file__).resolve().parent))
    serve()
