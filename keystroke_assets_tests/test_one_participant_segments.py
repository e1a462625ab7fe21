"""A version computed one participant per segment holds, stage by stage and feature by feature,
what each stage's own pure function gives over the whole version at once, read back as a version's
table reads (docs/performance.md "Segments": rows in participant order, categories used and sorted):
compared unsorted, dtypes and categories included."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from keystroke_assets import features
from keystroke_assets.assets import cleaned_data, raw_data
from keystroke_assets.assets.features import declared_features
from keystroke_assets.assets.keypairs import keypairs_of_segment
from keystroke_assets.assets.web_app_data import read_kept
from keystroke_assets.features.typenet_ml import GRAINS, top_digraphs, typenet_ml_features
from keystroke_assets.lib.segments import SegmentList, Uploads, segment_list_object
from keystroke_assets.resources import object_store
from keystroke_assets.resources.outlier_rules import OutlierRules
from keystroke_assets.resources.parquet_io_manager import from_parquet_bytes, to_parquet_bytes
from keystroke_assets.synthetic import aalto_uploads, phone_kind, web_app_uploads, write_uploads

from .conftest import SEGMENTED, VERSION, materialize_version
from .conftest import stored as stored_at

SEED, WEB, AALTO = 11, 8, 3  # seed 11: participants 0 and 5 type on an Android phone, 4 on an iPhone


@pytest.fixture(scope="module")
def one_per_segment(tmp_path_factory):
    folder = tmp_path_factory.mktemp("one_per_segment")
    uploads, storage = folder / "uploads", folder / "storage"
    write_uploads(uploads, web_app_uploads(WEB, seed=SEED, broken_every=4))  # 3 and 7 broken
    write_uploads(uploads, aalto_uploads(AALTO, seed=SEED))
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(storage)}
    run_config = {"ops": {"raw_data": {"config": {"participants_per_segment": 1}}}}
    with dg.DagsterInstance.ephemeral() as instance:
        assert materialize_version(instance, env, run_config=run_config).success
    return storage


def as_a_version_reads(df: pd.DataFrame) -> pd.DataFrame:
    """df stored (through parquet) and read back as docs/performance.md says a version's table
    reads: rows in participant order (ids as text; a participant's rows in their order), each
    categorical's categories those its rows use, sorted as text, one set for columns that shared
    one (keypairs' key1 and key2)."""
    df = from_parquet_bytes(to_parquet_bytes(df))
    df = df.iloc[np.argsort(df["user_id"].astype(str).to_numpy(), kind="stable")].reset_index(drop=True)
    shared: dict[tuple, list[str]] = {}
    for column in df.columns:
        if isinstance(df[column].dtype, pd.CategoricalDtype):
            shared.setdefault(tuple(df[column].cat.categories), []).append(column)
    for columns in shared.values():
        used = sorted({value for c in columns for value in df[c].dropna().unique()}, key=str)
        for column in columns:
            df[column] = df[column].cat.set_categories(used)
    return df


def test_every_segment_holds_one_participant(one_per_segment):
    store = object_store(str(one_per_segment))
    for key in SEGMENTED:
        listed = SegmentList.from_json(store.read_bytes(segment_list_object(key.split("/"), VERSION))).segments
        assert len(listed) == WEB + AALTO, key  # one segment per participant with uploads
        assert all(len(s.participants) == 1 for s in listed), key
        assert len({s.participants for s in listed}) == WEB + AALTO, key
        users = stored_at(one_per_segment, key)["user_id"].astype(str)
        assert set(users) <= {p for s in listed for p in s.participants}, key


def test_every_table_equals_its_function_over_the_whole_version(one_per_segment):
    storage = one_per_segment
    assert {phone_kind(i, SEED) for i in range(WEB)} == {None, "android", "iphone"}

    def stored(key: str) -> pd.DataFrame:
        return stored_at(storage, key)

    def check(key: str, want: pd.DataFrame) -> None:
        pd.testing.assert_frame_equal(stored(key), as_a_version_reads(want), obj=key)

    manifest = stored("web_app_data")
    read = lambda rows: read_kept(object_store(str(storage)), rows)  # noqa: E731

    def uploads(*kinds: str) -> Uploads:
        return Uploads(manifest[manifest["kind"].isin(kinds) & manifest["user_id"].notna()], read)

    # each stage's function over the whole version's input (the stored table the stage reads)
    raw = raw_data.raw_data_of_segment(uploads(*raw_data.STAGE.uploads), 32.0).table
    check("raw_data", raw)
    cleaned = cleaned_data.cleaned_data_of_segment(stored("raw_data"), uploads(*cleaned_data.STAGE.uploads), 290, 15)
    check("cleaned_data", cleaned.table)
    assert set(cleaned.table["device_type"]) == {"desktop", "mobile"}
    assert len(cleaned.facts["complete"]["user_id"]) == WEB - 2 + AALTO
    made = keypairs_of_segment(stored("cleaned_data"), {d: vars(t) for d, t in OutlierRules().thresholds().items()})
    check("keystrokes", made["keystrokes"].table)
    check("keypairs", made["keypairs"].table)

    tables = {"keystrokes": stored("keystrokes"), "keypairs": stored("keypairs")}
    per_segment = [f for f in declared_features(features) if f.compute is not None]
    assert {f.name for f in per_segment} == {"kvc", "typenet_sequences", "statistical", "behavioral"}
    for feature in per_segment:
        args = {feature.reads: tables[feature.reads], **feature.params()}
        if feature.uploads:
            args["uploads"] = uploads(*feature.uploads)
        check(f"features/{feature.name}", feature.compute(**args))
    # typenet_ml: one table per version from its segments' partial results, rows in group order
    strokes, pairs = tables["keystrokes"], tables["keypairs"]
    for g, grain in GRAINS.items():
        want, _, _ = typenet_ml_features(strokes, pairs, grain, top_digraphs(pairs, 10))
        key = f"features/typenet_ml/{g}"
        pd.testing.assert_frame_equal(stored(key), from_parquet_bytes(to_parquet_bytes(want)), obj=key)
