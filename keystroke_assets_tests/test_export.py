"""Exports for training code: typenet_sequences as one (n, M, 5) float32 array plus ids, kvc as the
challenge's dict-of-arrays .npy files with leave-one-platform-out splits. The stores hold the two
feature assets as the pipeline writes them: participant segments and the version's segment list."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from keystroke_assets.export import export_kvc, load_typenet_sequences
from keystroke_assets.features.kvc import KVC, kvc_keystrokes
from keystroke_assets.features.typenet_sequences import TYPENET_SEQUENCES, sequence_features
from keystroke_assets.keycodes import apply_keycode_policy, policy_note
from keystroke_assets.resources.object_store import LocalObjectStore
from keystroke_assets.resources.parquet_io_manager import (
    ParquetIOManager,
    SegmentedTable,
    segment_list_name,
    segment_object_name,
)
from keystroke_assets.schema import table_schema
from keystroke_assets.segments import segment_id, store_segment

from .conftest import VERSION
from .feature_samples import make_keystrokes, real_version

U1 = "c" * 32


def web_task(platform: int, video: int, session: int, t0: int) -> dict:
    return {
        "user_id": U1,
        "device_type": "desktop",
        "platform_id": platform,
        "video_id": video,
        "session_id": session,
        "task_id": (session - 1) * 9 + (video - 1) * 3 + platform - 1,
        "strokes": [("a", 65, t0, t0 + 100), ("b", 66, t0 + 200, t0 + 260)],
    }


AALTO = {
    "user_id": "100003",
    "device_type": "desktop",
    "platform_id": None,
    "video_id": None,
    "session_id": 5,
    "task_id": 5,
    "strokes": [("x", 88, 10, 90), ("y", 89, 120, 200), ("z", 90, 300, 310)],
}
KEYSTROKES = make_keystrokes([web_task(1, 1, 1, 1000), web_task(2, 1, 1, 2000), web_task(3, 2, 2, 3000), AALTO])


def store_segmented(store: LocalObjectStore, key: dg.AssetKey, segments: list[pd.DataFrame]) -> None:
    """An asset's VERSION as the pipeline stores it: each segment under its content address with
    its summary (store_segment), then the version's list through the IO manager."""
    names = []
    for i, df in enumerate(segments):
        sid = segment_id(key.to_user_string(), "test", i)
        store_segment(store, key, sid, df, [])
        names.append(segment_object_name(key, sid))
    table = SegmentedTable(names, [len(df) for df in segments], table_schema(segments[0]), len(segments))
    ParquetIOManager(store=store).handle_output(dg.build_output_context(asset_key=key, partition_key=VERSION), table)
    assert store.exists(segment_list_name(key, VERSION))


def by_participant(keystrokes: pd.DataFrame) -> list[pd.DataFrame]:
    """One segment per participant, as a version of one participant per segment is stored."""
    return [rows for _, rows in keystrokes.groupby("user_id", observed=True, sort=True)]


@pytest.fixture
def store(tmp_path) -> LocalObjectStore:
    """A data store holding the two feature assets of VERSION, in two segments each."""
    store = LocalObjectStore(root=str(tmp_path / "storage"))
    store_segmented(store, TYPENET_SEQUENCES.key, [sequence_features(k, m=3) for k in by_participant(KEYSTROKES)])
    store_segmented(store, KVC.key, [kvc_keystrokes(k) for k in by_participant(KEYSTROKES)])
    return store


def test_sequences_load_in_one_call(store):
    x, ids = load_typenet_sequences(VERSION, store)
    assert x.shape == (4, 3, 5) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    assert list(ids.columns) == ["user_id", "device_type", "platform_id", "video_id", "session_id", "task_id", "length"]
    # tasks sorted by user then platform / video / session: the Aalto section ("100003") first
    assert ids["user_id"].tolist() == ["100003", U1, U1, U1]
    assert ids["length"].tolist() == [3, 2, 2, 2]
    # Aalto step 0: HL 80, IL = 120 - 90 = 30, PL 110, RL = 200 - 90 = 110 ms; 'x' = 88
    np.testing.assert_allclose(x[0, 0], [0.080, 0.030, 0.110, 0.110, 88 / 255], rtol=1e-6)
    # a web task: 'a' HL 100, IL 100, PL 200, RL 160; then 'b' (last: HL 60, zeros); then padding
    np.testing.assert_allclose(x[1], [[0.1, 0.1, 0.2, 0.16, 65 / 255], [0.06, 0, 0, 0, 66 / 255], [0] * 5], rtol=1e-6)


def test_storage_defaults_to_the_environment(store, monkeypatch):
    monkeypatch.setenv("KEYSTROKE_STORAGE", store.root)
    x, ids = load_typenet_sequences(VERSION)
    assert x.shape == (4, 3, 5) and len(ids) == 4


def test_missing_asset_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="materialize features/typenet_sequences for 2025-09-07"):
        load_typenet_sequences(VERSION, LocalObjectStore(root=str(tmp_path)))


def load(path):
    return np.load(path, allow_pickle=True).item()


def test_kvc_layout_and_leave_one_platform_out(store, tmp_path):
    paths = export_kvc(VERSION, tmp_path / "kvc", store)
    everything = load(paths["all"])
    assert set(everything) == {U1, "100003"}
    assert set(everything[U1]) == {"1_1_1", "2_1_1", "3_2_2"}
    # facebook video 1 session 1 starts at t0 = 1000: a 1000-1100, b 1200-1260
    first = everything[U1]["1_1_1"]
    assert first.dtype == np.int64 and first.tolist() == [[1000, 1100, 65], [1200, 1260, 66]]
    assert everything["100003"]["5"].tolist() == [[10, 90, 88], [120, 200, 89], [300, 310, 90]]
    for platform, prefix in [("facebook", "1_"), ("instagram", "2_"), ("twitter", "3_")]:
        train, test = load(paths[f"leave_out_{platform}/train"]), load(paths[f"leave_out_{platform}/test"])
        assert set(test) == set(train) == {U1}  # Aalto sections have no platform
        assert {t for t in test[U1]} == {t for t in everything[U1] if t.startswith(prefix)}
        assert {t for t in train[U1]} == {t for t in everything[U1] if not t.startswith(prefix)}
        np.testing.assert_array_equal(test[U1][next(iter(test[U1]))], everything[U1][next(iter(test[U1]))])


# one keystroke of each class: a 1 letter, space 3 space, backspace 6 navigation (editing), 7 2 digit,
# comma 4 punctuation, shift 5 modifier, left arrow 6 navigation, Unidentified 0 other
KINDS = [
    ("a", 65),
    ("Key.space", 32),
    ("Key.backspace", 8),
    ("7", 55),
    ("Key.comma", 188),
    ("Key.shift", 16),
    ("Key.left", 37),
    ("Unidentified", 0),
]
KINDS_TASK = {**web_task(1, 1, 1, 0), "strokes": [(k, c, 100 * i, 100 * i + 50) for i, (k, c) in enumerate(KINDS)]}
CLASSES = [1, 3, 6, 2, 4, 5, 6, 0]


def kinds_store(root, policy: str = "full") -> LocalObjectStore:
    """VERSION's kvc and typenet_sequences of KINDS_TASK as the assets write them under `policy`."""
    keystrokes = make_keystrokes([KINDS_TASK])
    strokes = kvc_keystrokes(keystrokes)
    strokes["keycode"] = apply_keycode_policy(strokes["keycode"].to_numpy(), policy)
    strokes.attrs["column_descriptions"] = {"keycode": policy_note(policy)}
    sequences = sequence_features(keystrokes, m=10, keycodes=policy)
    sequences.attrs["column_descriptions"] = {"steps": policy_note(policy)}
    store = LocalObjectStore(root=str(root))
    store_segmented(store, KVC.key, [strokes])
    store_segmented(store, TYPENET_SEQUENCES.key, [sequences])
    return store


@pytest.mark.parametrize("policy, expected", [("full", [c for _, c in KINDS]), ("classes", CLASSES), ("none", [0] * 8)])
def test_exports_keep_only_what_the_keycodes_policy_allows(tmp_path, policy, expected):
    store = kinds_store(tmp_path / "storage")  # materialized with the default: full keycodes
    task = load(export_kvc(VERSION, tmp_path / "kvc", store, keycodes=policy)["all"])[U1]["1_1_1"]
    assert task[:, 2].tolist() == expected
    assert task[:, :2].tolist() == [[100 * i, 100 * i + 50] for i in range(8)]  # times untouched
    x, _ = load_typenet_sequences(VERSION, store, keycodes=policy)
    np.testing.assert_allclose(x[0, :8, 4] * 255, expected, atol=1e-4)
    np.testing.assert_allclose(x[0, :8, 0], 0.05)  # HL 50 ms
    assert (x[0, 8:] == 0).all()


def test_exports_never_restore_what_the_assets_left_out(tmp_path):
    store = kinds_store(tmp_path / "storage", "classes")
    # stored classes are exported as they are (classes of classes would all be 0, "other")
    assert (
        load(export_kvc(VERSION, tmp_path / "a", store, keycodes="classes")["all"])[U1]["1_1_1"][:, 2].tolist()
        == CLASSES
    )
    x, _ = load_typenet_sequences(VERSION, store, keycodes="classes")
    np.testing.assert_allclose(x[0, :8, 4] * 255, CLASSES, atol=1e-4)
    assert (
        load(export_kvc(VERSION, tmp_path / "b", store, keycodes="none")["all"])[U1]["1_1_1"][:, 2].tolist() == [0] * 8
    )
    with pytest.raises(ValueError, match="materialized with keycodes=classes: it cannot give keycodes=full"):
        export_kvc(VERSION, tmp_path / "c", store)
    with pytest.raises(ValueError, match="keycodes=classes"):
        load_typenet_sequences(VERSION, store)


def test_real_exports(real_data, tmp_path_factory, tmp_path):
    real = real_version(real_data, tmp_path_factory)
    x, ids = load_typenet_sequences(VERSION, real.store)
    assert x.shape == (126, 50, 5) and len(ids) == 126
    paths = export_kvc(VERSION, tmp_path / "kvc", real.store)
    everything = load(paths["all"])
    # 2 web-app users with 18 tasks, 6 Aalto participants with 15 sections
    assert sorted(len(tasks) for tasks in everything.values()) == [15] * 6 + [18] * 2
    test = load(paths["leave_out_twitter/test"])
    assert set(test) == {"090e14f795db6d9fad9fc4ddd6ff5094", "1a8939f78d8fd33068520f598b6bb6b8"}
    assert all(len(tasks) == 6 and all(t.startswith("3_") for t in tasks) for tasks in test.values())
    # without letter codes (65..90, which are there in full)
    codes = np.concatenate([a[:, 2] for tasks in everything.values() for a in tasks.values()])
    assert ((codes >= 65) & (codes <= 90)).sum() > 1000
    for policy in ["classes", "none"]:
        exported = load(export_kvc(VERSION, tmp_path / policy, real.store, keycodes=policy)["all"])
        codes = np.concatenate([a[:, 2] for tasks in exported.values() for a in tasks.values()])
        assert codes.max() <= (6 if policy == "classes" else 0)
        x, _ = load_typenet_sequences(VERSION, real.store, keycodes=policy)
        assert (x[:, :, 4] * 255).max() < (6.5 if policy == "classes" else 1e-6)
