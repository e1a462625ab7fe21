"""The hostile-upload benchmark at smoke size: each case runs and says what happened to the hostile
file. Its figures are measured by hand (docs/reliability.md), never asserted here."""

import pytest

from benchmarks.untrusted import CASES, run_case


@pytest.mark.parametrize("case", CASES)
def test_each_case_runs_and_reports_the_hostile_file(case, tmp_path):
    r = run_case(case, tmp_path, participants=1)
    assert r["success"] and r["peak_rss_mb"] > 0 and r["seconds"] > 0
    assert r["bytes_kept"] < 31_000_000 or case == "30 MB key"  # the 2 GB file is never kept
    assert (
        r["hostile_file"]
        == {
            "baseline": "-",
            "2 GB task file": "not kept by the snapshot: 2000.0 MB, over the 32 MB limit for a keystroke file: "
            "never read",
            "30 MB key": "1 bad lines dropped, first line 3: key name of 30000000 characters, over the limit of 32",
        }[case]
    )
