"""One parquet IO manager for local and GCS storage. A version's table is one object,
`<asset key path>/<version>.parquet`, or, for a stage stored per participant segment, the list
`<asset key path>/<version>.segments.json` of objects `<asset key path>/segments/<id>.parquet`
(docs/performance.md "Segments")."""

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keystroke_assets.frames import run_starts, shard_starts, without_attrs
from keystroke_assets.partitions import InvalidVersionId, validate_version_id
from keystroke_assets.resources.object_store import ObjectStore
from keystroke_assets.schema import column_descriptions, table_schema


def asset_object_name(asset_key: dg.AssetKey, version: str) -> str:
    """The one place that names where an asset's partition is stored (in one object)."""
    return "/".join(asset_key.path) + f"/{validate_version_id(version)}.parquet"


def segment_list_name(asset_key: dg.AssetKey, version: str) -> str:
    """Where the list of a segmented asset's partition is stored."""
    return "/".join(asset_key.path) + f"/{validate_version_id(version)}.segments.json"


def segment_object_name(asset_key: dg.AssetKey, segment_id: str, suffix: str = "parquet") -> str:
    """A segment of an asset's table (`parquet`) or its summary (`json`), named by its content address."""
    return "/".join(asset_key.path) + f"/segments/{segment_id}.{suffix}"


def _mostly_distinct(column: pa.ChunkedArray, sample: int = 4096) -> bool:
    head = column.slice(0, sample)
    return len(head) > 0 and pc.count_distinct(head).as_py() > len(head) // 2


# Row groups of a table ordered by participant hold whole participants, about this many rows each:
# a reader then takes one participant shard at a time (ParticipantShards) in bounded memory.
SHARD_ROWS = 2**19
_WHOLE_PARTICIPANTS = {b"keystroke_assets.row_groups": b"whole participants"}


def participant_row_groups(df: pd.DataFrame, rows: int = SHARD_ROWS) -> np.ndarray | None:
    """Where row groups start so that each holds whole participants (~`rows` rows), or None when
    the table is not ordered by participant (a user_id in several runs) or has no user_id."""
    if "user_id" not in df or not isinstance(df["user_id"].dtype, pd.CategoricalDtype):
        return None
    codes = df["user_id"].cat.codes.to_numpy()
    runs = run_starts(codes)
    if len(runs) != len(np.unique(codes[runs])):
        return None
    return shard_starts(runs, runs, len(codes), rows)


def to_parquet_bytes(df: pd.DataFrame, shard_rows: int = SHARD_ROWS) -> bytes:
    """df as parquet. Column meanings and units (as in `dagster/column_schema`) go in each field's
    "description" metadata, so the file describes itself to any reader; df.attrs is left out, so a
    DataFrame read back has none (pandas deep-copies attrs on every column access). A table ordered
    by participant is written in row groups of whole participants, ~`shard_rows` rows each."""
    starts = participant_row_groups(df, shard_rows)
    table = pa.Table.from_pandas(without_attrs(df), preserve_index=False)
    descriptions = column_descriptions(df)
    # dictionary indices as int32 in every segment, so that segments' tables concatenate
    fields = [
        pa.field(
            f.name,
            pa.dictionary(pa.int32(), f.type.value_type) if pa.types.is_dictionary(f.type) else f.type,
            metadata={"description": descriptions[f.name]} if f.name in descriptions else None,
        )
        for f in table.schema
    ]
    metadata = {**(table.schema.metadata or {}), **(_WHOLE_PARTICIPANTS if starts is not None else {})}
    table = table.cast(pa.schema(fields, metadata=metadata))
    # Integer columns of nearly distinct values (times in ms) are delta-encoded instead of
    # trying a dictionary: keypairs writes ~2x faster, reads ~1.5x faster and is smaller.
    wide = {f.name for f in table.schema if pa.types.is_integer(f.type) and _mostly_distinct(table[f.name])}
    sink = io.BytesIO()
    with pq.ParquetWriter(
        sink,
        table.schema,
        compression="zstd",
        use_dictionary=[n for n in table.column_names if n not in wide],
        column_encoding={n: "DELTA_BINARY_PACKED" for n in wide},
    ) as writer:
        if starts is not None and len(starts):
            for start, stop in zip(starts, [*starts[1:], len(table)]):
                writer.write_table(table.slice(start, stop - start), row_group_size=stop - start)
        else:
            writer.write_table(table)  # an empty table too: one (empty) row group, so one shard
    return sink.getvalue()


def from_parquet_bytes(data: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data)).to_pandas()


@dataclass(frozen=True)
class SegmentedTable:
    """A version's table stored as segments: their object names in order, their row counts and
    the table's columns (dagster/column_schema). What a segmented step outputs; `computed` of the
    segments were computed by this run, the others reused from an earlier one."""

    names: list[str]
    rows: list[int]
    schema: dg.TableSchema
    computed: int


def version_table_names(store: ObjectStore, asset_key: dg.AssetKey, version: str) -> tuple[list[str], list[int] | None]:
    """The objects holding an asset's partition, in order, with their row counts when listed."""
    listed = segment_list_name(asset_key, version)
    if store.exists(listed):
        segments = json.loads(store.read_bytes(listed))
        return segments["names"], segments["rows"]
    return [asset_object_name(asset_key, version)], None


def _arrow_table(store: ObjectStore, names: list[str]) -> pa.Table:
    tables = [pq.read_table(io.BytesIO(data)) for data in store.read_many(names)]
    # An empty segment (participants all broken) may have untyped columns: the others type the table.
    tables = [t for t in tables if t.num_rows] or tables[:1]
    if len(tables) == 1:
        return tables[0]
    # Each segment has its own dictionaries (keys, users): one table with one dictionary per column.
    return pa.concat_tables(tables, promote_options="permissive").unify_dictionaries()


def read_version_table(store: ObjectStore, asset_key: dg.AssetKey, version: str) -> pa.Table:
    """An asset's stored partition as one arrow table, whether stored in one object or in segments
    (the column descriptions stay in the fields' metadata)."""
    names, _ = version_table_names(store, asset_key, version)
    if not store.exists(names[0]):
        raise FileNotFoundError(
            f"{store.uri(names[0])} does not exist: materialize {asset_key.to_user_string()} for {version} first"
        )
    return _arrow_table(store, names)


class ParticipantShards:
    """A stored table read one row group of whole participants at a time: an asset that takes its
    input as `ParticipantShards` never holds the whole version in memory. The table is one object
    or a segment list; each object is opened when its turn comes."""

    def __init__(self, store: ObjectStore, names: list[str], rows: list[int] | None = None):
        self._store, self.names = store, names
        self._rows = rows

    def _files(self) -> Iterator[pq.ParquetFile]:
        for name in self.names:
            with self._store.open(name) as f:
                file = pq.ParquetFile(f)
                marked = (file.schema_arrow.metadata or {}).items() >= _WHOLE_PARTICIPANTS.items()
                if file.num_row_groups > 1 and not marked:
                    raise ValueError(f"{name}: row groups do not hold whole participants: read it as a DataFrame")
                yield file

    @property
    def rows(self) -> int:
        if self._rows is None:
            self._rows = [file.metadata.num_rows for file in self._files()]
        return sum(self._rows)

    def shards(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """Every non-empty row group in order; one empty shard when the table has no rows (an
        empty segment may have untyped columns: a reader writing shards takes its schema from the first)."""
        rows, empty = False, None
        for file in self._files():
            for i in range(file.num_row_groups):
                if file.metadata.row_group(i).num_rows:
                    rows = True
                    yield file.read_row_group(i, columns=columns).to_pandas()
                elif empty is None:
                    empty = file.read_row_group(i, columns=columns).to_pandas()
        if not rows and empty is not None:
            yield empty


def _name(asset_key: dg.AssetKey, version: str) -> str:
    """asset_object_name for a run: a bad version id (typed into the UI) fails once, no retry."""
    try:
        return asset_object_name(asset_key, version)
    except InvalidVersionId as e:
        raise dg.Failure(description=str(e), allow_retries=False) from e


class ParquetIOManager(dg.ConfigurableIOManager):
    store: dg.ResourceDependency[ObjectStore]

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | SegmentedTable) -> None:
        if isinstance(obj, SegmentedTable):
            self._store_segment_list(context, obj)
            return
        name = _name(context.asset_key, context.partition_key)
        self.store.write_bytes(name, to_parquet_bytes(obj))
        context.add_output_metadata(
            {
                "path": dg.MetadataValue.path(self.store.uri(name)),
                "dagster/row_count": dg.MetadataValue.int(len(obj)),
                "dagster/column_schema": dg.MetadataValue.table_schema(table_schema(obj)),
            }
        )

    def _store_segment_list(self, context: dg.OutputContext, table: SegmentedTable) -> None:
        _name(context.asset_key, context.partition_key)  # the version id is checked first
        name = segment_list_name(context.asset_key, context.partition_key)
        self.store.write_bytes(name, json.dumps({"names": table.names, "rows": table.rows}).encode())
        context.add_output_metadata(
            {
                "path": dg.MetadataValue.path(self.store.uri(name)),
                "dagster/row_count": dg.MetadataValue.int(sum(table.rows)),
                "dagster/column_schema": dg.MetadataValue.table_schema(table.schema),
                "segments": len(table.names),
                "segments/computed": table.computed,
                "segments/reused": len(table.names) - table.computed,
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | ParticipantShards:
        key = context.upstream_output.asset_key
        _name(key, context.partition_key)
        names, rows = version_table_names(self.store, key, context.partition_key)
        if context.dagster_type.typing_type is ParticipantShards:
            return ParticipantShards(self.store, names, rows)
        return _arrow_table(self.store, names).to_pandas()
