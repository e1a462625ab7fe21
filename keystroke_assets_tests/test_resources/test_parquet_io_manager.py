"""The parquet IO manager writes exactly `<storage>/<asset key path>/<version>.parquet`, in row groups
of whole participants when the table is ordered by participant."""

import io

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keystroke_assets.partitions import dataset_versions
from keystroke_assets.resources import object_store, resources_from_env
from keystroke_assets.resources.object_store import LocalObjectStore, UnsafeObjectName
from keystroke_assets.resources.parquet_io_manager import (
    ParquetIOManager,
    ParticipantShards,
    from_parquet_bytes,
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


def test_a_table_ordered_by_participant_is_read_back_one_participant_shard_at_a_time(tmp_path):
    users = pd.Categorical(["u2"] * 3 + ["u0"] * 4 + ["u1"] * 2)
    table = pd.DataFrame({"user_id": users, "HL": range(9)})
    store = object_store(str(tmp_path))
    store.write_bytes("t/a.parquet", to_parquet_bytes(table, shard_rows=3))
    store.write_bytes("t/b.parquet", to_parquet_bytes(pd.DataFrame({"user_id": pd.Categorical(["u3"]), "HL": [9]})))
    shards = ParticipantShards(store, ["t/a.parquet", "t/b.parquet"])
    # a shard starts at the first participant starting at or after every 3rd row: rows 0, 3, 7;
    # then the next object's row group
    assert [s["user_id"].tolist() for s in shards.shards()] == [["u2"] * 3, ["u0"] * 4, ["u1"] * 2, ["u3"]]
    assert [s.columns.tolist() for s in shards.shards(["HL"])] == [["HL"]] * 4
    assert shards.rows == 10
    # nothing lost, and as one table the same as before
    pd.testing.assert_frame_equal(from_parquet_bytes(to_parquet_bytes(table, shard_rows=3)), table)


def test_row_groups_that_split_a_participant_are_refused_as_shards(tmp_path):
    # u0 in two runs: not ordered by participant, so written without the whole-participants mark
    table = pd.DataFrame({"user_id": pd.Categorical(["u0", "u1", "u0"]), "HL": [1, 2, 3]})
    store = object_store(str(tmp_path))
    store.write_bytes("one_group.parquet", to_parquet_bytes(table, shard_rows=1))
    assert ParticipantShards(store, ["one_group.parquet"]).rows == 3  # one row group
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(table), sink, row_group_size=1)
    store.write_bytes("groups.parquet", sink.getvalue())
    with pytest.raises(ValueError, match="whole participants"):
        list(ParticipantShards(store, ["groups.parquet"]).shards())
