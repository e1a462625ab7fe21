"""features/typenet_ml: every statistic, the top-k digraph choice (every user of the device type,
count, code-point ties), key identity, each device type's own columns, HL ranges and outlier rules,
and the three-step fill rule, all on hand-written keypairs computed here by hand."""

import math

import pandas as pd
import pytest

from keystroke_assets.features.typenet_ml import (
    COLUMN_LEVELS,
    GRAINS,
    fill_statistics,
    hl_statistics,
    il_statistics,
    join_statistics,
    top_digraphs,
    typenet_ml_features,
)
from keystroke_assets.features.typenet_ml_fill import own_columns_filled
from keystroke_assets.lib.latencies import DEFAULT_OUTLIER_THRESHOLDS

from .feature_samples import make_keystrokes, make_pairs

DESKTOP = {"device_type": "desktop", "platform_id": 1, "video_id": 1}
TASKS = [
    # u1, session 1: HL t 100, h 80, e 40, T 100 (same key as t); IL t-h 100, h-e 120, e-t 160
    {
        **DESKTOP,
        "user_id": "u1",
        "session_id": 1,
        "task_id": 0,
        "strokes": [("t", 84, 0, 100), ("h", 72, 200, 280), ("e", 69, 400, 440), ("T", 84, 600, 700)],
    },
    # u1, session 2: HL t 120, h 60; IL t-h 180; no e
    {**DESKTOP, "user_id": "u1", "session_id": 2, "task_id": 9, "strokes": [("t", 84, 0, 120), ("h", 72, 300, 360)]},
    # u2: HL t 50 and 100, h 60, e 20 (< 30: left out of HL); IL t-h 50, h-e 140,
    # e-t 1680 (an outlier pair: |IL| > 1000 and its HL 20 < 30)
    {
        **DESKTOP,
        "user_id": "u2",
        "session_id": 1,
        "task_id": 0,
        "strokes": [("t", 84, 0, 50), ("h", 72, 100, 160), ("e", 69, 300, 320), ("t", 84, 2000, 2100)],
    },
    # u2, session 2: HL e 50, h 50; IL e-h 50 (a digraph u1 never typed)
    {**DESKTOP, "user_id": "u2", "session_id": 2, "task_id": 9, "strokes": [("e", 69, 0, 50), ("h", 72, 100, 150)]},
    # u3 on a phone: HL 90, 100, 80; IL 110, 100
    {
        "device_type": "mobile",
        "platform_id": 1,
        "video_id": 1,
        "user_id": "u3",
        "session_id": 1,
        "task_id": 0,
        "strokes": [("Unidentified", 0, 0, 90), ("Unidentified", 0, 200, 300), ("Unidentified", 0, 400, 480)],
    },
]


@pytest.fixture(scope="module")
def pairs():
    """As the keypairs asset stores them: ids and keys categorical, key1 and key2 on one category list."""
    pairs = make_pairs(TASKS)
    keys = pd.CategoricalDtype(sorted(set(pairs["key1"]) | set(pairs["key2"])))
    return pairs.astype({"user_id": "category", "key1": keys, "key2": keys})


def row(features, user, **ids):
    match = features["user_id"] == user
    for column, value in ids.items():
        match &= features[column] == value
    (index,) = features.index[match]
    return features.loc[index]


def test_top_digraphs_every_user_of_the_device_count_then_code_points(pairs):
    # desktop: t-h typed 3 times (u1 twice, u2 once), e-t and h-e twice each (both users): the tie
    # goes to e-t, "e" < "h"; u1's e-t is not an outlier, u2's is, and counts still hold both.
    # e-h, typed by u2 only, never qualifies
    top = top_digraphs(pairs, 2)
    assert top.values.tolist() == [
        ["desktop", "t", "h", 3],
        ["desktop", "e", "t", 2],
        ["mobile", "Unidentified", "Unidentified", 2],
    ]
    # k above what qualifies: all of them, and never a digraph only one desktop user typed
    assert top_digraphs(pairs, 10)[["key1", "key2"]].values.tolist() == [
        ["t", "h"],
        ["e", "t"],
        ["h", "e"],
        ["Unidentified", "Unidentified"],
    ]


def test_session_grain_fills_from_the_same_users_other_groups_first(pairs):
    features, _, fills = typenet_ml_features(make_keystrokes(TASKS), pairs, GRAINS["session"], top_digraphs(pairs, 2))
    first, second = row(features, "u1", session_id=1), row(features, "u1", session_id=2)
    # t and T, both 100 ms: one key; std over two holds is 0, observed
    assert (first["desktop__HL__t__median"], first["desktop__HL__t__std"]) == (100, 0)
    assert (second["desktop__HL__t__median"], second["desktop__HL__h__median"]) == (120, 60)
    assert second["desktop__IL__t__h__median"] == 180
    # u1's session 2 has no e: u1's own session-1 value (40), not the column mean (45 with u2's 50)
    assert second["desktop__HL__e__median"] == 40 and second["desktop__IL__e__t__median"] == 160
    # u2's session 1 has no e in range (its e held 20 ms): u2's session-2 value (50)
    assert row(features, "u2", session_id=1)["desktop__HL__e__median"] == 50
    # the phone's row: its own columns only
    u3 = row(features, "u3", session_id=1)
    assert u3["mobile__HL__Unidentified__median"] == 90 and pd.isna(u3["desktop__HL__e__median"])
    assert fills["desktop"]["user_mean"] > 0


# Two desktop and two mobile users, one task per (user, platform); d1 and m1 on two platforms, so
# the platform grain has a user mean to fill from. A = "a", B = "b", S = "Key.space", U = "Unidentified".
D, M = (
    {"device_type": "desktop", "video_id": 1, "session_id": 1, "task_id": 0},
    {"device_type": "mobile", "video_id": 1, "session_id": 1, "task_id": 0},
)
S, U = "Key.space", "Unidentified"
MIXED = [
    # d1/1: HL a 100, b 60, a 120; pairs a-b (IL 100), b-a (IL 140)
    {**D, "user_id": "d1", "platform_id": 1, "strokes": [("a", 65, 0, 100), ("b", 66, 200, 260), ("a", 65, 400, 520)]},
    # d1/2: HL a 80, b 20 (< 30: no desktop hold); pair a-b (IL 220)
    {**D, "user_id": "d1", "platform_id": 2, "strokes": [("a", 65, 0, 80), ("b", 66, 300, 320)]},
    # d2/1: HL b 50, a 40, b 60, c 10 (< 30: c never held in range, so no c column); pairs b-a (IL 50),
    # a-b (IL 1360: an outlier), b-c (IL 40, typed by d2 only)
    {
        **D,
        "user_id": "d2",
        "platform_id": 1,
        "strokes": [("b", 66, 0, 50), ("a", 65, 100, 140), ("b", 66, 1500, 1560), ("c", 67, 1600, 1610)],
    },
    # m1/1: HL U 3, U 5, S 4, U 3 (a phone's holds: inside mobile's range); pairs U-U (IL 97), U-S (95), S-U (96)
    {
        **M,
        "user_id": "m1",
        "platform_id": 1,
        "strokes": [(U, 0, 0, 3), (U, 0, 100, 105), (S, 32, 200, 204), (U, 0, 300, 303)],
    },
    # m1/2: HL U 6, S 2; pair U-S (IL 94)
    {**M, "user_id": "m1", "platform_id": 2, "strokes": [(U, 0, 0, 6), (S, 32, 100, 102)]},
    # m2/1: HL S 2, U 4, U 8, S 10; pairs S-U (IL 48), U-U (IL 1946: an outlier), U-S (IL 92)
    {
        **M,
        "user_id": "m2",
        "platform_id": 1,
        "strokes": [(S, 32, 0, 2), (U, 0, 50, 54), (U, 0, 2000, 2008), (S, 32, 2100, 2110)],
    },
]
R200, R50, R32, R8 = math.sqrt(200), math.sqrt(50), math.sqrt(32), math.sqrt(8)
# std of [3, 3, 5]: mean 11/3, squares 4/9 + 4/9 + 16/9 = 24/9, / (3 - 1) = 4/3
R43 = math.sqrt(4 / 3)
# (median, mean, std, q1, q3) of every own column. Where a value is filled, the comment says by which rule.
EXPECTED = {
    ("d1", 1): {
        "HL__a": (110, 110, R200, 105, 115),  # holds 100, 120: std sqrt((10² + 10²) / 1); q1 100 + 0.25 * 20
        "HL__b": (60, 60, R50, 60, 60),  # one hold: std missing, d1/2 has no b std -> column mean: d2's sqrt(50) alone
        "IL__a__b": (100, 100, 0, 100, 100),  # std: no desktop row has two a-b pairs -> 0
        "IL__b__a": (140, 140, 0, 140, 140),  # std -> 0 likewise
    },
    ("d1", 2): {
        "HL__a": (80, 80, R200, 80, 80),  # std: d1's mean over its observed groups (d1/1's sqrt(200))
        "HL__b": (60, 60, R50, 60, 60),  # no b in range: d1/1's values; std as d1/1's (column mean)
        "IL__a__b": (220, 220, 0, 220, 220),
        "IL__b__a": (140, 140, 0, 140, 140),  # no b-a: d1/1's values (user mean); std 0
    },
    ("d2", 1): {
        "HL__a": (40, 40, R200, 40, 40),  # std: d2 has no other group -> column mean over observed: d1/1's alone
        "HL__b": (55, 55, R50, 52.5, 57.5),  # holds 50, 60
        "IL__a__b": (160, 160, 0, 160, 160),  # its only a-b is an outlier: column mean of d1's 100 and 220
        "IL__b__a": (50, 50, 0, 50, 50),
    },
    ("m1", 1): {
        "HL__Key.space": (4, 4, R32, 4, 4),  # std: m1/2's is missing too -> column mean: m2's sqrt(32) alone
        "HL__Unidentified": (3, 11 / 3, R43, 3, 4),  # [3, 3, 5]: q1 at position 0.5 -> 3, q3 at 1.5 -> 4
        "IL__Key.space__Unidentified": (96, 96, 0, 96, 96),
        "IL__Unidentified__Key.space": (95, 95, 0, 95, 95),
        "IL__Unidentified__Unidentified": (97, 97, 0, 97, 97),
    },
    ("m1", 2): {
        "HL__Key.space": (2, 2, R32, 2, 2),  # std: column mean
        "HL__Unidentified": (6, 6, R43, 6, 6),  # std: m1's mean over observed groups (m1/1's)
        "IL__Key.space__Unidentified": (96, 96, 0, 96, 96),  # none: m1/1's (user mean)
        "IL__Unidentified__Key.space": (94, 94, 0, 94, 94),
        "IL__Unidentified__Unidentified": (97, 97, 0, 97, 97),  # none: m1/1's (user mean)
    },
    ("m2", 1): {
        "HL__Key.space": (6, 6, R32, 4, 8),  # holds 2, 10: std sqrt((4² + 4²) / 1)
        "HL__Unidentified": (6, 6, R8, 5, 7),  # holds 4, 8
        "IL__Key.space__Unidentified": (48, 48, 0, 48, 48),
        "IL__Unidentified__Key.space": (92, 92, 0, 92, 92),
        # its only U-U is an outlier: column mean over observed cells, m1/1's 97 (m1/2's is a fill)
        "IL__Unidentified__Unidentified": (97, 97, 0, 97, 97),
    },
}
DEVICE = {"d1": "desktop", "d2": "desktop", "m1": "mobile", "m2": "mobile"}


@pytest.fixture(scope="module")
def mixed():
    pairs = make_pairs(MIXED)
    keys = pd.CategoricalDtype(sorted(set(pairs["key1"]) | set(pairs["key2"])))
    return pairs.astype({"user_id": "category", "key1": keys, "key2": keys})


def test_top_digraphs_per_device_type(mixed):
    # desktop: a-b 3 (d1 twice, d2 once, its outlier counted), b-a 2; b-c (d2 only) never
    # qualifies, so k = 3 takes the two that do. mobile: U-S 3 (m1 twice), then S-U and U-U 2
    # each, "Key.space" < "Unidentified"
    assert top_digraphs(mixed, 3).values.tolist() == [
        ["desktop", "a", "b", 3],
        ["desktop", "b", "a", 2],
        ["mobile", U, S, 3],
        ["mobile", S, U, 2],
        ["mobile", U, U, 2],
    ]


def test_platform_grain_every_cell_by_hand(mixed):
    features, dictionary, fills = typenet_ml_features(
        make_keystrokes(MIXED), mixed, GRAINS["platform"], top_digraphs(mixed, 3)
    )
    stats = ["median", "mean", "std", "q1", "q3"]
    columns = {
        device: [f"{device}__{stem}__{s}" for stem in EXPECTED[(user, 1)] for s in stats]
        for user, device in (("d1", "desktop"), ("m1", "mobile"))
    }
    # each device type its own columns, in order; no c (held 10 ms on a desktop), no b-c
    assert [c for c in features.columns if "__" in c] == columns["desktop"] + columns["mobile"]
    assert features[["user_id", "platform_id", "device_type"]].astype(object).values.tolist() == [
        ["d1", 1, "desktop"],
        ["d1", 2, "desktop"],
        ["d2", 1, "desktop"],
        ["m1", 1, "mobile"],
        ["m1", 2, "mobile"],
        ["m2", 1, "mobile"],
    ]
    for (user, platform), expected in EXPECTED.items():
        got = row(features, user, platform_id=platform)
        own, other = DEVICE[user], {"desktop": "mobile", "mobile": "desktop"}[DEVICE[user]]
        want = [v for values in expected.values() for v in values]
        assert got[columns[own]].astype(float).tolist() == pytest.approx(want), (user, platform)
        assert got[columns[other]].isna().all(), (user, platform)  # never filled

    # counts per rule, from the comments above. desktop: 3 rows x 20 columns = 60 cells; missing:
    # d1/1: HL b std (column), IL a-b std, IL b-a std (zero); d1/2: HL a std (user), HL b median,
    # mean, q1, q3 (user) and std (column), IL a-b std (zero), IL b-a median, mean, q1, q3 (user) and
    # std (zero); d2/1: HL a std (column), IL a-b median, mean, q1, q3 (column) and std (zero), IL b-a std (zero)
    assert fills["desktop"] == {
        "observed": 60 - 22,
        "user_mean": 9,
        "column_mean": 7,
        "zero": 6,
        "cells": 60,
        "filled_share": 22 / 60,
    }
    # mobile: 3 rows x 25 columns = 75; m1/1: HL S std (column), three IL std (zero); m1/2: HL S std
    # (column), HL U std (user), IL S-U and U-U median, mean, q1, q3 (user) and all three IL std
    # (zero); m2/1: IL U-U median, mean, q1, q3 (column), three IL std (zero)
    assert fills["mobile"] == {
        "observed": 75 - 24,
        "user_mean": 9,
        "column_mean": 6,
        "zero": 9,
        "cells": 75,
        "filled_share": 24 / 75,
    }

    entry = dictionary.set_index("column").loc["mobile__IL__Unidentified__Key.space__q3"]
    assert entry[["device_type", "latency", "key1", "key2", "statistic", "unit"]].tolist() == [
        "mobile",
        "IL",
        U,
        S,
        "q3",
        "ms",
    ]
    entry = dictionary.set_index("column").loc["desktop__HL__a__std"]
    assert entry[["device_type", "latency", "key1", "statistic"]].tolist() == ["desktop", "HL", "a", "std"]
    assert entry["key2"] is None
    assert own_columns_filled(features) == (True, {"own_cells_null": 0, "other_device_cells_not_null": 0})


def test_the_check_sees_an_own_cell_left_null_and_an_other_device_cell_filled(mixed):
    features, _, _ = typenet_ml_features(make_keystrokes(MIXED), mixed, GRAINS["platform"], top_digraphs(mixed, 3))
    features.loc[0, "desktop__HL__a__mean"] = float("nan")  # d1/1, desktop
    features.loc[0, "mobile__HL__Unidentified__mean"] = 1.0
    features.loc[3, "desktop__HL__b__q1"] = 1.0  # m1/1, mobile
    assert own_columns_filled(features) == (False, {"own_cells_null": 1, "other_device_cells_not_null": 2})


def test_column_mean_over_observed_cells_only():
    # the case: u1 observed 100 on one platform, missing on two others (user mean 100);
    # u2 observed 200; u3 has nothing -> (100 + 200) / 2 = 150, never (100 + 100 + 100 + 200) / 4 = 125
    groups = pd.DataFrame(
        {"user_id": ["u1", "u1", "u1", "u2", "u3"], "platform_id": [1, 2, 3, 1, 1], "device_type": ["desktop"] * 5}
    )
    column = pd.MultiIndex.from_tuples([("desktop", "HL", "a", "", "mean")], names=COLUMN_LEVELS)
    statistics = pd.DataFrame({column[0]: [100, None, None, 200, None]}, dtype=float)
    statistics.columns = column
    features, _, fills = fill_statistics(groups, statistics)
    assert features["desktop__HL__a__mean"].tolist() == [100, 100, 100, 200, 150]
    assert fills["desktop"] == {
        "observed": 2,
        "user_mean": 2,
        "column_mean": 1,
        "zero": 0,
        "cells": 5,
        "filled_share": 3 / 5,
    }


def test_hl_from_keystrokes_joins_a_group_without_pairs(mixed):
    # a stored keystrokes table has the one-keystroke task that keypairs cannot: d3 held a for 70 ms
    strokes = make_keystrokes(
        [
            *MIXED,
            {
                "user_id": "d3",
                "device_type": "desktop",
                "platform_id": 1,
                "video_id": 1,
                "session_id": 1,
                "task_id": 0,
                "strokes": [("A", 65, 0, 70)],
            },
        ]
    )
    grain = GRAINS["platform"]
    groups, statistics = join_statistics(
        grain,
        hl_statistics(strokes, grain, DEFAULT_OUTLIER_THRESHOLDS),
        il_statistics(mixed, grain, top_digraphs(mixed, 3)),
    )
    features, _, _ = fill_statistics(groups, statistics)
    d3 = row(features, "d3", platform_id=1)
    assert d3["desktop__HL__a__median"] == 70  # "A" is a
    # no pairs: IL from the column mean over observed cells (d1's 100 and 220)
    assert d3["desktop__IL__a__b__median"] == 160
    assert row(features, "m2", platform_id=1)["mobile__HL__Unidentified__q1"] == 5
