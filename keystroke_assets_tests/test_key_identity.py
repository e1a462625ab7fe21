"""One identity per key across sources (docs/features.md §3): Aalto's spellings, the web app's names
and the old raw comma are one key wherever keys are grouped or coded (keycodes, typenet_ml,
behavioral's backspace / Shift / Caps Lock)."""

import pandas as pd

from keystroke_assets.features.behavioral import behavioral_features
from keystroke_assets.features.common import key_identity_codes
from keystroke_assets.lib.keycodes import key_identity, keycode

from .feature_samples import make_keystrokes

# (Aalto's spelling, the web app's name, browser keyCode)
SAME_KEYS = [
    (" ", "Key.space", 32),
    ("BKSP", "Key.backspace", 8),
    ("SHIFT", "Key.shift", 16),
    ("CTRL", "Key.ctrl", 17),
    ("ALT", "Key.alt", 18),
    ("ENTER", "Key.enter", 13),
    ("TAB", "Key.tab", 9),
    ("CAPS_LOCK", "Key.caps_lock", 20),
    ("ARW_LEFT", "Key.left", 37),
    ("ARW_DOWN", "Key.down", 40),
    (",", "Key.comma", 188),  # the web app's older files wrote the comma raw
    ("T", "t", 84),  # a character lower-cased
]


def test_both_sources_spellings_are_one_key():
    aalto, web, codes = zip(*SAME_KEYS)
    assert (
        key_identity(pd.Series(aalto)).tolist()
        == key_identity(pd.Series(web)).tolist()
        == [
            "Key.space",
            "Key.backspace",
            "Key.shift",
            "Key.ctrl",
            "Key.alt",
            "Key.enter",
            "Key.tab",
            "Key.caps_lock",
            "Key.left",
            "Key.down",
            "Key.comma",
            "t",
        ]
    )
    assert [keycode(k) for k in aalto] == [keycode(k) for k in web] == list(codes)
    # keys no source names the same way stay as recorded; an empty name is a key nobody could name
    assert key_identity(pd.Series(["Key.shift_r", "Dead", "", None])).tolist() == [
        "Key.shift_r",
        "Dead",
        "Unidentified",
        "Unidentified",
    ]
    assert (keycode("Unidentified"), keycode("")) == (0, 0)


def test_identity_codes_group_both_spellings_and_nulls():
    codes, identities = key_identity_codes(pd.Series(["BKSP", "Key.backspace", " ", "A", "a", None, "Unidentified"]))
    assert identities.tolist() == ["Key.backspace", "Key.space", "Unidentified", "a"]  # code-point order
    assert codes.tolist() == [0, 0, 1, 3, 3, 2, 2]


def test_behavioral_counts_backspace_shift_caps_lock_by_name_in_either_source():
    # the named keys carry keycode 0 on purpose (a source whose codes are unknown): the name alone
    # decides. Letters keep theirs, so at most half the keys read as unidentified and rates are kept.
    # An Aalto section: SHIFT, T, H, E, BKSP, CAPS_LOCK, A (3 of 7 with code 0)
    aalto = {
        "user_id": "100001",
        "device_type": "desktop",
        "platform_id": None,
        "video_id": None,
        "session_id": 1,
        "task_id": 1,
        "strokes": [
            (k, c, 200 * i, 200 * i + 100)
            for i, (k, c) in enumerate(
                [("SHIFT", 0), ("T", 84), ("H", 72), ("E", 69), ("BKSP", 0), ("CAPS_LOCK", 0), ("A", 65)]
            )
        ],
    }
    # a web-app task: Key.shift, t, Key.backspace, Key.backspace, u, v (3 of 6 with code 0)
    web = {
        "user_id": "a" * 32,
        "device_type": "desktop",
        "platform_id": 1,
        "video_id": 1,
        "session_id": 1,
        "task_id": 0,
        "strokes": [
            (k, c, 200 * i, 200 * i + 100)
            for i, (k, c) in enumerate(
                [("Key.shift", 0), ("t", 84), ("Key.backspace", 0), ("Key.backspace", 0), ("u", 85), ("v", 86)]
            )
        ],
    }
    typed = pd.DataFrame(
        {
            "user_id": ["a" * 32],
            "task_id": pd.array([0], dtype="Int64"),
            "typed_characters": pd.array([2], dtype="Int64"),
        }
    )
    features = behavioral_features(make_keystrokes([aalto, web]), typed).set_index(["grain", "user_id"])
    a, w = features.loc[("task", "100001")], features.loc[("task", "a" * 32)]
    assert (a["backspace_rate"], a["shift_keystrokes"], a["shift_rate"], a["caps_lock_keystrokes"]) == (
        1 / 7,
        1,
        1 / 7,
        1,
    )
    assert (w["backspace_rate"], w["shift_keystrokes"], w["caps_lock_keystrokes"]) == (2 / 6, 1, 0)
