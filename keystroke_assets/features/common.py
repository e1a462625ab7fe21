"""The one surface of a feature type: everything a feature module needs comes from here.

A feature module (docs/adding-a-feature.md) declares itself once, `FEATURE = Feature(name,
id_columns, checks)`, writes a pure function from one participant segment's keypairs (or
keystrokes) to a DataFrame, and wraps it in `@FEATURE.asset(...)`. A feature whose rows are each
participant's own is `yield from FEATURE.per_segment(...)`: its table is stored segment by segment
like the stages', and a segment an earlier version stored is reused (segments.py). A feature that
needs the whole version maps the function over the segments (`shards()`), combines the results
(`stack_shards`, or a small combine step over per-segment partial results) and ends with
`yield from FEATURE.result(df, metadata)`. Either runs the checks every feature shares and its own.
"""

import pickle
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import dagster as dg
import numpy as np
import pandas as pd

from keystroke_assets.assets.common import (
    OutputCheck,
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
from keystroke_assets.resources.object_store import ObjectStore, object_store
from keystroke_assets.resources.parquet_io_manager import ParticipantShards
from keystroke_assets.resources.segment_executor import SegmentExecutor
from keystroke_assets.schema import GRAIN_IDS, TASK_IDS
from keystroke_assets.segments import (
    ParticipantRows,
    SegmentJob,
    code_version,
    compute_segments,
    read_segment,
    read_summaries,
    segment_checks,
    segment_id,
    segmented_table,
    store_segment,
)

__all__ = [
    "ParticipantRows",
    "Feature",
    "features_made_together",
    "Evaluable",
    "pooled_steps",
    "OutputCheck",
    "ParticipantShards",
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
    "object_store",
    "SegmentExecutor",
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

    def per_segment(
        self,
        context: dg.AssetExecutionContext,
        source: ParticipantShards,
        storage: ObjectStore,
        segment_executor: SegmentExecutor,
        rows: Callable[..., pd.DataFrame],
        config: dict | None = None,
        summary: Callable[[pd.DataFrame], dict] | None = None,
        metadata: Callable[[list[dict]], dict] | None = None,
        segment_inputs: Callable[[dict], dict] | None = None,
    ) -> Iterator:
        """The asset's table, one segment of it per segment of `source` (its keystrokes or keypairs),
        then its check result. `rows(df, **inputs)` makes the feature's rows of one source segment,
        column descriptions (`attrs`) included; it runs wherever the segment executor sends it, so it
        and the feature's checks are module-level functions (or functools.partial of one).

        A segment's address hashes the feature, the asset's code version, `config` (the run config,
        JSON-able) and the source segment's: one that any version stored is reused. Its summary holds
        the rules' outcomes, `participants`, `grains` (rows per grain) and what `summary(df)` returns,
        counts the asset's metadata needs; the Output's metadata is `participants`, `rows/<grain>` and
        `metadata(summaries)`, all from the summaries. `segment_inputs(source summary)`: keyword
        arguments of `rows` for that segment besides its table (small: they travel with the job)."""
        key = self.key.to_user_string()
        work = partial(_feature_segment, key, rows, summary, tuple(self.all_checks))
        try:  # here, not only in a pool: a function no worker can get fails in every run
            pickle.dumps(work)
        except (pickle.PicklingError, AttributeError, TypeError) as e:
            raise TypeError(f"{key}: its segment function or a check is not module-level: {e}") from e
        inputs = (
            [segment_inputs(s) for s in read_summaries(storage, source.names)]
            if segment_inputs
            else [{}] * len(source.names)
        )
        version = code_version(context, self.key)
        jobs = [
            SegmentJob(storage.uri(), {key: segment_id(self.name, version, config, name)}, name, data)
            for name, data in zip(source.names, inputs)
        ]
        summaries, computed = compute_segments(storage, segment_executor.map, work, jobs)
        parts = [s[key] for s in summaries]
        counts = {"participants": sum(p["participants"] for p in parts)}
        for part in parts:
            for grain, n in part.get("grains", {}).items():
                counts[f"rows/{grain}"] = counts.get(f"rows/{grain}", 0) + n
        yield dg.Output(
            segmented_table(self.key, jobs, summaries, computed),
            metadata={**counts, **(metadata(parts) if metadata else {})},
        )
        yield from segment_checks(summaries, self.key).results()


def _feature_segment(
    key: str, rows: Callable, summary: Callable | None, checks: tuple[OutputCheck, ...], job: SegmentJob
) -> dict:
    """One segment of a feature's table (Feature.per_segment), read, computed and stored by
    whichever process runs it."""
    store = job.store()
    df = rows(read_segment(store, job.source), **job.data)
    counts = {"participants": int(df["user_id"].nunique())}
    if "grain" in df:
        counts["grains"] = {str(g): int(n) for g, n in df["grain"].value_counts(sort=False).items()}
    extra = summary(df) if summary else {}
    return {
        key: store_segment(store, dg.AssetKey.from_user_string(key), job.outputs[key], df, checks, **counts, **extra)
    }


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
