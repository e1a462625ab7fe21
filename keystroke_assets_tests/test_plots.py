"""Plots: the per-participant quality numbers and the latency summaries' bins by hand, small PNG
images the UI shows inline, and both attached to the keypairs materialization."""

import base64
import json
import re
import struct

import numpy as np
import pandas as pd
import pytest

from keystroke_assets.evaluation.plots import det_curves, eer_bars, score_histograms
from keystroke_assets.lib.latencies import DEFAULT_OUTLIER_THRESHOLDS, LATENCIES, QUALITY_COUNTS, OutlierThresholds
from keystroke_assets.lib.metadata import Markdown
from keystroke_assets.lib.plots import (
    BINS,
    EDGES,
    STYLE,
    _between,
    _counts,
    _percentiles,
    _threshold_lines,
    latency_histograms,
    latency_summary,
    merge_latency_summaries,
    participant_quality,
    quality_table,
    user_medians,
)

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
        lambda: latency_histograms(latency_summary(PAIRS), DEFAULT_OUTLIER_THRESHOLDS),
        lambda: participant_quality(quality_table(PAIRS, QUALITY)),
    ],
)
def test_images_are_small_inline_pngs(plot):
    value = plot()
    assert isinstance(value, Markdown)  # shown as markdown (an image), not as text
    data = png_of(value)
    assert png_size(data) == (900, 600)
    assert len(value) < 200_000


SCORES = (np.array([0.1, 0.2]), np.array([0.2, 0.5, 0.9]), 3)  # genuine, impostor sample, impostors


@pytest.mark.parametrize(
    "plot, size",
    [
        (lambda: user_medians(pd.DataFrame({f"{k}_median": [90.0, 120.0] for k in LATENCIES})), (900, 300)),
        # 0.7 of the width: 630 px
        (lambda: det_curves({"desktop": (np.array([0, 0.5, 1]), np.array([1, 0.5, 0]), 0.5)}, "t"), (630, 600)),
        (lambda: score_histograms({"desktop": SCORES, "mobile": SCORES}, "t"), (900, 300)),
        # 0.3 inch a bar + 1, at least 2 inches: 200 px for two
        (
            lambda: eer_bars(
                pd.DataFrame(
                    {"status": "evaluated", "feature": ["kvc", "statistical"], "label": "", "device_type": "desktop"}
                ).assign(eer=[0.1, 0.2])
            ),
            (900, 200),
        ),
    ],
)
def test_every_figure_drawn_under_the_style_leaves_the_process_rcparams_alone(plot, size):
    import matplotlib

    before = {k: matplotlib.rcParams[k] for k in STYLE}
    assert before != STYLE  # matplotlib's own sizes ("medium")
    assert png_size(png_of(plot())) == size
    assert {k: matplotlib.rcParams[k] for k in STYLE} == before


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


# EDGES: 1,280 bins 64 per doubling from -2^30 to -1,024 ms, then 1-ms bins, so 0 ms is bin 1280 + 1024
ZERO = 2304
EMPTY = {"bins": BINS, "device_types": {}}


def desktop_summary(latency: str, values) -> dict:
    """latency_summary of desktop pairs with these values of one latency (0 for the others)."""
    pairs = pd.DataFrame({"device_type": "desktop", **dict.fromkeys(LATENCIES, 0), latency: values})
    return latency_summary(pairs)["device_types"]["desktop"][latency]


def test_latency_summary_by_hand():
    summary = latency_summary(PAIRS)
    assert json.loads(json.dumps(summary)) == summary  # stored as JSON: plain ints and lists
    # u1 on a desktop, strokes (press, release) (0, 100) (150, 160) (300, 380) (400, 480):
    # HL 100, 10, 80; IL 150-100=50, 300-160=140, 400-380=20; PL 150, 150, 100; RL 60, 220, 100
    desktop = summary["device_types"]["desktop"]
    assert (desktop["HL"]["min"], desktop["HL"]["max"]) == (10, 100)
    assert desktop["HL"]["first"] == ZERO + 10  # one bin per ms: from 10 to 100 ms, 91 bins
    assert desktop["HL"]["counts"] == [1] + [0] * 69 + [1] + [0] * 19 + [1]
    assert desktop["PL"]["first"] == ZERO + 100 and desktop["PL"]["counts"] == [1] + [0] * 49 + [2]
    # u2 on a phone: one pair, HL 90, IL 200-90=110, PL 200, RL 290-90=200
    mobile = summary["device_types"]["mobile"]
    assert {latency: (b["min"], b["max"], b["first"], b["counts"]) for latency, b in mobile.items()} == {
        "HL": (90, 90, ZERO + 90, [1]),
        "IL": (110, 110, ZERO + 110, [1]),
        "PL": (200, 200, ZERO + 200, [1]),
        "RL": (200, 200, ZERO + 200, [1]),
    }


def test_latencies_beyond_a_second_in_bins_of_a_64th_of_a_doubling():
    il = desktop_summary("IL", [5000, -1500, -3_000_000_000])
    # -3e9 ms lies beyond -2^30: the first bin [-2^30, -2^30 + 2^29 / 64)
    assert (il["min"], il["max"], il["first"]) == (-3_000_000_000, 5000, 0)
    at = il["first"] + np.flatnonzero(il["counts"])
    # -1500 in [-1504, -1488) (16 ms wide between -2048 and -1024); 5000 in [4992, 5056) (64 ms
    # wide between 4096 and 8192: 4096 + 14 * 64 = 4992)
    assert EDGES[at].tolist() == [-(2**30), -1504, 4992] and EDGES[at + 1].tolist() == [-(2**30) + 2**23, -1488, 5056]
    hl = desktop_summary("HL", [1023, 1024, 1039])
    # 1023 the last 1-ms bin; 1024 and 1039 both in [1024, 1040)
    assert (hl["first"], hl["counts"]) == (ZERO + 1023, [1, 2])


def test_merged_summaries_add_up_exactly():
    # PL of u1's pairs split over two segments: 150 | 150, 100 -> 100 once, 150 twice
    first, second = latency_summary(PAIRS.iloc[:1]), latency_summary(PAIRS.iloc[1:])
    assert "mobile" not in first["device_types"]
    merged = merge_latency_summaries([first, second])
    desktop_pl = {"min": 100, "max": 150, "first": ZERO + 100, "counts": [1] + [0] * 49 + [2]}
    assert merged["device_types"]["desktop"]["PL"] == desktop_pl
    assert merged == latency_summary(PAIRS)
    rng = np.random.default_rng(7)
    n = 5000
    many = pd.DataFrame(
        {
            "device_type": pd.Categorical(rng.choice(["desktop", "mobile"], n), ["desktop", "mobile"]),
            **{latency: (rng.standard_cauchy(n) * 300).astype(np.int64) for latency in LATENCIES},
        }
    )
    parts = [latency_summary(many.iloc[a:b]) for a, b in [(0, 7), (7, 3000), (3000, n)]]
    assert merge_latency_summaries(parts) == latency_summary(many)
    assert merge_latency_summaries([merge_latency_summaries(parts[:2]), parts[2]]) == latency_summary(many)


def test_no_pairs_no_counts():
    assert merge_latency_summaries([]) == EMPTY
    assert latency_summary(PAIRS.iloc[:0]) == EMPTY
    assert merge_latency_summaries([EMPTY, latency_summary(PAIRS)]) == latency_summary(PAIRS)
    with pytest.raises(ValueError, match="other bins"):
        merge_latency_summaries([{**EMPTY, "bins": "10 ms"}])


def test_percentiles_from_counts():
    counts = _counts(latency_summary(PAIRS.iloc[:3])["device_types"]["desktop"]["HL"])  # HL 10, 80, 100
    # np.percentile, linear: the 1st at rank 0.02 -> 10 + 0.02 * (80 - 10); the 95th at rank 1.9 -> 80 + 0.9 * 20
    assert _percentiles(counts, [1, 50, 95]) == pytest.approx([11.4, 80, 98])
    rng = np.random.default_rng(3)
    within = rng.integers(-1023, 1024, 10_000)
    q = [0, 1, 5, 25, 50, 75, 95, 99, 100]
    # below 1,024 ms a bin holds one integer: numpy's exactly
    assert _percentiles(_counts(desktop_summary("IL", within)), q) == pytest.approx(np.percentile(within, q))
    tails = (rng.standard_cauchy(10_000) * 2000).astype(np.int64)  # 1st -69 s, 5th -14 s, ..., 99th 55 s
    exact = np.percentile(tails, q[1:-1])
    # beyond, within one bin: 1/64 of the value
    error = np.abs(_percentiles(_counts(desktop_summary("IL", tails)), q[1:-1]) - exact)
    assert (error <= np.maximum(np.abs(exact) / 64, 1)).all()


def test_counts_between_display_edges():
    counts = _counts(latency_summary(PAIRS.iloc[:3])["device_types"]["desktop"]["HL"])  # HL 10, 80, 100
    assert _between(counts, np.array([0, 50, 90, 200])).tolist() == [1, 1, 1]
    # a 1-ms bin holds its integer: 10 lies below 10.5, 80 and 100 in [80, 100.5)
    assert _between(counts, np.array([10.5, 80, 100.5])).tolist() == [0, 2]
    # a wider bin spreads evenly: 5000 in [4992, 5056), half of it on either side of 5024
    assert _between(_counts(desktop_summary("PL", [5000])), np.array([4992, 5024, 5056])).tolist() == [0.5, 0.5]
    # the outermost edges take every value
    assert _between(counts, EDGES[[0, -1]]).tolist() == [3]


@pytest.mark.parametrize("device_types", [["desktop", "mobile"], ["desktop"], ["mobile"], []])
def test_latency_histograms_draw_any_mix_of_device_types(device_types):
    summaries = [latency_summary(PAIRS[PAIRS["device_type"] == d]) for d in device_types]
    data = png_of(latency_histograms(merge_latency_summaries(summaries), DEFAULT_OUTLIER_THRESHOLDS))
    assert png_size(data) == (900, 600)
