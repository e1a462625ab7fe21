"""The segment engine: every stage stored per participant segment runs through here
(docs/performance.md "Segments").

A stage declares what it reads (upstream segments, its participants' kept uploads), its pure
per-segment function, its outputs with their checks; the asset gives the parameters (run config,
what a resource contributes). The engine plans the segments, addresses each by everything its rows
depend on (keystroke_assets.lib.segments), reuses a stored segment only when its object still
matches its summary, computes the others on the segment executor (in process, a local pool or
Dask), and yields the Dagster outputs and the merged rule outcomes. A segment function never
sees a store, an executor or another segment: what it receives is what its address hashes.
"""

import inspect
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from keystroke_assets.lib.columns import column_descriptions
from keystroke_assets.lib.rules import OutputCheck, merge_outcomes, rule_outcomes, source_hash
from keystroke_assets.lib.segments import (
    KEEP_RECENT_SECONDS,
    PARTICIPANTS_PER_SEGMENT,
    Made,
    SegmentEntry,
    SegmentList,
    Uploads,
    address,
    as_passed,
    canonical,
    crc32c,
    participant_segments,
    segment_list_object,
    segment_object,
    segments_folder,
    summary_object,
    uploads_digest,
)
from keystroke_assets.resources.object_store import ObjectStore, object_store
from keystroke_assets.resources.parquet_io_manager import (
    DamagedSegment,
    arrow_to_parquet_bytes,
    read_segment,
    to_parquet_bytes,
)


@dataclass(frozen=True)
class Read:
    """An upstream table a stage reads segment by segment; the function gets it as the argument
    named after the asset (`keypairs`), only `columns` when given."""

    key: dg.AssetKey
    columns: tuple[str, ...] | None = None

    @property
    def arg(self) -> str:
        return self.key.path[-1]


@dataclass(frozen=True)
class Output:
    """A table a stage stores per segment, its rules, and `facts`: a module-level function of the
    segment's table whose small result (counts) its summary keeps for the step's metadata.
    `table=False`: a partial result of a step kept in the summary alone (the function's facts)."""

    key: dg.AssetKey
    checks: tuple[OutputCheck, ...] = ()
    facts: Callable[[pd.DataFrame], dict] | None = None
    table: bool = True


def _identity(fn: Callable, what: str) -> str:
    if not inspect.isfunction(fn) or fn.__name__ == "<lambda>" or "<locals>" in fn.__qualname__:
        raise TypeError(f"{what} must be a module-level function (a worker process imports it), not {fn!r}")
    return f"{fn.__module__}:{fn.__qualname__}"


@dataclass(frozen=True)
class Stage:
    """A stage computed per participant segment. `function(**reads, [uploads], **params)` returns
    the segment's table (one output), a Made, or {output name (its key's last part): either}. `uploads`: the kinds
    of kept uploads of the segment's participants the function reads (it gets an `Uploads`). A
    stage without reads is the first: its segments are planned from the snapshot's participants."""

    function: Callable
    outputs: tuple[Output, ...]
    code_version: str
    reads: tuple[Read, ...] = ()
    uploads: tuple[str, ...] = ()
    # what every segment of the stage depends on alike, hashed from the sources once
    _code: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        # a function, rule or facts function no worker could import is refused here, in every run
        code = {
            "function": _identity(self.function, "a segment function"),
            "code_version": self.code_version,
            "outputs": {
                o.key.to_user_string(): {
                    "rules": [c.identity() for c in o.checks],
                    "facts": _facts_version(o),
                    "table": o.table,
                }
                for o in self.outputs
            },
        }
        object.__setattr__(self, "_code", code)

    def made_of(self, params: dict, participants: tuple[str, ...], inputs: dict[str, str], uploads: str | None) -> dict:
        """Everything a segment's rows and summary depend on: the function and its code version,
        its parameters, each output's rules and facts function, its participants, its input
        segments' addresses, the uploads it reads (names and MD5s)."""
        segment = {"participants": list(participants), "params": params, "inputs": inputs, "uploads": uploads}
        return {**self._code, **segment}


def _facts_version(output: Output) -> str | None:
    return None if output.facts is None else source_hash(output.facts, f"{output.key.to_user_string()}'s facts")


def _read_uploads(location: str, rows: pd.DataFrame) -> list[bytes | None]:
    from keystroke_assets.assets.web_app_data import read_kept

    return read_kept(object_store(location), rows)


@dataclass(frozen=True)
class Planned:
    """A segment before it is addressed: its participants, its input segments by argument name,
    the manifest rows of the uploads it reads."""

    participants: tuple[str, ...]
    inputs: dict[str, SegmentEntry]
    uploads: pd.DataFrame | None = None


# The manifest columns a segment function gets of its uploads, typed: a segment without uploads
# would otherwise get float64 columns from its empty lists.
UPLOAD_TYPES = {
    "name": object,
    "kind": object,
    "user_id": object,
    "size": np.int64,
    "md5": object,
    "kept_as": object,
    "refused": object,  # why the snapshot did not keep it (too large, ...), or null
}
UPLOAD_COLUMNS = list(UPLOAD_TYPES)


def plan(
    stage: Stage,
    sources: Mapping[str, SegmentList] | None = None,
    manifest: pd.DataFrame | None = None,
    participants_per_segment: int = PARTICIPANTS_PER_SEGMENT,
) -> list[Planned]:
    """The stage's segments: those of its first read's list (every read's lists are aligned, a
    participant in the same segment of each), or, for the first stage, the snapshot's participants
    (manifest rows with `first_seen`) cut by participant_segments."""
    if stage.reads:
        lists = [sources[r.arg].segments for r in stage.reads]
        if len({len(s) for s in lists}) != 1:
            raise ValueError(f"{stage.function.__name__}: its inputs have different numbers of segments")
        segments = [
            Planned(entries[0].participants, {r.arg: e for r, e in zip(stage.reads, entries)})
            for entries in zip(*lists)
        ]
    else:
        people = manifest[manifest["user_id"].notna()]
        first_seen = people["first_seen"] if "first_seen" in people else ""
        cuts = participant_segments(
            pd.DataFrame({"user_id": people["user_id"], "first_seen": first_seen}), participants_per_segment
        )
        segments = [Planned(tuple(str(u) for u in users), {}) for users in cuts]
    if stage.uploads:
        kept = manifest[manifest["kind"].isin(stage.uploads) & manifest["user_id"].notna()]
        rows = kept.groupby("user_id", sort=False).indices
        none = np.zeros(0, np.int64)
        segments = [
            Planned(
                s.participants,
                s.inputs,
                # a snapshot taken before it had a `refused` column refused nothing
                kept.iloc[np.concatenate([*(rows.get(u, none) for u in s.participants), none])].reindex(
                    columns=UPLOAD_COLUMNS
                ),
            )
            for s in segments
        ]
    return segments


@dataclass(frozen=True)
class SegmentJob:
    """One segment as the process that computes it gets it: the store's location, the stage, the
    parameters as passed, its inputs and uploads, and the address of each output."""

    location: str
    stage: Stage
    params: dict
    participants: tuple[str, ...]
    inputs: dict[str, SegmentEntry]
    uploads: pd.DataFrame | None  # manifest rows (UPLOAD_COLUMNS)
    addresses: dict[dg.AssetKey, str]
    made_of: dict


def compute_segment(job: SegmentJob) -> dict[dg.AssetKey, dict]:
    """Read the job's inputs, run the stage's function, store each output's table and then its
    summary (the summary last: a segment whose summary exists is whole). Returns the summaries."""
    store = object_store(job.location)
    stage = job.stage
    args = {
        r.arg: read_segment(store, job.inputs[r.arg], list(r.columns) if r.columns else None).to_pandas()
        for r in stage.reads
    }
    if stage.uploads:
        args["uploads"] = Uploads(job.uploads.astype(UPLOAD_TYPES), partial(_read_uploads, job.location))
    made = stage.function(**args, **job.params)
    if not isinstance(made, dict):
        made = {stage.outputs[0].key.path[-1]: made}
    summaries = {}
    for output in stage.outputs:
        result = made[output.key.path[-1]]
        summaries[output.key] = store_segment(store, output, job, result if isinstance(result, Made) else Made(result))
    return summaries


def store_segment(store: ObjectStore, output: Output, job: SegmentJob, made: Made) -> dict:
    """Write one output's table (if it has one) and then its summary; returns the summary."""
    segment = job.addresses[output.key]
    summary = {"participants": list(job.participants), "made_of": job.made_of, "facts": dict(made.facts)}
    summary.update(rows=0, object=None, columns=[], rules={})
    if output.table:
        table = made.table
        df = table.to_pandas() if isinstance(table, pa.Table) else table
        data = arrow_to_parquet_bytes(table) if isinstance(table, pa.Table) else to_parquet_bytes(table)
        store.write_bytes(segment_object(output.key.path, segment), data)
        descriptions = column_descriptions(df)
        summary.update(
            rows=len(df),
            object={"size": len(data), "crc32c": crc32c(data)},
            columns=[[str(c), str(t), descriptions.get(str(c))] for c, t in df.dtypes.items()],
            rules={k: [passed, m] for k, (passed, m) in rule_outcomes(df, output.checks).items()},
        )
        if output.facts is not None:
            summary["facts"].update(output.facts(df))
    store.write_bytes(segment_object(output.key.path, segment, "json"), canonical(summary).encode())
    return summary


@dataclass
class StageRun:
    """A stage's segments for one version: their jobs in order, each output's summaries, which
    were computed now, and which stored segments were found missing or damaged and made again."""

    stage: Stage
    jobs: list[SegmentJob]
    summaries: list[dict[dg.AssetKey, dict]]
    computed: list[bool]
    damaged: list[str]

    def segment_list(self, key: dg.AssetKey) -> SegmentList:
        return SegmentList(
            tuple(
                SegmentEntry(
                    segment_object(key.path, job.addresses[key]),
                    s[key]["rows"],
                    (s[key]["object"] or {}).get("size", 0),
                    (s[key]["object"] or {}).get("crc32c", ""),
                    tuple(s[key]["participants"]),
                )
                for job, s in zip(self.jobs, self.summaries)
            )
        )

    def facts(self, key: dg.AssetKey) -> list[dict]:
        return [s[key]["facts"] for s in self.summaries]

    def schema(self, key: dg.AssetKey) -> dg.TableSchema:
        """The table's columns: those of the first segment with rows (an empty one's may be untyped)."""
        parts = [s[key] for s in self.summaries]
        typed = [p for p in parts if p["rows"]] or parts
        columns = typed[0]["columns"] if typed else []
        return dg.TableSchema(columns=[dg.TableColumn(n, t, description=d) for n, t, d in columns])

    def outcomes(self, key: dg.AssetKey) -> dict[str, tuple[bool, dict]]:
        """The rules of the whole table, from each segment's outcomes."""
        (output,) = [o for o in self.stage.outputs if o.key == key]
        parts = [({n: tuple(o) for n, o in s[key]["rules"].items()}, s[key]["rows"] == 0) for s in self.summaries]
        return merge_outcomes(parts) or rule_outcomes(pd.DataFrame(), output.checks)

    def counts(self) -> dict:
        return {
            "segments": len(self.jobs),
            "segments/computed": sum(self.computed),
            "segments/reused": len(self.jobs) - sum(self.computed),
            "segments/damaged_recomputed": len(self.damaged),
        }


def run(
    stage: Stage, params: Mapping, planned: list[Planned], storage: ObjectStore, map_segments: Callable
) -> StageRun:
    """Address the planned segments, reuse those stored whole and intact, compute the others with
    `map_segments(compute_segment, jobs)` (the segment executor), in segment order."""
    passed = as_passed(params)
    jobs = []
    for segment in planned:
        digest = uploads_digest(segment.uploads) if segment.uploads is not None else None
        inputs = {arg: e.address for arg, e in segment.inputs.items()}
        made_of = stage.made_of(passed, segment.participants, inputs, digest)
        job_address = address(made_of)
        jobs.append(
            SegmentJob(
                storage.uri(),
                stage,
                passed,
                segment.participants,
                segment.inputs,
                segment.uploads,
                {o.key: address({"segment": job_address, "output": o.key.to_user_string()}) for o in stage.outputs},
                made_of,
            )
        )
    stored, damaged = _reusable(storage, stage, jobs)
    computed = iter(map_segments(compute_segment, [job for i, job in enumerate(jobs) if i not in stored]))
    try:
        summaries = [stored[i] if i in stored else next(computed) for i in range(len(jobs))]
    except DamagedSegment as e:  # an input's bytes are not those recorded: a retry reads the same bytes
        raise dg.Failure(description=str(e), allow_retries=False) from e
    return StageRun(stage, jobs, summaries, [i not in stored for i in range(len(jobs))], damaged)


def _reusable(storage: ObjectStore, stage: Stage, jobs: list[SegmentJob]) -> tuple[dict[int, dict], list[str]]:
    """{job index: its summaries} of the jobs whose every output a run stored whole (its summary is
    there) and intact (its object has the size and CRC32C its summary recorded); and the objects
    found missing or damaged, whose segments are computed again. What is reused is touched once
    it is half as old as `gc` lets an unlisted segment become: a collection in flight keeps it."""
    listed = set().union(*(storage.list_names(segments_folder(o.key.path)) for o in stage.outputs))
    objects = [{k: segment_object(k.path, a) for k, a in job.addresses.items()} for job in jobs]
    whole = [i for i in range(len(jobs)) if all(summary_object(n) in listed for n in objects[i].values())]
    names = [summary_object(n) for i in whole for n in objects[i].values()]
    summaries = dict(zip(names, (json.loads(b) for b in storage.read_many(names))))
    recorded = {n: summaries[summary_object(n)]["object"] for i in whole for n in objects[i].values()}
    found = storage.checksums([*names, *(n for n, o in recorded.items() if o is not None)])
    damaged = sorted(
        n for n, o in recorded.items() if o is not None and found.get(n, ())[:2] != (o["size"], o["crc32c"])
    )
    reused = [i for i in whole if not any(n in damaged for n in objects[i].values())]
    old = time.time() - KEEP_RECENT_SECONDS / 2
    storage.touch(
        [
            m
            for i in reused
            for n in objects[i].values()
            for m in (n, summary_object(n))
            if m in found and found[m][2] < old
        ]
    )
    return {i: {k: summaries[summary_object(n)] for k, n in objects[i].items()} for i in reused}, damaged


def run_for_version(
    context: dg.AssetExecutionContext,
    stage: Stage,
    params: Mapping,
    planned: list[Planned],
    storage: ObjectStore,
    segment_executor,
) -> StageRun:
    """`run` for the step's version; an output that is no asset of the step (a partial result of
    it) gets its version's list stored here (what the asset outputs' lists are: the IO manager's)."""
    from keystroke_assets.assets.common import partition_version

    version = partition_version(context)
    result = run(stage, params, planned, storage, segment_executor.map)
    for output in stage.outputs:
        if output.key not in context.assets_def.keys:
            storage.write_bytes(
                segment_list_object(output.key.path, version), result.segment_list(output.key).to_json()
            )
    return result


def outputs(
    context: dg.AssetExecutionContext,
    result: StageRun,
    metadata: Mapping[dg.AssetKey, Callable[[list[dict]], dict]] | None = None,
) -> Iterator:
    """For each selected asset the stage makes: its Dagster output (the segment list, which the IO
    manager stores) with the counts and `metadata[key](facts of every segment)`, then its rules'
    check result."""
    from keystroke_assets.assets.common import as_metadata, rules_result

    for output in result.stage.outputs:
        key = output.key
        if key in context.assets_def.keys and key in context.selected_asset_keys:
            segments = result.segment_list(key)
            yield dg.Output(
                segments,
                output_name=context.assets_def.get_output_name_for_asset_key(key),
                metadata={
                    "dagster/row_count": dg.MetadataValue.int(segments.rows),
                    "dagster/column_schema": dg.MetadataValue.table_schema(result.schema(key)),
                    **result.counts(),
                    **as_metadata((metadata or {}).get(key, lambda facts: {})(result.facts(key))),
                },
            )
            yield rules_result(result.outcomes(key), key)


def materialize(
    context, stage: Stage, params: Mapping, planned: list[Planned], storage, segment_executor, metadata=None
):
    """A stage's step: run_for_version, then its outputs."""
    yield from outputs(context, run_for_version(context, stage, params, planned, storage, segment_executor), metadata)
