"""Benchmark: the data store's size before and after `keystroke-assets gc`, on a store whose one
version went through three code versions of raw_data (so of every stage and feature after it,
whose segment addresses contain raw_data's), beside a store where the version was built once.

    python -m benchmarks.gc_store --participants 600 --workdir /tmp/gc-store

Each build materializes every asset of the version in this process (the default segment pool);
the code version is raised as a code change would raise it (`Stage.code_version`), nothing else
changes. Prints objects and bytes after each build, what gc printed, and both stores' totals.
"""

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import dagster as dg

CODE_VERSIONS = ["a", "b", "c"]
VERSION = "2025-09-07_00-27-43_lab-gc"


def store_size(storage: Path) -> tuple[int, int]:
    sizes = [p.stat().st_size for p in storage.rglob("*") if p.is_file()]
    return len(sizes), sum(sizes)


def build(uploads: Path, storage: Path, code_versions: list[str]) -> None:
    """Materialize every asset of VERSION once per raw_data code version, in one instance."""
    import keystroke_assets.assets.raw_data as raw_data
    from keystroke_assets.definitions import defs
    from keystroke_assets.partitions import dataset_versions
    from keystroke_assets.resources import resources_from_env

    shipped = raw_data.STAGE
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(storage)}
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions(dataset_versions.name, [VERSION])
            for code in code_versions:
                raw_data.STAGE = dataclasses.replace(shipped, code_version=f"{shipped.code_version}{code}")
                start = time.time()
                result = dg.materialize(
                    list(defs.assets),
                    partition_key=VERSION,
                    instance=instance,
                    resources=resources_from_env(env),
                    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                )
                assert result.success
                objects, size = store_size(storage)
                print(
                    f"raw_data code version {raw_data.STAGE.code_version}: built in {time.time() - start:.1f} s, "
                    f"the store holds {objects:,} objects, {size:,} bytes",
                    flush=True,
                )
    finally:
        raw_data.STAGE = shipped


def gc(storage: Path) -> str:
    command = Path(sys.executable).with_name("keystroke-assets")
    env = {**os.environ, "KEYSTROKE_STORAGE": str(storage)}
    done = subprocess.run([command, "gc", "--grace", "0"], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def run(participants: int, workdir: Path) -> dict:
    """Returns the figures: objects and bytes of the three-code-version store before and after gc,
    and of the store built once."""
    from keystroke_assets.synthetic import demo_uploads, write_uploads

    uploads, storage, once = workdir / "uploads", workdir / "storage", workdir / "storage-built-once"
    for folder in (uploads, storage, once):
        shutil.rmtree(folder, ignore_errors=True)
    write_uploads(uploads, demo_uploads(participants, 0))  # the benchmark's mixed uploads
    build(uploads, storage, CODE_VERSIONS)
    before = store_size(storage)
    print(gc(storage))
    after = store_size(storage)
    build(uploads, once, CODE_VERSIONS[-1:])
    figures = {"before": before, "after": after, "built_once": store_size(once)}
    for name, (objects, size) in figures.items():
        print(f"{name.replace('_', ' ')}: {objects:,} objects, {size:,} bytes")
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", "-n", type=int, default=600)
    parser.add_argument(
        "--workdir", type=Path, help="where the uploads and both stores go (default: a temporary folder)"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.workdir:
        run(args.participants, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="keystroke-gc-") as tmp:
            run(args.participants, Path(tmp))


if __name__ == "__main__":
    main()
