"""features/behavioral: how people type, per task and per user.

docs/features.md §3. Computed over ALL keystrokes of the keystrokes asset and the pairs of a
task's consecutive keystrokes (pauses are what the outlier rule removes); a task of one keystroke
is a row with no pair (docs/features.md §3). Definitions, where the spec leaves a choice:
- active duration: last release - first press of a task; a user's is the sum over the user's
  tasks (the time between tasks is not typing).
- words per minute: (typed characters / 5) / active minutes, typed characters = the length of the
  task's `_raw.txt` (read from the snapshot and counted, never stored). Aalto has no such object:
  its WPM is null rather than estimated from keystrokes (which count corrections and Shift).
- pauses: pairs with PL above 500, 1000, 2000 ms; shares are of the pairs; the mean pause is the
  mean PL of the pairs above 500 ms.
- bursts: runs of keystrokes without a PL > 2000 ms, never spanning two tasks.
- PL entropy: Shannon entropy (bits) of PL in 50 ms bins [0, 50), ..., [1950, 2000) plus one bin
  for PL >= 2000.
- backspace, Shift, Caps Lock by canonical key name (`Key.backspace`, `Key.shift`, `Key.caps_lock`;
  Aalto's BKSP, SHIFT, CAPS_LOCK are the same keys). A phone's keyboard reports most keys as
  `Unidentified` (keycode 0): where more than half of a group's keystrokes are, these rates are
  null rather than a misleading 0.
"""

from functools import partial

import dagster as dg
import numpy as np
import pandas as pd

from keystroke_assets.features.common import (
    GRAIN_IDS,
    Evaluable,
    Feature,
    ObjectStore,
    OutputCheck,
    ParticipantRows,
    ParticipantShards,
    SegmentExecutor,
    classify,
    grouped_stats,
    key_identity_codes,
    next_latencies,
    object_store,
    pair_rows,
    per_grain,
    read_kept,
    tasks_of,
)

PAUSES_MS = [500, 1000, 2000]
BURST_GAP_MS = 2000
BIN_MS, BINS = 50, 40  # 40 bins of 50 ms up to 2000 ms, then one bin for longer PL
KEY_NAMES = {"backspace": "Key.backspace", "shift": "Key.shift", "caps_lock": "Key.caps_lock"}
UNIDENTIFIED_MAX_SHARE = 0.5

COLUMN_DESCRIPTIONS = {
    "keystrokes": "keystrokes",
    "pairs": "keystroke pairs",
    "active_duration_s": "last release - first press, s (user: sum over tasks)",
    "keystrokes_per_minute": "keystrokes / active minutes",
    "typed_characters": "characters of the final typed text (_raw.txt); null for Aalto",
    "words_per_minute": "(typed_characters / 5) / active minutes; null for Aalto",
    "unidentified_share": "share of keystrokes with keycode 0 (a phone's Unidentified)",
    "backspace_rate": "share of keystrokes that are Backspace; null if most keys are unidentified",
    "rollover_rate": "share of pairs with IL < 0 (next key down before this one is up)",
    **{f"pauses_{t}ms": f"pairs with PL > {t} ms" for t in PAUSES_MS},
    **{f"pause_share_{t}ms": f"share of pairs with PL > {t} ms" for t in PAUSES_MS},
    "pause_mean_ms": "mean PL of the pairs with PL > 500 ms, ms",
    "bursts": "runs of keystrokes without a PL > 2000 ms",
    "burst_mean_length": "keystrokes / bursts",
    "pl_cv": "coefficient of variation of PL (std ddof=1 / mean)",
    "pl_entropy_bits": "Shannon entropy of PL in 50 ms bins up to 2000 ms plus one bin beyond, bits",
    "shift_keystrokes": "Shift keystrokes; null if most keys are unidentified",
    "shift_rate": "share of keystrokes that are Shift; null if most keys are unidentified",
    "caps_lock_keystrokes": "Caps Lock keystrokes; null if most keys are unidentified",
    "caps_lock_rate": "share of keystrokes that are Caps Lock; null if most keys are unidentified",
}


def typed_characters(manifest: pd.DataFrame, read) -> pd.DataFrame:
    """(user_id, task_id, typed_characters) of every `_raw.txt` of the snapshot. `read(rows)` returns
    their kept bytes (read_kept: None where the snapshot did not keep one, a null count); only the
    character count leaves this function."""
    raw = manifest[manifest["kind"] == "raw_text"].reset_index(drop=True)
    ids = classify(raw["name"])
    lengths = pd.Series(read(raw), dtype=object).str.decode("utf-8", errors="replace").str.len()
    return pd.DataFrame(
        {
            "user_id": raw["user_id"],
            "task_id": ids["task_id"].astype("Int64"),
            "typed_characters": lengths.astype("Int64"),
        }
    )


def behavioral_features(keystrokes: pd.DataFrame, typed: pd.DataFrame) -> pd.DataFrame:
    """Per task and per user (column `grain`) of a keystrokes table: COLUMN_DESCRIPTIONS. `typed`
    as from typed_characters. Pairs are a task's consecutive keystrokes."""
    s_task, tasks = tasks_of(keystrokes)
    n_tasks = len(tasks)
    strokes = keystrokes.assign(_task=s_task)
    keycode = strokes["keycode"].to_numpy()
    identity, identities = key_identity_codes(strokes["key"])
    first = pair_rows(keystrokes)
    task = s_task[first]  # the task of every pair
    latency = next_latencies(keystrokes)
    pl, il = latency["PL"][first], latency["IL"][first]

    per_task = strokes.groupby("_task", sort=True).agg(first=("press_ms", "min"), last=("release_ms", "max"))
    duration = (per_task["last"] - per_task["first"]).to_numpy() / 1000.0
    chars = tasks[["user_id", "task_id"]].merge(typed, on=["user_id", "task_id"], how="left")["typed_characters"]
    chars = chars.to_numpy(dtype=np.float64, na_value=np.nan)
    # a task with a pause > 2000 ms has one more burst
    bursts_of_task = np.bincount(task[pl > BURST_GAP_MS], minlength=n_tasks) + 1
    pl_bin = np.minimum(pl // BIN_MS, BINS)

    def compute(group_of_task: np.ndarray, n: int) -> dict[str, np.ndarray]:
        g_pairs, g_strokes = group_of_task[task], group_of_task[s_task]

        def count(group: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
            return np.bincount(group if mask is None else group[mask], minlength=n).astype(np.float64)

        keystrokes, pairs_n = count(g_strokes), count(g_pairs)
        minutes = np.bincount(group_of_task, weights=duration, minlength=n) / 60.0
        known = ~np.isnan(chars)
        text_chars = np.bincount(group_of_task[known], weights=chars[known], minlength=n)
        text_minutes = np.bincount(group_of_task[known], weights=duration[known], minlength=n) / 60.0
        has_text = count(group_of_task, known) > 0
        stats = grouped_stats(g_pairs, pl, n, ["mean", "std"])
        long = pl > PAUSES_MS[0]
        bursts = np.bincount(group_of_task, weights=bursts_of_task, minlength=n)
        hist = np.bincount(g_pairs * (BINS + 1) + pl_bin, minlength=n * (BINS + 1)).reshape(n, BINS + 1)
        p = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)
        unidentified = count(g_strokes, keycode == 0) / keystrokes
        keys_known = unidentified <= UNIDENTIFIED_MAX_SHARE
        out = {
            "keystrokes": keystrokes.astype(np.int64),
            "pairs": pairs_n.astype(np.int64),
            "active_duration_s": minutes * 60.0,
            "keystrokes_per_minute": keystrokes / minutes,
            "typed_characters": pd.array(np.where(has_text, text_chars, np.nan), dtype="Int64"),
            "words_per_minute": np.where(has_text, text_chars / 5.0 / text_minutes, np.nan),
            "unidentified_share": unidentified,
            "rollover_rate": count(g_pairs, il < 0) / pairs_n,
        }
        out.update({f"pauses_{t}ms": count(g_pairs, pl > t).astype(np.int64) for t in PAUSES_MS})
        out.update({f"pause_share_{t}ms": out[f"pauses_{t}ms"] / pairs_n for t in PAUSES_MS})
        out["pause_mean_ms"] = np.bincount(g_pairs[long], weights=pl[long], minlength=n) / count(g_pairs, long)
        out["bursts"] = bursts.astype(np.int64)
        out["burst_mean_length"] = keystrokes / bursts
        out["pl_cv"] = stats["std"] / stats["mean"]
        out["pl_entropy_bits"] = -(p * np.log2(np.where(p > 0, p, 1))).sum(axis=1)
        for name, key in KEY_NAMES.items():
            used = count(g_strokes, identity == identities.get_indexer([key])[0])  # -1: never typed
            if name != "backspace":
                out[f"{name}_keystrokes"] = pd.array(np.where(keys_known, used, np.nan), dtype="Int64")
            out[f"{name}_rate"] = np.where(keys_known, used / keystrokes, np.nan)
        return {c: out[c] for c in COLUMN_DESCRIPTIONS}

    with np.errstate(invalid="ignore", divide="ignore"):
        return per_grain(tasks, compute)


# What a segment's job carries of the manifest: its participants' typed texts, where they are kept.
TEXT_COLUMNS = ["name", "kind", "user_id", "md5", "kept_as"]


def behavioral_of_segment(keystrokes: pd.DataFrame, raw_texts: dict, location: str) -> pd.DataFrame:
    """behavioral_features of one segment, described; `raw_texts`: the manifest rows (TEXT_COLUMNS)
    of its participants' typed texts, read from the store at `location`."""
    # typed: a segment without typed texts (Aalto) has no values to infer types from
    manifest = pd.DataFrame(raw_texts, columns=TEXT_COLUMNS).astype(object)
    features = behavioral_features(keystrokes, typed_characters(manifest, partial(read_kept, object_store(location))))
    features.attrs["column_descriptions"] = {"grain": "'task' or 'user'", **COLUMN_DESCRIPTIONS}
    return features


def tasks_without_text(features: pd.DataFrame) -> dict:
    return {"tasks_without_typed_text": int(features.loc[features["grain"] == "task", "typed_characters"].isna().sum())}


def _rates_in_range(df: pd.DataFrame) -> tuple[bool, dict]:
    rates = [c for c in COLUMN_DESCRIPTIONS if c.endswith(("_rate", "_share")) or c.startswith("pause_share")]
    values = df[rates].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = int(((values < 0) | (values > 1)).sum())
    entropy = df["pl_entropy_bits"].to_numpy()
    bad_entropy = int(((entropy < 0) | (entropy > np.log2(BINS + 1) + 1e-9)).sum())
    return bad == 0 and bad_entropy == 0, {"rates_outside_0_1": bad, "entropies_outside_range": bad_entropy}


def _counts_consistent(df: pd.DataFrame) -> tuple[bool, dict]:
    nested = int(((df["pauses_2000ms"] > df["pauses_1000ms"]) | (df["pauses_1000ms"] > df["pauses_500ms"])).sum())
    bursts = int((df["bursts"] != df["pauses_2000ms"] + 1).where(df["grain"] == "task", False).sum())
    pairs = int((df["pairs"] >= df["keystrokes"]).sum())
    return nested + bursts + pairs == 0, {
        "rows_pause_counts_not_nested": nested,
        "tasks_bursts_ne_long_pauses_plus_1": bursts,
        "rows_pairs_not_below_keystrokes": pairs,
    }


BEHAVIORAL = Feature(
    "behavioral",
    [*GRAIN_IDS, *COLUMN_DESCRIPTIONS],
    checks=(
        OutputCheck(
            "rates_in_range", "Every rate and share lies in [0, 1]; PL entropy in [0, log2 41] bits.", _rates_in_range
        ),
        OutputCheck(
            "counts_consistent",
            "Pause counts nest (> 2000 within > 1000 within > 500 ms); a task has one burst more than long "
            "pauses; fewer pairs than keystrokes.",
            _counts_consistent,
        ),
    ),
    evaluation=Evaluable(rows={"grain": "task"}),
)


@BEHAVIORAL.asset(
    code_version="2",
    description=(
        "How people type, per task and per user (column `grain`): keystrokes, active duration, keystrokes "
        "and words per minute, backspace and rollover rates, pauses (PL > 500 / 1000 / 2000 ms), bursts, "
        "PL coefficient of variation and entropy, Shift and Caps Lock use. WPM counts the characters of the "
        "task's typed text (read from the snapshot, never stored); null for Aalto."
    ),
)
def behavioral(
    context: dg.AssetExecutionContext,
    keystrokes: ParticipantShards,
    web_app_data: pd.DataFrame,
    storage: ObjectStore,
    segment_executor: SegmentExecutor,
):
    texts = ParticipantRows(web_app_data.loc[web_app_data["kind"] == "raw_text", TEXT_COLUMNS])

    def texts_of_segment(keystrokes_summary: dict) -> dict:
        # Only the texts of the segment's participants (who made it into keystrokes) go with its job.
        # Its address need not name them: its keystrokes segment's covers every upload of theirs.
        rows = texts.of(keystrokes_summary["participants"])
        return {"raw_texts": rows.to_dict("list"), "location": storage.uri()}

    yield from BEHAVIORAL.per_segment(
        context,
        keystrokes,
        storage,
        segment_executor,
        behavioral_of_segment,
        summary=tasks_without_text,
        metadata=lambda parts: {
            "pause_thresholds_ms": ", ".join(map(str, PAUSES_MS)),
            "tasks_without_typed_text": sum(p["tasks_without_typed_text"] for p in parts),
        },
        segment_inputs=texts_of_segment,
    )
