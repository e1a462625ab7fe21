"""features/kvc: keystrokes by hand, task names, real lines, the checks catching wrong outputs."""

import numpy as np
import pandas as pd
import pytest

from keystroke_assets.features.kvc import COLUMNS, KVC, kvc_keystrokes
from keystroke_assets.lib.rules import failed_rules

from .feature_samples import make_keystrokes, real_version

WEB = {"user_id": "u1", "device_type": "desktop", "platform_id": 3, "video_id": 2, "session_id": 2, "task_id": 14}
AALTO = {
    "user_id": "100001",
    "device_type": "desktop",
    "platform_id": None,
    "video_id": None,
    "session_id": 1090979,
    "task_id": 1090979,
}


@pytest.fixture(scope="module")
def keystrokes():
    return kvc_keystrokes(
        make_keystrokes(
            [
                {**WEB, "strokes": [("h", 72, 1000, 1090), ("Key.shift", 16, 1050, 1300), ("I", 73, 1200, 1260)]},
                {**AALTO, "strokes": [("a", 65, 5, 50), ("b", 66, 60, 61)]},
            ]
        )
    )


def test_keystrokes_by_hand(keystrokes):
    assert list(keystrokes.columns) == COLUMNS
    assert keystrokes[["press_ms", "release_ms", "keycode"]].dtypes.tolist() == [np.int64] * 3
    web = keystrokes[keystrokes["user_id"] == "u1"]
    # every keystroke once, in press order, including the task's last one (key2 of the last pair)
    assert web[["press_ms", "release_ms", "keycode"]].to_numpy().tolist() == [
        [1000, 1090, 72],
        [1050, 1300, 16],
        [1200, 1260, 73],
    ]
    assert web["sequence_id"].tolist() == [0, 1, 2]
    # task name <platform>_<video>_<session>; an Aalto section has only its id
    assert set(web["task"]) == {"3_2_2"}
    aalto = keystrokes[keystrokes["user_id"] == "100001"]
    assert set(aalto["task"]) == {"1090979"}
    assert aalto[["press_ms", "release_ms", "keycode"]].to_numpy().tolist() == [[5, 50, 65], [60, 61, 66]]


def test_checks_pass_and_catch_wrong_outputs(keystrokes):
    assert not failed_rules(keystrokes, KVC.all_checks)

    def failed(df):
        return failed_rules(df, KVC.all_checks)

    early = keystrokes.copy()
    early.loc[0, "release_ms"] = 999  # pressed at 1000
    assert failed(early) == {"release_after_press"}
    reordered = keystrokes.iloc[[1, 0, 2, 3, 4]].reset_index(drop=True)
    assert failed(reordered) == {"press_order"}
    codes = keystrokes.copy()
    codes.loc[2, "keycode"] = 300
    assert failed(codes) == {"keycode_range"}


def test_real_lines(real_data, tmp_path_factory):
    real = real_version(real_data, tmp_path_factory)
    table = real.read("features/kvc")
    assert [c for c in real.failed_checks if c[0] == "features/kvc"] == []
    web = table[(table["user_id"] == "090e14f795db6d9fad9fc4ddd6ff5094") & (table["task"] == "1_1_1")]
    # f_090e..._0.csv (facebook, video 1, session 1) starts P s, R s, P t, R t, P u, R u
    assert web[["press_ms", "release_ms", "keycode"]].head(3).to_numpy().tolist() == [
        [1735660013225, 1735660013324, 83],
        [1735660013866, 1735660013922, 84],
        [1735660014562, 1735660014634, 85],
    ]
    # 304 events alternating press / release: 152 keystrokes; the last is P k 134545, R k 134621
    assert len(web) == 152
    assert web[["press_ms", "release_ms", "keycode"]].iloc[-1].tolist() == [1735660134545, 1735660134621, 75]
    aalto = table[(table["user_id"] == "100001") & (table["task"] == "1090979")]
    # 100001_keystrokes.txt: SHIFT 1473275372512-372663 (16), W 372583-372703 (87), a 372759-372903 (65)
    assert aalto[["press_ms", "release_ms", "keycode"]].head(3).to_numpy().tolist() == [
        [1473275372512, 1473275372663, 16],
        [1473275372583, 1473275372703, 87],
        [1473275372759, 1473275372903, 65],
    ]
    # every keystroke of every task is there once: keypairs + one per task
    pairs = real.read("keypairs")
    assert len(table) == len(pairs) + pairs.groupby(["user_id", "task_id"], observed=True).ngroups
    assert isinstance(table["task"].iloc[0], str) and pd.api.types.is_integer_dtype(table["keycode"])
