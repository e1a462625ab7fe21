"""The benchmark at smoke size: it runs the whole chain and reports every asset. Its figures are
measured by hand (docs/performance.md), never asserted here."""

from pathlib import Path

import dagster as dg

from benchmarks import bench
from keystroke_assets.definitions import defs
from keystroke_assets.synthetic import web_app_uploads


def presses(objects) -> int:
    """Keystrokes in web-app uploads: every press line of their CSVs."""
    return sum(line.startswith(b"P,") for name, data in objects if name.endswith(".csv") for line in data.splitlines())


def test_benchmark_reports_every_asset_and_counts_keystrokes_from_the_files(tmp_path, capsys):
    home = tmp_path / "instance"  # an instance of one's own (--instance), here SQLite in that folder
    home.mkdir()
    (home / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {home}\ntelemetry:\n  enabled: false\n")
    # 3 participants (none of them broken), then a version with one more
    work = tmp_path / "work"
    rows = bench.run(3, "web_app", work, incremental=True, instance_home=home)
    out = capsys.readouterr().out
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert [r.status for r in instance.get_runs()] == [dg.DagsterRunStatus.SUCCESS] * 2

    # a row per step: keystrokes and keypairs are made by one step (`keypairs`)
    every_step = {a.node_def.name.replace("__", "/") for a in defs.assets}
    assert sorted(r[0] for r in rows[:-2]) == sorted(every_step)
    assert rows[-2][0] == bench.PAIRING
    assert rows[-1][0].startswith("whole chain")
    assert all(seconds > 0 and rss > 100 * 2**20 for _, seconds, _, rss in rows)
    uploads = Path(work, "uploads")
    first = presses((p.name, p.read_bytes()) for p in uploads.rglob("*"))
    more = presses(web_app_uploads(1, first_index=3))
    assert first > 3 * 18 * 100 and more > 18 * 100
    assert f"{first:,} keystrokes" in out and f"{first + more:,} keystrokes" in out
    assert "added 58 upload objects of 1 more participants" in out
    assert "the version with 1 more participants took" in out
    for name, seconds, rate, _ in rows:
        assert f"{name:40} {seconds:8.2f} {rate:14,.0f}" in out
    second = next(Path(work, "storage", "raw_data").glob("*_bench-more.parquet")).stem
    assert bench.keystroke_count(work / "storage", second) == first + more

    # the added participant's files are gone again, and the same arguments reuse the uploads
    before = {p.name: p.read_bytes() for p in uploads.iterdir()}
    assert len(before) == 3 * 58
    bench.prepare(3, "web_app", work)
    assert "reusing the web_app uploads for 3 participants" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in uploads.iterdir()} == before
    assert not Path(work, "storage").exists()
