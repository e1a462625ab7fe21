"""features/typenet_sequences: per task, the first M keystrokes as TypeNet input (seconds).

docs/features.md §3. Step i of a task is [HL_i, IL_i, PL_i, RL_i, keycode_i / 255] with the
latencies in seconds; IL, PL, RL pair keystroke i with i + 1 and are 0 for the task's last
keystroke; steps past the task's length are zeros. Stored one row per task: the ids, `length`
and `steps`, a list of M * 5 float32 in step-major order (step 0's five values, then step 1's, ...).
`sequence_array(df)` or `keystroke_assets.export.load_typenet_sequences` give the (n, M, 5) array.

Keycodes in order can spell out what a participant typed: the asset says so in its definition
metadata (RECONSTRUCTABLE_LABEL), and the run config `keycodes` (full | classes | none) writes them
whole, as their class or as 0 (docs/features.md, the paragraph on keycodes).
"""

from functools import wraps

import numpy as np
import pandas as pd
import pyarrow as pa
import pydantic

from keystroke_assets.features.common import (
    RECONSTRUCTABLE_LABEL,
    TASK_IDS,
    Evaluable,
    Feature,
    KeycodePolicy,
    OutputCheck,
    apply_keycode_policy,
    next_latencies,
    policy_note,
    pooled_steps,
    tasks_of,
)

STEP = ["HL_s", "IL_s", "PL_s", "RL_s", "keycode_255"]


class SequenceConfig(pydantic.BaseModel):
    sequence_length: int = 50  # M of the TypeNet paper
    keycodes: KeycodePolicy = "full"  # classes or none: keycodes that cannot spell out typed text


def sequence_features(keystrokes: pd.DataFrame, m: int, keycodes: KeycodePolicy = "full") -> pd.DataFrame:
    """One row per task of the keystrokes table: TASK_IDS, `length` (keystrokes kept, at most m)
    and `steps`, with the keycodes as the `keycodes` policy allows."""
    if m < 1:
        raise ValueError(f"sequence length must be at least 1, not {m}")
    task, tasks = tasks_of(keystrokes)
    strokes = keystrokes.assign(_task=task, **next_latencies(keystrokes))
    t = strokes["_task"].to_numpy()
    step = strokes["sequence_id"].to_numpy()
    kept = step < m
    values = np.column_stack(
        [strokes["HL"].to_numpy() / 1000.0]
        + [strokes[c].to_numpy() / 1000.0 for c in ["IL", "PL", "RL"]]
        + [apply_keycode_policy(strokes["keycode"].to_numpy(), keycodes) / 255.0]
    )
    steps = np.zeros((len(tasks), m, len(STEP)), np.float32)
    steps[t[kept], step[kept]] = values[kept]
    out = tasks[TASK_IDS].copy()
    out["length"] = np.bincount(t[kept], minlength=len(tasks)).astype(np.int32)
    # object dtype even without tasks (an empty segment): pandas would make an empty list float64
    out["steps"] = pd.Series(list(steps.reshape(len(tasks), m * len(STEP))), index=out.index, dtype=object)
    return out


def sequences_of_segment(keystrokes: pd.DataFrame, sequence_length: int, keycodes: KeycodePolicy) -> pd.DataFrame:
    """sequence_features of one segment, described."""
    m = sequence_length
    features = sequence_features(keystrokes, m, keycodes)
    features.attrs["column_descriptions"] = {
        "length": f"steps recorded (keystrokes of the task, at most M = {m})",
        "steps": f"{policy_note(keycodes)}. M * 5 = {m * len(STEP)} float32, "
        "step-major: [HL, IL, PL, RL (s), keycode / 255] per step, zeros beyond length",
    }
    return features


def tasks_cut(features: pd.DataFrame) -> dict:
    """Tasks, and those longer than M (cut at M: their length is M, the size of every row)."""
    m = _step_sizes(features) // len(STEP)
    return {"tasks": len(features), "tasks_cut_at_M": int((features["length"].to_numpy() == m).sum())}


def sequence_metadata(facts: list[dict], config: dict) -> dict:
    m = config["sequence_length"]
    return {
        "sequence_length": m,
        "keycodes": config["keycodes"],
        "array_shape": f"({sum(f['tasks'] for f in facts)}, {m}, {len(STEP)})",
        "tasks_cut_at_M": sum(f["tasks_cut_at_M"] for f in facts),
    }


def _step_sizes(df: pd.DataFrame) -> np.ndarray:
    return pa.array(df["steps"], type=pa.list_(pa.float32())).value_lengths().to_numpy(zero_copy_only=False)


def sequence_array(df: pd.DataFrame) -> np.ndarray:
    """The (n, M, 5) float32 array of a typenet_sequences table (in memory or read back)."""
    steps = pa.array(df["steps"], type=pa.list_(pa.float32()))
    sizes = steps.value_lengths().to_numpy(zero_copy_only=False)
    if len(sizes) and ((sizes != sizes[0]).any() or sizes[0] % len(STEP)):
        raise ValueError("rows of `steps` differ in size or are not a multiple of 5: not an (n, M, 5) array")
    return steps.flatten().to_numpy(zero_copy_only=False).reshape(len(df), -1, len(STEP))


def _shape(df: pd.DataFrame) -> tuple[bool, dict]:
    sizes = _step_sizes(df)
    m = int(sizes[0]) // len(STEP) if len(sizes) else 0
    ok = len(sizes) > 0 and m >= 1 and (sizes == m * len(STEP)).all() and (df["length"].between(1, m)).all()
    return bool(ok), {
        "tasks": len(df),
        "M": str(m),  # a string: over a table's segments the values are listed, not added
        "rows_with_other_sizes": int((sizes != m * len(STEP)).sum()),
    }


def _on_array(check):
    """A check of the (n, M, 5) array; fails (rather than raises) when there is no such array.
    Under the check's own name, so a worker that computes a segment gets it by that name."""

    @wraps(check)
    def fn(df: pd.DataFrame) -> tuple[bool, dict]:
        try:
            steps = sequence_array(df)
        except ValueError as e:
            return False, {"error": str(e)}
        return check(df, steps)

    return fn


@_on_array
def _padding_zero(df: pd.DataFrame, steps: np.ndarray) -> tuple[bool, dict]:
    length = df["length"].to_numpy()
    beyond = np.arange(steps.shape[1])[None, :] >= length[:, None]
    padded = int((steps[beyond] != 0).any(axis=1).sum())
    # the last recorded step has no next keystroke unless the task was cut at M
    last = steps[np.arange(len(df)), np.clip(length - 1, 0, steps.shape[1] - 1)]
    tail = int(((last[:, 1:4] != 0).any(axis=1) & (length < steps.shape[1])).sum())
    return padded == 0 and tail == 0, {"padding_steps_not_zero": padded, "last_steps_with_latencies": tail}


@_on_array
def _keycodes_scaled(df: pd.DataFrame, steps: np.ndarray) -> tuple[bool, dict]:
    code = steps[:, :, 4]
    bad = int(((code < 0) | (code > 1)).sum())
    recorded = np.arange(steps.shape[1])[None, :] < df["length"].to_numpy()[:, None]
    neg_hold = int(((steps[:, :, 0] < 0) & recorded).sum())
    return bad == 0 and neg_hold == 0, {"keycodes_outside_0_1": bad, "negative_holds": neg_hold}


TYPENET_SEQUENCES = Feature(
    "typenet_sequences",
    [*TASK_IDS, "length", "steps"],
    checks=(
        OutputCheck("shape", "Every task has M * 5 values (an (n, M, 5) array) and 1 <= length <= M.", _shape),
        OutputCheck(
            "padding_zero",
            "Steps beyond the recorded length are all zero; the last keystroke of an uncut task has IL = PL = RL = 0.",
            _padding_zero,
        ),
        OutputCheck("keycode_scaled", "keycode / 255 lies in [0, 1]; holds are non-negative.", _keycodes_scaled),
    ),
    # no network is trained here: a pooled baseline of each task's steps; a task whose keycodes are
    # all 0 (a phone naming no key) has no keycode channel rather than one of zeros
    evaluation=Evaluable(
        label="baseline",
        vectors=lambda t: pooled_steps(t, sequence_array(t), STEP, absent_when_zero=("keycode_255",)),
    ),
    compute=sequences_of_segment,
    config=SequenceConfig,
    facts=tasks_cut,
    metadata=sequence_metadata,
    code_version="2",
    kinds=frozenset({"pandas", "parquet", "numpy"}),
    labels=RECONSTRUCTABLE_LABEL,
    description=(
        "TypeNet input per task: the first M keystrokes (config `sequence_length`, default 50) in press order, "
        "step i = [HL, IL, PL, RL in seconds, keycode / 255], IL / PL / RL = 0 for the task's last keystroke, "
        "zero-padded to M; `length` is the true number of steps. `steps` holds M * 5 float32 step-major. "
        "Load as an (n, M, 5) array with keystroke_assets.export.load_typenet_sequences(version). "
        "Contains reconstructable typed text: the keycodes in order spell out what was typed; run config "
        "`keycodes` = classes (kind of key) or none (0) leaves it out."
    ),
)
