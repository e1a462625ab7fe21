"""features/kvc: every keystroke as [press_ms, release_ms, keycode], per user and task, in the
layout of the Keystroke Verification Challenge (KVC).

docs/features.md §3. Stored long: one row per keystroke with its task's ids and `task`, the
challenge's task name `<platform>_<video>_<session>` (Aalto sections have no platform or video:
their task name is the section id). `keystroke_assets.export.export_kvc` writes the challenge's
dict-of-arrays .npy files with leave-one-platform-out splits.

Keycodes in order can spell out what a participant typed: the asset says so in its definition
metadata (RECONSTRUCTABLE_LABEL), and the run config `keycodes` (full | classes | none) writes them
whole, as their class or as 0 (docs/features.md, the paragraph on keycodes).
"""

import numpy as np
import pandas as pd
import pydantic

from keystroke_assets.features.common import (
    RECONSTRUCTABLE_LABEL,
    TASK_IDS,
    Feature,
    KeycodePolicy,
    OutputCheck,
    apply_keycode_policy,
    policy_note,
    tasks_of,
)

VALUES = ["press_ms", "release_ms", "keycode"]
COLUMNS = [*TASK_IDS, "task", "sequence_id", *VALUES]
COLUMN_DESCRIPTIONS = {
    "task": "KVC task name: <platform_id>_<video_id>_<session_id>; Aalto: the section id",
    "sequence_id": "index of the keystroke within its task, from 0",
    "press_ms": "press time, ms on the file's own clock",
    "release_ms": "release time, ms on the file's own clock",
}


class KvcConfig(pydantic.BaseModel):
    keycodes: KeycodePolicy = "full"  # classes or none: keycodes that cannot spell out typed text


def task_names(tasks: pd.DataFrame) -> pd.Series:
    """`<platform>_<video>_<session>`; the session (Aalto section) alone where there is no platform."""
    ids = tasks[["platform_id", "video_id", "session_id"]].astype("string")
    web = ids["platform_id"] + "_" + ids["video_id"] + "_" + ids["session_id"]
    return web.fillna(ids["session_id"]).astype(object)


def kvc_keystrokes(keystrokes: pd.DataFrame) -> pd.DataFrame:
    """One row per keystroke of the keystrokes table, in task and press order: COLUMNS, times and
    keycode as int64."""
    task, tasks = tasks_of(keystrokes)
    strokes = keystrokes.assign(_task=task)
    t = strokes["_task"].to_numpy()
    out = tasks[TASK_IDS].iloc[t].reset_index(drop=True)
    names, uniques = pd.factorize(task_names(tasks))
    out["task"] = pd.Categorical.from_codes(names[t], uniques)  # few distinct names over many rows
    out["sequence_id"] = strokes["sequence_id"].to_numpy().astype(np.int32)
    for column in VALUES:
        out[column] = strokes[column].to_numpy().astype(np.int64)
    return out[COLUMNS]


def kvc_of_segment(keystrokes: pd.DataFrame, keycodes: KeycodePolicy) -> pd.DataFrame:
    """kvc_keystrokes of one segment with the keycodes as the `keycodes` policy allows, described."""
    strokes = kvc_keystrokes(keystrokes)
    strokes["keycode"] = apply_keycode_policy(strokes["keycode"].to_numpy(), keycodes)
    strokes.attrs["column_descriptions"] = {**COLUMN_DESCRIPTIONS, "keycode": policy_note(keycodes)}
    return strokes


def task_count(strokes: pd.DataFrame) -> dict:
    return {"tasks": strokes.groupby(["user_id", "task"], observed=True).ngroups}


def _release_after_press(df: pd.DataFrame) -> tuple[bool, dict]:
    bad = int((df["release_ms"] < df["press_ms"]).sum())
    return bad == 0, {"keystrokes_released_before_press": bad}


def _press_order(df: pd.DataFrame) -> tuple[bool, dict]:
    task = df.groupby(["user_id", "task"], observed=True, sort=False).ngroup().to_numpy()
    same = task[1:] == task[:-1]
    back = int((same & (np.diff(df["press_ms"].to_numpy()) < 0)).sum())
    seq = int((same & (np.diff(df["sequence_id"].to_numpy()) != 1)).sum())
    return back == 0 and seq == 0, {"presses_out_of_order": back, "sequence_gaps": seq}


def _keycode_range(df: pd.DataFrame) -> tuple[bool, dict]:
    bad = int((~df["keycode"].between(0, 255)).sum())
    return bad == 0, {"keycodes_outside_0_255": bad}


def kvc_metadata(facts: list[dict], config: dict) -> dict:
    return {"tasks": sum(f["tasks"] for f in facts), "keycodes": config["keycodes"]}


KVC = Feature(
    "kvc",
    COLUMNS,
    checks=(
        OutputCheck("release_after_press", "release_ms >= press_ms on every keystroke.", _release_after_press),
        OutputCheck(
            "press_order",
            "Within a task, keystrokes are in press order and numbered 0, 1, 2, ... without gaps.",
            _press_order,
        ),
        OutputCheck("keycode_range", "Every keycode lies in 0..255.", _keycode_range),
    ),
    compute=kvc_of_segment,
    config=KvcConfig,
    facts=task_count,
    metadata=kvc_metadata,
    code_version="2",
    kinds=frozenset({"pandas", "parquet", "numpy"}),
    labels=RECONSTRUCTABLE_LABEL,
    description=(
        "Every keystroke per user and task as [press_ms, release_ms, keycode] (int64), the Keystroke "
        "Verification Challenge layout, one row per keystroke. `task` = `<platform>_<video>_<session>` "
        "(Aalto: the section id). Export with keystroke_assets.export.export_kvc(version, out_dir). "
        "Contains reconstructable typed text: the keycodes in order spell out what was typed; run config "
        "`keycodes` = classes (kind of key) or none (0) leaves it out."
    ),
)
