"""features/typenet_ml on real samples through the real chain (docs/features.md §3): phones carry
observed values in their own columns, and a version mixing Aalto with web-app desktop users shares
its space digraphs (Aalto's ' ' is Key.space)."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from keystroke_assets.features.typenet_ml import GRAINS, hl_statistics
from keystroke_assets.lib.latencies import DEFAULT_OUTLIER_THRESHOLDS

from .conftest import failed_rules_of, materialize_version, stored, upload_folder

PLATFORM = "features/typenet_ml/platform"
SELECTION = [
    dg.AssetKey.from_user_string(k)
    for k in ["web_app_data", "raw_data", "cleaned_data", "keystrokes", "keypairs", PLATFORM]
]
ANDROID, IPHONE = "4b4a2c43f630c0b68c7e081dcab95f96", "afa09ecc0c8457d3f735dc457b14526f"
DESKTOP_WEB = ["090e14f795db6d9fad9fc4ddd6ff5094", "1a8939f78d8fd33068520f598b6bb6b8"]
AALTO = ["100001", "100003", "100007", "100008", "100013", "100122"]


def build(tmp_path, folders, run_config=None):
    """The folders' files as one upload folder, through keypairs and typenet_ml/platform: (tables, metadata)."""
    uploads = upload_folder(tmp_path / "uploads", *folders)
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(tmp_path / "storage")}
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = materialize_version(instance, env, selection=SELECTION, run_config=run_config)
        assert result.success
        assert failed_rules_of(result) == []
        metadata = instance.get_latest_materialization_event(SELECTION[-1]).asset_materialization.metadata
    read = lambda key: stored(tmp_path / "storage", key)  # noqa: E731
    return read("keystrokes"), read(PLATFORM), {k: v.value for k, v in metadata.items()}


def test_phones_carry_observed_values(real_data, tmp_path):
    # the Android user's tasks i_..._4 and i_..._7 hold 2 events: lower the 290-event bar to keep it
    strokes, features, metadata = build(
        tmp_path,
        [real_data / "fpd_webapp_2025" / "web_app_data", real_data / "fpd_webapp_2025_iphone" / "web_app_data"],
        {"ops": {"cleaned_data": {"config": {"min_events_per_task": 2}}}},
    )
    mobile = features[features["device_type"] == "mobile"]
    assert sorted(mobile["user_id"].unique()) == sorted([ANDROID, IPHONE]) and len(mobile) == 2 * 3
    assert sorted(features.loc[features["device_type"] == "desktop", "user_id"].unique()) == DESKTOP_WEB

    # before any fill, every mobile row has observed cells of its own: a phone's holds of a few ms
    # are inside mobile's HL range (the desktop's 30 ms floor left most of them out)
    grain = GRAINS["platform"]
    groups, statistics = hl_statistics(strokes, grain, DEFAULT_OUTLIER_THRESHOLDS)
    observed = statistics.notna().to_numpy().sum(axis=1)
    assert (observed[(groups["device_type"] == "mobile").to_numpy()] > 0).all()
    for user, key in ((ANDROID, "Unidentified"), (IPHONE, "Key.space")):
        medians = mobile.loc[mobile["user_id"] == user, f"mobile__HL__{key}__median"]
        assert ((medians > 0) & (medians < 30)).all(), (user, medians.tolist())
    # no mobile digraph is typed by both phones (the Android keyboard names no letter and no space,
    # the iPhone never says Unidentified): mobile has key columns only
    assert not [c for c in features.columns if c.startswith("mobile__IL__")]
    assert metadata["fill/mobile/observed"] > 0 and metadata["fill/desktop/observed"] > 0

    # Bounds on the share of filled cells. mobile: the columns are the union of both phones' keys
    # (~40: the iPhone's letters, digits, punctuation, space, backspace, ...). The Android rows
    # (half of the mobile rows) can observe only the 2 keys the Android keyboard names
    # (Unidentified, Key.enter), so about 0.5 x 38/40 = 0.48 of the mobile cells are filled by
    # construction; the iPhone rows lack the keys it did not type on a platform (digits, rare
    # punctuation) and stds of a single hold, at most ~30 % of its cells: 0.48 + 0.5 x 0.3 = 0.63.
    # Before the change no bound held: mobile rows were mostly filled (outside the desktop HL range)
    # and carried every desktop column too.
    assert metadata["fill/mobile/filled_share"] < 0.65
    # desktop: two web-app users typing the same prompts share most keys; a row lacks only the
    # keys that user did not type on that platform (capitals' shifted symbols, digits, rare
    # punctuation; ~25-33 of ~40 keys observed) and the IL stats of digraphs it did not type there
    assert metadata["fill/desktop/filled_share"] < 0.35
    for device in ("desktop", "mobile"):
        counts = [metadata[f"fill/{device}/{rule}"] for rule in ("observed", "user_mean", "column_mean", "zero")]
        assert sum(counts) == metadata[f"fill/{device}/cells"]


def test_aalto_and_web_app_desktop_share_space_digraphs(real_data, tmp_path):
    _, features, metadata = build(
        tmp_path, [real_data / "fpd_webapp_2025" / "web_app_data", real_data / "aalto136m_desktop"]
    )
    assert sorted(features["user_id"].unique()) == sorted(DESKTOP_WEB + AALTO)
    top = pd.DataFrame([r.data for r in metadata["digraphs"].records])
    digraphs = set(
        zip(top.loc[top["device_type"] == "desktop", "key1"], top.loc[top["device_type"] == "desktop", "key2"])
    )
    # Aalto writes ' ' and the web app Key.space: one key, so the space digraphs every one of the 8
    # desktop users typed win the top-k (before, none qualified and the top-k was letter pairs)
    assert {("e", "Key.space"), ("s", "Key.space"), ("Key.space", "t")} <= digraphs
    assert not any(" " in (a, b) or "BKSP" in (a, b) for a, b in digraphs)
    assert not [c for c in features.columns if c.startswith("desktop__HL__ __")]
    # every Aalto participant's space holds, computed here from the raw file: RELEASE_TIME -
    # PRESS_TIME where LETTER is ' ', within the desktop range [30, 2000] ms
    for user in AALTO:
        raw = pd.read_csv(
            real_data / "aalto136m_desktop" / f"{user}_keystrokes.txt",
            sep="\t",
            quoting=3,
            encoding="latin-1",
            dtype=str,
            keep_default_na=False,
        )
        hold = raw["RELEASE_TIME"].astype(np.int64) - raw["PRESS_TIME"].astype(np.int64)
        space = hold[(raw["LETTER"] == " ") & (hold >= 30) & (hold <= 2000)]
        (index,) = features.index[features["user_id"] == user]  # one row: Aalto has no platform
        row = features.loc[index]
        assert (row["desktop__HL__Key.space__median"], row["desktop__HL__Key.space__mean"]) == pytest.approx(
            (space.median(), space.mean())
        ), user
