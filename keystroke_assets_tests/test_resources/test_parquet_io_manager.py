"""The parquet IO manager writes exactly `<storage>/<asset key path>/<version>.parquet`; a table stored
in segments reads back the same whatever their order, and a damaged segment is never read."""

import re

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from keystroke_assets.lib.segments import SegmentEntry, SegmentList, crc32c
from keystroke_assets.partitions import dataset_versions
from keystroke_assets.resources import object_store, resources_from_env
from keystroke_assets.resources.object_store import LocalObjectStore, UnsafeObjectName
from keystroke_assets.resources.parquet_io_manager import (
    DamagedSegment,
    ParquetIOManager,
    read_segment,
    read_version_table,
    to_parquet_bytes,
)

VERSION = "2025-01-02_03-04-05_test"


@dg.asset(partitions_def=dataset_versions, key_prefix=["features", "demo"])
def tiny() -> pd.DataFrame:
    df = pd.DataFrame({"HL": [1, 2], "key1": ["a", "b"], "taps": [3, 4]})
    df.attrs["column_descriptions"] = {"taps": "taps per task, count"}
    return df


def test_writes_the_exact_path_with_metadata(instance, tmp_path):
    instance.add_dynamic_partitions("dataset_versions", [VERSION])
    store = LocalObjectStore(root=str(tmp_path / "store"))
    result = dg.materialize(
        [tiny], partition_key=VERSION, instance=instance, resources={"io_manager": ParquetIOManager(store=store)}
    )
    path = tmp_path / "store" / "features" / "demo" / "tiny" / f"{VERSION}.parquet"
    assert sorted(p for p in (tmp_path / "store").rglob("*") if p.is_file()) == [path]
    read = pd.read_parquet(path)
    pd.testing.assert_frame_equal(read, pd.DataFrame({"HL": [1, 2], "key1": ["a", "b"], "taps": [3, 4]}))
    assert read.attrs == {}  # descriptions live in the file's fields, not in pandas attrs
    fields = pq.read_schema(path)
    assert fields.field("taps").metadata == {b"description": b"taps per task, count"}
    assert b"hold latency" in fields.field("HL").metadata[b"description"]
    md = result.asset_materializations_for_node("features__demo__tiny")[0].metadata
    assert md["path"].value == str(path)
    assert md["dagster/row_count"].value == 2
    hl = md["dagster/column_schema"].value.columns[0]
    assert (hl.name, hl.type) == ("HL", "int64") and "ms" in hl.description
    assert md["dagster/column_schema"].value.columns[2].description == "taps per task, count"


def test_store_refuses_names_escaping_its_root(tmp_path):
    store = LocalObjectStore(root=str(tmp_path / "store"))
    for name in ["../outside", "a/../../b", "/etc/passwd", "a//b", "a\\b", ""]:
        with pytest.raises(UnsafeObjectName):
            store.write_bytes(name, b"x")
    assert not (tmp_path / "outside").exists()


def test_environment_chooses_the_store(tmp_path):
    local = resources_from_env({"KEYSTROKE_UPLOADS": str(tmp_path / "u"), "KEYSTROKE_STORAGE": str(tmp_path / "s")})
    assert local["uploads"].uri() == str(tmp_path / "u")
    gcs = object_store("gs://lab-bucket/datasets/v1/")
    assert (gcs.bucket, gcs.prefix, gcs.uri("keypairs/x.parquet")) == (
        "lab-bucket",
        "datasets/v1",
        "gs://lab-bucket/datasets/v1/keypairs/x.parquet",
    )


def _stored_segment(store, name: str, df: pd.DataFrame) -> SegmentEntry:
    data = to_parquet_bytes(df)
    store.write_bytes(name, data)
    return SegmentEntry(name, len(df), len(data), crc32c(data), tuple(df["user_id"].astype(str).unique()))


def test_a_table_in_segments_reads_back_in_participant_order_with_sorted_dictionaries(tmp_path):
    store = object_store(str(tmp_path))
    # segment a: u2's and u0's rows interleaved (a participant's rows keep their order); a user
    # and a key its rows do not use, dictionaries unsorted; key1 and key2 share one dictionary,
    # as keypairs' do; segment b: u1, another dictionary
    keys = ["z", "m", "a", "q", "unused"]
    a = pd.DataFrame(
        {
            "user_id": pd.Categorical(["u2", "u0", "u2", "u0", "u0"], categories=["u2", "u0", "u9"]),
            "key1": pd.Categorical(["z", "m", "a", "a", "z"], categories=keys),
            "key2": pd.Categorical(["m", "a", "a", "z", "q"], categories=keys),
            "platform_id": pd.array([1, None, 1, None, None], dtype="Int64"),  # u0 an Aalto participant
            "HL": [1, 2, 3, 4, 5],
        }
    )
    b = pd.DataFrame(
        {
            "user_id": pd.Categorical(["u1", "u1"]),
            "key1": pd.Categorical(["b", "a"], categories=["b", "a", "c"]),
            "key2": pd.Categorical(["a", "c"], categories=["b", "a", "c"]),
            "platform_id": pd.array([3, 2], dtype="Int64"),
            "HL": [6, 7],
        }
    )
    segments = SegmentList(
        (_stored_segment(store, "t/segments/a.parquet", a), _stored_segment(store, "t/segments/b.parquet", b))
    )
    store.write_bytes(f"t/{VERSION}.segments.json", segments.to_json())
    got = read_version_table(store, dg.AssetKey("t"), VERSION).to_pandas()
    used = ["a", "b", "c", "m", "q", "z"]  # by key1 or key2: one dictionary still, so they compare
    want = pd.DataFrame(
        {
            "user_id": pd.Categorical(["u0", "u0", "u0", "u1", "u1", "u2", "u2"]),
            "key1": pd.Categorical(["m", "a", "z", "b", "a", "z", "a"], categories=used),
            "key2": pd.Categorical(["a", "z", "q", "a", "c", "m", "a"], categories=used),
            "platform_id": pd.array([None, None, None, 3, 2, 1, 1], dtype="Int64"),  # nullable still
            "HL": [2, 4, 5, 6, 7, 1, 3],
        }
    )
    pd.testing.assert_frame_equal(got, want)  # not sorted here: the order read is the order compared
    assert (got["key1"] == got["key2"]).tolist() == [False, False, False, False, False, False, True]
    # the same segments listed the other way round: the same table
    store.write_bytes(f"t/{VERSION}.segments.json", SegmentList(segments.segments[::-1]).to_json())
    pd.testing.assert_frame_equal(read_version_table(store, dg.AssetKey("t"), VERSION).to_pandas(), want)


def test_a_damaged_segment_is_never_read(tmp_path):
    store = object_store(str(tmp_path))
    table = pd.DataFrame({"user_id": pd.Categorical(["u0", "u1"]), "HL": [90, 120]})
    entry = _stored_segment(store, "t/segments/a.parquet", table)
    pd.testing.assert_frame_equal(read_segment(store, entry).to_pandas(), table)
    data = (tmp_path / entry.name).read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    for damage, message in [
        (data[:-10], f"has {len(data) - 10} bytes"),  # truncated
        (bytes(flipped), f"has {len(data)} bytes and CRC32C {crc32c(bytes(flipped))}"),  # same size, a bit flipped
        (None, "is missing"),
    ]:
        if damage is None:
            (tmp_path / entry.name).unlink()
        else:
            (tmp_path / entry.name).write_bytes(damage)
        with pytest.raises(DamagedSegment, match=re.escape(f"{store.uri(entry.name)} {message}")):
            read_segment(store, entry)
