"""features/statistical: the distribution of HL, IL, PL and RL per task and per user (ms).

docs/features.md §3. One table with a `grain` column ('task' or 'user') rather than two assets:
both grains come from the same pairs and the same statistics, so they share one code version, one
backfill and one check; `df[df.grain == "user"]` is the per-user table.
"""

import numpy as np
import pandas as pd

from keystroke_assets.features.common import (
    GRAIN_IDS,
    STAT_DESCRIPTIONS,
    Evaluable,
    Feature,
    OutputCheck,
    grouped_stats,
    per_grain,
    tasks_of,
)
from keystroke_assets.lib.latencies import LATENCIES
from keystroke_assets.lib.plots import user_medians

STATS = list(STAT_DESCRIPTIONS)
# Order every row's statistics must respect (the mean lies between min and max too).
ORDER = ["min", "p05", "q1", "median", "q3", "p95", "max"]


def statistical_features(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per task and per user, every statistic of every latency over the non-outlier pairs;
    columns `<latency>_<statistic>`. A group whose pairs are all outliers has count 0 and NaN."""
    task, tasks = tasks_of(pairs)
    ok = ~pairs["outlier"].to_numpy()

    def compute(group_of_task: np.ndarray, n_groups: int) -> dict[str, np.ndarray]:
        group = group_of_task[task[ok]]
        out = {}
        for latency in LATENCIES:
            stats = grouped_stats(group, pairs[latency].to_numpy()[ok], n_groups, STATS)
            stats["count"] = stats["count"].astype(np.int64)
            out.update({f"{latency}_{s}": stats[s] for s in STATS})
        return out

    return per_grain(tasks, compute)


def column_descriptions() -> dict[str, str]:
    return {
        f"{latency}_{s}": f"{STAT_DESCRIPTIONS[s]} of {latency} over non-outlier pairs"
        + ("" if s == "count" else ", ms")
        for latency in LATENCIES
        for s in STATS
    }


def statistical_of_segment(keypairs: pd.DataFrame) -> pd.DataFrame:
    """statistical_features of one segment, described."""
    features = statistical_features(keypairs)
    features.attrs["column_descriptions"] = {"grain": "'task' or 'user'", **column_descriptions()}
    return features


MEDIANS = [f"{latency}_median" for latency in LATENCIES]


def user_median_values(features: pd.DataFrame) -> dict:
    """Every user's median of every latency (ms; None where the user has no pair), for the plot."""
    users = features.loc[features["grain"] == "user", MEDIANS]
    return {"user_medians": users.astype(object).where(users.notna(), None).to_dict("list")}


def _statistics_ordered(df: pd.DataFrame) -> tuple[bool, dict]:
    bad = {}
    for latency in LATENCIES:
        cols = df[[f"{latency}_{s}" for s in ORDER]].to_numpy()
        mean = df[f"{latency}_mean"].to_numpy()
        with np.errstate(invalid="ignore"):
            wrong = (
                (np.diff(cols, axis=1) < -1e-9).any(axis=1) | (mean < cols[:, 0] - 1e-9) | (mean > cols[:, -1] + 1e-9)
            )
            wrong |= np.abs(df[f"{latency}_iqr"] - (df[f"{latency}_q3"] - df[f"{latency}_q1"])).to_numpy() > 1e-6
        bad[latency] = int(wrong.sum())
    return sum(bad.values()) == 0, {f"rows_out_of_order/{k}": v for k, v in bad.items()}


def _user_counts_add_up(df: pd.DataFrame) -> tuple[bool, dict]:
    counts = [f"{latency}_count" for latency in LATENCIES]
    tasks = df[df["grain"] == "task"].groupby("user_id", observed=True)[counts].sum()
    users = df[df["grain"] == "user"].set_index("user_id")[counts]
    differ = int((tasks.reindex(users.index) != users).any(axis=1).sum()) + abs(len(tasks) - len(users))
    return differ == 0, {"users_whose_counts_differ": differ}


def user_medians_plot(facts: list[dict], config: dict) -> dict:
    users = pd.concat([pd.DataFrame(f["user_medians"], columns=MEDIANS) for f in facts], ignore_index=True)
    return {"user_medians_plot": user_medians(users.astype(np.float64))}


STATISTICAL = Feature(
    "statistical",
    [*GRAIN_IDS, *column_descriptions()],
    checks=(
        OutputCheck(
            "statistics_ordered",
            "On every row and latency: min <= p05 <= q1 <= median <= q3 <= p95 <= max, min <= mean <= max, "
            "iqr = q3 - q1.",
            _statistics_ordered,
        ),
        OutputCheck(
            "user_counts_add_up", "Each user's pair counts equal the sum over the user's tasks.", _user_counts_add_up
        ),
    ),
    evaluation=Evaluable(rows={"grain": "task"}),
    compute=statistical_of_segment,
    facts=user_median_values,
    metadata=user_medians_plot,
    description=(
        "Distribution of every latency per task and per user (column `grain`): for HL, IL, PL and RL over "
        "non-outlier pairs, count, mean, std, min, p05, q1, median, q3, p95, max, IQR, skewness and excess "
        "kurtosis, in ms. Columns `<latency>_<statistic>`; at the user grain platform / video / session / "
        "task are null."
    ),
)
