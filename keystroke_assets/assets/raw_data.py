"""raw_data: every event of every keystroke file of the snapshot, parsed, with per-file problems."""

import dagster as dg
import numpy as np
import pandas as pd

from keystroke_assets.assets.common import (
    check_specs,
    has_columns,
    no_nulls,
    non_empty,
    report_table,
    version_asset,
)
from keystroke_assets.assets.web_app_data import KEPT_KINDS, MANIFEST_COLUMNS, read_kept
from keystroke_assets.ingest.aalto import parse_aalto_files
from keystroke_assets.ingest.names import classify
from keystroke_assets.ingest.web_app import parse_web_app_csvs
from keystroke_assets.resources.object_store import ObjectStore
from keystroke_assets.resources.segment_executor import SegmentExecutor
from keystroke_assets.segments import (
    PARTICIPANTS_PER_SEGMENT,
    SegmentJob,
    code_version,
    compute_segments,
    participant_segments,
    segment_checks,
    segment_id,
    segmented_table,
    store_segment,
)

TASK_OF_FILE = ["platform_id", "video_id", "session_id", "task_id"]
EVENT_COLUMNS = ["line", "event", "key", "time_ms", "release_ms", "keycode"]
RAW_COLUMNS = ["file", "user_id", *TASK_OF_FILE, *EVENT_COLUMNS]
EVENT_TYPE = pd.CategoricalDtype(["P", "R", "K"])  # one type for both sources, so concat keeps it
_AALTO_EVENT = EVENT_TYPE.categories.get_loc("K")
CHECKS = [has_columns(RAW_COLUMNS), no_nulls(["file", "user_id", "line", "event", "key", "time_ms"]), non_empty()]


def _nullable_int(values, dtype=np.int64) -> pd.arrays.IntegerArray:
    """Floats with NaN as a nullable integer column (pandas' own astype checks every value slowly)."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    return pd.arrays.IntegerArray(np.where(missing, 0, values).astype(dtype), missing)


def parse_snapshot(sources: pd.DataFrame, contents: list[bytes]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events of the snapshot's keystroke objects (manifest rows `sources`, their bytes
    `contents`) and one row per problem. File, user, event and key are categoricals."""
    names = sources["name"].to_numpy()
    ids = classify(sources["name"]).reset_index(drop=True)
    web = np.flatnonzero(sources["kind"].to_numpy() == "keystrokes")
    parsed = parse_web_app_csvs([contents[i] for i in web])
    web_events = parsed.events.assign(file=web[parsed.events["file"].to_numpy()])
    web_events["event"] = web_events["event"].cat.set_categories(EVENT_TYPE.categories)
    parts = [web_events]
    problems = [(names[web[f]], q, p) for f, q, p in parsed.problems.itertuples(index=False)]
    aalto = np.flatnonzero(sources["kind"].to_numpy() == "aalto")
    parsed = parse_aalto_files([contents[i] for i in aalto])
    rows = parsed.events
    if len(rows):
        parts.append(
            rows.drop(columns="user_id").assign(
                file=aalto[rows["file"].to_numpy()],
                event=pd.Categorical.from_codes(np.full(len(rows), _AALTO_EVENT), dtype=EVENT_TYPE),
                task_id=rows["session_id"],
            )
        )
    problems += [(names[aalto[f]], q, p) for f, q, p in parsed.problems.itertuples(index=False)]
    events = pd.concat(parts, ignore_index=True)
    file = events["file"].to_numpy()
    web_rows = (events["event"] != "K").to_numpy()
    for column in ["platform_id", "video_id", "session_id", "task_id"]:
        # web-app ids come from the file name; Aalto rows carry their section
        from_name = ids[column].to_numpy(dtype=np.float64, na_value=np.nan)[file]
        events[column] = _nullable_int(np.where(web_rows, from_name, events[column] if column in events else np.nan))
    user_codes, users = pd.factorize(ids["user_id"])
    events["user_id"] = pd.Categorical.from_codes(user_codes[file], categories=users)
    events["file"] = pd.Categorical.from_codes(file, categories=pd.Index(names))
    events["key"] = events["key"].astype("category")
    events = events.reindex(columns=RAW_COLUMNS)
    events["release_ms"] = _nullable_int(events["release_ms"])
    events["keycode"] = _nullable_int(events["keycode"], np.int32)
    events["line"] = events["line"].astype(np.int32)
    return events, pd.DataFrame(problems, columns=["file", "quarantined", "problem"])


def parse_segment(
    files: pd.DataFrame, contents: list[bytes | None], max_file_mb: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """parse_snapshot of one segment's keystroke objects (manifest rows `files` and their bytes),
    objects the snapshot refused (`refused`) or over `max_file_mb` quarantined unread."""
    refused = files["refused"].notna().to_numpy()
    oversized = ~refused & (files["size"] > max_file_mb * 1e6).to_numpy()
    # In participant order, web-app files first as parse_snapshot stacks them: participants then
    # come one after the other in category order, as the later stages read them.
    order = files.assign(read=np.arange(len(files)))[~refused & ~oversized].sort_values(
        ["kind", "user_id", "name"], ascending=[False, True, True], kind="stable", ignore_index=True
    )
    events, problems = parse_snapshot(order, [contents[i] for i in order["read"]])
    limit = f"over the {max_file_mb:g} MB limit for one file: not parsed"
    unread = pd.DataFrame(
        {
            "file": pd.concat([files.loc[refused, "name"], files.loc[oversized, "name"]]),
            "quarantined": True,
            "problem": [f"not kept by the snapshot: {r}" for r in files.loc[refused, "refused"]]
            + [f"{size / 1e6:.1f} MB, {limit}" for size in files.loc[oversized, "size"]],
        }
    )
    return events, pd.concat([problems, unread], ignore_index=True)


RAW_DATA = dg.AssetKey("raw_data")


def raw_data_of_segment(job: SegmentJob) -> dict:
    """One segment's raw_data, stored; its summary: rows, rules, participants, files and problems."""
    store = job.store()
    # typed: a segment of participants without a keystroke object has no rows to infer types from
    files = pd.DataFrame(job.data["files"], columns=SEGMENT_FILE_COLUMNS).astype(
        {
            "name": str,
            "kind": str,
            "user_id": str,
            "size": np.int64,
            "md5": object,
            "kept_as": object,
            "refused": object,
        }
    )
    # an object not kept, or over the limit, is never read
    files.loc[files["size"] > job.data["max_file_mb"] * 1e6, "kept_as"] = None
    events, problems = parse_segment(files, read_kept(store, files), job.data["max_file_mb"])
    summary = store_segment(
        store,
        RAW_DATA,
        job.outputs[RAW_DATA.to_user_string()],
        events,
        CHECKS,
        participants=job.data["participants"],
        files=len(files),
        files_parsed=int(events["file"].nunique()),
        problems=problems[["file", "quarantined", "problem"]].to_dict("list"),
    )
    return {RAW_DATA.to_user_string(): summary}


# What a raw_data segment reads of each keystroke object.
SEGMENT_FILE_COLUMNS = ["name", "kind", "user_id", "size", "md5", "kept_as", "refused"]


class RawDataConfig(dg.Config):
    # A real task CSV is ~20 KB and an Aalto file ~130 KB. A far larger object is no typing record,
    # and parsing costs ~15 times its size in memory: it is quarantined unread. The snapshot refuses
    # such files already (SnapshotConfig); this holds for a snapshot taken with a higher limit.
    max_file_mb: float = 32.0
    # Participants of a segment (docs/performance.md "Segments"): a worker parses a segment at once,
    # ~64 x 400 KB of web-app uploads, so its memory is bounded by this, not by the version.
    participants_per_segment: int = PARTICIPANTS_PER_SEGMENT


def raw_data_jobs(manifest: pd.DataFrame, location: str, code_version: str, config: RawDataConfig) -> list[SegmentJob]:
    """One job per participant segment of the snapshot's manifest. A segment's address covers every
    object the later stages read of its participants (records too: cleaned_data judges them)."""
    manifest = manifest.reindex(columns=MANIFEST_COLUMNS)  # a snapshot taken before `refused` existed
    kept = manifest[manifest["kind"].isin(KEPT_KINDS) & manifest["user_id"].notna()]
    first_seen = kept["first_seen"] if "first_seen" in kept else ""
    participants = pd.DataFrame({"user_id": kept["user_id"], "first_seen": first_seen})
    by_user = {user: rows for user, rows in kept.groupby("user_id", sort=False)}
    jobs = []
    for users in participant_segments(participants, config.participants_per_segment):
        rows = pd.concat([by_user[u] for u in users]) if len(users) else kept.head(0)
        address = sorted(zip(rows["name"], rows["md5"].fillna(""), rows["refused"].fillna("")))
        files = rows.loc[rows["kind"].isin(["keystrokes", "aalto"]), SEGMENT_FILE_COLUMNS]
        jobs.append(
            SegmentJob(
                location,
                {RAW_DATA.to_user_string(): segment_id("raw_data", code_version, config.max_file_mb, address)},
                data={
                    "participants": [str(u) for u in users],
                    "files": files.to_dict("list"),
                    "max_file_mb": config.max_file_mb,
                },
            )
        )
    return jobs


@version_asset(
    group_name="ingest",
    code_version="3",
    check_specs=check_specs("raw_data", CHECKS),
    description=(
        "Every event of every keystroke file in the snapshot (web-app CSV split on its first and last "
        "comma; Aalto TSV rows as whole keystrokes, event K). Times in ms on each file's own clock. "
        "A file that cannot be parsed, or that the snapshot refused, is quarantined with its reason; a "
        "line that is no event (a key name over 32 characters included) is dropped and counted; the "
        "version goes on. Stored per "
        "participant segment; a segment an earlier version stored is reused."
    ),
)
def raw_data(
    context: dg.AssetExecutionContext,
    config: RawDataConfig,
    web_app_data: pd.DataFrame,
    storage: ObjectStore,
    segment_executor: SegmentExecutor,
):
    jobs = raw_data_jobs(web_app_data, storage.uri(), code_version(context, RAW_DATA), config)
    summaries, computed = compute_segments(storage, segment_executor.map, raw_data_of_segment, jobs)
    parts = [s[RAW_DATA.to_user_string()] for s in summaries]
    problems = pd.concat([pd.DataFrame(p["problems"]) for p in parts], ignore_index=True)
    quarantined = problems[problems["quarantined"].astype(bool)] if len(problems) else problems
    yield dg.Output(
        segmented_table(RAW_DATA, jobs, summaries, computed),
        metadata={
            "files": sum(p["files"] for p in parts),
            "files_parsed": sum(p["files_parsed"] for p in parts),
            "quarantined_files": len(quarantined),
            "files_with_problems": int(problems["file"].nunique()) if len(problems) else 0,
            "parse_problems": report_table(problems.reindex(columns=["file", "quarantined", "problem"])),
            "events": sum(p["rows"] for p in parts),
        },
    )
    yield from segment_checks(summaries, RAW_DATA).results()
