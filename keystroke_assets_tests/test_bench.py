"""The benchmark at smoke size: it runs the whole chain and reports every asset. Its figures are
measured by hand (README "Benchmark"), never asserted here."""

from pathlib import Path

from keystroke_assets import bench
from keystroke_assets.definitions import defs


def test_benchmark_reports_every_asset_and_counts_keystrokes_from_the_files(tmp_path, capsys):
    rows = bench.run(3, "web_app", tmp_path)  # 3 participants: none of them broken
    out = capsys.readouterr().out

    every_asset = {key.to_user_string() for a in defs.assets for key in a.keys}
    assert sorted(r[0] for r in rows[:-2]) == sorted(every_asset)
    assert rows[-2][0] == bench.PAIRING
    assert rows[-1][0].startswith("whole chain")
    assert all(seconds > 0 and rss > 100 * 2**20 for _, seconds, _, rss in rows)
    # every press line of the uploaded CSVs is one keystroke
    presses = sum(
        line.startswith(b"P,") for csv in Path(tmp_path, "uploads").rglob("*.csv") for line in csv.read_bytes().splitlines()
    )
    assert presses > 3 * 18 * 100
    assert f"{presses:,} keystrokes" in out
    for name, seconds, rate, _ in rows:
        assert f"{name:40} {seconds:8.2f} {rate:14,.0f}" in out

    # the same arguments again: the generated uploads are reused, the results are the same
    again = bench.run(3, "web_app", tmp_path)
    assert "reusing the web_app uploads for 3 participants" in capsys.readouterr().out
    assert [r[0] for r in again] == [r[0] for r in rows]
    assert bench.keystroke_count(tmp_path / "storage", next(Path(tmp_path, "storage", "raw_data").glob("*.parquet")).stem) == presses
