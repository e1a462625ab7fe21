"""Benchmark: generate N participants' uploads, materialize the whole chain of one version
in-process, print per asset wall seconds, keystrokes per second and peak RSS.

    python -m benchmarks.bench --participants 600
    python -m benchmarks.bench --participants 600 --format aalto
    python -m benchmarks.bench --participants 600 --incremental   # then a version with 1 % more
    python -m benchmarks.bench --participants 600 --instance DIR  # on DIR/dagster.yaml's instance
"""

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from keystroke_assets.partitions import dataset_versions, make_version_id
from keystroke_assets.resources import resources_from_env
from keystroke_assets.synthetic import aalto_uploads, demo_uploads, web_app_uploads, write_uploads

_PAGE = os.sysconf("SC_PAGE_SIZE")


class RssSampler(threading.Thread):
    """Samples this process's resident set every few ms, to find each step's peak."""

    def __init__(self, every: float = 0.005):
        super().__init__(daemon=True)
        self.every, self.samples, self.running = every, [], True

    def run(self):
        with open("/proc/self/statm") as statm:
            while self.running:
                statm.seek(0)
                self.samples.append((time.time(), int(statm.read().split()[1]) * _PAGE))
                time.sleep(self.every)

    def peak(self, start: float, end: float) -> int:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)


def keystroke_count(storage: Path, version: str) -> int:
    """Keystrokes of the version: presses of web-app files plus Aalto rows."""
    events = pq.read_table(storage / "raw_data" / f"{version}.parquet", columns=["event"]).column("event").to_pandas()
    return int((events != "R").sum())


PAIRING = "keypairs: pairing alone"
# mixed: web-app desktops and phones (Unidentified keys, holds of a few ms, empty keys) and ~10 % Aalto
GENERATORS = {"mixed": demo_uploads, "web_app": web_app_uploads, "aalto": aalto_uploads}


def time_pairing(storage: Path, version: str) -> tuple[float, float, float]:
    """(seconds, start, end) of `keystrokes.keypairs` over the version's cleaned_data, shard by
    shard as the keypairs step pairs it: seconds in the pairing only, without reading, writing,
    plots or checks (the keypairs throughput); start and end bound the whole pass."""
    from keystroke_assets.keystrokes import keypairs
    from keystroke_assets.resources.parquet_io_manager import ParticipantShards

    seconds, start = 0.0, time.time()
    with open(storage / "cleaned_data" / f"{version}.parquet", "rb") as f:
        for events in ParticipantShards(f).shards():
            began = time.time()
            keypairs(events)
            seconds += time.time() - began
    return seconds, start, time.time()


def every_asset(uploads: str, storage: str) -> dg.JobDefinition:
    """Every asset as one job on these stores and the code location's executor (in this process),
    run by `execute_job` as a run worker runs it. Not `dg.materialize`: that keeps every step's
    output in memory for its result."""
    from keystroke_assets.definitions import defs

    job = dg.define_asset_job("bench", selection=dg.AssetSelection.all())
    # the rest of the environment chooses the rest (KEYSTROKE_SEGMENT_WORKERS, KEYSTROKE_DASK_SCHEDULER)
    resources = resources_from_env({**os.environ, "KEYSTROKE_UPLOADS": uploads, "KEYSTROKE_STORAGE": storage})
    return dg.Definitions(
        assets=list(defs.assets), resources=resources, jobs=[job], executor=defs.executor
    ).resolve_job_def("bench")


def build(instance: dg.DagsterInstance, uploads: Path, storage: Path, creator: str) -> tuple[str, list[tuple]]:
    """Materialize every asset of a new version; return it and its rows (asset, seconds,
    keystrokes/s, peak RSS): every step, the pairing alone, the whole chain."""
    version = make_version_id(creator)
    sampler = RssSampler()
    sampler.start()
    instance.add_dynamic_partitions(dataset_versions.name, [version])
    job = dg.build_reconstructable_job(  # by module name: run as `-m`, this module is __main__
        "benchmarks.bench", "every_asset", reconstructable_kwargs={"uploads": str(uploads), "storage": str(storage)}
    )
    start = time.time()
    result = dg.execute_job(
        job,
        instance,
        tags={"dagster/partition": version},
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=True,
    )
    wall = time.time() - start
    chain_rss = sampler.peak(start, start + wall)  # the run's, not the pairing's below
    entries = [e for e in instance.all_logs(result.run_id) if e.dagster_event]
    keystrokes = keystroke_count(storage, version)
    pairing = time_pairing(storage, version)
    sampler.running = False
    rows, begun = [], {}
    for entry in entries:
        event = entry.dagster_event
        if event.event_type_value == "STEP_START":
            begun[event.step_key] = entry.timestamp
        elif event.event_type_value == "STEP_SUCCESS":
            seconds = event.event_specific_data.duration_ms / 1000
            rows.append(
                (
                    event.step_key.replace("__", "/"),
                    seconds,
                    keystrokes / seconds,
                    sampler.peak(begun[event.step_key], entry.timestamp),
                )
            )
    rows.append((PAIRING, pairing[0], keystrokes / pairing[0], sampler.peak(*pairing[1:])))
    rows.append(("whole chain (wall, with Dagster)", wall, keystrokes / wall, chain_rss))
    print(
        f"\nversion {version}: {keystrokes:,} keystrokes, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    print(f"{'asset':40} {'seconds':>8} {'keystrokes/s':>14} {'peak RSS MB':>12}")
    for name, seconds, rate, rss in rows:
        print(f"{name:40} {seconds:8.2f} {rate:14,.0f} {rss / 2**20:12.0f}")
    return version, rows


def prepare(participants: int, fmt: str, workdir: Path, seed: int = 0) -> tuple[Path, Path, Path]:
    """An empty data store and instance, and the uploads: generated, or kept from the last run
    with the same arguments (same bytes). Returns (uploads, data store, instance) folders."""
    uploads, storage, home = workdir / "uploads", workdir / "storage", workdir / "dagster_home"
    generated, wanted = workdir / "uploads.json", json.dumps([participants, fmt, seed])
    reuse = generated.exists() and generated.read_text() == wanted
    for folder in (storage, home) if reuse else (uploads, storage, home):
        shutil.rmtree(folder, ignore_errors=True)
    home.mkdir(parents=True)
    if reuse:
        print(f"reusing the {fmt} uploads for {participants} participants in {uploads}")
    else:
        t0 = time.time()
        files = write_uploads(uploads, GENERATORS[fmt](participants, seed))
        generated.write_text(wanted)
        print(f"generated {files} {fmt} upload objects for {participants} participants in {time.time() - t0:.1f} s")
    return uploads, storage, home


def run(
    participants: int,
    fmt: str,
    workdir: Path,
    seed: int = 0,
    incremental: bool = False,
    instance_home: Path | None = None,
) -> list[tuple]:
    """Build one version of `participants` participants; with `incremental`, then a second one
    in the same instance and data store with 1 % more participants (at least one), as a version
    made after new uploads arrive. The instance is a new SQLite one unless `instance_home` names
    a folder with a dagster.yaml (e.g. Postgres storage). Returns the rows of the last build."""
    uploads, storage, home = prepare(participants, fmt, workdir, seed)
    with (
        dg.DagsterInstance.from_config(str(instance_home))
        if instance_home
        else dg.instance_for_test(temp_dir=str(home))
    ) as instance:
        _, rows = build(instance, uploads, storage, "bench")
        if not incremental:
            return rows
        more = max(1, participants // 100)
        added = dict(GENERATORS[fmt](more, seed, first_index=participants))
        write_uploads(uploads, added.items())
        try:
            print(f"\nadded {len(added)} upload objects of {more} more participants")
            _, again = build(instance, uploads, storage, "bench-more")
        finally:  # the folder keeps what uploads.json says it holds
            for name in added:
                (uploads / name).unlink()
    print(
        f"\nthe version with {more} more participants took {again[-1][1] / rows[-1][1]:.0%} of the first build's time"
    )
    return again


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", "-n", type=int, default=600)
    parser.add_argument("--format", choices=list(GENERATORS), default="mixed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep generated data here and reuse its uploads on the next run with the same "
        "participants, format and seed (default: a temporary folder)",
    )
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="then build a second version with 1 %% more "
        "participants in the same instance and data store, and compare its time with the first",
    )
    parser.add_argument(
        "--instance",
        type=Path,
        help="a folder with the dagster.yaml of the instance to run on, "
        "e.g. Postgres storage as in production (default: a new SQLite instance, as `dagster dev` keeps)",
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.workdir:
        run(args.participants, args.format, args.workdir, args.seed, args.incremental, args.instance)
    else:
        with tempfile.TemporaryDirectory(prefix="keystroke-bench-") as tmp:
            run(args.participants, args.format, Path(tmp), args.seed, args.incremental, args.instance)


if __name__ == "__main__":
    main()
