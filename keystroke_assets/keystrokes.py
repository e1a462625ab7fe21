"""Events → keystrokes → keypairs (spec/features.md §1–2), vectorized over a whole version.

Every step is a sort plus comparisons of neighbours; there is no loop over events, keys or tasks.
"""

import numpy as np
import pandas as pd

from keystroke_assets.frames import group_codes
from keystroke_assets.keycodes import key_identity, keycodes

TASK_COLUMNS = ["user_id", "device_type", "platform_id", "video_id", "session_id", "task_id"]
KEYPAIR_COLUMNS = [
    *TASK_COLUMNS[:5], "sequence_id", "task_id", "key1", "key2", "keycode1", "keycode2",
    "key1_press", "key1_release", "key2_press", "key2_release", "HL", "IL", "PL", "RL", "outlier",
]
# The team's outlier thresholds, ms.
HL_MIN_MS, HL_MAX_MS, IL_ABS_MAX_MS = 30, 2000, 1000

QUALITY_COUNTS = ["duplicates", "auto_repeats", "orphans", "unreleased", "release_before_press"]


def web_app_keystrokes(events: pd.DataFrame, task: np.ndarray, n_tasks: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Keystrokes of web-app events (event P/R; `task` numbers each event's task), with per-task
    counts of what was dropped.

    Returns keystrokes with columns task, key, press_ms, release_ms, line (of the press), and
    the counts (arrays indexed by task).
    """
    is_press = (events["event"] == "P").to_numpy()
    time = events["time_ms"].to_numpy()
    line = events["line"].to_numpy()
    raw_key = pd.factorize(events["key"])[0]

    # Sort by time within a task, file order for equal times.
    order = np.lexsort((line, time, task))
    task, is_press, time, line, raw_key = task[order], is_press[order], time[order], line[order], raw_key[order]
    keys = events["key"].to_numpy()[order]

    # Exact duplicates: same type, key and time in one task; the first in file order stays.
    dup = pd.DataFrame({"t": task, "p": is_press, "k": raw_key, "ms": time}).duplicated().to_numpy()
    counts = {"duplicates": np.bincount(task[dup], minlength=n_tasks)}
    keep = ~dup
    task, is_press, time, line, keys = task[keep], is_press[keep], time[keep], line[keep], keys[keep]

    # Group each task's events by key identity, keeping time order inside a group.
    key_id = pd.factorize(key_identity(pd.Series(keys)))[0]
    order = np.lexsort((np.arange(len(task)), key_id, task))
    task, is_press, time, line, keys, key_id = (
        task[order], is_press[order], time[order], line[order], keys[order], key_id[order]
    )
    same_group = np.zeros(len(task), dtype=bool)
    same_group[1:] = (task[1:] == task[:-1]) & (key_id[1:] == key_id[:-1])
    # A key is down before an event exactly when the previous event of its group is a press.
    down_before = np.zeros(len(task), dtype=bool)
    down_before[1:] = same_group[1:] & is_press[:-1]

    auto_repeat = is_press & down_before
    new_press = is_press & ~down_before
    matched = ~is_press & down_before
    orphan = ~is_press & ~down_before
    # The press a release closes is the first press of the run right before it.
    idx = np.arange(len(task))
    run_start = np.maximum.accumulate(np.where(new_press, idx, 0))
    release_at = np.flatnonzero(matched)
    press_at = run_start[release_at - 1]

    counts["auto_repeats"] = np.bincount(task[auto_repeat], minlength=n_tasks)
    counts["orphans"] = np.bincount(task[orphan], minlength=n_tasks)
    counts["unreleased"] = np.bincount(task[new_press], minlength=n_tasks) - np.bincount(
        task[release_at], minlength=n_tasks
    )
    keystrokes = pd.DataFrame(
        {
            "task": task[press_at],
            "key": keys[press_at],  # as typed in the press event
            "press_ms": time[press_at],
            "release_ms": time[release_at],
            "line": line[press_at],
        }
    )
    return keystrokes, counts


def aalto_keystrokes(rows: pd.DataFrame, task: np.ndarray, n_tasks: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Aalto rows are keystrokes already; a row released before its press is dropped."""
    bad = (rows["release_ms"] < rows["time_ms"]).to_numpy()
    keystrokes = pd.DataFrame(
        {
            "task": task,
            "key": rows["key"].to_numpy(),
            "press_ms": rows["time_ms"].to_numpy(),
            "release_ms": rows["release_ms"].to_numpy(),
            "line": rows["line"].to_numpy(),
            "keycode": rows["keycode"].to_numpy(),
        }
    )[~bad]
    return keystrokes, {"release_before_press": np.bincount(task[bad], minlength=n_tasks)}


def pairs_from_keystrokes(keystrokes: pd.DataFrame, tasks: pd.DataFrame) -> pd.DataFrame:
    """Consecutive keystrokes of each task as keypairs with HL, IL, PL, RL in ms."""
    ks = keystrokes.sort_values(["task", "press_ms", "release_ms", "line"], kind="stable")
    task = ks["task"].to_numpy()
    first = np.flatnonzero(task[1:] == task[:-1])  # index of key1 of every pair
    second = first + 1
    task_start = np.r_[0, np.flatnonzero(task[1:] != task[:-1]) + 1]
    start_of = np.repeat(task_start, np.diff(np.r_[task_start, len(task)]))

    press = ks["press_ms"].to_numpy()
    release = ks["release_ms"].to_numpy()
    key = ks["key"].to_numpy()
    code = ks["keycode"].to_numpy() if "keycode" in ks else keycodes(ks["key"])
    ids = tasks.iloc[task[first]].reset_index(drop=True)
    pairs = ids[TASK_COLUMNS[:5]].assign(
        sequence_id=(first - start_of[first]).astype(np.int32),
        task_id=ids["task_id"],
        key1=key[first],
        key2=key[second],
        keycode1=code[first].astype(np.int32),
        keycode2=code[second].astype(np.int32),
        key1_press=press[first],
        key1_release=release[first],
        key2_press=press[second],
        key2_release=release[second],
    )
    pairs["HL"] = pairs["key1_release"] - pairs["key1_press"]
    pairs["IL"] = pairs["key2_press"] - pairs["key1_release"]
    pairs["PL"] = pairs["key2_press"] - pairs["key1_press"]
    pairs["RL"] = pairs["key2_release"] - pairs["key1_release"]
    pairs["outlier"] = (pairs["HL"] > HL_MAX_MS) | (pairs["HL"] < HL_MIN_MS) | (pairs["IL"].abs() > IL_ABS_MAX_MS)
    return pairs[KEYPAIR_COLUMNS]


def keypairs(events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keypairs of cleaned events (web app and Aalto), and per-user counts of what was dropped."""
    parts, quality = [], []
    for source, build in (("web_app", web_app_keystrokes), ("aalto", aalto_keystrokes)):
        rows = events[(events["event"] == "K") == (source == "aalto")]
        if rows.empty:
            continue
        # A web-app task is one file; an Aalto task is one section of a file.
        task, tasks = group_codes(rows, ["file"] if source == "web_app" else ["file", "session_id"], TASK_COLUMNS)
        keystrokes, counts = build(rows, task, len(tasks))
        parts.append(pairs_from_keystrokes(keystrokes, tasks))
        quality.append(tasks[["user_id"]].assign(**{k: v for k, v in counts.items()}))
    pairs = pd.concat(parts, ignore_index=True) if parts else pairs_from_keystrokes(
        pd.DataFrame(columns=["task", "key", "press_ms", "release_ms", "line", "keycode"]),
        pd.DataFrame(columns=TASK_COLUMNS),
    )
    per_user = (
        pd.concat(quality, ignore_index=True).groupby("user_id", sort=True).sum()
        if quality
        else pd.DataFrame()
    ).reindex(columns=QUALITY_COUNTS, fill_value=0).fillna(0).astype(np.int64)
    return pairs, per_user
