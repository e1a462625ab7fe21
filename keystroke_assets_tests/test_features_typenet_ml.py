"""features/typenet_ml: every statistic, the top-k digraph choice (every user of the device type,
count, code-point ties), key identity, the HL range and outlier rules and the three-step fill rule,
all on hand-written keypairs computed here by hand."""

import math

import pandas as pd
import pytest

from keystroke_assets.features.typenet_ml import GRAINS, top_digraphs, typenet_ml_features

from .feature_samples import make_pairs

DESKTOP = {"device_type": "desktop", "platform_id": 1, "video_id": 1}
TASKS = [
    # u1, session 1: HL t 100, h 80, e 40, T 100 (same key as t); IL t-h 100, h-e 120, e-t 160
    {**DESKTOP, "user_id": "u1", "session_id": 1, "task_id": 0,
     "strokes": [("t", 84, 0, 100), ("h", 72, 200, 280), ("e", 69, 400, 440), ("T", 84, 600, 700)]},
    # u1, session 2: HL t 120, h 60; IL t-h 180; no e
    {**DESKTOP, "user_id": "u1", "session_id": 2, "task_id": 9,
     "strokes": [("t", 84, 0, 120), ("h", 72, 300, 360)]},
    # u2: HL t 50 and 100, h 60, e 20 (< 30: left out of HL); IL t-h 50, h-e 140,
    # e-t 1680 (an outlier pair: |IL| > 1000 and its HL 20 < 30)
    {**DESKTOP, "user_id": "u2", "session_id": 1, "task_id": 0,
     "strokes": [("t", 84, 0, 50), ("h", 72, 100, 160), ("e", 69, 300, 320), ("t", 84, 2000, 2100)]},
    # u2, session 2: HL e 50, h 50; IL e-h 50 (a digraph u1 never typed)
    {**DESKTOP, "user_id": "u2", "session_id": 2, "task_id": 9, "strokes": [("e", 69, 0, 50), ("h", 72, 100, 150)]},
    # u3 on a phone: HL 90, 100, 80; IL 110, 100
    {"device_type": "mobile", "platform_id": 1, "video_id": 1, "user_id": "u3", "session_id": 1, "task_id": 0,
     "strokes": [("Unidentified", 0, 0, 90), ("Unidentified", 0, 200, 300), ("Unidentified", 0, 400, 480)]},
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
        ["desktop", "t", "h", 3], ["desktop", "e", "t", 2], ["mobile", "Unidentified", "Unidentified", 2]]
    # k above what qualifies: all of them, and never a digraph only one desktop user typed
    assert top_digraphs(pairs, 10)[["key1", "key2"]].values.tolist() == [
        ["t", "h"], ["e", "t"], ["h", "e"], ["Unidentified", "Unidentified"]]


def test_platform_grain_every_statistic_by_hand(pairs):
    features, dictionary, fills = typenet_ml_features(pairs, GRAINS["platform"], top_digraphs(pairs, 2))
    # keys of the version in code-point order (T is t); digraphs chosen for either device type
    hl_keys = sorted({c.split("__")[1] for c in features.columns if c.startswith("HL__")})
    assert hl_keys == ["Unidentified", "e", "h", "t"]
    assert sorted({tuple(c.split("__")[1:3]) for c in features.columns if c.startswith("IL__")}) == [
        ("Unidentified", "Unidentified"), ("e", "t"), ("t", "h")]

    u1 = row(features, "u1")
    # HL of t over u1's tasks: 100, 100 (T), 120
    assert u1["HL__t__median"] == 100 and u1["HL__t__q1"] == 100 and u1["HL__t__q3"] == 110
    assert u1["HL__t__mean"] == pytest.approx(320 / 3)
    assert u1["HL__t__std"] == pytest.approx(math.sqrt(((100 - 320 / 3) ** 2 * 2 + (120 - 320 / 3) ** 2) / 2))
    # HL of h: 80, 60
    assert (u1["HL__h__median"], u1["HL__h__mean"], u1["HL__h__q1"], u1["HL__h__q3"]) == (70, 70, 65, 75)
    assert u1["HL__h__std"] == pytest.approx(math.sqrt(200))
    # IL of t-h: 100 and 180
    assert (u1["IL__t__h__median"], u1["IL__t__h__q1"], u1["IL__t__h__q3"]) == (140, 120, 160)
    assert u1["IL__t__h__std"] == pytest.approx(math.sqrt(2 * 40**2))
    assert u1["IL__e__t__median"] == 160
    # one e only: std has n < 2, nobody has it (u2's e is too short) -> 0
    assert u1["HL__e__median"] == 40 and u1["HL__e__std"] == 0
    # u1 typed no phone digraph: the column mean over observed values, u3's median 105
    assert u1["IL__Unidentified__Unidentified__median"] == 105

    u2 = row(features, "u2")
    assert (u2["HL__t__median"], u2["HL__t__q1"], u2["HL__t__q3"]) == (75, 62.5, 87.5)
    assert u2["HL__t__std"] == pytest.approx(math.sqrt(2 * 25**2))
    assert (u2["HL__h__median"], u2["IL__t__h__median"]) == (55, 50)
    # u2's e held 20 ms is out of the HL range: only the 50-ms one counts
    assert (u2["HL__e__median"], u2["HL__e__mean"]) == (50, 50)
    # u2's only e-t pair is an outlier: missing, u2 has no other group at this grain, so the
    # column mean over observed values (u1's alone)
    assert u2["IL__e__t__median"] == 160

    u3 = row(features, "u3")
    assert u3["device_type"] == "mobile"
    assert u3["HL__e__median"] == 45  # the column mean of u1's 40 and u2's 50
    assert (u3["HL__Unidentified__median"], u3["HL__Unidentified__mean"], u3["HL__Unidentified__std"]) == (90, 90, 10)
    assert (u3["HL__Unidentified__q1"], u3["HL__Unidentified__q3"]) == (85, 95)
    assert (u3["IL__Unidentified__Unidentified__median"], u3["IL__Unidentified__Unidentified__q1"]) == (105, 102.5)

    # the column dictionary names each column's latency, keys and statistic
    entry = dictionary.set_index("column").loc["IL__e__t__q3"]
    assert (entry["latency"], entry["key1"], entry["key2"], entry["statistic"], entry["unit"]) == ("IL", "e", "t", "q3", "ms")
    assert set(dictionary["column"]) == {c for c in features.columns if "__" in c}
    assert fills["missing"] == fills["filled_with_user_mean"] + fills["filled_with_column_mean"] + fills["filled_with_zero"]
    assert fills["filled_with_user_mean"] == 0  # one group per user at this grain
    assert not features.drop(columns="platform_id").isna().any().any()


def test_session_grain_fills_from_the_same_users_other_groups_first(pairs):
    features, _, fills = typenet_ml_features(pairs, GRAINS["session"], top_digraphs(pairs, 2))
    first, second = row(features, "u1", session_id=1), row(features, "u1", session_id=2)
    assert (first["HL__t__median"], first["HL__t__std"]) == (100, 0)  # t and T, both 100 ms
    assert (second["HL__t__median"], second["HL__h__median"], second["IL__t__h__median"]) == (120, 60, 180)
    # u1's session 2 has no e: u1's own session-1 value (40), not the column mean (45 with u2's 50)
    assert second["HL__e__median"] == 40 and second["IL__e__t__median"] == 160
    # u2's session 1 has no e in range: u2's session-2 value (50)
    assert row(features, "u2", session_id=1)["HL__e__median"] == 50
    assert fills["filled_with_user_mean"] > 0
