"""Benchmark: generate N participants' uploads, materialize the whole chain of one version
in-process, print per asset its step's wall seconds, when it was materialized, its rows and
segments computed and reused, keystrokes per second and peak RSS; then the events stored, the
CPU and the cores used.

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
import textwrap
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import psutil

from keystroke_assets.partitions import dataset_versions, make_version_id
from keystroke_assets.resources import resources_from_env
from keystroke_assets.synthetic import aalto_uploads, demo_uploads, web_app_uploads, write_uploads


def process_tree() -> list[psutil.Process]:
    """This process and every process it started, directly or not."""
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


class TreeSampler(threading.Thread):
    """Samples every few ms the resident set of the process tree (`process_tree`), summed, to
    find each step's peak. Here this process is the run worker and runs every step (the in-process
    executor); its children are what a step starts (a segment pool's fork server and workers) and
    Dagster's own. A Dask cluster's workers run elsewhere and are not counted. Pages shared between
    processes count in each. The tree is listed again every `relist` samples: listing reads every
    process of the machine."""

    def __init__(self, every: float = 0.005, relist: int = 20):
        super().__init__(daemon=True)
        self.every, self.relist, self.samples, self.running = every, relist, [], True

    def run(self):
        sampled = 0
        while self.running:
            if sampled % self.relist == 0:
                tree = process_tree()
            self.samples.append((time.time(), sum(map(resident, tree))))
            sampled += 1
            time.sleep(self.every)

    def peak(self, start: float, end: float) -> int:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)


def resident(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.NoSuchProcess:  # ended since the tree was listed
        return 0


def cpu_seconds() -> float:
    """CPU seconds so far of the process tree: each live process's own, plus its children's that
    it has waited for (an ended child's seconds move to its parent then, so none counts twice)."""
    seconds = 0.0
    for process in process_tree():
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        seconds += times.user + times.system + times.children_user + times.children_system
    return seconds


def keystroke_count(storage: Path, version: str) -> int:
    """Keystrokes of the version: presses of web-app files plus Aalto rows."""
    return sum(int((events["event"] != "R").sum()) for events in _segments(storage, "raw_data", version, ["event"]))


def _segments(storage: Path, asset: str, version: str, columns: list[str] | None = None):
    """The version's table of `asset`, one stored segment after another."""
    from keystroke_assets.lib.segments import SegmentList
    from keystroke_assets.resources import object_store
    from keystroke_assets.resources.parquet_io_manager import read_segment, segment_list_name

    store = object_store(str(storage))
    for segment in SegmentList.from_json(store.read_bytes(segment_list_name(dg.AssetKey(asset), version))).segments:
        yield read_segment(store, segment, columns).to_pandas()


PAIRING = "keypairs: pairing alone"
CHAIN = "whole chain (wall, with Dagster)"
# mixed: web-app desktops and phones (Unidentified keys, holds of a few ms, empty keys) and ~10 % Aalto
GENERATORS = {"mixed": demo_uploads, "web_app": web_app_uploads, "aalto": aalto_uploads}
# the table's columns after the name: header and width
COLUMNS = [
    ("step s", 8),
    ("done at s", 9),
    ("rows", 11),
    ("segments computed", 17),
    ("segments reused", 15),
    ("keystrokes/s", 12),
    ("peak RSS MB", 11),
]
NAME_WIDTH = 34
TABLE_WIDTH = NAME_WIDTH + sum(1 + width for _, width in COLUMNS)
# integer metadata of a segmented asset's materialization
SEGMENTS = ("segments/computed", "segments/reused")


def time_pairing(storage: Path, version: str) -> tuple[float, float, float]:
    """(seconds, start, end) of `keypairs_from_events` over the version's cleaned_data, segment by
    segment as the keypairs step pairs it: seconds in the pairing only, without reading, writing,
    plots or checks (the keypairs throughput); start and end bound the whole pass."""
    from keystroke_assets.lib.latencies import keypairs_from_events

    seconds, start = 0.0, time.time()
    for events in _segments(storage, "cleaned_data", version):
        began = time.time()
        keypairs_from_events(events)
        seconds += time.time() - began
    return seconds, start, time.time()


def every_asset(uploads: str, storage: str, up_to: str = "") -> dg.JobDefinition:
    """Every asset (or `up_to`'s, comma-separated keys, and what they read) as one job on these
    stores and the code location's executor (in this process), run by `execute_job` as a run
    worker runs it. Not `dg.materialize`: that keeps every step's output in memory for its result."""
    from keystroke_assets.definitions import defs

    keys = [dg.AssetKey.from_user_string(k) for k in up_to.split(",") if k]
    selection = dg.AssetSelection.assets(*keys).upstream() if keys else dg.AssetSelection.all()
    job = dg.define_asset_job("bench", selection=selection)
    # the rest of the environment chooses the rest (KEYSTROKE_SEGMENT_WORKERS, KEYSTROKE_DASK_SCHEDULER)
    resources = resources_from_env({**os.environ, "KEYSTROKE_UPLOADS": uploads, "KEYSTROKE_STORAGE": storage})
    return dg.Definitions(
        assets=list(defs.assets), resources=resources, jobs=[job], executor=defs.executor
    ).resolve_job_def("bench")


class Asset(NamedTuple):
    key: str
    done_at: float  # seconds from its step's start to its materialization event
    metadata: dict  # of its materialization: name -> value

    def count(self, name: str) -> str:
        value = self.metadata.get(name)
        return "-" if value is None else f"{value:,}"


class Step(NamedTuple):
    name: str
    seconds: float
    peak_rss: int
    assets: list[Asset]


class Build(NamedTuple):
    version: str
    run_id: str
    wall: float


def steps_of(records: list, sampler: TreeSampler) -> list[Step]:
    """Every step of the run's event log in the order they ended, with the assets each
    materialized in the order it did."""
    steps, begun, made = [], {}, {}
    for record in records:
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type_value == "STEP_START":
            begun[event.step_key], made[event.step_key] = record.timestamp, []
        elif event.event_type_value == "ASSET_MATERIALIZATION":
            metadata = event.event_specific_data.materialization.metadata
            made[event.step_key].append(
                Asset(
                    event.asset_key.to_user_string(),
                    record.timestamp - begun[event.step_key],
                    {name: value.value for name, value in metadata.items()},
                )
            )
        elif event.event_type_value == "STEP_SUCCESS":
            steps.append(
                Step(
                    event.step_key.replace("__", "/"),
                    event.event_specific_data.duration_ms / 1000,
                    sampler.peak(begun[event.step_key], record.timestamp),
                    made[event.step_key],
                )
            )
    return steps


def table_line(name: str, *cells: str) -> str:
    return f"{name:{NAME_WIDTH}}" + "".join(f" {cell:>{width}}" for cell, (_, width) in zip(cells, COLUMNS))


def asset_cells(asset: Asset) -> list[str]:
    return [f"{asset.done_at:.2f}", asset.count("dagster/row_count"), *map(asset.count, SEGMENTS)]


def print_report(version, keystrokes, steps, pairing, wall, chain_rss, cpu, records) -> None:
    """The table: a line per asset; a step that makes several assets has a line of its own with
    the step's figures, its assets' lines below it. Then the totals."""
    print(
        f"\nversion {version}: {keystrokes:,} keystrokes, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    print(table_line("asset", *(header for header, _ in COLUMNS)))
    for step in steps:
        figures = (f"{keystrokes / step.seconds:,.0f}", f"{step.peak_rss / 2**20:.0f}")
        if len(step.assets) == 1:
            print(table_line(step.assets[0].key, f"{step.seconds:.2f}", *asset_cells(step.assets[0]), *figures))
            continue
        print(table_line(f"{step.name} ({len(step.assets)} assets)", f"{step.seconds:.2f}", "", "", "", "", *figures))
        for asset in step.assets:
            print(table_line(f"  {asset.key}", "", *asset_cells(asset)))
    for name, seconds, rss in ((PAIRING, pairing[0], pairing[1]), (CHAIN, wall, chain_rss)):
        print(table_line(name, f"{seconds:.2f}", "", "", "", "", f"{keystrokes / seconds:,.0f}", f"{rss / 2**20:.0f}"))
    print(
        "step s: the step's wall seconds, for all the assets it makes; "
        "done at s: from its start to the asset's materialization"
    )
    segments = [asset.metadata.get(name) for step in steps for asset in step.assets for name in SEGMENTS]
    if any(count is not None for count in segments):
        computed, reused = (sum(count or 0 for count in segments[i::2]) for i in (0, 1))
        print(f"segments: {computed:,} computed, {reused:,} reused")
    print(
        f"cores used: {cpu / wall:.2f} of the machine's {os.cpu_count()} "
        f"({cpu:.2f} CPU s of this process and its child processes over {wall:.2f} s wall)"
    )
    print(
        f"peak RSS: {chain_rss / 2**20:.0f} MB, this process (the run worker, every step) "
        "and its child processes summed"
    )
    types = Counter(r.dagster_event.event_type.name if r.dagster_event else "log message" for r in records)
    by_type = ", ".join(f"{name} {n}" for name, n in types.most_common())
    print(textwrap.fill(f"events stored: {len(records)} ({by_type})", TABLE_WIDTH, subsequent_indent="  "))


def build(instance: dg.DagsterInstance, uploads: Path, storage: Path, creator: str, up_to: str = "") -> Build:
    """Materialize every asset (or `up_to`'s) of a new version and print its report."""
    version = make_version_id(creator)
    sampler = TreeSampler()
    sampler.start()
    instance.add_dynamic_partitions(dataset_versions.name, [version])
    job = dg.build_reconstructable_job(  # by module name: run as `-m`, this module is __main__
        "benchmarks.bench",
        "every_asset",
        reconstructable_kwargs={"uploads": str(uploads), "storage": str(storage), "up_to": up_to},
    )
    cpu, start = cpu_seconds(), time.time()
    result = dg.execute_job(
        job,
        instance,
        tags={"dagster/partition": version},
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=True,
    )
    wall = time.time() - start
    cpu = cpu_seconds() - cpu
    chain_rss = sampler.peak(start, start + wall)  # the run's, not the pairing's below
    records = instance.all_logs(result.run_id)
    keystrokes = keystroke_count(storage, version)
    seconds, *bounds = time_pairing(storage, version)
    sampler.running = False
    pairing = (seconds, sampler.peak(*bounds))
    print_report(version, keystrokes, steps_of(records, sampler), pairing, wall, chain_rss, cpu, records)
    return Build(version, result.run_id, wall)


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
    up_to: str = "",
) -> list[Build]:
    """Build one version of `participants` participants; with `incremental`, then a second one
    in the same instance and data store with 1 % more participants (at least one), as a version
    made after new uploads arrive. The instance is a new SQLite one unless `instance_home` names
    a folder with a dagster.yaml (e.g. Postgres storage). Returns the builds."""
    uploads, storage, home = prepare(participants, fmt, workdir, seed)
    with (
        dg.DagsterInstance.from_config(str(instance_home))
        if instance_home
        else dg.instance_for_test(temp_dir=str(home))
    ) as instance:
        first = build(instance, uploads, storage, "bench", up_to)
        if not incremental:
            return [first]
        more = max(1, participants // 100)
        added = dict(GENERATORS[fmt](more, seed, first_index=participants))
        write_uploads(uploads, added.items())
        try:
            print(f"\nadded {len(added)} upload objects of {more} more participants")
            again = build(instance, uploads, storage, "bench-more", up_to)
        finally:  # the folder keeps what uploads.json says it holds
            for name in added:
                (uploads / name).unlink()
    print(f"\nthe version with {more} more participants took {again.wall / first.wall:.0%} of the first build's time")
    return [first, again]


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
    parser.add_argument(
        "--up-to",
        default="",
        metavar="KEYS",
        help="only these assets (comma-separated keys, e.g. keypairs,features/kvc) and what they read",
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    options = (args.seed, args.incremental, args.instance, args.up_to)
    if args.workdir:
        run(args.participants, args.format, args.workdir, *options)
    else:
        with tempfile.TemporaryDirectory(prefix="keystroke-bench-") as tmp:
            run(args.participants, args.format, Path(tmp), *options)


if __name__ == "__main__":
    main()
