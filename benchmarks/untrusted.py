"""Benchmark: peak memory and time of a version's chain (web_app_data → keypairs) with one hostile
upload among generated ones, each case in a new process, everything in that process (no pool):

- `baseline`: the generated participants alone;
- `2 GB task file`: plus a task CSV of 2 GB (a sparse file: it reads as 2 GB of zeros, no disk);
- `30 MB key`: plus a task CSV whose one line is `P,<30,000,000 × a>,<time>`.

    python -m benchmarks.untrusted --participants 20

Prints per case: wall seconds, peak RSS of the process tree (sampled every 5 ms, as the main
benchmark does), the bytes the snapshot kept, raw_data's events and what raw_data says of the
hostile file.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ["baseline", "2 GB task file", "30 MB key"]
HOSTILE = "f_" + "e" * 32 + "_0.csv"
STAGES = ["web_app_data", "raw_data", "cleaned_data", "keystrokes", "keypairs"]


def write_case(case: str, uploads: Path, participants: int) -> None:
    from keystroke_assets.synthetic import web_app_uploads, write_uploads

    write_uploads(uploads, web_app_uploads(participants, seed=3, broken_every=0))
    if case == "2 GB task file":
        with open(uploads / HOSTILE, "wb") as f:
            f.truncate(2 * 10**9)
    elif case == "30 MB key":
        key = b"a" * 30_000_000
        (uploads / HOSTILE).write_bytes(b"P,x,1735660000000\nR,x,1735660000080\nP," + key + b",1735660000200\n")


def run_case(case: str, folder: Path, participants: int) -> dict:
    """Materialize the chain in this process; the figures as a dict."""
    import dagster as dg

    from benchmarks.bench import TreeSampler
    from keystroke_assets.definitions import defs
    from keystroke_assets.resources import resources_from_env

    uploads, storage = folder / "uploads", folder / "storage"
    write_case(case, uploads, participants)
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(storage), "KEYSTROKE_SEGMENT_WORKERS": "1"}
    version = "2025-09-07_00-27-43_bench"
    sampler = TreeSampler()
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("dataset_versions", [version])
        sampler.start()
        began = time.time()
        result = dg.materialize(
            list(defs.assets),
            selection=STAGES,
            partition_key=version,
            instance=instance,
            resources=resources_from_env(env),
            raise_on_error=False,
        )
        ended = time.time()
        sampler.running = False
        metadata = {
            e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()
        }
    raw = metadata.get("raw_data", {})
    problems = [r.data for r in raw["parse_problems"].value.records] if raw else []
    return {
        "case": case,
        "success": result.success,
        "seconds": round(ended - began, 2),
        "peak_rss_mb": round(sampler.peak(began, ended) / 2**20),
        "bytes_kept": metadata["web_app_data"]["bytes_new"].value if "web_app_data" in metadata else None,
        "events": raw["events"].value if raw else None,
        "hostile_file": next((p["problem"] for p in problems if p["file"] == HOSTILE), "-"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=20)
    parser.add_argument("--one", choices=CASES, help=argparse.SUPPRESS)  # a case, in this process
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory(prefix="keystroke-untrusted-") as folder:
            print(json.dumps(run_case(args.one, Path(folder), args.participants)))
        return
    env = {**os.environ}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user's machine: bytecode cached
    print(f"{'case':<16} {'ok':<3} {'wall s':>7} {'peak RSS MB':>11} {'bytes kept':>12} {'events':>8}  hostile file")
    for case in CASES:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.untrusted", "--one", case, "--participants", str(args.participants)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{r['case']:<16} {'yes' if r['success'] else 'NO':<3} {r['seconds']:>7} {r['peak_rss_mb']:>11} "
            f"{r['bytes_kept']:>12,} {r['events']:>8,}  {r['hostile_file']}"
        )


if __name__ == "__main__":
    main()
