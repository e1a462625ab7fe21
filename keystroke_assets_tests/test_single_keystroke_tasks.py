"""A task of one keystroke has no pair, but it is a task: kvc, typenet_sequences and behavioral
(features defined on single keystrokes, docs/features.md §3) keep it, read from the keystrokes."""

import numpy as np
import pandas as pd
import pytest

from keystroke_assets.features.behavioral import behavioral_features
from keystroke_assets.features.kvc import kvc_keystrokes
from keystroke_assets.features.typenet_sequences import sequence_array, sequence_features
from keystroke_assets.lib.latencies import keystrokes_from_events

# Aalto participant 7: section 1 with two keystrokes (h 1000..1100, i 1150..1230), section 2 with
# one (q 5000..5090).
ROWS = pd.DataFrame(
    {
        "file": "7_keystrokes.txt",
        "user_id": "7",
        "device_type": "desktop",
        "platform_id": pd.NA,
        "video_id": pd.NA,
        "session_id": pd.array([1, 1, 2], dtype="Int64"),
        "task_id": pd.array([1, 1, 2], dtype="Int64"),
        "line": [2, 3, 4],
        "event": "K",
        "key": ["h", "i", "q"],
        "time_ms": [1000, 1150, 5000],
        "release_ms": [1100, 1230, 5090],
        "keycode": [72, 73, 81],
    }
)
NO_TEXT = pd.DataFrame(
    {
        "user_id": pd.Series(dtype=object),
        "task_id": pd.Series(dtype="Int64"),
        "typed_characters": pd.Series(dtype="Int64"),
    }
)


@pytest.fixture(scope="module")
def strokes():
    strokes, _ = keystrokes_from_events(ROWS)
    return strokes


def test_kvc_has_the_single_keystroke(strokes):
    kvc = kvc_keystrokes(strokes)
    section = kvc[kvc["task"] == "2"]
    assert section[["sequence_id", "press_ms", "release_ms", "keycode"]].values.tolist() == [[0, 5000, 5090, 81]]
    assert len(kvc) == 3


def test_typenet_sequences_has_a_sequence_of_length_one(strokes):
    table = sequence_features(strokes, m=3)
    x = sequence_array(table)
    assert table["session_id"].tolist() == [1, 2] and table["length"].tolist() == [2, 1]
    # q: HL 5090 - 5000 = 90 ms; no next keystroke: IL = PL = RL = 0; 'q' = 81; then padding
    np.testing.assert_allclose(x[1], [[0.090, 0, 0, 0, 81 / 255], [0] * 5, [0] * 5], rtol=1e-6)
    # section 1 as before: h HL 100, IL 1150 - 1100 = 50, PL 150, RL 1230 - 1100 = 130
    np.testing.assert_allclose(x[0, 0], [0.100, 0.050, 0.150, 0.130, 72 / 255], rtol=1e-6)


def test_behavioral_counts_one_keystroke_and_no_pair(strokes):
    features = behavioral_features(strokes, NO_TEXT)
    task = features[(features["grain"] == "task") & (features["session_id"] == 2)].iloc[0]
    assert (task["keystrokes"], task["pairs"], task["bursts"], task["pauses_500ms"]) == (1, 0, 1, 0)
    assert task["active_duration_s"] == pytest.approx(0.090)  # 5090 - 5000 ms
    assert task["keystrokes_per_minute"] == pytest.approx(1 / (0.090 / 60))  # 666.7
    assert np.isnan(task["rollover_rate"]) and np.isnan(task["pl_cv"])  # no pair to take a share of
    user = features[features["grain"] == "user"].iloc[0]
    # both sections: 3 keystrokes, 1 pair (h→i, IL 1150 - 1100 = 50: no rollover), 1230 - 1000 + 90 ms
    assert (user["keystrokes"], user["pairs"], user["rollover_rate"]) == (3, 1, 0)
    assert user["active_duration_s"] == pytest.approx(0.230 + 0.090)
