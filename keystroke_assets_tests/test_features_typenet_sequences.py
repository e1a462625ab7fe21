"""features/typenet_sequences: steps by hand (cut at M, padded, last keystroke), real lines of a
web-app file and an Aalto section, the checks catching wrong outputs, M as run config."""

import numpy as np
import pytest

from keystroke_assets.features.typenet_sequences import (
    TYPENET_SEQUENCES,
    SequenceConfig,
    sequence_array,
    sequence_features,
)
from keystroke_assets.lib.rules import failed_rules

from .feature_samples import make_keystrokes, real_version

WEB = {"user_id": "u1", "device_type": "desktop", "platform_id": 1, "video_id": 1, "session_id": 1}
# five keystrokes: longer than M = 4, so the 4th step pairs with the 5th keystroke
LONG = {
    **WEB,
    "task_id": 0,
    "strokes": [
        ("a", 65, 1000, 1100),
        ("b", 66, 1250, 1300),
        ("Key.space", 32, 1280, 1400),
        ("c", 67, 2000, 2090),
        ("d", 68, 2500, 2600),
    ],
}
# two keystrokes: shorter than M, padded
SHORT = {**WEB, "platform_id": 2, "task_id": 1, "strokes": [("x", 88, 0, 80), ("Key.shift", 16, 500, 530)]}


@pytest.fixture(scope="module")
def sequences():
    return sequence_features(make_keystrokes([LONG, SHORT]), m=4)


def test_steps_by_hand(sequences):
    x = sequence_array(sequences)
    assert x.shape == (2, 4, 5) and x.dtype == np.float32
    assert sequences["length"].tolist() == [4, 2]
    long, short = x[0], x[1]
    # step 0: HL = 1100 - 1000 = 100 ms, IL = 1250 - 1100 = 150, PL = 1250 - 1000 = 250,
    # RL = 1300 - 1100 = 200; 'a' = 65
    np.testing.assert_allclose(long[0], [0.100, 0.150, 0.250, 0.200, 65 / 255], rtol=1e-6)
    # step 1 ('b' then space, overlapping): HL 50, IL = 1280 - 1300 = -20, PL 30, RL = 1400 - 1300 = 100
    np.testing.assert_allclose(long[1], [0.050, -0.020, 0.030, 0.100, 66 / 255], rtol=1e-6)
    # step 3 ('c') is the last kept step but not the task's last keystroke: it pairs with 'd'
    # HL 90, IL = 2500 - 2090 = 410, PL = 500, RL = 2600 - 2090 = 510
    np.testing.assert_allclose(long[3], [0.090, 0.410, 0.500, 0.510, 67 / 255], rtol=1e-6)
    # short task: step 0 'x' HL 80, IL 420, PL 500, RL 450; step 1 is the last keystroke: HL 30, then zeros
    np.testing.assert_allclose(short[0], [0.080, 0.420, 0.500, 0.450, 88 / 255], rtol=1e-6)
    np.testing.assert_allclose(short[1], [0.030, 0, 0, 0, 16 / 255], rtol=1e-6)
    assert (short[2:] == 0).all()


def test_keycodes_policy():
    # LONG types a, b, space, c (d is cut at M = 4): letters are class 1, space class 3
    classes = sequence_array(sequence_features(make_keystrokes([LONG, SHORT]), m=4, keycodes="classes"))
    np.testing.assert_allclose(classes[0, :, 4], [1 / 255, 1 / 255, 3 / 255, 1 / 255], rtol=1e-6)
    # SHORT: x (letter), Key.shift (modifier, 5), then padding
    np.testing.assert_allclose(classes[1, :, 4], [1 / 255, 5 / 255, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(classes[0, 0, :4], [0.100, 0.150, 0.250, 0.200], rtol=1e-6)  # latencies untouched
    none = sequence_array(sequence_features(make_keystrokes([LONG, SHORT]), m=4, keycodes="none"))
    assert (none[:, :, 4] == 0).all()
    assert SequenceConfig().keycodes == "full"


def test_default_m_is_50_and_recorded():
    assert SequenceConfig().sequence_length == 50
    x = sequence_array(sequence_features(make_keystrokes([LONG]), m=50))
    assert x.shape == (1, 50, 5)
    # five keystrokes: the 5th ('d', HL 100) is the last, the rest is padding
    np.testing.assert_allclose(x[0, 4], [0.100, 0, 0, 0, 68 / 255], rtol=1e-6)
    assert (x[0, 5:] == 0).all()


def test_checks_pass_and_catch_wrong_outputs(sequences):
    assert not failed_rules(sequences, TYPENET_SEQUENCES.all_checks)

    def failed(df):
        return failed_rules(df, TYPENET_SEQUENCES.all_checks)

    padded = sequences.copy()
    padded["steps"] = [s.copy() for s in padded["steps"]]
    padded["steps"].iloc[1][3 * 5] = 0.25  # step 3 of the 2-step task is padding
    assert failed(padded) == {"padding_zero"}
    tail = sequences.copy()
    tail["steps"] = [s.copy() for s in tail["steps"]]
    tail["steps"].iloc[1][1 * 5 + 2] = 0.5  # PL of the short task's last keystroke
    assert failed(tail) == {"padding_zero"}
    codes = sequences.copy()
    codes["steps"] = [s.copy() for s in codes["steps"]]
    codes["steps"].iloc[0][4] = 65.0  # keycode not divided by 255
    assert failed(codes) == {"keycode_scaled"}
    ragged = sequences.copy()
    ragged["steps"] = [ragged["steps"].iloc[0], ragged["steps"].iloc[1][:15]]
    assert "shape" in failed(ragged)


def test_real_lines(real_data, tmp_path_factory):
    real = real_version(real_data, tmp_path_factory)
    table = real.read("features/typenet_sequences")
    x = sequence_array(table)
    assert x.shape == (126, 50, 5) and x.dtype == np.float32
    web = table.index[(table["user_id"] == "090e14f795db6d9fad9fc4ddd6ff5094") & (table["task_id"] == 0)][0]
    # f_090e..._0.csv: P s 13225, R s 13324, P t 13866, R t 13922 (times minus 1735660000000)
    # HL 99, IL 542, PL 641, RL 598 ms; 's' = 83
    np.testing.assert_allclose(x[web, 0], [0.099, 0.542, 0.641, 0.598, 83 / 255], rtol=1e-6)
    assert table.loc[web, "length"] == 50  # 152 keystrokes, cut at M
    aalto = table.index[(table["user_id"] == "100001") & (table["session_id"] == 1090979)][0]
    # 100001_keystrokes.txt, section 1090979: SHIFT 372512-372663 (16), W 372583-372703 (87)
    # HL 151, IL = 583 - 663 = -80, PL 71, RL = 703 - 663 = 40
    np.testing.assert_allclose(x[aalto, 0], [0.151, -0.080, 0.071, 0.040, 16 / 255], rtol=1e-5)
    md = real.metadata["features/typenet_sequences"]
    assert md["sequence_length"].value == 50
    assert md["array_shape"].value == "(126, 50, 5)"
    assert [c for c in real.failed_checks if c[0] == "features/typenet_sequences"] == []
    # the shortest task is padded with zeros beyond its length
    short = int(table["length"].idxmin())
    assert (x[short, table.loc[short, "length"] :] == 0).all()
