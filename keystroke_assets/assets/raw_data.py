"""raw_data: every event of every keystroke file of the snapshot, parsed, with per-file problems."""

import dagster as dg
import numpy as np
import pandas as pd

from keystroke_assets.assets.common import (
    ShardChecks,
    check_specs,
    has_columns,
    no_nulls,
    non_empty,
    report_table,
    version_asset,
)
from keystroke_assets.assets.web_app_data import read_kept
from keystroke_assets.frames import run_starts, shard_starts
from keystroke_assets.ingest.aalto import parse_aalto_files
from keystroke_assets.ingest.names import classify
from keystroke_assets.ingest.web_app import parse_web_app_csvs
from keystroke_assets.resources.object_store import ObjectStore
from keystroke_assets.resources.parquet_io_manager import TableSpool

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


def participant_batches(sources: pd.DataFrame, max_bytes: float) -> list[pd.DataFrame]:
    """`sources` (in participant order) cut into batches of whole participants, about `max_bytes`
    of uploads each (at least one batch, maybe empty)."""
    runs = run_starts(sources["user_id"].to_numpy())
    before = np.r_[0, np.cumsum(sources["size"].to_numpy())]
    starts = shard_starts(runs, before[runs], before[-1], max_bytes)
    return [sources.iloc[a:b].reset_index(drop=True) for a, b in zip(starts, [*starts[1:], len(sources)])] or [sources]


class RawDataConfig(dg.Config):
    # A real task CSV is ~20 KB and an Aalto file ~130 KB. A far larger object is no typing record,
    # and parsing costs ~15 times its size in memory: it is quarantined unread.
    max_file_mb: float = 32.0
    # Uploads parsed at once: parsing holds several times their size, so a step's memory is
    # bounded by this, not by the version.
    batch_mb: float = 32.0


@version_asset(
    group_name="ingest",
    code_version="1",
    check_specs=check_specs("raw_data", CHECKS),
    description=(
        "Every event of every keystroke file in the snapshot (web-app CSV split on its first and last "
        "comma; Aalto TSV rows as whole keystrokes, event K). Times in ms on each file's own clock. "
        "A file that cannot be parsed is quarantined with its reason; the version goes on."
    ),
)
def raw_data(config: RawDataConfig, web_app_data: pd.DataFrame, storage: ObjectStore):
    files = web_app_data[web_app_data["kind"].isin(["keystrokes", "aalto"])]
    oversized = files["size"] > config.max_file_mb * 1e6
    # In participant order, web-app files first as parse_snapshot stacks them: participants then
    # come one after the other in category order, and raw_data and cleaned_data are stored in
    # participant shards.
    sources = files[~oversized].sort_values(
        ["kind", "user_id", "name"], ascending=[False, True, True], kind="stable", ignore_index=True
    )
    checks, problems, files_parsed = ShardChecks(CHECKS), [], 0
    with TableSpool() as out:
        for batch in participant_batches(sources, config.batch_mb * 1e6):
            events, batch_problems = parse_snapshot(batch, read_kept(storage, batch["kept_as"].tolist()))
            out.write(events)
            checks.add(events)
            files_parsed += events["file"].nunique()
            problems.append(batch_problems)
    problems = pd.concat(problems, ignore_index=True)
    if oversized.any():
        limit = f"over the {config.max_file_mb:g} MB limit for one file: not parsed"
        too_big = pd.DataFrame(
            {
                "file": files.loc[oversized, "name"],
                "quarantined": True,
                "problem": [f"{size / 1e6:.1f} MB, {limit}" for size in files.loc[oversized, "size"]],
            }
        )
        problems = pd.concat([problems, too_big], ignore_index=True)
    quarantined = problems[problems["quarantined"]]
    yield dg.Output(
        out,
        metadata={
            "files": len(files),
            "files_parsed": files_parsed,
            "quarantined_files": len(quarantined),
            "files_with_problems": int(problems["file"].nunique()),
            "parse_problems": report_table(problems[["file", "quarantined", "problem"]]),
            "events": out.rows,
        },
    )
    yield from checks.results()
