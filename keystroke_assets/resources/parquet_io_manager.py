"""One parquet IO manager for local and GCS storage. A version's table is one object, or, for a
table stored per participant segment, the list of its segments (names: keystroke_assets.lib.segments).
Every segment read is checked against the size and CRC32C recorded when it was written."""

import io

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keystroke_assets.lib.columns import column_descriptions
from keystroke_assets.lib.frames import without_attrs
from keystroke_assets.lib.segments import (
    SegmentEntry,
    SegmentList,
    crc32c,
    segment_list_object,
    version_object,
    version_table,
)
from keystroke_assets.partitions import InvalidVersionId, validate_version_id
from keystroke_assets.resources.object_store import ObjectStore


def asset_object_name(asset_key: dg.AssetKey, version: str) -> str:
    """Where an asset's partition is stored in one object (the version id checked first)."""
    return version_object(asset_key.path, validate_version_id(version))


def segment_list_name(asset_key: dg.AssetKey, version: str) -> str:
    """Where the list of a segmented asset's partition is stored (the version id checked first)."""
    return segment_list_object(asset_key.path, validate_version_id(version))


def table_schema(df: pd.DataFrame) -> dg.TableSchema:
    """df's columns as `dagster/column_schema`: type, meaning and unit."""
    descriptions = column_descriptions(df)
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=str(c), type=str(dtype), description=descriptions.get(str(c)))
            for c, dtype in df.dtypes.items()
        ]
    )


def _mostly_distinct(column: pa.ChunkedArray, sample: int = 4096) -> bool:
    head = column.slice(0, sample)
    return len(head) > 0 and pc.count_distinct(head).as_py() > len(head) // 2


def arrow_to_parquet_bytes(table: pa.Table, descriptions: dict[str, str] | None = None) -> bytes:
    """An arrow table as parquet: column meanings and units in each field's "description"
    metadata, so the file describes itself to any reader; dictionary indices int32 everywhere, so
    that segments' tables concatenate."""
    descriptions = descriptions or {}
    fields = [
        pa.field(
            f.name,
            pa.dictionary(pa.int32(), f.type.value_type) if pa.types.is_dictionary(f.type) else f.type,
            metadata={"description": descriptions[f.name]} if f.name in descriptions else f.metadata,
        )
        for f in table.schema
    ]
    table = table.cast(pa.schema(fields, metadata=table.schema.metadata))
    # Integer columns of nearly distinct values (times in ms) are delta-encoded instead of
    # trying a dictionary: keypairs writes ~2x faster, reads ~1.5x faster and is smaller.
    wide = {f.name for f in table.schema if pa.types.is_integer(f.type) and _mostly_distinct(table[f.name])}
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        use_dictionary=[n for n in table.column_names if n not in wide],
        column_encoding={n: "DELTA_BINARY_PACKED" for n in wide},
    )
    return sink.getvalue()


def to_parquet_bytes(df: pd.DataFrame) -> bytes:
    """df as parquet, its column descriptions (as in `dagster/column_schema`) in the fields'
    metadata; df.attrs is left out, so a DataFrame read back has none (pandas deep-copies attrs on
    every column access)."""
    table = pa.Table.from_pandas(without_attrs(df), preserve_index=False)
    return arrow_to_parquet_bytes(table, column_descriptions(df))


def from_parquet_bytes(data: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data)).to_pandas()


class DamagedSegment(RuntimeError):
    """A stored segment whose bytes are not those recorded when it was written."""


def read_segment(store: ObjectStore, segment: SegmentEntry, columns: list[str] | None = None) -> pa.Table:
    """One segment's rows, after its bytes are checked against their recorded size and CRC32C: a
    damaged segment is never read."""
    try:
        data = store.read_bytes(segment.name)
    except FileNotFoundError as e:
        raise DamagedSegment(f"{store.uri(segment.name)} is missing: materialize its asset again") from e
    if len(data) != segment.size or crc32c(data) != segment.crc32c:
        raise DamagedSegment(
            f"{store.uri(segment.name)} has {len(data)} bytes and CRC32C {crc32c(data)}, not the {segment.size} "
            f"bytes and {segment.crc32c} recorded when it was written: materialize its asset again"
        )
    return pq.read_table(io.BytesIO(data), columns=columns)


def read_version_table(store: ObjectStore, asset_key: dg.AssetKey, version: str) -> pa.Table:
    """An asset's stored partition as one arrow table, whether stored in one object or in segments
    (then the same whatever the segments' history: lib.segments.version_table); the column
    descriptions stay in the fields' metadata."""
    listed = segment_list_name(asset_key, version)
    if store.exists(listed):
        segments = SegmentList.from_json(store.read_bytes(listed)).segments
        return version_table([read_segment(store, s) for s in segments])
    name = asset_object_name(asset_key, version)
    if not store.exists(name):
        raise FileNotFoundError(
            f"{store.uri(name)} does not exist: materialize {asset_key.to_user_string()} for {version} first"
        )
    return pq.read_table(io.BytesIO(store.read_bytes(name)))


def _checked(name):
    """A name made from a run's partition key: a bad version id (typed into the UI) fails once,
    with no retry."""
    try:
        return name()
    except InvalidVersionId as e:
        raise dg.Failure(description=str(e), allow_retries=False) from e


class ParquetIOManager(dg.ConfigurableIOManager):
    store: dg.ResourceDependency[ObjectStore]

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | SegmentList) -> None:
        if isinstance(obj, SegmentList):  # its metadata is the segment engine's
            name = _checked(lambda: segment_list_name(context.asset_key, context.partition_key))
            self.store.write_bytes(name, obj.to_json())
            context.add_output_metadata({"path": dg.MetadataValue.path(self.store.uri(name))})
            return
        name = _checked(lambda: asset_object_name(context.asset_key, context.partition_key))
        self.store.write_bytes(name, to_parquet_bytes(obj))
        context.add_output_metadata(
            {
                "path": dg.MetadataValue.path(self.store.uri(name)),
                "dagster/row_count": dg.MetadataValue.int(len(obj)),
                "dagster/column_schema": dg.MetadataValue.table_schema(table_schema(obj)),
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | SegmentList:
        key = context.upstream_output.asset_key
        if context.dagster_type.typing_type is SegmentList:
            name = _checked(lambda: segment_list_name(key, context.partition_key))
            return SegmentList.from_json(self.store.read_bytes(name))
        _checked(lambda: validate_version_id(context.partition_key))
        return read_version_table(self.store, key, context.partition_key).to_pandas()
