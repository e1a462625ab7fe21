"""One parquet IO manager for local and GCS storage: `<asset key path>/<version>.parquet`."""

import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keystroke_assets.frames import run_starts, shard_starts, without_attrs
from keystroke_assets.partitions import InvalidVersionId, validate_version_id
from keystroke_assets.resources.object_store import ObjectStore, object_store
from keystroke_assets.schema import column_descriptions, table_schema


def asset_object_name(asset_key: dg.AssetKey, version: str) -> str:
    """The one place that names where an asset's partition is stored."""
    return "/".join(asset_key.path) + f"/{validate_version_id(version)}.parquet"


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


class TableWriter:
    """Writes a table as parquet to a binary file, in one piece or shard by shard (each `write` a
    set of whole participants no other write has).

    Column meanings and units (as in `dagster/column_schema`) go in each field's "description"
    metadata, so the file describes itself to any reader; df.attrs is left out, so a DataFrame read
    back has none (pandas deep-copies attrs on every column access). A table ordered by
    participant is written in row groups of whole participants, ~`shard_rows` rows each. The first
    write fixes the schema and encodings."""

    def __init__(self, sink: BinaryIO, shard_rows: int = SHARD_ROWS):
        self._sink, self._shard_rows = sink, shard_rows
        self._writer: pq.ParquetWriter | None = None
        self._users: set = set()
        self._by_participant = False
        self.rows = 0
        self.head: pd.DataFrame | None = None  # no rows: the columns, dtypes and descriptions

    def _open(self, df: pd.DataFrame, table: pa.Table) -> None:
        descriptions = column_descriptions(df)
        # dictionary indices as int32: a later shard with more categories still fits
        fields = [
            pa.field(
                f.name,
                pa.dictionary(pa.int32(), f.type.value_type) if pa.types.is_dictionary(f.type) else f.type,
                metadata={"description": descriptions[f.name]} if f.name in descriptions else None,
            )
            for f in table.schema
        ]
        metadata = {**(table.schema.metadata or {}), **(_WHOLE_PARTICIPANTS if self._by_participant else {})}
        schema = pa.schema(fields, metadata=metadata)
        # Integer columns of nearly distinct values (times in ms) are delta-encoded instead of
        # trying a dictionary: keypairs writes ~2x faster, reads ~1.5x faster and is smaller.
        wide = {f.name for f in table.schema if pa.types.is_integer(f.type) and _mostly_distinct(table[f.name])}
        self._writer = pq.ParquetWriter(
            self._sink,
            schema,
            compression="zstd",
            use_dictionary=[n for n in table.column_names if n not in wide],
            column_encoding={n: "DELTA_BINARY_PACKED" for n in wide},
        )
        self.head = df.head(0)

    def write(self, df: pd.DataFrame) -> None:
        starts = participant_row_groups(df, self._shard_rows)
        table = pa.Table.from_pandas(without_attrs(df), preserve_index=False)
        if self._writer is None:
            self._by_participant = starts is not None
            self._open(df, table)
        elif (
            self._by_participant and len(df) and (starts is None or not self._users.isdisjoint(df["user_id"].unique()))
        ):
            raise ValueError("a shard written after the first must hold whole participants of its own")
        table = table.cast(self._writer.schema)
        if self._by_participant and len(starts):
            self._users.update(df["user_id"].unique())
            for start, stop in zip(starts, [*starts[1:], len(table)]):
                self._writer.write_table(table.slice(start, stop - start), row_group_size=stop - start)
        elif len(table) or self.rows == 0:
            self._writer.write_table(table)  # an empty table too: one (empty) row group, so one shard
        self.rows += len(df)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def to_parquet_bytes(df: pd.DataFrame, shard_rows: int = SHARD_ROWS) -> bytes:
    """df as parquet (TableWriter)."""
    sink = io.BytesIO()
    writer = TableWriter(sink, shard_rows)
    writer.write(df)
    writer.close()
    return sink.getvalue()


class TableSpool:
    """An asset's table written shard by shard to a local temporary file, which the IO manager
    then stores: the step holds one shard of its output at a time.

        with TableSpool() as out:
            for shard in ...:
                out.write(table_of(shard))
        yield dg.Output(out, ...)
    """

    def __init__(self):
        fd, self.path = tempfile.mkstemp(prefix="keystroke-assets-", suffix=".parquet")
        self._file = os.fdopen(fd, "wb")
        self._writer = TableWriter(self._file)

    def write(self, df: pd.DataFrame) -> None:
        self._writer.write(df)

    @property
    def rows(self) -> int:
        return self._writer.rows

    @property
    def head(self) -> pd.DataFrame:
        return self._writer.head

    def __enter__(self) -> "TableSpool":
        return self

    def __exit__(self, error_type, *_) -> None:
        self._writer.close()
        self._file.close()
        if error_type is not None:
            os.unlink(self.path)


def from_parquet_bytes(data: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data)).to_pandas()


@dataclass
class Segment:
    """One row group of whole participants of a stored table, as a worker anywhere reads it: the
    store's location (its `uri()`), the object's name and the row group's index. In the step's own
    process it reads from the file the step already has open; that file is not pickled."""

    location: str
    name: str
    index: int
    file: pq.ParquetFile | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "file": None}

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        if self.file is not None:
            return self.file.read_row_group(self.index, columns=columns).to_pandas()
        with object_store(self.location).open(self.name) as f:
            return pq.ParquetFile(f).read_row_group(self.index, columns=columns).to_pandas()


class ParticipantShards:
    """A stored table read one row group of whole participants at a time: an asset that takes its
    input as `ParticipantShards` never holds the whole version in memory. With the store's location
    and the object's name it also hands out its row groups as `Segment`s for other processes."""

    def __init__(self, source: BinaryIO, location: str = "", name: str = ""):
        self._file = pq.ParquetFile(source)
        self._location, self._name = location, name
        marked = (self._file.schema_arrow.metadata or {}).items() >= _WHOLE_PARTICIPANTS.items()
        if self._file.num_row_groups > 1 and not marked:
            raise ValueError("this table's row groups do not hold whole participants: read it as a DataFrame")

    @property
    def rows(self) -> int:
        return self._file.metadata.num_rows

    def shards(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        for i in range(self._file.num_row_groups):
            yield self._file.read_row_group(i, columns=columns).to_pandas()

    def segments(self) -> list[Segment]:
        return [Segment(self._location, self._name, i, self._file) for i in range(self._file.num_row_groups)]


def _name(asset_key: dg.AssetKey, version: str) -> str:
    """asset_object_name for a run: a bad version id (typed into the UI) fails once, no retry."""
    try:
        return asset_object_name(asset_key, version)
    except InvalidVersionId as e:
        raise dg.Failure(description=str(e), allow_retries=False) from e


class ParquetIOManager(dg.ConfigurableIOManager):
    store: dg.ResourceDependency[ObjectStore]

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | TableSpool) -> None:
        name = _name(context.asset_key, context.partition_key)
        if isinstance(obj, TableSpool):
            try:
                self.store.write_file(name, obj.path)
            finally:
                os.unlink(obj.path)
            rows, head = obj.rows, obj.head
        else:
            self.store.write_bytes(name, to_parquet_bytes(obj))
            rows, head = len(obj), obj
        context.add_output_metadata(
            {
                "path": dg.MetadataValue.path(self.store.uri(name)),
                "dagster/row_count": dg.MetadataValue.int(rows),
                "dagster/column_schema": dg.MetadataValue.table_schema(table_schema(head)),
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | ParticipantShards:
        name = _name(context.upstream_output.asset_key, context.partition_key)
        if context.dagster_type.typing_type is ParticipantShards:
            return ParticipantShards(self.store.open(name), self.store.uri(), name)
        return from_parquet_bytes(self.store.read_bytes(name))
