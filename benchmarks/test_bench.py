"""The benchmark at smoke size: it runs the whole chain and reports every asset. Its figures are
measured by hand (docs/performance.md), never asserted here: only the report's structure and
its counts."""

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import psutil

from benchmarks import bench
from keystroke_assets.definitions import defs
from keystroke_assets.synthetic import web_app_uploads

HEADERS = ["step s", "done at s", "rows", "segments computed", "segments reused", "keystrokes/s", "peak RSS MB"]
COUNT = re.compile(r"^(\d{1,3}(,\d{3})*|-)$")  # an integer as printed, or '-' where the metadata has none


def presses(objects) -> int:
    """Keystrokes in web-app uploads: every press line of their CSVs."""
    return sum(line.startswith(b"P,") for name, data in objects if name.endswith(".csv") for line in data.splitlines())


def table(report: str) -> list[tuple[str, dict]]:
    """The lines of one version's table as (name, {column: cell}), cut where the header's right
    aligned columns end."""
    lines = report.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("asset "))
    ends, at = [], 0
    for name in HEADERS:  # every column in this order, or index raises
        at = lines[header].index(name, at) + len(name)
        ends.append(at)
    starts = [ends[0] - len(HEADERS[0]) - 1, *ends[:-1]]
    rows = []
    for line in lines[header + 1 :]:
        if line.startswith("step s:"):  # the legend under the table
            break
        rows.append((line[: starts[0]].rstrip(), {h: line[s:e].strip() for h, s, e in zip(HEADERS, starts, ends)}))
    return rows


def events_stored(report: str) -> tuple[int, Counter]:
    text = " ".join(report.split())  # the line is wrapped
    total, by_type = re.search(r"events stored: (\d+) \(([^)]*)\)", text).groups()
    return int(total), Counter({name: int(n) for name, n in (part.rsplit(" ", 1) for part in by_type.split(", "))})


def test_benchmark_reports_every_asset_and_counts_keystrokes_from_the_files(tmp_path, capsys):
    home = tmp_path / "instance"  # an instance of one's own (--instance), here SQLite in that folder
    home.mkdir()
    (home / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {home}\ntelemetry:\n  enabled: false\n")
    # 3 participants (none of them broken), then a version with one more
    work = tmp_path / "work"
    builds = bench.run(3, "web_app", work, incremental=True, instance_home=home)
    out = capsys.readouterr().out
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert [r.status for r in instance.get_runs()] == [dg.DagsterRunStatus.SUCCESS] * 2
        stored = [len(instance.get_records_for_run(b.run_id).records) for b in builds]

    # 10 steps make 19 assets: keystrokes + keypairs, typenet_ml's 3 grains and the 7 evaluations a step each
    made_together = {a.node_def.name.replace("__", "/"): [k.to_user_string() for k in a.keys] for a in defs.assets}
    every_asset = sorted(key for keys in made_together.values() for key in keys)
    several = {f"{step} ({len(keys)} assets)": keys for step, keys in made_together.items() if len(keys) > 1}
    assert len(made_together) == 10 and len(every_asset) == 19
    assert sorted(several) == ["evaluation (7 assets)", "features/typenet_ml (3 assets)", "keypairs (2 assets)"]
    reports = out.split("\nversion ")[1:]
    assert len(reports) == 2
    for report, build, events, participants in zip(reports, builds, stored, (3, 4)):
        assert report.startswith(build.version)
        rows = table(report)
        assets = {name.strip(): cells for name, cells in rows if cells["done at s"]}
        steps = [(name, cells) for name, cells in rows if cells["step s"]]
        # a line per asset, and a step's figures once: on its asset's line, or its own above its assets'
        assert sorted(assets) == every_asset and len(assets) == len([n for n, c in rows if c["done at s"]])
        assert len(steps) == 10 + 2 and [name for name, _ in steps[-2:]] == [bench.PAIRING, bench.CHAIN]
        names = [name for name, _ in rows]
        for step, keys in several.items():
            below = names[names.index(step) + 1 : names.index(step) + 1 + len(keys)]
            assert sorted(below) == sorted(f"  {key}" for key in keys)
            assert not rows[names.index(step)][1]["done at s"]
        for _, cells in steps:
            float(cells["step s"])
            assert int(cells["peak RSS MB"]) > 100
            assert re.fullmatch(r"[\d,]+", cells["keystrokes/s"])
        for cells in assets.values():
            float(cells["done at s"])
            assert all(COUNT.match(cells[h]) for h in ("rows", "segments computed", "segments reused"))
        assert assets["web_app_data"]["rows"] == f"{participants * 58:,}"  # 58 upload objects per participant
        # every record the run stored, all types
        total, by_type = events_stored(report)
        assert total == events > 0 and sum(by_type.values()) == total
        assert by_type["ASSET_MATERIALIZATION"] == 19 and by_type["STEP_START"] == by_type["STEP_SUCCESS"] == 10
        assert by_type["RUN_SUCCESS"] == 1
        assert re.search(
            rf"cores used: \d+\.\d\d of the machine's {os.cpu_count()} "
            r"\(\d+\.\d\d CPU s of this process and its child processes over \d+\.\d\d s wall\)",
            report,
        )
        assert re.search(r"peak RSS: \d+ MB, this process \(the run worker, every step\) and its child", report)

    uploads = Path(work, "uploads")
    first = presses((p.name, p.read_bytes()) for p in uploads.rglob("*"))
    more = presses(web_app_uploads(1, first_index=3))
    assert first > 3 * 18 * 100 and more > 18 * 100
    assert f"{first:,} keystrokes" in reports[0] and f"{first + more:,} keystrokes" in reports[1]
    assert "added 58 upload objects of 1 more participants" in out
    assert "the version with 1 more participants took" in out
    assert bench.keystroke_count(work / "storage", builds[1].version) == first + more

    # the added participant's files are gone again, and the same arguments reuse the uploads
    before = {p.name: p.read_bytes() for p in uploads.iterdir()}
    assert len(before) == 3 * 58
    bench.prepare(3, "web_app", work)
    assert "reusing the web_app uploads for 3 participants" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in uploads.iterdir()} == before
    assert not Path(work, "storage").exists()


def test_segments_are_printed_per_asset_and_summed_where_the_metadata_has_them(capsys):
    segmented = [
        bench.Asset("raw_data", 0.5, {"dagster/row_count": 12345, "segments/computed": 7, "segments/reused": 0}),
        bench.Asset("cleaned_data", 0.25, {"dagster/row_count": 12000, "segments/computed": 2, "segments/reused": 5}),
    ]
    plain = bench.Asset("features/kvc", 1.0, {})
    steps = [bench.Step("raw_data", 1.0, 2**30, segmented[:1]), bench.Step("both", 2.0, 2**30, [segmented[1], plain])]
    bench.print_report("v", 1000, steps, (0.5, 2**30), 4.0, 2**30, 6.0, [])
    out = capsys.readouterr().out
    rows = dict(table(out))
    # 1,000 keystrokes over the step's 1 s and 2 s; 2**30 bytes are 1024 MB
    assert [rows["raw_data"][h] for h in HEADERS] == ["1.00", "0.50", "12,345", "7", "0", "1,000", "1024"]
    assert [rows["both (2 assets)"][h] for h in HEADERS] == ["2.00", "", "", "", "", "500", "1024"]
    assert [rows["  cleaned_data"][h] for h in HEADERS] == ["", "0.25", "12,000", "2", "5", "", ""]
    assert [rows["  features/kvc"][h] for h in HEADERS] == ["", "1.00", "-", "-", "-", "", ""]
    assert "segments: 9 computed, 5 reused" in out  # 7 + 2, 0 + 5
    assert "cores used: 1.50 of the machine's" in out  # 6 CPU s over 4 s wall
    assert "events stored: 0 ()" in out


def test_peak_rss_and_cpu_include_child_processes():
    # a child that holds 300 MB written (so resident) while it spends 0.5 s of CPU, then ends
    child = "import time\nb = b'x' * (300 * 2**20)\nwhile time.process_time() < 0.5: pass\n"
    sampler = bench.TreeSampler()
    sampler.start()
    cpu, start = bench.cpu_seconds(), time.time()
    alone = bench.resident(psutil.Process())
    subprocess.run([sys.executable, "-c", child], check=True)
    sampler.running = False
    assert bench.cpu_seconds() - cpu >= 0.5  # the child's, counted once it was waited for
    assert sampler.peak(start, time.time()) >= alone + 300 * 2**20
