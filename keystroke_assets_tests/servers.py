"""Dagster's servers as real processes for tests: webserver + daemon, or `keystroke-assets demo`
(which execs `dg dev`), on 127.0.0.1 with a temporary DAGSTER_HOME holding the
local instance settings (the repository's dagster.yaml, its folders under that home).

Each process runs in its own session (process group): a non-interactive shell's background jobs
ignore SIGTERM, a group leader of its own does not, and SIGTERM to the group also reaches the code
servers and run workers it started. `kill_daemon` SIGKILLs the daemon process alone, as a crash
would: the code server it started finishes the run in flight, then exits. Under `dg dev`,
`kill_dev_daemon` does the same, and `dg dev` then stops everything, as it does.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psutil
import pytest
import yaml
from dagster._core.instance.ref import InstanceRef

from .conftest import LOCAL_INSTANCE, REPO, _free_port, anchored

BIN = Path(sys.executable).parent
WORKSPACE = REPO / "workspace.yaml"
STOP_SECONDS = 20
# the daemon loops every few seconds anyway; shorter intervals only burn the CPU the runs need
FAST = {
    "KEYSTROKE_QUIET_SECONDS": "3",
    "KEYSTROKE_SENSOR_INTERVAL_SECONDS": "2",
    "KEYSTROKE_AUTOMATION_INTERVAL_SECONDS": "3",
}


def wait_for(
    condition: Callable, timeout_s: float, what: str, diagnostics: Callable[[], str] = str, every_s: float = 0.5
):
    """Poll `condition()` every `every_s` until it returns a truthy value, which is returned; after
    timeout_s, fail with `diagnostics()` (e.g. the servers' log tails)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}\n{diagnostics()}")


def dagster_home(path: Path) -> Path:
    """A DAGSTER_HOME with the repo's instance settings, their folders under it, and the community
    pop-up dismissed."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(yaml.safe_dump(anchored(yaml.safe_load(LOCAL_INSTANCE.read_text()), path)))
    (path / ".nux").mkdir(exist_ok=True)
    (path / ".nux" / "nux.yaml").write_text("seen: 1\n")
    return path


def server_env(env: dict) -> dict:
    env = {**os.environ, **FAST, **env}
    # every run worker imports Dagster and the code location: from cached bytecode, seconds
    # instead of tens of seconds
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


class Servers:
    """Process groups started for one test, their logs, and the webserver's address."""

    def __init__(self, home: Path, env: dict, logs: Path, cwd: Path = REPO):
        self.home, self.env, self.logs, self.cwd = home, env, logs, cwd
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.groups: list[subprocess.Popen] = []
        self.main: subprocess.Popen | None = None  # the webserver, or `dg dev`
        self.daemon: subprocess.Popen | None = None

    def start(self, name: str, argv: list) -> subprocess.Popen:
        with open(self.logs / f"{name}-{len(self.groups)}.log", "wb") as log:
            proc = subprocess.Popen(
                [str(a) for a in argv],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.groups.append(proc)
        return proc

    def start_daemon(self, workspace: Path = WORKSPACE) -> None:
        self.daemon = self.start("daemon", [BIN / "dagster-daemon", "run", "-w", workspace])

    def kill_daemon(self) -> None:
        """SIGKILL the daemon process alone, as a crash would."""
        self.daemon.kill()
        self.daemon.wait(timeout=STOP_SECONDS)

    def start_demo(self, participants: int = 1) -> None:
        """`keystroke-assets demo` (which execs `dg dev`) on a new port."""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.main = self.start(
            "demo", [BIN / "keystroke-assets", "demo", "--participants", participants, "--port", self.port]
        )

    def kill_dev_daemon(self) -> None:
        """SIGKILL the daemon of `dg dev`; `dg dev` then shuts the rest down and exits."""
        (daemon,) = [
            p for p in psutil.Process(self.main.pid).children(recursive=True) if "dagster._daemon" in p.cmdline()
        ]
        daemon.kill()
        self.main.wait(timeout=60)

    def wait_until_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.main.poll() is not None:
                raise RuntimeError(f"{self.main.args[0]} exited: see {self.logs}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"no answer from {self.url}/server_info after {timeout} s: see {self.logs}")

    def graphql(self, query: str) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql", json.dumps({"query": query}).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.load(r)["data"]

    def log_tails(self, chars: int = 2500) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in sorted(self.logs.glob("*.log"))
        )

    def stop(self) -> None:
        stop_groups(self.groups)


def stop_groups(groups: list[subprocess.Popen]) -> None:
    """SIGTERM every process group, SIGKILL what is left after STOP_SECONDS (once seen: a code server
    and its gRPC child, both sent SIGTERM, each waiting on the other with further signals ignored)."""
    for proc in groups:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for proc in groups:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _signal_group(proc, signal.SIGKILL)  # code servers and run workers left in the group
        proc.wait(timeout=STOP_SECONDS)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


@contextmanager
def _running(servers: Servers):
    try:
        servers.wait_until_up()
        yield servers
    finally:
        servers.stop()


@contextmanager
def dagster_servers(home: Path, env: dict, logs: Path, before_daemon: Callable[[Servers], None] | None = None):
    """dagster-webserver and dagster-daemon on the repo's workspace, up and answering.
    `before_daemon(servers)` runs once the webserver answers, before the daemon starts (e.g. to stop
    the sensors); without it both start at once."""
    logs.mkdir(parents=True, exist_ok=True)
    with instance_at(dagster_home(home)):
        pass  # storage created once, before two processes race to create it
    servers = Servers(home, server_env({**env, "DAGSTER_HOME": str(home)}), logs)
    servers.main = servers.start(
        "webserver", [BIN / "dagster-webserver", "-h", "127.0.0.1", "-p", servers.port, "-w", WORKSPACE]
    )
    if before_daemon is None:
        servers.start_daemon()
    with _running(servers):
        if before_daemon is not None:
            before_daemon(servers)
            servers.start_daemon()
        yield servers


@contextmanager
def demo(folder: Path, env: dict, logs: Path, participants: int = 1):
    """`keystroke-assets demo` started in `folder`, a copy of the repository root's dagster.yaml and
    workspace.yaml, as in the README's Start, up and answering."""
    logs.mkdir(parents=True, exist_ok=True)
    for name in ("dagster.yaml", "workspace.yaml"):
        (folder / name).write_text((REPO / name).read_text())
    env = {
        k: v for k, v in server_env(env).items() if k not in ("DAGSTER_HOME", "KEYSTROKE_UPLOADS", "KEYSTROKE_STORAGE")
    }
    servers = Servers(folder, env, logs, cwd=folder)
    servers.start_demo(participants)
    with _running(servers):
        yield servers


@contextmanager
def instance_at(home: Path):
    """The servers' instance, opened from the test process (its relative folders are the home's)."""
    settings = anchored(yaml.safe_load((home / "dagster.yaml").read_text()), home)
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home), overrides=settings)) as instance:
        yield instance
