"""raw_data: every event of every keystroke file of the snapshot, parsed, with per-file problems."""

import dagster as dg
import numpy as np
import pandas as pd

from keystroke_assets.assets.common import check_specs, has_columns, no_nulls, non_empty, report_table, run_checks, version_asset
from keystroke_assets.ingest.aalto import parse_aalto_file
from keystroke_assets.ingest.names import classify
from keystroke_assets.ingest.web_app import parse_web_app_csvs
from keystroke_assets.resources.object_store import ObjectStore

RAW_COLUMNS = [
    "file", "user_id", "platform_id", "video_id", "session_id", "task_id",
    "line", "event", "key", "time_ms", "release_ms", "keycode",
]
CHECKS = [has_columns(RAW_COLUMNS), no_nulls(["file", "user_id", "line", "event", "key", "time_ms"]), non_empty()]


def parse_snapshot(manifest: pd.DataFrame, contents: list[bytes]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events of the snapshot's keystroke objects (in manifest order) and one row per problem."""
    web = manifest["kind"].to_numpy() == "keystrokes"
    names = manifest["name"].to_numpy()
    parsed = parse_web_app_csvs([c for c, w in zip(contents, web) if w])
    web_names = names[web]
    web_events = parsed.events.assign(file=web_names[parsed.events["file"].to_numpy()])
    ids = classify(pd.Series(web_names))
    ids.index = web_names
    web_events = web_events.join(ids[["user_id", "platform_id", "video_id", "session_id", "task_id"]], on="file")
    problems = parsed.problems.assign(file=web_names[parsed.problems["file"].to_numpy()])

    aalto_parts, aalto_problems = [], []
    for name, data in zip(names[~web], (c for c, w in zip(contents, web) if not w)):
        rows, notes, quarantine = parse_aalto_file(data)
        aalto_problems += [(name, False, n) for n in notes]
        if quarantine:
            aalto_problems.append((name, True, quarantine))
        else:
            aalto_parts.append(rows.assign(file=name, event="K", task_id=rows["session_id"]))
    events = pd.concat([web_events, *aalto_parts], ignore_index=True)
    events = events.reindex(columns=RAW_COLUMNS)
    for column in ["platform_id", "video_id", "session_id", "task_id", "release_ms"]:
        events[column] = events[column].astype("Int64")
    events["keycode"] = events["keycode"].astype("Int32")
    events["line"] = events["line"].astype(np.int32)
    problems = pd.concat(
        [problems, pd.DataFrame(aalto_problems, columns=["file", "quarantined", "problem"])], ignore_index=True
    )
    return events, problems


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
def raw_data(context: dg.AssetExecutionContext, web_app_data: pd.DataFrame, storage: ObjectStore):
    sources = web_app_data[web_app_data["kind"].isin(["keystrokes", "aalto"])].reset_index(drop=True)
    events, problems = parse_snapshot(sources, storage.read_many(sources["kept_as"].tolist()))
    quarantined = problems[problems["quarantined"]]
    yield dg.Output(
        events,
        metadata={
            "files": len(sources),
            "files_parsed": int(events["file"].nunique()),
            "quarantined_files": len(quarantined),
            "files_with_problems": int(problems["file"].nunique()),
            "parse_problems": report_table(problems[["file", "quarantined", "problem"]]),
            "events": len(events),
        },
    )
    yield from run_checks(events, CHECKS)
