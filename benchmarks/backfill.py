"""Benchmark: one feature backfilled over many demo-sized versions, from launch to done, as
`keystroke-assets backfill -f FEATURE --all-versions [--here]` does it.

    python -m benchmarks.backfill --versions 20 --feature statistical --repeat 3          # the daemon
    python -m benchmarks.backfill --versions 20 --feature statistical --repeat 3 --here   # in process

It writes the demo's uploads (`keystroke-assets demo`: 12 generated participants), makes the
versions and materializes in-process what the feature reads. Daemon: it starts `dagster-daemon
run` on the project's assets (no sensors: automation would fill the other features meanwhile),
waits for the daemon's backfill loop, then times each backfill from launch until the daemon
marks it done. `--here`: it times the command's runs in this process, one per version. Prints
the seconds and the number of runs.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from keystroke_assets import commands
from keystroke_assets.definitions import defs
from keystroke_assets.partitions import dataset_versions, make_version_id
from keystroke_assets.resources import resources_from_env
from keystroke_assets.synthetic import demo_uploads, write_uploads

REPO = Path(__file__).resolve().parents[1]
DEMO_PARTICIPANTS = 12  # `keystroke-assets demo`'s default


def prepare(instance: dg.DagsterInstance, env: dict, feature: dg.AssetKey, n_versions: int) -> list[str]:
    write_uploads(env["KEYSTROKE_UPLOADS"], demo_uploads(DEMO_PARTICIPANTS, seed=0))
    start = datetime(2025, 9, 1, tzinfo=UTC)
    versions = [make_version_id("bench", start + timedelta(hours=i)) for i in range(n_versions)]
    instance.add_dynamic_partitions(dataset_versions.name, versions)
    inputs = dg.AssetSelection.assets(feature).upstream() - dg.AssetSelection.assets(feature)
    for version in versions:
        result = dg.materialize(
            list(defs.assets),
            selection=inputs,
            partition_key=version,
            instance=instance,
            resources=resources_from_env(env),
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )
        assert result.success
    return versions


def backfill_loop_running(instance: dg.DagsterInstance) -> bool:
    return "BACKFILL" in instance.get_daemon_heartbeats()


def run(n_versions: int, feature_name: str, repeat: int, workdir: Path, here: bool) -> None:
    # the repository's local instance, as `keystroke-assets demo` runs it: DAGSTER_HOME the folder
    # every process runs in, its storage under .dagster/ there
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "dagster.yaml").write_text((REPO / commands.LOCAL_INSTANCE).read_text())
    os.chdir(workdir)
    env = {"KEYSTROKE_UPLOADS": str(workdir / "uploads"), "KEYSTROKE_STORAGE": str(workdir / "storage")}
    os.environ.update({**env, "DAGSTER_HOME": str(workdir)})
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # run workers import Dagster from cached bytecode
    (feature,) = commands.resolve_assets([feature_name], defs.resolve_asset_graph())
    with dg.DagsterInstance.get() as instance:
        began = time.monotonic()
        versions = prepare(instance, env, feature, n_versions)
        print(f"{len(versions)} versions up to {feature.to_user_string()}'s inputs: {time.monotonic() - began:.0f} s")
        if here:
            for _ in range(repeat):
                began = time.time()
                outcome = commands.backfill([feature_name], "all", here=True)
                print(
                    f"backfill of {feature.to_user_string()} over {len(versions)} versions here, "
                    f"{len(versions)} runs ({'ok' if outcome == commands.EXIT_OK else 'FAILED'}): "
                    f"launch to done {time.time() - began:.1f} s",
                    flush=True,
                )
            return
        with_daemon(instance, workdir, feature, feature_name, versions, repeat)


def with_daemon(instance, workdir: Path, feature, feature_name: str, versions: list[str], repeat: int) -> None:
    workspace = workdir / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: benchmarks.backfill_defs\n"
        f"      working_directory: {REPO}\n      location_name: keystroke_assets_bench\n"
    )
    with open(workdir / "daemon.log", "wb") as log:
        daemon = subprocess.Popen(
            [Path(sys.executable).with_name("dagster-daemon"), "run", "-w", workspace],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while not backfill_loop_running(instance):
            time.sleep(0.5)
        for _ in range(repeat):
            began = time.time()
            assert commands.backfill([feature_name], "all") == commands.EXIT_OK
            (backfill_id,) = [b.backfill_id for b in instance.get_backfills() if b.status.value == "REQUESTED"]
            while (backfill := instance.get_backfill(backfill_id)).status.value == "REQUESTED":
                time.sleep(0.2)
            done = time.time()
            runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            failed = [r.dagster_run.run_id for r in runs if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS]
            first_run = min(r.create_timestamp.timestamp() for r in runs)
            stored = max(r.end_time for r in runs)
            print(
                f"backfill of {feature.to_user_string()} over {len(versions)} versions, {len(runs)} runs "
                f"({len(failed)} failed), {backfill.status.value}: launch to done {done - began:.1f} s; "
                f"launch to first run queued {first_run - began:.1f} s, to every version stored "
                f"{stored - began:.1f} s",
                flush=True,
            )
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--feature", default="statistical", help="asset or feature name, as the CLI takes it")
    parser.add_argument("--repeat", type=int, default=1, help="backfills timed one after another")
    parser.add_argument("--here", action="store_true", help="the command's runs in this process, not the daemon")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="keystroke-backfill-bench-") as tmp:
        run(args.versions, args.feature, args.repeat, Path(tmp), args.here)


if __name__ == "__main__":
    main()
