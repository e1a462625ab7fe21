"""features/hold_by_key_class: median hold time of letters, the space bar and other keys, per task
and per user. The worked example of docs/adding-a-feature.md: this file, copied as it is into
keystroke_assets/features/, is a feature type of the project. The tests use it as a feature the
project does not have (extra_feature_defs.py).
"""

import numpy as np
import pandas as pd

from keystroke_assets.features.common import (
    GRAIN_IDS,
    Evaluable,
    Feature,
    OutputCheck,
    grouped_stats,
    per_grain,
    tasks_of,
)

KEY_CLASSES = ["letter", "space", "other"]
COLUMNS = [f"HL_median_{c}" for c in KEY_CLASSES]


def hold_by_key_class_features(keystrokes: pd.DataFrame) -> pd.DataFrame:
    """Median hold (ms) of letter keys, the space bar and every other key, per task and per user,
    from one segment's keystrokes."""
    task, tasks = tasks_of(keystrokes)
    code = keystrokes["keycode"].to_numpy()
    key_class = np.select([(code >= 65) & (code <= 90), code == 32], [0, 1], 2)

    def compute(group_of_task: np.ndarray, n: int) -> dict[str, np.ndarray]:
        cell = group_of_task[task] * len(KEY_CLASSES) + key_class
        median = grouped_stats(cell, keystrokes["HL"].to_numpy(), n * len(KEY_CLASSES), ["median"])["median"]
        return dict(zip(COLUMNS, median.reshape(n, len(KEY_CLASSES)).T))

    features = per_grain(tasks, compute)
    features.attrs["column_descriptions"] = {c: f"median HL of {c} keys, ms" for c in COLUMNS}
    return features


def _holds_non_negative(df: pd.DataFrame) -> tuple[bool, dict]:
    bad = int((df[COLUMNS] < 0).to_numpy().sum())
    return bad == 0, {"negative_medians": bad}


HOLD_BY_KEY_CLASS = Feature(
    "hold_by_key_class",
    [*GRAIN_IDS, *COLUMNS],
    compute=hold_by_key_class_features,
    checks=(OutputCheck("holds_non_negative", "Every median hold is >= 0 ms.", _holds_non_negative),),
    evaluation=Evaluable(rows={"grain": "task"}),  # its task rows are samples of a user's typing
    code_version="1",
    description="Median hold time (ms) of letters, the space bar and other keys, per task and per user.",
)
