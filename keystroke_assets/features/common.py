"""The one surface of a feature type: everything a feature module needs comes from here.

A feature module (docs/adding-a-feature.md) declares itself once, `FEATURE = Feature(name,
id_columns, checks)`, writes a pure function from one participant segment's keypairs (or
keystrokes) to a DataFrame, and wraps it in `@FEATURE.asset(...)`, whose body maps the function
over the segments (`shards()`), combines the results (`stack_shards`, or a small combine step over
per-segment partial results where the feature needs the whole version) and ends with
`yield from FEATURE.result(df, metadata)`, which runs the checks every feature shares and its own.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd

from keystroke_assets.assets.common import (
    OutputCheck,
    ShardChecks,
    check_specs,
    has_columns,
    non_empty,
    report_table,
    run_checks,
    version_asset,
    version_multi_asset,
)
from keystroke_assets.assets.web_app_data import read_kept
from keystroke_assets.evaluation import Evaluable, pooled_steps
from keystroke_assets.frames import group_codes, stack_shards
from keystroke_assets.ingest.names import classify
from keystroke_assets.keycodes import (
    RECONSTRUCTABLE_LABEL,
    KeycodePolicy,
    apply_keycode_policy,
    canonical_key,
    key_identity,
    policy_note,
)
from keystroke_assets.keystrokes import pair_rows
from keystroke_assets.resources.object_store import ObjectStore
from keystroke_assets.resources.parquet_io_manager import ParticipantShards, TableSpool
from keystroke_assets.schema import GRAIN_IDS, TASK_IDS

__all__ = [
    "Feature",
    "features_made_together",
    "Evaluable",
    "pooled_steps",
    "OutputCheck",
    "ShardChecks",
    "ParticipantShards",
    "TableSpool",
    "report_table",
    "stack_shards",
    "grouped_stats",
    "group_codes",
    "key_identity",
    "key_identity_codes",
    "canonical_key",
    "next_latencies",
    "pair_rows",
    "KeycodePolicy",
    "apply_keycode_policy",
    "policy_note",
    "RECONSTRUCTABLE_LABEL",
    "ObjectStore",
    "read_kept",
    "classify",
    "STAT_DESCRIPTIONS",
    "TASK",
    "TASK_IDS",
    "GRAIN_IDS",
    "tasks_of",
    "per_grain",
    "no_personal_data",
    "PERSONAL_FIELDS",
    "string_values",
]

# What tells tasks apart (TASK_IDS less what follows from these); an Aalto task has no platform or video.
TASK = ["user_id", "platform_id", "video_id", "session_id"]
FINER_THAN_USER = ["platform_id", "video_id", "session_id", "task_id"]

STAT_DESCRIPTIONS = {
    "count": "number of values",
    "mean": "mean",
    "std": "standard deviation (ddof = 1; missing when n < 2)",
    "min": "minimum",
    "p05": "5th percentile (linear interpolation)",
    "q1": "first quartile (linear interpolation)",
    "median": "median",
    "q3": "third quartile (linear interpolation)",
    "p95": "95th percentile (linear interpolation)",
    "max": "maximum",
    "iqr": "q3 - q1",
    "skewness": "adjusted Fisher-Pearson sample skewness G1 (missing when n < 3)",
    "kurtosis": "sample excess kurtosis G2 (missing when n < 4)",
}
_QUANTILES = {"min": 0.0, "p05": 0.05, "q1": 0.25, "median": 0.5, "q3": 0.75, "p95": 0.95, "max": 1.0}


def _sorted_within_groups(group: np.ndarray, values: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(groups, values as float64) ordered by group, then value."""
    if np.issubdtype(values.dtype, np.integer) and len(values):
        # integer values (latencies in ms): one int64 key, sorted without a permutation, ~10x
        # faster than lexsort
        low, high = int(values.min()), int(values.max())
        span = high - low + 1
        if n_groups * span < 2**62:
            key = np.sort(group * span + (values - low))
            return key // span, (key % span + low).astype(np.float64)
    values = values.astype(np.float64)
    order = np.lexsort((values, group))
    return group[order], values[order]


def grouped_stats(group: np.ndarray, values: np.ndarray, n_groups: int, stats: list[str]) -> dict[str, np.ndarray]:
    """Statistics of `values` per group code 0..n_groups-1 in one sort; NaN for empty groups.

    Quantiles interpolate linearly between order statistics (numpy's default method).
    """
    g, v = _sorted_within_groups(np.asarray(group, dtype=np.int64), np.asarray(values), n_groups)
    n = np.bincount(g, minlength=n_groups)
    start = np.r_[0, np.cumsum(n)[:-1]]
    empty = n == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(g, weights=v, minlength=n_groups) / n
        dev = v - mean[g]
        dev2 = dev * dev  # products, not dev**3 or dev**4: numpy's pow() for those is ~10x slower
        m2 = np.bincount(g, weights=dev2, minlength=n_groups)

        def quantile(q: float) -> np.ndarray:
            pos = (np.maximum(n, 1) - 1) * q
            lo = np.floor(pos).astype(np.int64)
            i = np.minimum(start + lo, max(len(v) - 1, 0))
            j = np.minimum(np.minimum(i + 1, start + np.maximum(n, 1) - 1), max(len(v) - 1, 0))
            out = v[i] + (pos - lo) * (v[j] - v[i]) if len(v) else np.full(n_groups, np.nan)
            return np.where(empty, np.nan, out)

        out = {}
        for stat in stats:
            if stat == "count":
                out[stat] = n.astype(np.float64)
            elif stat == "mean":
                out[stat] = np.where(empty, np.nan, mean)
            elif stat == "std":
                out[stat] = np.where(n >= 2, np.sqrt(m2 / (n - 1)), np.nan)
            elif stat in _QUANTILES:
                out[stat] = quantile(_QUANTILES[stat])
            elif stat == "iqr":
                out[stat] = quantile(0.75) - quantile(0.25)
            elif stat == "skewness":
                m3 = np.bincount(g, weights=dev2 * dev, minlength=n_groups) / n
                g1 = m3 / (m2 / n) ** 1.5
                out[stat] = np.where((n >= 3) & (m2 > 0), np.sqrt(n * (n - 1)) / (n - 2) * g1, np.nan)
            elif stat == "kurtosis":
                m4 = np.bincount(g, weights=dev2 * dev2, minlength=n_groups) / n
                g2 = m4 / (m2 / n) ** 2 - 3
                out[stat] = np.where((n >= 4) & (m2 > 0), ((n + 1) * g2 + 6) * (n - 1) / ((n - 2) * (n - 3)), np.nan)
            else:
                raise ValueError(f"unknown statistic {stat!r}; known: {', '.join(STAT_DESCRIPTIONS)}")
    return out


def next_latencies(keystrokes: pd.DataFrame) -> dict[str, np.ndarray]:
    """IL, PL and RL (ms, docs/features.md §2) of every keystroke of a keystrokes table with the
    next keystroke of its task; 0 for a task's last keystroke, which has no next one."""
    press, release = keystrokes["press_ms"].to_numpy(), keystrokes["release_ms"].to_numpy()
    i = pair_rows(keystrokes)
    out = {}
    for name, value in (
        ("IL", press[i + 1] - release[i]),
        ("PL", press[i + 1] - press[i]),
        ("RL", release[i + 1] - release[i]),
    ):
        out[name] = np.zeros(len(press), np.int64)
        out[name][i] = value
    return out


def tasks_of(pairs: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Task number of every pair and the ids (TASK_IDS) of every task, tasks sorted by TASK."""
    return group_codes(pairs, TASK, TASK_IDS)


def per_grain(tasks: pd.DataFrame, compute: Callable[[np.ndarray, int], dict[str, np.ndarray]]) -> pd.DataFrame:
    """One table for the task and the user grain: `grain`, TASK_IDS (finer ids null at the user
    grain) and the columns `compute(group_of_task, n_groups)` returns for each grain, where
    `group_of_task[t]` is the group of task t (so `group_of_task[task]` groups any per-task rows)."""
    user_of_task, users = group_codes(tasks, ["user_id"], TASK_IDS)
    users.loc[:, FINER_THAN_USER] = pd.NA
    parts = []
    for grain, group_of_task, ids in (("task", np.arange(len(tasks)), tasks), ("user", user_of_task, users)):
        values = pd.DataFrame(compute(group_of_task, len(ids)))
        parts.append(pd.concat([ids[TASK_IDS].reset_index(drop=True).assign(grain=grain)[GRAIN_IDS], values], axis=1))
    return pd.concat(parts, ignore_index=True)


# Names of the personal fields of the uploads (docs/data.md §1) as they could appear in a column name.
PERSONAL_FIELDS = [
    "email",
    "e_mail",
    "age",
    "gender",
    "handedness",
    "education",
    "user_agent",
    "useragent",
    "consent",
    "consented",
    "demographics",
    "screen_size",
    "raw_text",
    "typed_text",
    "user_input",
    "sentence",
]
_PERSONAL_NAME = re.compile(r"(?:^|_)(?:" + "|".join(PERSONAL_FIELDS) + r")(?:_|$)", re.IGNORECASE)
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def string_values(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """The distinct values of every column holding strings (object, string or categorical)."""
    out = {}
    for column in df.columns:
        values = df[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            values = values.cat.categories.to_series()
        if pd.api.types.infer_dtype(values, skipna=True) in ("string", "categorical"):
            out[str(column)] = values.dropna().astype(str).unique()
    return out


def _no_personal_data(df: pd.DataFrame) -> tuple[bool, dict]:
    names = [c for c in df.columns if _PERSONAL_NAME.search(str(c))]
    emails = sum(int(pd.Series(v).str.contains(EMAIL).sum()) for v in string_values(df).values())
    return not names and emails == 0, {
        "personal_column_names": ", ".join(map(str, names)) or "none",
        "email_like_values": emails,
    }


def no_personal_data() -> OutputCheck:
    return OutputCheck(
        "no_personal_data",
        "No column named after a personal field (e-mail, age, gender, user agent, consent, typed text, ...) "
        "and no e-mail-like value.",
        _no_personal_data,
    )


@dataclass(frozen=True)
class Feature:
    """A feature type, declared once: its name (asset key `features/<name>`), the id columns every
    row carries, its own checks, which run after the ones every feature shares (columns present,
    non-empty, no personal data), and how to evaluate it."""

    name: str
    id_columns: list[str]
    checks: tuple[OutputCheck, ...] = ()
    # set when the feature's rows are samples of a user's typing: evaluation/<name> then measures
    # how well it tells typists apart (keystroke_assets/evaluation)
    evaluation: Evaluable | None = None

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey(["features", *self.name.split("/")])

    @property
    def all_checks(self) -> list[OutputCheck]:
        return [has_columns(self.id_columns), non_empty(), no_personal_data(), *self.checks]

    @property
    def check_specs(self) -> list[dg.AssetCheckSpec]:
        return check_specs(self.key, self.all_checks)

    def asset(self, **kwargs):
        """@asset of this feature type: its key, group `features` and its checks."""
        *prefix, last = self.key.path
        return version_asset(
            name=last,
            key_prefix=prefix,
            group_name="features",
            check_specs=self.check_specs,
            **kwargs,
        )

    def result(self, features: pd.DataFrame, metadata: dict | None = None, output_name: str = "result") -> Iterator:
        """The asset's Output, with the counts every feature reports and `metadata` (e.g. the run's
        parameters), then its check result. Column descriptions go in `features.attrs`.
        `output_name`: the feature's output in a step that makes several (features_made_together)."""
        counts = {"participants": int(features["user_id"].nunique())}
        if "grain" in features:
            counts.update({f"rows/{g}": int(n) for g, n in features["grain"].value_counts(sort=False).items()})
        yield dg.Output(features, output_name=output_name, metadata={**counts, **(metadata or {})})
        yield from run_checks(features, self.all_checks, self.key)

    def shard_checks(self) -> ShardChecks:
        """The checks of a table written segment by segment (a TableSpool), fed one segment at a time."""
        return ShardChecks(self.all_checks)


def features_made_together(outs: dict[str, tuple[Feature, dict]], **kwargs):
    """@multi_asset of feature types one step makes together (e.g. from one pass over the shards):
    `outs` maps an output name to (its Feature, AssetOut arguments such as code_version and
    description); each feature gets its key, group `features` and checks as with Feature.asset.
    Subsettable: the body makes the features whose keys are in `context.selected_asset_keys`."""
    return version_multi_asset(
        {name: {"key": feature.key, "group_name": "features", **out} for name, (feature, out) in outs.items()},
        check_specs=[spec for feature, _ in outs.values() for spec in feature.check_specs],
        **kwargs,
    )


def key_identity_codes(keys: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Code of every key's canonical identity (keycodes.key_identity: one name across sources, a
    character lower-cased) in the sorted identities, which are returned too; computed on the
    categories, not per row. Sorted means code-point order. A null key is `Unidentified`."""
    keys = keys.astype("category")
    # a null key's code is -1: the last entry, None, whose identity is Unidentified
    identity = key_identity(pd.Series([*keys.cat.categories, None], dtype=object)).to_numpy()
    identities = pd.Index(sorted(set(identity if keys.isna().any() else identity[:-1])))
    return identities.get_indexer(identity)[keys.cat.codes.to_numpy()], identities
