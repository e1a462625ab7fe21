"""Participant segments without Dagster: the plan, content addresses, object names, summaries and
a version's table read back the same whatever its history (docs/performance.md "Segments").

A version's participants are cut into segments in a stable order: by the version in which a
participant first appeared, then by id, never more than `participants_per_segment` in a segment and
never two first versions in one, so a later version's new participants add segments and leave the
earlier ones as they were. A stage stores its table segment by segment under a content address:
the hash of everything the segment's rows depend on (`made_of`). A version's table is the list of
its segments; read back, its rows come in participant order and its dictionaries sorted, so the
table is the same whichever segments it was made of (`version_table`).
"""

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import google_crc32c
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

PARTICIPANTS_PER_SEGMENT = 64
# What a summary holds and how an address is made: a change here gives every segment a new address.
FORMAT = 1


def participant_segments(participants: pd.DataFrame, size: int = PARTICIPANTS_PER_SEGMENT) -> list[np.ndarray]:
    """The user_ids of `participants` (columns user_id, first_seen: a version id) cut into
    segments: in (first_seen, user_id) order, at most `size` each, none spanning two first_seen."""
    ordered = participants.drop_duplicates("user_id").sort_values(["first_seen", "user_id"], ignore_index=True)
    first = ordered["first_seen"].to_numpy()
    new_version = np.r_[0, np.flatnonzero(first[1:] != first[:-1]) + 1]
    # position within its first version's run of participants, then every size-th starts a segment
    within = np.arange(len(ordered)) - np.repeat(new_version, np.diff(np.r_[new_version, len(ordered)]))
    starts = np.flatnonzero(within % size == 0)
    users = ordered["user_id"].to_numpy()
    return np.split(users, starts[1:]) if len(users) else [users]  # no participant: one empty segment


# --- names: the one place that says where a table, a segment or a version's list is stored ----------


def version_object(key_path: Sequence[str], version: str) -> str:
    """A version's table stored whole, in one object."""
    return "/".join(key_path) + f"/{version}.parquet"


def segment_list_object(key_path: Sequence[str], version: str) -> str:
    """The list of a version's segments of a table stored per segment."""
    return "/".join(key_path) + f"/{version}.segments.json"


def segments_folder(key_path: Sequence[str]) -> str:
    return "/".join(key_path) + "/segments"


def segment_object(key_path: Sequence[str], address: str, suffix: str = "parquet") -> str:
    """A segment's rows (`parquet`) or its summary (`json`), named by its content address."""
    return f"{segments_folder(key_path)}/{address}.{suffix}"


def summary_object(name: str) -> str:
    """The summary of the segment stored as `name`."""
    return name.removesuffix(".parquet") + ".json"


def is_segment_object(name: str) -> bool:
    return "/segments/" in name and name.endswith((".parquet", ".json"))


def is_segment_list(name: str) -> bool:
    return name.endswith(".segments.json")


# --- addresses -------------------------------------------------------------------------------


class NotJSON(TypeError):
    pass


def _strict(value):
    raise NotJSON(f"{type(value).__name__} {value!r:.80} is not JSON: a segment's parameters must be")


def canonical(value) -> str:
    """`value` as canonical JSON (sorted keys, no spaces); anything that is not JSON is refused
    rather than turned into text that could stand for two values."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_strict, allow_nan=True)


def as_passed(params: Mapping) -> dict:
    """The parameters as a segment function receives them: exactly what their JSON says (the
    address hashes that JSON), so nothing can reach the function without being in its address."""
    return json.loads(canonical(dict(params)))


def address(made_of: Mapping) -> str:
    """The content address of what `made_of` describes."""
    return hashlib.sha256(canonical([FORMAT, made_of]).encode()).hexdigest()[:32]


def uploads_digest(rows: pd.DataFrame) -> str:
    """What a segment reads of the uploads: the name, MD5 and refusal (why the snapshot did not
    keep it, if so) of each object, in name order."""
    fields = [rows[c].astype(object).where(rows[c].notna(), "").astype(str) for c in ("name", "md5", "refused")]
    return hashlib.sha256(canonical(sorted(zip(*fields))).encode()).hexdigest()[:32]


def crc32c(data: bytes) -> str:
    """CRC32C of `data`, hex: what GCS lists for every object, and what a segment's summary records."""
    return f"{google_crc32c.value(data):08x}"


@dataclass(frozen=True)
class Made:
    """What a segment function returns for an output besides (or instead of) its table: facts
    about the segment that the table does not hold (problems met, participants left out)."""

    table: pd.DataFrame | pa.Table | None = None
    facts: dict = field(default_factory=dict)


class Uploads:
    """What a segment function gets of its participants' kept uploads (the kinds its stage reads):
    their manifest rows, and their bytes on request, each checked against its MD5 by `read`."""

    def __init__(self, rows: pd.DataFrame, read: Callable[[pd.DataFrame], list[bytes]]):
        self.rows = rows.reset_index(drop=True)
        self._read = read

    def read(self, rows: pd.DataFrame) -> list[bytes]:
        """The bytes of `rows` (some of self.rows), in order."""
        return self._read(rows)


# --- a version's list of segments ------------------------------------------------------------


@dataclass(frozen=True)
class SegmentEntry:
    """One segment of a version's table: its object, rows, bytes and checksum, participants."""

    name: str
    rows: int
    size: int
    crc32c: str
    participants: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return self.name.rsplit("/", 1)[-1].split(".", 1)[0]


@dataclass(frozen=True)
class SegmentList:
    """A version's table stored as segments, in order (`<asset>/<version>.segments.json`)."""

    segments: tuple[SegmentEntry, ...]

    def to_json(self) -> bytes:
        return canonical({"segments": [vars(s) for s in self.segments]}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "SegmentList":
        return cls(
            tuple(SegmentEntry(**{**s, "participants": tuple(s["participants"])}) for s in json.loads(data)["segments"])
        )

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.segments)


# --- garbage collection ----------------------------------------------------------------------

# `gc` leaves an object modified this recently, and a run touches each stored segment it reuses
# once it is half that old: a run that reuses a segment keeps it from a collection in flight.
KEEP_RECENT_SECONDS = 3600.0


def collectable(modified: Mapping[str, float], lists: Iterable[SegmentList], before: float) -> list[str]:
    """The segment objects (rows and summaries) that no list names and that were last modified
    before `before` (seconds since the epoch), of the store's objects {name: modified}."""
    named = {n for listed in lists for s in listed.segments for n in (s.name, summary_object(s.name))}
    return sorted(n for n, t in modified.items() if is_segment_object(n) and n not in named and t < before)


# --- reading a version's table -----------------------------------------------------------------


def version_table(tables: Sequence[pa.Table]) -> pa.Table:
    """A version's table from its segments' tables, the same whatever its history: whichever
    earlier versions' segments it reuses, however its participants fell into segments. Rows in
    participant order (a participant's rows in the order its segment has them), every dictionary
    column's values sorted and only those used; columns that share one dictionary (keypairs' key1
    and key2) still share one, of the values either uses. The columns are those of the segments
    with rows (an empty segment's may be untyped)."""
    tables = [t for t in tables if t.num_rows] or list(tables[:1])
    if not tables:
        raise ValueError("a version's table needs at least one segment")
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
    table = table.unify_dictionaries().combine_chunks()
    if "user_id" in table.column_names and table.num_rows:
        table = table.take(_participant_order(table["user_id"]))
    columns = list(table.columns)
    for group in _shared_dictionaries(columns):
        for i, column in zip(group, _sorted_dictionaries([columns[i] for i in group])):
            columns[i] = column
    # the schema's metadata too: pandas' (nullable integers, ...) as the segments were written
    fields = [f.with_type(c.type) for f, c in zip(table.schema, columns)]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=table.schema.metadata))


def _participant_order(users: pa.ChunkedArray) -> np.ndarray:
    """Row order: runs of a participant's rows sorted by the participant's id, runs of one
    participant in table order (a stable sort of the runs, not of every row)."""
    users = users.combine_chunks()
    if pa.types.is_dictionary(users.type):
        values = users.dictionary.to_numpy(zero_copy_only=False).astype(str)
        codes = users.indices.to_numpy(zero_copy_only=False)
        rank = np.argsort(np.argsort(values, kind="stable"), kind="stable")[codes]
    else:
        rank = pd.factorize(users.to_numpy(zero_copy_only=False).astype(str), sort=True)[0]
    starts = np.flatnonzero(np.r_[True, rank[1:] != rank[:-1]])
    lengths = np.diff(np.r_[starts, len(rank)])
    runs = np.argsort(rank[starts], kind="stable")
    if np.array_equal(runs, np.arange(len(runs))):
        return np.arange(len(rank))
    return np.concatenate([np.arange(s, s + n) for s, n in zip(starts[runs], lengths[runs])])


def _shared_dictionaries(columns: list[pa.ChunkedArray]) -> list[list[int]]:
    """The positions of the dictionary columns, those with equal dictionaries in one group."""
    groups: list[tuple[pa.Array, list[int]]] = []
    for i, column in enumerate(columns):
        if not pa.types.is_dictionary(column.type):
            continue
        dictionary = column.combine_chunks().dictionary
        for shared, members in groups:
            if shared.equals(dictionary):
                members.append(i)
                break
        else:
            groups.append((dictionary, [i]))
    return [members for _, members in groups]


def _sorted_dictionaries(columns: list[pa.ChunkedArray]) -> list[pa.ChunkedArray]:
    """Dictionary columns that share one dictionary, each with one dictionary of only the values
    any of them uses, sorted (by their text)."""
    arrays = [c.combine_chunks() if c.num_chunks != 1 else c.chunk(0) for c in columns]
    dictionary = arrays[0].dictionary
    used = np.zeros(len(dictionary), bool)
    for array in arrays:
        used[array.indices.drop_null().to_numpy(zero_copy_only=False)] = True
    kept = np.flatnonzero(used)
    order = kept[np.argsort(dictionary.take(pa.array(kept)).to_numpy(zero_copy_only=False).astype(str), kind="stable")]
    new_code = np.full(len(dictionary), -1, np.int64)
    new_code[order] = np.arange(len(order))
    sorted_values = dictionary.take(pa.array(order, pa.int64()))
    return [
        pa.chunked_array(
            [pa.DictionaryArray.from_arrays(pc.take(pa.array(new_code, pa.int32()), a.indices), sorted_values)], c.type
        )
        for c, a in zip(columns, arrays)
    ]
