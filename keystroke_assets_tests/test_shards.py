"""Stages and features computed participant shard by participant shard (their input read one row
group at a time, their output written so) equal the same pure functions applied to the whole
version's table."""

import json
from functools import partial

import pandas as pd
import pyarrow.parquet as pq

from keystroke_assets.assets.cleaned_data import aalto_participants, complete_events, web_app_participants
from keystroke_assets.assets.raw_data import parse_snapshot
from keystroke_assets.assets.web_app_data import read_kept
from keystroke_assets.features.behavioral import behavioral_features, typed_characters
from keystroke_assets.features.kvc import kvc_keystrokes
from keystroke_assets.features.statistical import statistical_features
from keystroke_assets.features.typenet_ml import GRAINS, top_digraphs, typenet_ml_features
from keystroke_assets.features.typenet_sequences import sequence_features
from keystroke_assets.keystrokes import keypairs as build_keypairs
from keystroke_assets.keystrokes import keystrokes as build_keystrokes
from keystroke_assets.resources import object_store
from keystroke_assets.resources.parquet_io_manager import from_parquet_bytes, to_parquet_bytes
from keystroke_assets.synthetic import aalto_uploads, web_app_uploads, write_uploads

from .conftest import VERSION, materialize_version
from .conftest import stored as stored_at


def test_features_of_participant_shards_equal_features_of_the_whole_version(instance, tmp_path):
    uploads = tmp_path / "uploads"
    write_uploads(uploads, web_app_uploads(8, seed=5, broken_every=4))
    write_uploads(uploads, aalto_uploads(3, seed=5))
    storage = tmp_path / "storage"
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(storage)}
    # one participant per segment of every stage
    run_config = {"ops": {"raw_data": {"config": {"participants_per_segment": 1}}}}
    assert materialize_version(instance, env, run_config=run_config).success

    def stored(key: str) -> pd.DataFrame:
        return stored_at(storage, key)

    for key in ["raw_data", "cleaned_data", "keystrokes", "keypairs"]:
        names = json.loads((storage / key / f"{VERSION}.segments.json").read_text())["names"]
        users = [set(pq.read_table(storage / name, columns=["user_id"]).column(0).to_pylist()) for name in names]
        assert len(names) == 8 + 3, key  # one segment per participant with uploads
        assert all(len(u) <= 1 for u in users), key
        assert sum(map(len, users)) == len(set().union(*users)), key  # every participant in one segment only

    # raw_data, parsed participant batch by batch, holds what one parse of every file gives
    manifest = stored("web_app_data")
    files = manifest[manifest["kind"].isin(["keystrokes", "aalto"])].reset_index(drop=True)
    read = partial(read_kept, object_store(str(storage)))
    raw, _ = parse_snapshot(files, read(files))

    def by_line(df):
        return df.assign(f=df["file"].astype(str)).sort_values(["f", "line"], ignore_index=True).drop(columns="f")

    pd.testing.assert_frame_equal(by_line(stored("raw_data")), by_line(raw), check_categorical=False)
    # cleaned_data, judged shard by shard, as judged on the whole raw_data
    raw = stored("raw_data")
    web, _ = web_app_participants(manifest, raw[raw["event"] != "K"], read, 290)
    aalto, _ = aalto_participants(raw, 15)
    cleaned = complete_events(raw, web, aalto)
    pd.testing.assert_frame_equal(
        stored("cleaned_data"), from_parquet_bytes(to_parquet_bytes(cleaned)), check_categorical=False
    )

    pairs, strokes = stored("keypairs"), stored("keystrokes")
    # keystrokes and keypairs, computed shard by shard, as computed from the whole cleaned_data
    whole_strokes, _ = build_keystrokes(stored("cleaned_data"))
    pd.testing.assert_frame_equal(strokes, from_parquet_bytes(to_parquet_bytes(whole_strokes)), check_categorical=False)
    whole_pairs, _ = build_keypairs(stored("cleaned_data"))
    pd.testing.assert_frame_equal(pairs, from_parquet_bytes(to_parquet_bytes(whole_pairs)), check_categorical=False)
    manifest = manifest[manifest["user_id"].isin(strokes["user_id"].unique())]
    whole = {
        "features/statistical": statistical_features(pairs),
        "features/kvc": kvc_keystrokes(strokes),
        "features/typenet_sequences": sequence_features(strokes, 50),
        "features/behavioral": behavioral_features(strokes, typed_characters(manifest, read)),
        **{
            f"features/typenet_ml/{g}": typenet_ml_features(strokes, pairs, GRAINS[g], top_digraphs(pairs, 10))[0]
            for g in GRAINS
        },
    }
    for key, want in whole.items():
        table = stored(key)
        if "grain" in table:
            # stored segment by segment, each its task rows then its user rows; segments in user order
            # (one version), so the whole version's order (every task row, then every user row) is a
            # stable sort by grain
            table = table.sort_values("grain", kind="stable", ignore_index=True)
        # both through parquet, as the asset's table is stored
        pd.testing.assert_frame_equal(table, from_parquet_bytes(to_parquet_bytes(want)), obj=key)
