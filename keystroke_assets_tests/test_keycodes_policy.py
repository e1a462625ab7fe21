"""The `keycodes` run config of features/kvc and features/typenet_sequences on the real samples:
`full` keeps the letter codes (65..90), `classes` writes the kind of key, `none` writes 0; both
asset definitions say their keycodes can spell out typed text (docs/features.md, keycodes)."""

import shutil

import dagster as dg
import numpy as np
import pytest

from keystroke_assets.definitions import defs
from keystroke_assets.features.typenet_sequences import sequence_array
from keystroke_assets.lib.keycodes import RECONSTRUCTABLE_LABEL

from .conftest import materialize_version
from .feature_samples import RealVersion, real_version

KEYS = [dg.AssetKey(["features", "kvc"]), dg.AssetKey(["features", "typenet_sequences"])]
WEB_USER = "090e14f795db6d9fad9fc4ddd6ff5094"


def letters(codes: np.ndarray) -> int:
    return int(((codes >= 65) & (codes <= 90)).sum())


def sequence_codes(table) -> np.ndarray:
    """keycode of every recorded step (the padding left out), back from keycode / 255."""
    x = sequence_array(table)
    recorded = np.arange(x.shape[1])[None, :] < table["length"].to_numpy()[:, None]
    return np.rint(x[:, :, 4][recorded] * 255).astype(int)


_rebuilt: dict[str, RealVersion] = {}


def rebuilt(policy: str, real_data, tmp_path_factory) -> RealVersion:
    """The real version's two assets rebuilt with `keycodes=policy` in a copy of its store (once)."""
    if policy not in _rebuilt:
        full = real_version(real_data, tmp_path_factory)
        root = tmp_path_factory.mktemp(f"keycodes_{policy}")
        shutil.copytree(full.storage, root / "storage")
        (root / "home").mkdir()
        env = {"KEYSTROKE_UPLOADS": str(root / "uploads"), "KEYSTROKE_STORAGE": str(root / "storage")}
        config = {"config": {"keycodes": policy}}
        run_config = {"ops": {"features__kvc": config, "features__typenet_sequences": config}}
        with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
            result = materialize_version(instance, env, selection=KEYS, run_config=run_config)
            assert result.success
            metadata = {
                k.to_user_string(): instance.get_latest_materialization_event(k).asset_materialization.metadata
                for k in KEYS
            }
            failed = [
                (e.asset_key.to_user_string(), e.check_name)
                for e in result.get_asset_check_evaluations()
                if not e.passed
            ]
        _rebuilt[policy] = RealVersion(root / "storage", metadata, failed)
    return _rebuilt[policy]


def test_full_keeps_letter_codes(real_data, tmp_path_factory):
    full = real_version(real_data, tmp_path_factory)
    # the 2 web-app users and 6 Aalto participants typed thousands of letters
    assert letters(full.read("features/kvc")["keycode"].to_numpy()) > 1000
    assert letters(sequence_codes(full.read("features/typenet_sequences"))) > 1000
    assert full.metadata["features/kvc"]["keycodes"].value == "full"
    assert full.metadata["features/typenet_sequences"]["keycodes"].value == "full"


@pytest.mark.parametrize("policy", ["classes", "none"])
def test_no_letter_code_is_left(policy, real_data, tmp_path_factory):
    full, other = real_version(real_data, tmp_path_factory), rebuilt(policy, real_data, tmp_path_factory)
    assert other.failed_checks == []
    kvc, kvc_full = other.read("features/kvc"), full.read("features/kvc")
    sequences = other.read("features/typenet_sequences")
    assert letters(kvc["keycode"].to_numpy()) == 0 and letters(sequence_codes(sequences)) == 0
    assert other.metadata["features/kvc"]["keycodes"].value == policy
    assert other.metadata["features/typenet_sequences"]["keycodes"].value == policy
    # only the keycodes change: the same keystrokes, times and tasks
    assert len(kvc) == len(kvc_full)
    assert (kvc[["press_ms", "release_ms"]].to_numpy() == kvc_full[["press_ms", "release_ms"]].to_numpy()).all()
    if policy == "none":
        assert (kvc["keycode"] == 0).all() and (sequence_codes(sequences) == 0).all()


def test_classes_by_hand(real_data, tmp_path_factory):
    full, other = real_version(real_data, tmp_path_factory), rebuilt("classes", real_data, tmp_path_factory)
    kvc, codes = other.read("features/kvc"), full.read("features/kvc")["keycode"].to_numpy()
    classes = kvc["keycode"].to_numpy()
    # KEY_CLASSES: Key.space (32) -> 3 space, 'a' (65) -> 1 letter, Key.backspace (8) -> 6 navigation
    # (editing), Key.shift (16) -> 5 modifier, '.' (190) -> 4 punctuation, '6' (54) -> 2 digit, left arrow (37) -> 6
    for code, expected in [(32, 3), (65, 1), (8, 6), (16, 5), (190, 4), (54, 2), (37, 6)]:
        assert (codes == code).any() and set(classes[codes == code]) == {expected}, code
    # f_090e..._0.csv (task 1_1_1) starts s, t, u: letters; Aalto 100001 section 1090979 starts SHIFT, W, a
    web = kvc[(kvc["user_id"] == WEB_USER) & (kvc["task"] == "1_1_1")]
    assert web["keycode"].head(3).tolist() == [1, 1, 1]
    aalto = kvc[(kvc["user_id"] == "100001") & (kvc["task"] == "1090979")]
    assert aalto["keycode"].head(3).tolist() == [5, 1, 1]
    # typenet_sequences: the same task, keycode / 255 = class / 255
    sequences = other.read("features/typenet_sequences")
    row = sequences.index[(sequences["user_id"] == "100001") & (sequences["session_id"] == 1090979)][0]
    np.testing.assert_allclose(sequence_array(sequences)[row, :3, 4], [5 / 255, 1 / 255, 1 / 255], rtol=1e-6)


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.to_user_string())
def test_definitions_say_keycodes_spell_typed_text(key):
    assets_def = defs.resolve_assets_def(key)
    assert (
        assets_def.metadata_by_key[key]["contains"] == RECONSTRUCTABLE_LABEL["contains"] == "reconstructable typed text"
    )
    assert "reconstructable typed text" in assets_def.descriptions_by_key[key].lower()
