"""features/behavioral: every measure by hand on constructed tasks, typed characters counted (not
bytes, never stored), real lines, the checks catching wrong outputs; and no personal data in any
feature asset of the real samples."""

import math
import re

import numpy as np
import pandas as pd
import pytest

from keystroke_assets.assets.common import failed_rules
from keystroke_assets.features.behavioral import BEHAVIORAL, behavioral_features, typed_characters

from .feature_samples import FEATURE_KEYS, make_keystrokes, real_version

U1, U2, U3 = "a" * 32, "b" * 32, "100001"
WEB = {"device_type": "desktop", "video_id": 1, "session_id": 1}
# u1, task 0: PL 100, 600, 1200, 2600, 100; IL -20 (rollover), 520, 1140, 2550, 40
T1 = {
    **WEB,
    "user_id": U1,
    "platform_id": 1,
    "task_id": 0,
    "strokes": [
        ("Key.shift", 16, 0, 120),
        ("H", 72, 100, 180),
        ("i", 73, 700, 760),
        ("Key.backspace", 8, 1900, 1950),
        ("Key.caps_lock", 20, 4500, 4560),
        ("O", 79, 4600, 4680),
    ],
}
# u1, task 1: PL 300, 2700
T2 = {
    **WEB,
    "user_id": U1,
    "platform_id": 2,
    "task_id": 1,
    "strokes": [("a", 65, 0, 100), ("b", 66, 300, 380), ("c", 67, 3000, 3050)],
}
# u2 on a phone: 3 of 4 keys Unidentified (keycode 0)
T3 = {
    **WEB,
    "device_type": "mobile",
    "user_id": U2,
    "platform_id": 1,
    "task_id": 0,
    "strokes": [
        ("Unidentified", 0, 0, 50),
        ("Unidentified", 0, 200, 260),
        ("Key.enter", 13, 400, 450),
        ("Unidentified", 0, 600, 640),
    ],
}
# an Aalto section: no typed text object
T4 = {
    "user_id": U3,
    "device_type": "desktop",
    "platform_id": None,
    "video_id": None,
    "session_id": 7,
    "task_id": 7,
    "strokes": [("a", 65, 0, 100), ("b", 66, 200, 300)],
}
TYPED = pd.DataFrame(
    {
        "user_id": [U1, U1, U2],
        "task_id": pd.array([0, 1, 0], dtype="Int64"),
        "typed_characters": pd.array([2, 3, 1], dtype="Int64"),
    }
)


@pytest.fixture(scope="module")
def features():
    return behavioral_features(make_keystrokes([T1, T2, T3, T4]), TYPED)


def row(features, grain, user, task=None):
    mask = (features["grain"] == grain) & (features["user_id"] == user)
    if task is not None:
        mask &= features["task_id"] == task
    assert mask.sum() == 1
    return features[mask].iloc[0]


def test_task_measures_by_hand(features):
    t1 = row(features, "task", U1, 0)
    expected = {
        "keystrokes": 6,
        "pairs": 5,
        "active_duration_s": 4.68,  # last release 4680 - first press 0
        "keystrokes_per_minute": 6 / (4.68 / 60),  # 76.92
        "typed_characters": 2,
        "words_per_minute": (2 / 5) / (4.68 / 60),  # 5.128
        "unidentified_share": 0.0,
        "backspace_rate": 1 / 6,
        "rollover_rate": 1 / 5,  # IL -20
        "pauses_500ms": 3,
        "pauses_1000ms": 2,
        "pauses_2000ms": 1,  # PL 600 1200 2600 / 1200 2600 / 2600
        "pause_share_500ms": 3 / 5,
        "pause_share_1000ms": 2 / 5,
        "pause_share_2000ms": 1 / 5,
        "pause_mean_ms": (600 + 1200 + 2600) / 3,
        "bursts": 2,  # split at PL 2600
        "burst_mean_length": 6 / 2,
        # PL mean 920, deviations -820 -320 280 1680 -820, squares sum 4348000, std sqrt(4348000 / 4)
        "pl_cv": math.sqrt(4348000 / 4) / 920,
        # 50 ms bins: 100 -> 2 (twice), 600 -> 12, 1200 -> 24, 2600 -> overflow: p = .4 .2 .2 .2
        "pl_entropy_bits": -(0.4 * math.log2(0.4) + 3 * 0.2 * math.log2(0.2)),  # 1.921928
        "shift_keystrokes": 1,
        "shift_rate": 1 / 6,
        "caps_lock_keystrokes": 1,
        "caps_lock_rate": 1 / 6,
    }
    assert set(expected) == set(features.columns) - {
        "grain",
        "user_id",
        "device_type",
        "platform_id",
        "video_id",
        "session_id",
        "task_id",
    }
    for column, value in expected.items():
        assert t1[column] == pytest.approx(value), column


def test_user_measures_by_hand(features):
    u1 = row(features, "user", U1)
    # tasks 0 and 1 together: 6 + 3 keystrokes, 5 + 2 pairs, 4.68 + 3.05 s active, 2 + 3 characters
    assert (u1["keystrokes"], u1["pairs"], u1["typed_characters"]) == (9, 7, 5)
    assert u1["active_duration_s"] == pytest.approx(7.73)
    assert u1["keystrokes_per_minute"] == pytest.approx(9 / (7.73 / 60))  # 69.86
    assert u1["words_per_minute"] == pytest.approx(1 / (7.73 / 60))  # (5 / 5) / minutes = 7.76
    # pauses: PL > 500: 600 1200 2600 2700; > 2000: 2600 2700; bursts do not span tasks: 2 + 2
    assert (u1["pauses_500ms"], u1["pauses_2000ms"], u1["bursts"]) == (4, 2, 4)
    assert u1["pause_mean_ms"] == pytest.approx((600 + 1200 + 2600 + 2700) / 4)
    assert u1["burst_mean_length"] == pytest.approx(9 / 4)
    assert u1["backspace_rate"] == pytest.approx(1 / 9) and u1["rollover_rate"] == pytest.approx(1 / 7)
    assert pd.isna(u1["task_id"]) and pd.isna(u1["platform_id"])


def test_phone_and_aalto_rows_are_null_where_unknowable(features):
    phone = row(features, "task", U2, 0)
    assert phone["unidentified_share"] == pytest.approx(3 / 4)
    for column in ["backspace_rate", "shift_rate", "shift_keystrokes", "caps_lock_rate", "caps_lock_keystrokes"]:
        assert pd.isna(phone[column]), column
    assert phone["rollover_rate"] == 0 and phone["keystrokes"] == 4
    aalto = row(features, "task", U3, 7)
    assert pd.isna(aalto["typed_characters"]) and np.isnan(aalto["words_per_minute"])
    assert aalto["keystrokes_per_minute"] == pytest.approx(2 / (0.3 / 60))  # 2 keystrokes in 300 ms
    assert np.isnan(aalto["pause_mean_ms"])  # no PL > 500
    assert aalto["bursts"] == 1 and aalto["pl_entropy_bits"] == 0  # one PL of 200: one bin


def test_typed_characters_counts_characters_and_reads_only_raw_text():
    manifest = pd.DataFrame(
        {
            "name": [f"f_{U1}_0_raw.txt", f"i_{U1}_1_raw.txt", f"{U1}_demographics.json", f"f_{U1}_0.csv"],
            "kind": ["raw_text", "raw_text", "record", "keystrokes"],
            "user_id": [U1] * 4,
            "kept_as": ["k0", "k1", "k2", "k3"],
        }
    )
    blobs = {"k0": "héllo wörld".encode(), "k1": b"", "k2": b'{"email": "x@y.z"}', "k3": b"P,a,1\n"}
    asked = []

    def read(rows):
        asked.extend(rows["kept_as"])
        return [blobs[n] for n in rows["kept_as"]]

    typed = typed_characters(manifest, read)
    assert asked == ["k0", "k1"]  # the typed texts only
    # "héllo wörld" is 11 characters (13 bytes in UTF-8); the empty text 0
    assert typed[["task_id", "typed_characters"]].astype(int).values.tolist() == [[0, 11], [1, 0]]
    assert list(typed.columns) == ["user_id", "task_id", "typed_characters"]


def test_checks_pass_and_catch_wrong_outputs(features):
    assert not failed_rules(features, BEHAVIORAL.all_checks)

    def failed(df):
        return failed_rules(df, BEHAVIORAL.all_checks)

    rate = features.copy()
    rate.loc[0, "rollover_rate"] = 1.5
    assert failed(rate) == {"rates_in_range"}
    bursts = features.copy()
    bursts.loc[0, "bursts"] += 1
    assert failed(bursts) == {"counts_consistent"}
    personal = features.assign(user_email="x")
    assert failed(personal) == {"no_personal_data"}
    email = features.copy()
    email["user_id"] = email["user_id"].astype(object)
    email.loc[0, "user_id"] = "someone@example.org"
    assert failed(email) == {"no_personal_data"}


def test_real_lines(real_data, tmp_path_factory):
    real = real_version(real_data, tmp_path_factory)
    table = real.read("features/behavioral")
    assert [c for c in real.failed_checks if c[0] == "features/behavioral"] == []
    t = row(table, "task", "090e14f795db6d9fad9fc4ddd6ff5094", 0)
    # f_090e..._0.csv: 304 alternating events = 152 keystrokes; first press 1735660013225, last
    # release 1735660134621: 121.396 s; f_090e..._0_raw.txt is 151 ASCII characters
    assert (t["keystrokes"], t["typed_characters"]) == (152, 151)
    assert t["active_duration_s"] == pytest.approx(121.396)
    assert t["words_per_minute"] == pytest.approx((151 / 5) / (121.396 / 60))  # 14.93
    # the file's 152 keystrokes are plain letters and spaces: no Shift, no Caps Lock
    assert (t["shift_keystrokes"], t["caps_lock_keystrokes"]) == (0, 0)
    aalto = table[(table["user_id"] == "100001")]
    assert aalto["words_per_minute"].isna().all()


# What the uploads hold that is personal (docs/data.md §1), as column names and as values.
PERSONAL_NAMES = re.compile(
    r"e_?mail|(^|_)age($|_)|gender|user_?agent|consent|handedness|education|raw_text|typed_text"
)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def test_no_personal_data_in_any_feature_asset(real_data, tmp_path_factory):
    real = real_version(real_data, tmp_path_factory)
    web = real_data / "fpd_webapp_2025" / "web_app_data"
    # every typed text of the samples (its first 25 characters), the demographics stub's values
    # and the task metadata's user agents
    typed = [p.read_text(errors="replace")[:25] for p in web.glob("*_raw.txt")]
    typed = [t for t in typed if len(t) >= 15]
    secrets = typed + ["synthetic-stub@example.invalid", "SYNTHETIC", "Mozilla/5.0"]
    assert len(typed) > 40
    for key in [k.to_user_string() for k in FEATURE_KEYS]:
        table = real.read(key)
        assert not [c for c in table.columns if PERSONAL_NAMES.search(c.lower())], key
        # every value that is text: object columns hold strings or (typenet_sequences' steps) arrays
        values = set()
        for column in table.select_dtypes(include=["object", "string", "category"]).columns:
            cells = table[column].dropna()
            if len(cells) and isinstance(cells.iloc[0], np.ndarray):
                assert all(c.dtype == np.float32 for c in cells), key
            else:
                values |= set(cells.astype(str).unique())
        assert not [v for v in values if EMAIL.search(v)], key
        assert not [v for v in values for s in secrets if s in v], key
        # nor in what the UI shows about the materialization
        shown = " ".join(str(v.value) for v in real.metadata[key].values())
        assert not EMAIL.search(shown) and not [s for s in secrets if s in shown], key
