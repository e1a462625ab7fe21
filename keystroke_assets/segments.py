"""Participant segments (docs/performance.md "Segments").

A version's participants are cut into segments in a stable order: by the version in which a
participant first appeared, then by id, never more than `participants_per_segment` in a segment and
never two first versions in one, so a later version's new participants add segments and leave the
earlier ones as they were. A stage stores its table segment by segment under a content address, a
hash of the stage, its code version, its config and what the segment is made from (the
participants' uploads and their checksums, or the upstream segment's address): a version's table
is the list of its segments, and a segment any version already stored is reused, not computed.

A stage computes a segment with a pure function of a picklable `SegmentJob` that reads its
input from the store and writes its table and a small JSON summary (row count, column schema, rule
outcomes, the stage's partial results) to the store; the summary is written last, so a segment
whose summary exists is whole. The step then reports from the summaries alone.
"""

import hashlib
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from keystroke_assets.assets.common import OutputCheck, ShardChecks, rule_outcomes
from keystroke_assets.resources.object_store import ObjectStore, object_store
from keystroke_assets.resources.parquet_io_manager import SegmentedTable, segment_object_name, to_parquet_bytes
from keystroke_assets.schema import table_schema

PARTICIPANTS_PER_SEGMENT = 64


def segment_id(*parts) -> str:
    """The content address of what `parts` (JSON-able) describe."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def code_version(context: dg.AssetExecutionContext, key: dg.AssetKey) -> str:
    return context.assets_def.code_versions_by_key[key] or ""


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


class ParticipantRows:
    """A table's rows by participant (its user_id), indexed once: the rows of each segment's
    participants without a scan of the whole table per segment."""

    def __init__(self, df: pd.DataFrame):
        self._df = df
        self._at = df.groupby("user_id", sort=False, observed=True).indices

    def of(self, users: Iterable[str]) -> pd.DataFrame:
        none = np.zeros(0, np.int64)
        return self._df.iloc[np.concatenate([*(self._at.get(u, none) for u in users), none])]


@dataclass(frozen=True)
class SegmentJob:
    """One segment of a step, as the process that computes it gets it: the store's location, the
    content address of each output asset's segment, the input object's name, and the data the stage
    needs besides (small: manifest rows, thresholds)."""

    location: str
    outputs: dict[str, str]  # asset key (user string) -> segment id
    source: str = ""
    data: dict = field(default_factory=dict)

    def store(self) -> ObjectStore:
        return object_store(self.location)


def read_segment(store: ObjectStore, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(store.read_bytes(name)), columns=columns).to_pandas()


def read_summaries(store: ObjectStore, names: list[str]) -> list[dict]:
    """The stored summaries of the segments `names` (their parquet objects)."""
    return [json.loads(data) for data in store.read_many([name.removesuffix(".parquet") + ".json" for name in names])]


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def store_segment(
    store: ObjectStore, key: dg.AssetKey, sid: str, df: pd.DataFrame, checks: list[OutputCheck], **extra
) -> dict:
    """Write one segment of `key`'s table and then its summary; returns the summary."""
    store.write_bytes(segment_object_name(key, sid), to_parquet_bytes(df))
    summary = {
        "rows": len(df),
        "columns": [[c.name, c.type, c.description] for c in table_schema(df).columns],
        "rules": rule_outcomes(df, checks),
        **extra,
    }
    return store_summary(store, key, sid, summary)


def store_summary(store: ObjectStore, key: dg.AssetKey, sid: str, summary: dict) -> dict:
    """Write a segment's summary (JSON-able, numpy scalars too), alone when a step's partial
    result of the segment is small enough to be all summary; returns it."""
    store.write_bytes(segment_object_name(key, sid, "json"), json.dumps(summary, default=_json_default).encode())
    return summary


def compute_segments(
    store: ObjectStore, map_segments: Callable, fn: Callable[[SegmentJob], dict], jobs: list[SegmentJob]
) -> tuple[list[dict], list[bool]]:
    """Every job's summaries ({asset key: summary}) in order, and whether it was computed now:
    `map_segments(fn, jobs)` (the segment executor) runs only the jobs some of whose output
    segments no earlier run stored whole."""
    keys = {k for job in jobs for k in job.outputs}
    stored = set().union(
        *(store.list_names("/".join(dg.AssetKey.from_user_string(k).path) + "/segments") for k in keys)
    )

    def summary_name(k: str, sid: str) -> str:
        return segment_object_name(dg.AssetKey.from_user_string(k), sid, "json")

    todo = [any(summary_name(k, sid) not in stored for k, sid in job.outputs.items()) for job in jobs]
    computed = iter(map_segments(fn, [job for job, t in zip(jobs, todo) if t]))
    reused = [summary_name(k, sid) for job, t in zip(jobs, todo) if not t for k, sid in job.outputs.items()]
    reused = dict(zip(reused, store.read_many(reused)))
    summaries = [
        next(computed) if t else {k: json.loads(reused[summary_name(k, sid)]) for k, sid in job.outputs.items()}
        for job, t in zip(jobs, todo)
    ]
    return summaries, todo


def segmented_table(
    key: dg.AssetKey, jobs: list[SegmentJob], summaries: list[dict], computed: list[bool]
) -> SegmentedTable:
    """The version's table of `key`: its segments in job order; its columns' types those of the
    first segment with rows (an empty segment's columns may be untyped, as `_arrow_table` reads them)."""
    name = key.to_user_string()
    typed = [s[name] for s in summaries if s[name]["rows"]] or [s[name] for s in summaries]
    columns = typed[0]["columns"] if typed else []
    return SegmentedTable(
        names=[segment_object_name(key, job.outputs[name]) for job in jobs],
        rows=[s[name]["rows"] for s in summaries],
        schema=dg.TableSchema(columns=[dg.TableColumn(n, t, description=d) for n, t, d in columns]),
        computed=sum(computed),
    )


def segment_checks(summaries: Iterable[dict], key: dg.AssetKey) -> ShardChecks:
    """The rules of `key`'s whole table from its segments' stored outcomes."""
    merged = ShardChecks(key)
    for summary in summaries:
        s = summary[key.to_user_string()]
        merged.add_outcomes({name: tuple(outcome) for name, outcome in s["rules"].items()}, empty=s["rows"] == 0)
    return merged
