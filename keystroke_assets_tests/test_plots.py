"""Plots: the per-participant quality numbers by hand, small PNG images the UI shows inline, and
both attached to the keypairs materialization."""

import base64
import re
import struct

import pandas as pd
import pytest

from keystroke_assets.keystrokes import DEFAULT_OUTLIER_THRESHOLDS, QUALITY_COUNTS, OutlierThresholds
from keystroke_assets.plots import _threshold_lines, latency_histograms, participant_quality, quality_table

from .feature_samples import make_pairs, real_version

WEB = {"device_type": "desktop", "platform_id": 1, "video_id": 1, "session_id": 1, "task_id": 0}
PAIRS = make_pairs(
    [
        # u1: HL 100, 10 (< 30: outlier), 80 -> 3 pairs, 1 outlier
        {
            **WEB,
            "user_id": "u1",
            "strokes": [("a", 65, 0, 100), ("b", 66, 150, 160), ("c", 67, 300, 380), ("d", 68, 400, 480)],
        },
        # u2 on a phone: HL 90 -> 1 pair, no outlier
        {
            **WEB,
            "user_id": "u2",
            "device_type": "mobile",
            "strokes": [("Unidentified", 0, 0, 90), ("Unidentified", 0, 200, 290)],
        },
    ]
)
QUALITY = pd.DataFrame({c: 0 for c in QUALITY_COUNTS}, index=pd.Index(["u1", "u2", "u3"], name="user_id"))
QUALITY.loc["u1", "auto_repeats"] = 2
QUALITY.loc["u1", "unreleased"] = 1
QUALITY.loc["u3", "orphans"] = 4  # every pair of u3 was lost


def png_of(markdown: str) -> bytes:
    match = re.fullmatch(r"!\[[^\]]+\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert match, markdown[:80]
    data = base64.b64decode(match[1])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return data


def png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])  # IHDR width, height


def test_quality_table_by_hand():
    table = quality_table(PAIRS, QUALITY)
    assert table.loc["u1", "keypairs"] == 3 and table.loc["u1", "outlier_share"] == pytest.approx(1 / 3)
    assert table.loc["u1", "dropped_events"] == 3  # 2 auto-repeats + 1 unreleased press
    assert (table.loc["u2", "keypairs"], table.loc["u2", "outlier_share"], table.loc["u2", "dropped_events"]) == (
        1,
        0,
        0,
    )
    # a participant with no pair left still shows, with what was dropped
    assert (table.loc["u3", "keypairs"], table.loc["u3", "dropped_events"]) == (0, 4)


@pytest.mark.parametrize(
    "plot",
    [
        lambda: latency_histograms(PAIRS, DEFAULT_OUTLIER_THRESHOLDS),
        lambda: participant_quality(quality_table(PAIRS, QUALITY)),
    ],
)
def test_images_are_small_inline_pngs(plot):
    value = plot()
    data = png_of(value.value)
    assert png_size(data) == (900, 600)
    assert len(value.value) < 200_000


def test_keypairs_materialization_shows_both_plots(real_data, tmp_path_factory):
    md = real_version(real_data, tmp_path_factory).metadata["keypairs"]
    for name in ["latency_histograms", "participant_quality_plot"]:
        data = png_of(md[name].value)
        assert png_size(data) == (900, 600), name


def test_dotted_thresholds_per_device_type_from_the_setting():
    # desktop defaults: HL < 30 or > 2000, |IL| > 1000; a phone has no lower HL bound, so no line at 0
    assert _threshold_lines(DEFAULT_OUTLIER_THRESHOLDS["desktop"]) == {
        "HL": [30, 2000],
        "IL": [-1000, 1000],
        "PL": [],
        "RL": [],
    }
    assert _threshold_lines(DEFAULT_OUTLIER_THRESHOLDS["mobile"])["HL"] == [2000]
    assert _threshold_lines(OutlierThresholds(hl_min_ms=1, hl_max_ms=800, il_abs_max_ms=600))["IL"] == [-600, 600]
