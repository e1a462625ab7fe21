"""typenet_ml's fill and what it leaks: the stored table says which cells were observed, gives the
statistics before the fill, and refits the fill on given rows only (docs/features.md §3), every
value computed here by hand on the hand-written typing of test_features_typenet_ml."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from keystroke_assets.evaluation.assets import evaluation_samples
from keystroke_assets.features.typenet_ml import (
    GRAINS,
    TYPENET_ML,
    column_dictionary,
    top_digraphs,
    typenet_ml_features,
)
from keystroke_assets.features.typenet_ml_fill import (
    OBSERVED,
    fill_fitted_on,
    fill_values,
    observed_cells,
    observed_fits,
    pack_observed,
    statistic_columns,
    unfilled_statistics,
)

from .feature_samples import make_keystrokes, make_pairs
from .test_features_typenet_ml import MIXED, R8, R43, R50, R200, TASKS, row


def features_of(tasks, grain: str, k: int):
    pairs = make_pairs(tasks)
    keys = pd.CategoricalDtype(sorted(set(pairs["key1"]) | set(pairs["key2"])))
    pairs = pairs.astype({"user_id": "category", "key1": keys, "key2": keys})
    return typenet_ml_features(make_keystrokes(tasks), pairs, GRAINS[grain], top_digraphs(pairs, k))[0]


@pytest.fixture(scope="module")
def platform():
    return features_of(MIXED, "platform", 3)


def test_observed_marks_the_cells_measured_before_the_fill(platform):
    # d1/2 held b for 20 ms (< 30): its b cells were filled (from d1/1: median 60), never observed;
    # its a median (80) was; d1/1's b std is filled (one hold); no desktop row observes a mobile cell
    observed = pd.DataFrame(observed_cells(platform), columns=statistic_columns(platform))
    d12 = (platform["user_id"] == "d1") & (platform["platform_id"] == 2)
    assert row(platform, "d1", platform_id=2)["desktop__HL__b__median"] == 60
    assert not observed.loc[d12, "desktop__HL__b__median"].item() and observed.loc[d12, "desktop__HL__a__median"].item()
    assert not observed.loc[
        (platform["user_id"] == "d1") & (platform["platform_id"] == 1), "desktop__HL__b__std"
    ].item()
    mobile_columns = [c for c in observed if c.startswith("mobile__")]
    assert not observed.loc[platform["device_type"] == "desktop", mobile_columns].to_numpy().any()
    # the counts agree with the fill's: 38 desktop cells observed (test_platform_grain_every_cell_by_hand)
    desktop_columns = [c for c in observed if c.startswith("desktop__")]
    assert observed.loc[platform["device_type"] == "desktop", desktop_columns].to_numpy().sum() == 38
    assert observed_fits(platform) == (True, {"rows_with_other_widths": 0, "other_device_cells_observed": 0})


def test_the_check_sees_a_mask_of_another_width_or_device(platform):
    bad = platform.copy()
    mask = observed_cells(bad)
    mask[0, statistic_columns(bad).index("mobile__HL__Unidentified__mean")] = True  # d1/1 is a desktop row
    bad[OBSERVED] = pack_observed(mask)
    assert observed_fits(bad) == (False, {"rows_with_other_widths": 0, "other_device_cells_observed": 1})
    bad[OBSERVED] = [b[:-1] for b in platform[OBSERVED]]
    assert observed_fits(bad)[0] is False


def test_unfilled_statistics_are_the_observed_cells_only(platform):
    unfilled = unfilled_statistics(platform)
    assert OBSERVED not in unfilled and list(unfilled.columns[:3]) == ["user_id", "platform_id", "device_type"]
    d12 = row(unfilled, "d1", platform_id=2)
    assert d12["desktop__HL__a__median"] == 80 and math.isnan(d12["desktop__HL__b__median"])
    assert math.isnan(d12["desktop__IL__b__a__median"])  # d1/2 typed no b-a: filled 140 in the stored table
    assert (unfilled[statistic_columns(platform)].notna().to_numpy() == observed_cells(platform)).all()


def test_fill_fitted_on_platform_1_by_hand(platform):
    fit = (platform["platform_id"] == 1).to_numpy()
    refit, fills = fill_fitted_on(platform, fit)
    # d1/2 (not fitted): b median missing -> the column mean over the fitted rows, d1/1's 60 and
    # d2/1's 55 = 57.5, never d1's own 60 (the stored value); b-a median: (140 + 50) / 2 = 95
    d12 = row(refit, "d1", platform_id=2)
    assert d12["desktop__HL__b__median"] == 57.5 and d12["desktop__IL__b__a__median"] == 95
    assert d12["desktop__HL__a__median"] == 80  # observed: as it was
    # d2/1 (fitted): its a-b median is missing (its only a-b is an outlier) and d2 has no other
    # fitted row -> the column mean over fitted rows: d1/1's 100 alone, not (100 + 220) / 2 = 160
    # with d1/2's 220 as the stored rule has it
    assert row(platform, "d2", platform_id=1)["desktop__IL__a__b__median"] == 160
    assert row(refit, "d2", platform_id=1)["desktop__IL__a__b__median"] == 100
    # m1/2 (not fitted): U std -> (m1/1's sqrt(4/3) + m2/1's sqrt(8)) / 2; S-U median -> (96 + 48) / 2
    m12 = row(refit, "m1", platform_id=2)
    assert m12["mobile__HL__Unidentified__std"] == pytest.approx((R43 + R8) / 2)
    assert m12["mobile__IL__Key.space__Unidentified__median"] == 72
    # d1/1 (fitted): b std missing, d1 has no other fitted row -> column mean, d2/1's sqrt(50)
    assert row(refit, "d1", platform_id=1)["desktop__HL__b__std"] == pytest.approx(R50)
    assert row(refit, "d1", platform_id=1)["desktop__HL__a__std"] == pytest.approx(R200)
    assert fills["desktop"]["observed"] == 38 and fills["desktop"]["cells"] == 60
    assert np.array_equal(observed_cells(refit), observed_cells(platform))


def test_a_row_outside_the_fit_moves_no_fitted_value(platform):
    # d1/2's a-b median 220 -> 1000: with the fill fitted on platform 1, no platform-1 row moves;
    # the stored rule's column mean over every row moves d2/1's a-b median to (100 + 1000) / 2
    unfilled = unfilled_statistics(platform)
    moved = unfilled.copy()
    moved.loc[(moved["user_id"] == "d1") & (moved["platform_id"] == 2), "desktop__IL__a__b__median"] = 1000.0
    columns = statistic_columns(platform)
    dictionary = column_dictionary(
        [tuple([*c.split("__")[:3], *(c.split("__")[3:-1] or [""]), c.split("__")[-1]]) for c in columns]
    )
    ids = ["user_id", "platform_id", "device_type"]
    stored = [fill_values(u[ids], u[columns].to_numpy(), dictionary)[0] for u in (unfilled, moved)]
    fit = (platform["platform_id"] == 1).to_numpy()
    refit = [fill_fitted_on(s, fit)[0] for s in stored]
    assert refit[0][columns][fit].equals(refit[1][columns][fit])
    assert row(stored[1], "d2", platform_id=1)["desktop__IL__a__b__median"] == 550


def test_fitted_on_every_row_is_the_stored_rule(platform):
    refit, _ = fill_fitted_on(platform, np.ones(len(platform), bool))
    columns = statistic_columns(platform)
    assert np.allclose(refit[columns].to_numpy(float), platform[columns].to_numpy(float), equal_nan=True, rtol=1e-12)


def test_the_evaluation_sees_no_probe_value_in_an_enrolment_vector():
    # session grain: u2's session 1 held e for 20 ms (out of range); the stored rule fills its e
    # median with u2's session-2 value, 50. Session 2 probes: moving u2's probe e median 50 -> 500
    # moves u2's enrolment e median to 500 in the stored table; the evaluation's vectors (the
    # statistics before the fill) leave it missing either way, and no enrolment vector changes
    features = features_of(TASKS, "session", 2)
    assert row(features, "u2", session_id=1)["desktop__HL__e__median"] == 50
    unfilled = unfilled_statistics(features)
    moved = unfilled.copy()
    moved.loc[(moved["user_id"] == "u2") & (moved["session_id"] == 2), "desktop__HL__e__median"] = 500.0
    columns = statistic_columns(features)
    dictionary = column_dictionary(
        [tuple([*c.split("__")[:3], *(c.split("__")[3:-1] or [""]), c.split("__")[-1]]) for c in columns]
    )
    ids = ["user_id", "platform_id", "session_id", "device_type"]
    stored = [fill_values(u[ids], u[columns].to_numpy(), dictionary)[0] for u in (unfilled, moved)]
    assert row(stored[1], "u2", session_id=1)["desktop__HL__e__median"] == 500

    declared = next(f for f in TYPENET_ML if f.name == "typenet_ml/session").evaluation
    for declaration, leaks in ((declared, False), (dataclasses.replace(declared, vectors=None), True)):
        (ids0, v0), (ids1, v1) = (evaluation_samples(declaration, s) for s in stored)
        enrol = (ids0["session_id"] == 1).to_numpy()
        assert ids0.equals(ids1)
        assert np.array_equal(v0[enrol], v1[enrol], equal_nan=True) != leaks
