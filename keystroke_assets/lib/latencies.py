"""Events → keystrokes → keypairs (docs/features.md §1–2), vectorized over a whole version.

Every step is a sort or a scatter plus comparisons of neighbours; there is no loop over events,
keys or tasks. Web-app events take two sorts: by time within a task (nearly sorted already, so
about linear), then by key within a task. Keystrokes come out in press order by a scatter into
the time order, so the sort that pairs them is about linear too. Time sorts use one int64 key: the
task number in the high bits and the time (ms, < 2**44) below.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from keystroke_assets.lib.columns import TASK_IDS
from keystroke_assets.lib.frames import group_codes, run_starts
from keystroke_assets.lib.keycodes import UNIDENTIFIED, key_identity, keycodes

KEYSTROKE_COLUMNS = [*TASK_IDS, "sequence_id", "key", "keycode", "press_ms", "release_ms", "HL"]
KEYPAIR_COLUMNS = [
    *TASK_IDS,
    "sequence_id",
    "key1",
    "key2",
    "keycode1",
    "keycode2",
    "key1_press",
    "key1_release",
    "key2_press",
    "key2_release",
    "HL",
    "IL",
    "PL",
    "RL",
    "outlier",
]
LATENCIES = ["HL", "IL", "PL", "RL"]  # TypeNet latencies of a keypair (docs/features.md §2), ms


@dataclass(frozen=True)
class OutlierThresholds:
    """A pair is an outlier when HL > hl_max_ms or HL < hl_min_ms or |IL| > il_abs_max_ms (ms)."""

    hl_min_ms: int
    hl_max_ms: int
    il_abs_max_ms: int


# The team's thresholds by device type (docs/features.md §2): a phone's virtual keyboard fires press
# and release together, so mobile has no lower bound on HL.
DEFAULT_OUTLIER_THRESHOLDS = {
    "desktop": OutlierThresholds(hl_min_ms=30, hl_max_ms=2000, il_abs_max_ms=1000),
    "mobile": OutlierThresholds(hl_min_ms=0, hl_max_ms=2000, il_abs_max_ms=1000),
}
# Desktop's, for the consumers not yet reading OutlierRules (transitional: features/typenet_ml).
HL_MIN_MS, HL_MAX_MS, IL_ABS_MAX_MS = 30, 2000, 1000
QUALITY_COUNTS = ["duplicates", "auto_repeats", "orphans", "unreleased", "release_before_press"]  # dropped
RENAMED_COUNTS = ["empty_keys"]  # kept, as `Unidentified` keystrokes (docs/features.md §1)
_TIME_BITS = 44  # 13-digit ms < 2**44


def _task_time(task: np.ndarray, time: np.ndarray) -> np.ndarray:
    return (task.astype(np.int64, copy=False) << _TIME_BITS) | np.clip(time, 0, (1 << _TIME_BITS) - 1)


def _tied(sorted_keys: np.ndarray) -> np.ndarray:
    """Which elements of `sorted_keys` equal a neighbour: the runs of equal keys."""
    tied = np.zeros(len(sorted_keys), dtype=bool)
    tied[1:] = sorted_keys[1:] == sorted_keys[:-1]
    tied[:-1] |= tied[1:]
    return tied


def _stable_order(primary: np.ndarray, *tiebreaks: np.ndarray) -> np.ndarray:
    """Order by primary, then by each tiebreak: one argsort, and a lexsort of the (rare) ties only."""
    order = np.argsort(primary, kind="stable")
    tied = _tied(primary[order])
    if tied.any():
        sub = order[tied]  # runs of equal primary keys, contiguous in the order
        order[tied] = sub[np.lexsort((*(t[sub] for t in reversed(tiebreaks)), primary[sub]))]
    return order


def _codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    cat = values.astype("category")
    return cat.cat.codes.to_numpy(), cat.cat.categories  # int8 for up to 127 keys: cheap to gather


def web_app_keystrokes(events: pd.DataFrame, task: np.ndarray, n_tasks: int) -> tuple[dict, dict]:
    """Keystrokes of web-app events (event P/R, in file order; `task` numbers each event's task),
    with per-task counts of what was dropped and of empty key names (made `Unidentified`).

    Returns keystroke arrays (task, key code, press_ms, release_ms, line of the press) with the
    key categories, and the counts (arrays indexed by task).
    """
    is_press = (events["event"] == "P").to_numpy()
    time = events["time_ms"].to_numpy()
    line = events["line"].to_numpy()
    key, categories = _codes(events["key"])

    # Sort by time within a task; the stable sort keeps file order for equal times. A file's events
    # are nearly in time order already, which the stable sort (timsort) takes in linear time.
    task_time = _task_time(task, time)
    order = np.argsort(task_time, kind="stable")

    # Exact duplicates (same type, key and time) share a (task, time) run; only such runs are checked.
    sort_key = task_time[order]
    tied = _tied(sort_key)
    dup = np.zeros(len(order), dtype=bool)
    in_run = order[tied]
    dup[tied] = pd.DataFrame({"t": sort_key[tied], "k": key[in_run], "p": is_press[in_run]}).duplicated().to_numpy()
    counts = {"duplicates": np.bincount(task[order[dup]], minlength=n_tasks)}
    order = order[~dup]

    # Group each task's events by key identity (a character case-insensitive), time order inside.
    identity = pd.factorize(key_identity(pd.Series(categories)))[0][key[order]]
    n_identities = identity.max(initial=0) + 1
    group = task[order] * n_identities + identity
    grouped = np.argsort(group, kind="stable")  # places in the time order, group by group
    group, is_press = group[grouped], is_press[order][grouped]
    same_group = np.zeros(len(group), dtype=bool)
    same_group[1:] = group[1:] == group[:-1]
    # A key is down before an event exactly when the previous event of its group is a press.
    down_before = np.zeros(len(group), dtype=bool)
    down_before[1:] = same_group[1:] & is_press[:-1]

    auto_repeat = is_press & down_before
    new_press = is_press & ~down_before
    matched = ~is_press & down_before
    orphan = ~is_press & ~down_before
    # A key still down at the end of its group was never released.
    unreleased = is_press & ~np.r_[same_group[1:], False]
    # The press a release closes is the first press of the run right before it, i.e. the last new
    # press before the release: the count of new presses up to the release numbers it.
    release_at = np.flatnonzero(matched)
    press_at = np.flatnonzero(new_press)[np.cumsum(new_press)[release_at] - 1]

    for name, dropped in (("auto_repeats", auto_repeat), ("orphans", orphan), ("unreleased", unreleased)):
        counts[name] = np.bincount(group[dropped] // n_identities, minlength=n_tasks)  # a group's task
    # Keystrokes in press order (task, time, file order), without a sort: each press marks its place
    # in the time order with its release's place, and the marks are read back in order.
    release_of = np.full(len(order), -1)
    release_of[grouped[press_at]] = grouped[release_at]
    pressed = np.flatnonzero(release_of >= 0)
    press_event, release_event = order[pressed], order[release_of[pressed]]
    key = key[press_event]  # as typed in the press event
    # An empty key name is a keystroke the browser could not name: `Unidentified`, counted.
    empty = np.asarray(categories == "", dtype=bool)
    counts["empty_keys"] = np.bincount(task[press_event][empty[key]], minlength=n_tasks)
    if empty.any():
        renamed, categories = pd.factorize(categories.where(~empty, UNIDENTIFIED))
        key = renamed[key]
    strokes = {
        "task": task[press_event],
        "key": key,
        "press_ms": time[press_event],
        "release_ms": time[release_event],
        "line": line[press_event],
        "keycode": keycodes(pd.Series(categories))[key] if len(categories) else np.zeros(0, np.int32),
    }
    return {**strokes, "categories": categories}, counts


def aalto_keystrokes(rows: pd.DataFrame, task: np.ndarray, n_tasks: int) -> tuple[dict, dict]:
    """Aalto rows are keystrokes already; a row released before its press is dropped."""
    bad = (rows["release_ms"] < rows["time_ms"]).to_numpy()
    key, categories = _codes(rows["key"])
    ok = ~bad
    strokes = {
        "task": task[ok],
        "key": key[ok],
        "press_ms": rows["time_ms"].to_numpy()[ok],
        "release_ms": rows["release_ms"].to_numpy(dtype=np.int64)[ok],
        "line": rows["line"].to_numpy()[ok],
        "keycode": rows["keycode"].to_numpy(dtype=np.int32)[ok],
        "categories": categories,
    }
    return strokes, {"release_before_press": np.bincount(task[bad], minlength=n_tasks)}


def _keystroke_table(strokes: dict, tasks: pd.DataFrame) -> pd.DataFrame:
    """The keystrokes of a source as KEYSTROKE_COLUMNS, task by task in press order (by press,
    then release, then file order; docs/features.md §1), `sequence_id` their index in the task."""
    order = _stable_order(_task_time(strokes["task"], strokes["press_ms"]), strokes["release_ms"], strokes["line"])
    task = strokes["task"][order]
    task_start = run_starts(task)
    press, release = strokes["press_ms"][order], strokes["release_ms"][order]
    table = {
        # the task's columns taken from the tasks' arrays (categorical codes, not objects)
        **{column: tasks[column].array.take(task) for column in TASK_IDS},
        "sequence_id": (np.arange(len(task)) - np.repeat(task_start, np.diff(np.r_[task_start, len(task)]))).astype(
            np.int32
        ),
        "key": pd.Categorical.from_codes(strokes["key"][order], categories=strokes["categories"]),
        "keycode": strokes["keycode"][order].astype(np.int32, copy=False),
        "press_ms": press,
        "release_ms": release,
        "HL": release - press,
    }
    return pd.DataFrame(table, columns=KEYSTROKE_COLUMNS, copy=False)


def pair_rows(strokes: pd.DataFrame) -> np.ndarray:
    """Rows of a keystroke table (task by task, in press order) that begin a pair: every keystroke
    but its task's last, after which a new task starts at sequence_id 0. Row i + 1 is the pair's
    second keystroke."""
    sequence_id = strokes["sequence_id"].to_numpy()
    return np.flatnonzero(sequence_id[1:] != 0) if len(sequence_id) else np.zeros(0, np.int64)


def outliers(
    device_type: pd.api.extensions.ExtensionArray | np.ndarray,
    hl: np.ndarray,
    il: np.ndarray,
    thresholds: dict[str, OutlierThresholds],
) -> np.ndarray:
    """The outlier flag of pairs by their device type's thresholds (docs/features.md §2)."""
    codes, devices = pd.factorize(device_type)
    unknown = [d for d in devices if d not in thresholds]
    if unknown:
        raise ValueError(f"no outlier thresholds for device type {unknown[0]!r}: known {', '.join(thresholds)}")
    by_device = [thresholds[d] for d in devices]
    hl_min, hl_max, il_max = (
        np.array([getattr(t, f) for t in by_device], dtype=np.int64)[codes]
        for f in ("hl_min_ms", "hl_max_ms", "il_abs_max_ms")
    )
    return (hl > hl_max) | (hl < hl_min) | (np.abs(il) > il_max)


def pairs_from_keystrokes(strokes: pd.DataFrame, thresholds: dict[str, OutlierThresholds]) -> pd.DataFrame:
    """Consecutive keystrokes of each task of a keystroke table as keypairs with HL, IL, PL, RL in
    ms and the outlier flag by device type (docs/features.md §2)."""
    first = pair_rows(strokes)  # key1 of every pair
    second = first + 1
    press, release = strokes["press_ms"].to_numpy(), strokes["release_ms"].to_numpy()
    press1, release1, press2, release2 = press[first], release[first], press[second], release[second]
    hl, il = release1 - press1, press2 - release1
    pairs = {
        **{column: strokes[column].array.take(first) for column in TASK_IDS},
        "sequence_id": strokes["sequence_id"].to_numpy()[first],
        # key1 and key2 share the keystrokes' categories, so a key has the same code on both sides
        "key1": strokes["key"].array.take(first),
        "key2": strokes["key"].array.take(second),
        "keycode1": strokes["keycode"].to_numpy()[first],
        "keycode2": strokes["keycode"].to_numpy()[second],
        "key1_press": press1,
        "key1_release": release1,
        "key2_press": press2,
        "key2_release": release2,
        "HL": hl,
        "IL": il,
        "PL": press2 - press1,
        "RL": release2 - release1,
    }
    pairs["outlier"] = outliers(pairs["device_type"], hl, il, thresholds)
    return pd.DataFrame(pairs, columns=KEYPAIR_COLUMNS, copy=False)


def keystrokes_from_events(events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keystrokes of cleaned events (web app and Aalto) in participant (user_id code), task and
    press order, and per-user counts of what was dropped (QUALITY_COUNTS) or renamed (empty keys)."""
    parts, quality = [], []
    is_aalto = (events["event"] == "K").to_numpy()
    for aalto, build in ((False, web_app_keystrokes), (True, aalto_keystrokes)):
        rows = events[is_aalto == aalto]
        if rows.empty:
            continue
        # A web-app task is one file; an Aalto task is one section of a file. Tasks in participant
        # order, so a participant's keystrokes come together.
        by = ["user_id", "file", "session_id"] if aalto else ["user_id", "file"]
        task, tasks = group_codes(rows, by, TASK_IDS)
        strokes, counts = build(rows, task, len(tasks))
        parts.append(_keystroke_table(strokes, tasks))
        quality.append(pd.DataFrame({"user_id": tasks["user_id"].astype(str), **counts}))
    if not parts:
        empty = {k: np.zeros(0, np.int64) for k in ["task", "key", "press_ms", "release_ms", "line", "keycode"]}
        parts.append(
            _keystroke_table({**empty, "categories": pd.Index([], dtype=object)}, pd.DataFrame(columns=TASK_IDS))
        )
    table = pd.concat(parts, ignore_index=True)
    for column in ["user_id", "device_type"]:
        if not isinstance(table[column].dtype, pd.CategoricalDtype):
            table[column] = table[column].astype("category")  # concat of two sources' categories
    if not isinstance(table["key"].dtype, pd.CategoricalDtype):
        table["key"] = pd.api.types.union_categoricals([p["key"] for p in parts])
    user = table["user_id"].cat.codes.to_numpy()
    if (user[1:] < user[:-1]).any():  # web-app and Aalto participants interleave in participant order
        table = table.take(np.argsort(user, kind="stable")).reset_index(drop=True)
    per_user = (
        (pd.concat(quality, ignore_index=True).groupby("user_id", sort=True).sum() if quality else pd.DataFrame())
        .reindex(columns=[*QUALITY_COUNTS, *RENAMED_COUNTS], fill_value=0)
        .fillna(0)
        .astype(np.int64)
    )
    return table, per_user


def keypairs_from_events(
    events: pd.DataFrame, thresholds: dict[str, OutlierThresholds] = DEFAULT_OUTLIER_THRESHOLDS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keypairs of cleaned events (`keystrokes_from_events`, then `pairs_from_keystrokes`) and the
    per-user counts."""
    strokes, per_user = keystrokes_from_events(events)
    return pairs_from_keystrokes(strokes, thresholds), per_user
