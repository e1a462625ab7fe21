"""features/statistical: every statistic checked by hand, a real task against plain Python, the
checks catching a wrong output, and the real materialization."""

import math
import statistics

import numpy as np
import pytest

from keystroke_assets.features.statistical import STATISTICAL, STATS, statistical_features
from keystroke_assets.lib.rules import failed_rules, rule_outcomes

from .feature_samples import make_pairs, real_version

WEB = {"device_type": "desktop", "video_id": 1, "session_id": 1}
# Task A: HL 100, 80, 50, 100; the last pair's IL = 2000 - 700 = 1300 > 1000 makes it an outlier.
TASK_A = {
    **WEB,
    "user_id": "u1",
    "platform_id": 1,
    "task_id": 0,
    "strokes": [
        ("a", 65, 0, 100),
        ("b", 66, 150, 230),
        ("c", 67, 400, 450),
        ("d", 68, 600, 700),
        ("e", 69, 2000, 2100),
    ],
}
# Task B: one pair, HL 60, IL 40, PL 100, RL 140.
TASK_B = {**WEB, "user_id": "u1", "platform_id": 2, "task_id": 1, "strokes": [("f", 70, 0, 60), ("g", 71, 100, 200)]}


@pytest.fixture(scope="module")
def features():
    return statistical_features(make_pairs([TASK_A, TASK_B]))


def row(features, grain, **ids):
    mask = features["grain"] == grain
    for k, v in ids.items():
        mask &= features[k] == v
    assert mask.sum() == 1
    return features[mask].iloc[0]


def test_user_grain_every_statistic_by_hand(features):
    user = row(features, "user", user_id="u1")
    # non-outlier HL of u1: task A 100, 80, 50 (the 4th pair is an outlier), task B 60 -> sorted 50 60 80 100
    # mean 290 / 4 = 72.5; deviations 27.5 7.5 -22.5 -12.5, squares sum 1475, std = sqrt(1475 / 3)
    # quantiles interpolate between order statistics at (n - 1) * q = 3q:
    #   p05 at 0.15: 50 + 0.15 * 10 = 51.5; q1 at 0.75: 50 + 7.5 = 57.5; median at 1.5: 70;
    #   q3 at 2.25: 80 + 0.25 * 20 = 85; p95 at 2.85: 80 + 0.85 * 20 = 97; iqr 85 - 57.5 = 27.5
    # m2 = 1475 / 4 = 368.75; m3 = (27.5^3 + 7.5^3 - 22.5^3 - 12.5^3) / 4 = 7875 / 4 = 1968.75
    #   G1 = sqrt(4 * 3) / 2 * m3 / m2^1.5 = 0.481563
    # m4 = (27.5^4 + 7.5^4 + 22.5^4 + 12.5^4) / 4 = 213945.3125; g2 = m4 / m2^2 - 3 = -1.426592
    #   G2 = ((4 + 1) g2 + 6)(4 - 1) / ((4 - 2)(4 - 3)) = -1.699512
    expected = {
        "count": 4,
        "mean": 72.5,
        "std": math.sqrt(1475 / 3),
        "min": 50,
        "p05": 51.5,
        "q1": 57.5,
        "median": 70,
        "q3": 85,
        "p95": 97,
        "max": 100,
        "iqr": 27.5,
        "skewness": 0.481563,
        "kurtosis": -1.699512,
    }
    assert set(expected) == set(STATS)
    for stat, value in expected.items():
        assert user[f"HL_{stat}"] == pytest.approx(value, abs=1e-6), stat
    # other latencies of u1 over the same 4 pairs: IL 50 170 150 40, PL 150 250 200 100, RL 130 220 250 140
    assert user["IL_mean"] == pytest.approx((50 + 170 + 150 + 40) / 4)
    assert user["PL_median"] == pytest.approx((150 + 200) / 2)
    assert user["RL_max"] == 250
    assert user["IL_min"] == 40
    # a user row has no task ids
    assert user[["platform_id", "video_id", "session_id", "task_id"]].isna().all()


def test_task_grain_by_hand(features):
    a = row(features, "task", user_id="u1", task_id=0)
    # HL 100 80 50: mean 76.667, q1 at 0.5: 50 + 0.5 * 30 = 65, q3 at 1.5: 80 + 0.5 * 20 = 90
    # skewness: deviations 23.33 3.33 -26.67, m2 = 422.22, m3 = -2074.07, G1 = sqrt(6) / 1 * m3 / m2^1.5 = -0.585583
    assert (a["HL_count"], a["HL_q1"], a["HL_q3"]) == (3, 65, 90)
    assert a["HL_mean"] == pytest.approx(230 / 3)
    assert a["HL_skewness"] == pytest.approx(-0.585583, abs=1e-6)
    assert np.isnan(a["HL_kurtosis"])  # needs 4 values
    assert a["IL_count"] == 3 and a["IL_max"] == 170  # IL 1300 is an outlier's
    b = row(features, "task", user_id="u1", task_id=1)
    assert (b["HL_count"], b["HL_mean"], b["PL_min"], b["RL_max"]) == (1, 60, 100, 140)
    assert np.isnan(b["HL_std"])  # one value
    assert (b["platform_id"], b["video_id"], b["session_id"]) == (2, 1, 1)


def test_checks_pass_and_catch_a_wrong_output(features):
    assert not failed_rules(features, STATISTICAL.all_checks)
    swapped = features.copy()
    swapped[["HL_q1", "HL_q3"]] = swapped[["HL_q3", "HL_q1"]].to_numpy()
    results = {name: ok for name, (ok, _) in rule_outcomes(swapped, STATISTICAL.all_checks).items()}
    assert results["statistics_ordered"] is False
    miscounted = features.copy()
    miscounted.loc[miscounted["grain"] == "task", "PL_count"] += 1
    assert {name: ok for name, (ok, _) in rule_outcomes(miscounted, STATISTICAL.all_checks).items()}[
        "user_counts_add_up"
    ] is False


def plain_task_latencies(csv_text: str) -> dict[str, list[int]]:
    """Latencies of a web-app file whose events strictly alternate press, release (checked)."""
    events = [line.split(",") for line in csv_text.strip().split("\n")[1:]]
    assert [e[0] for e in events] == ["P", "R"] * (len(events) // 2)
    press = [int(e[2]) for e in events[0::2]]
    release = [int(e[2]) for e in events[1::2]]
    out = {"HL": [], "IL": [], "PL": [], "RL": []}
    for i in range(len(press) - 1):
        hl, il = release[i] - press[i], press[i + 1] - release[i]
        if 30 <= hl <= 2000 and abs(il) <= 1000:
            out["HL"].append(hl)
            out["IL"].append(il)
            out["PL"].append(press[i + 1] - press[i])
            out["RL"].append(release[i + 1] - release[i])
    return out


def test_real_task_against_plain_python(real_data, tmp_path_factory):
    real = real_version(real_data, tmp_path_factory)
    user = "090e14f795db6d9fad9fc4ddd6ff5094"
    text = (real_data / "fpd_webapp_2025" / "web_app_data" / f"f_{user}_0.csv").read_text()
    expected = plain_task_latencies(text)
    features = real.read("features/statistical")
    task = row(features, "task", user_id=user, task_id=0)
    for latency, values in expected.items():
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
        assert task[f"{latency}_count"] == len(values)
        assert task[f"{latency}_mean"] == pytest.approx(statistics.fmean(values))
        assert task[f"{latency}_std"] == pytest.approx(statistics.stdev(values))
        assert (task[f"{latency}_min"], task[f"{latency}_max"]) == (min(values), max(values))
        assert (task[f"{latency}_q1"], task[f"{latency}_median"], task[f"{latency}_q3"]) == pytest.approx(
            (q1, median, q3)
        )
    # the first pair of that file (P s 13225, R s 13324, P t 13866, R t 13922) is the first value
    assert (expected["HL"][0], expected["IL"][0], expected["PL"][0], expected["RL"][0]) == (99, 542, 641, 598)


def test_real_materialization(real_data, tmp_path_factory):
    real = real_version(real_data, tmp_path_factory)
    assert [c for c in real.failed_checks if c[0] == "features/statistical"] == []
    md = real.metadata["features/statistical"]
    # 2 complete web-app users x 18 tasks + 6 Aalto participants x 15 sections; 8 users
    assert (md["rows/task"].value, md["rows/user"].value, md["participants"].value) == (126, 8, 8)
    assert md["dagster/row_count"].value == 134
    schema = {c.name: c.description for c in md["dagster/column_schema"].value.columns}
    assert schema["HL_p95"] == "95th percentile (linear interpolation) of HL over non-outlier pairs, ms"
