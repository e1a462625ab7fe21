"""A run killed with SIGKILL mid-step leaves nothing behind (docs/reliability.md): its processes
are gone within seconds (a pooled step's fork server and workers included), run monitoring fails
it so the version's next queued run starts by itself, and every table then equals a clean build.

Two kills on the servers of the local instance settings: a queued run in a pooled raw_data step,
and the CLI running a version in its own process (outside the queue, whose one-run-per-version
limit then holds the version's queued run until the CLI's run is failed). Each prints its figures
(run with -s): seconds until the killed run's processes are gone, until the next run starts.
"""

import os
import signal
import subprocess
import time

import dagster as dg
import psutil
import pytest

from keystroke_assets.partitions import dataset_versions
from keystroke_assets.run_launcher import run_process
from keystroke_assets.synthetic import aalto_uploads, web_app_uploads, write_uploads

from .clean_build import assert_same_tables, clean_build, tables
from .conftest import stored
from .servers import BIN, dagster_servers, instance_at, server_env, wait_for
from .test_concurrency import DONE, QUIET, launch

pytestmark = pytest.mark.servers

POOLED, IN_PROCESS = "2025-11-01_00-00-00_lab-pool", "2025-11-01_00-00-00_lab-cli"
STAGES = ["web_app_data", "raw_data", "cleaned_data", "keystrokes", "keypairs"]
# one participant per segment: raw_data's pooled work lasts long enough to be caught mid-step
SMALL_SEGMENTS = {"ops": {"raw_data": {"config": {"participants_per_segment": 1}}}}
CATCH_S = 0.05  # how often a race is polled: the step being killed lasts about a second
NO_RERUN = {"dagster/max_retries": "0"}  # the next run is the queued one: no run_retries re-run to wait for


def tree(pid: int) -> list[psutil.Process]:
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE  # dead, not yet reaped
    except psutil.NoSuchProcess:
        return True


def events_of(instance, run_id: str, kind: str) -> list:
    return instance.all_logs(run_id, of_type=dg.DagsterEventType[kind])


def kill_and_follow(instance, run_id: str, pid: int, next_run: str, logs) -> tuple[float, float]:
    """SIGKILL the run's process; return the seconds until every process it had is gone, and
    until `next_run` (queued behind it) starts."""
    processes = tree(pid)
    killed = time.time()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: all(map(gone, processes)), 10, "the killed run's processes to end", logs)
    ended = time.time() - killed
    started = wait_for(lambda: events_of(instance, next_run, "RUN_START"), 120, "the next run to start", logs)
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    return ended, started[0].timestamp - killed


def all_done(instance, version: str) -> bool:
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": version}))
    return all(r.status in DONE for r in runs)


def test_a_run_killed_mid_step_leaves_nothing_and_the_next_run_starts_by_itself(tmp_path):
    uploads, storage, home = tmp_path / "uploads", tmp_path / "storage", tmp_path / "home"
    write_uploads(uploads, web_app_uploads(24, seed=9, broken_every=6))
    write_uploads(uploads, aalto_uploads(2, seed=9))
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(storage), **QUIET}
    with (
        dagster_servers(home, {**env, "KEYSTROKE_SEGMENT_WORKERS": "2"}, tmp_path / "logs") as servers,
        instance_at(home) as instance,
    ):
        instance.add_dynamic_partitions(dataset_versions.name, [POOLED, IN_PROCESS])

        # 1. a queued run, killed while raw_data's segments are computed in its pool
        first = launch(servers.url, POOLED, STAGES, SMALL_SEGMENTS, NO_RERUN)
        second = launch(servers.url, POOLED, STAGES, SMALL_SEGMENTS)  # queued behind it: one run per version
        summaries = storage / "raw_data" / "segments"

        def mid_raw_data():
            recorded = run_process(instance, first)
            done = (storage / "raw_data" / f"{POOLED}.segments.json").exists()
            started = summaries.exists() and any(p.suffix == ".json" for p in summaries.iterdir())
            pool = recorded and any("forkserver" in " ".join(p.cmdline()) for p in tree(recorded[0])[1:])
            return recorded and not done and started and pool and recorded[0]

        pid = wait_for(mid_raw_data, 180, "the first run's pooled raw_data step", servers.log_tails, CATCH_S)
        pooled = kill_and_follow(instance, first, pid, second, servers.log_tails)
        assert not events_of(instance, first, "STEP_SUCCESS")[1:]  # web_app_data only: killed inside raw_data
        wait_for(lambda: all_done(instance, POOLED), 300, "the version's runs to end", servers.log_tails)
        assert instance.get_run_by_id(second).status == dg.DagsterRunStatus.SUCCESS

        # 2. the CLI running a version in its own process, killed inside keypairs
        cli = subprocess.Popen(
            [BIN / "keystroke-assets", "materialize", "--version", IN_PROCESS, "-f", "keystrokes", "-f", "keypairs"],
            env=server_env({**env, "DAGSTER_HOME": str(home), "KEYSTROKE_SEGMENT_WORKERS": "1"}),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            cli_run = wait_for(
                lambda: next((r.run_id for r in instance.get_runs() if r.tags.get("keystroke/cli")), None),
                120,
                "the CLI's run",
                servers.log_tails,
            )
            queued = launch(servers.url, IN_PROCESS, STAGES)

            def in_keypairs():
                return any(e.step_key == "keypairs" for e in events_of(instance, cli_run, "STEP_START"))

            wait_for(in_keypairs, 180, "the CLI's run to reach keypairs", servers.log_tails, CATCH_S)
            assert instance.get_run_by_id(queued).status == dg.DagsterRunStatus.QUEUED
            in_process = kill_and_follow(instance, cli_run, cli.pid, queued, servers.log_tails)
        finally:
            cli.kill()
            cli.wait()
        assert "keypairs" not in {e.step_key for e in events_of(instance, cli_run, "STEP_SUCCESS")}
        wait_for(lambda: all_done(instance, IN_PROCESS), 300, "the version's runs to end", servers.log_tails)
        assert instance.get_run_by_id(queued).status == dg.DagsterRunStatus.SUCCESS

    print(
        f"\npooled run killed: its processes gone after {pooled[0]:.1f} s, the next run started after {pooled[1]:.1f} s"
        f"\nCLI run killed: its processes gone after {in_process[0]:.1f} s, the next run started after "
        f"{in_process[1]:.1f} s"
    )
    assert not list(storage.rglob(".tmp-*"))  # what the killed writes left, the next runs removed
    for version, config in [(POOLED, SMALL_SEGMENTS), (IN_PROCESS, None)]:
        manifest = stored(storage, "web_app_data", version)
        clean = clean_build({version: manifest}, uploads, tmp_path / f"clean-{version}", run_config=config)
        assert_same_tables(tables(storage, version), tables(clean, version))
