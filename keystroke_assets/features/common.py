"""The one surface of a feature type: everything a feature module needs comes from here, and
nothing here is Dagster (docs/adding-a-feature.md).

A feature module declares itself once, `FEATURE = Feature(name, compute=fn, ...)`: `fn` is a pure
function of one participant segment's rows, whose first parameter names what it reads
(`keystrokes` or `keypairs`); the project makes the asset `features/<name>` from the declaration
(keystroke_assets/assets/features.py), computed and stored per segment by the segment engine.
"""

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pydantic

from keystroke_assets.evaluation import Evaluable, pooled_steps
from keystroke_assets.lib.columns import GRAIN_IDS, TASK_IDS
from keystroke_assets.lib.frames import group_codes, stack_tables
from keystroke_assets.lib.ingest.names import classify
from keystroke_assets.lib.keycodes import (
    RECONSTRUCTABLE_LABEL,
    KeycodePolicy,
    apply_keycode_policy,
    key_identity,
    policy_note,
)
from keystroke_assets.lib.latencies import pair_rows
from keystroke_assets.lib.metadata import Markdown, Table
from keystroke_assets.lib.rules import OutputCheck, has_columns, non_empty
from keystroke_assets.lib.segments import Made, Uploads

__all__ = [
    "Feature",
    "FromWholeVersion",
    "Partial",
    "PartialSegment",
    "Parts",
    "Made",
    "Evaluable",
    "OutputCheck",
    "Markdown",
    "Table",
    "stack_tables",
    "Uploads",
    "classify",
    "pooled_steps",
    "GRAIN_IDS",
    "TASK_IDS",
    "TASK",
    "STAT_DESCRIPTIONS",
    "grouped_stats",
    "group_codes",
    "tasks_of",
    "per_grain",
    "next_latencies",
    "pair_rows",
    "key_identity",
    "key_identity_codes",
    "KeycodePolicy",
    "apply_keycode_policy",
    "policy_note",
    "RECONSTRUCTABLE_LABEL",
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
    """A feature type, declared once.

    - name: the asset is `features/<name>`.
    - compute: a pure, module-level function of one participant segment's rows (a DataFrame, its
      column descriptions with units in `attrs["column_descriptions"]`). Its first parameter names
      what it reads: `keystrokes` or `keypairs`; `uploads`, if it has one, gets the participants'
      kept uploads of the kinds in `uploads`; its other parameters are the fields of `config`.
    - id_columns, checks: every row's ids; the feature's own rules (module-level functions), run
      after the ones every feature shares (columns present, non-empty, no personal data).
    - evaluation: set when the rows are samples of a user's typing (evaluation/<name>).
    - config: a pydantic model of the run config the function takes (None: none).
    - facts: a module-level function of a segment's table giving counts its metadata needs;
      metadata: the materialization's metadata from every segment's facts and the config (a
      DataFrame shows as a table, a Markdown text as markdown).
    - code_version, description, labels (definition metadata, e.g. RECONSTRUCTABLE_LABEL), kinds.
    """

    name: str
    id_columns: list[str]
    compute: Callable[..., pd.DataFrame] | None = None
    checks: tuple[OutputCheck, ...] = ()
    evaluation: Evaluable | None = None
    config: type[pydantic.BaseModel] | None = None
    uploads: tuple[str, ...] = ()
    facts: Callable[[pd.DataFrame], dict] | None = None
    metadata: Callable[[list[dict], dict], dict] | None = None
    code_version: str = "1"
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    kinds: frozenset[str] = frozenset({"pandas", "parquet"})

    @property
    def key_path(self) -> tuple[str, ...]:
        return ("features", *self.name.split("/"))

    @property
    def all_checks(self) -> tuple[OutputCheck, ...]:
        return (has_columns(self.id_columns), non_empty(), no_personal_data(), *self.checks)

    @property
    def reads(self) -> str:
        """The stage table the function reads: its first parameter's name."""
        first = next(iter(inspect.signature(self.compute).parameters))
        if first not in READABLE:
            name = self.compute.__name__
            raise TypeError(f"features/{self.name}: {name}'s first parameter is {first!r}, not one of {READABLE}")
        return first

    def params(self, config: Mapping | None = None) -> dict:
        """The function's parameters besides its rows: the config's fields, defaults filled in."""
        return _params(self.config, config)


READABLE = ("keystrokes", "keypairs")  # the stage tables a feature reads, stored per segment


@dataclass(frozen=True)
class Partial:
    """A per-segment partial result of feature types made from the whole version, computed and
    stored per segment and reused by address like a per-participant feature's segments.
    `compute` is a pure, module-level function whose parameters name the stage tables it reads
    (`keystrokes`, `keypairs`; `columns`: only those read) and then take what `Parts.compute`
    passes; it returns a table (DataFrame or arrow Table), a Made (a table and facts, or facts
    alone with `table=False`), or {output: either} for several `outputs`."""

    name: str
    compute: Callable
    outputs: tuple[str, ...] = ()
    table: bool = True
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(p for p in inspect.signature(self.compute).parameters if p in READABLE)


@dataclass(frozen=True)
class PartialSegment:
    """One segment's partial result, as a combine step sees it: its facts, its rows and, on
    request, its table (read from the store and checked against its recorded checksum)."""

    facts: dict
    rows: int
    read: Callable[[], pa.Table]


class Parts(Protocol):
    """What a combine step gets: its partial results, computed (or reused) per segment."""

    def compute(self, partial: Partial, **params) -> dict[str, list[PartialSegment]]:
        """`partial` over every segment of the version, with `params` (JSON: part of each segment's
        address); per output, its segments in order."""


@dataclass(frozen=True)
class FromWholeVersion:
    """Feature types one step makes from the whole version (typenet_ml's three grains, whose
    top-k digraphs and column means are the version's). `combine(parts, **params)` computes its
    `partials` through `parts` and returns {feature name: (table, metadata)}; its params are the
    config's fields and, if it names one, `thresholds` (the outlier_rules resource's, by device
    type). `name`: the partial results are stored under features/<name>/partials/; the step reads
    the stage tables its partials read."""

    name: str
    features: tuple[Feature, ...]
    partials: tuple[Partial, ...]
    combine: Callable[..., dict[str, tuple[pd.DataFrame, dict]]]
    config: type[pydantic.BaseModel] | None = None
    code_version: str = "1"

    def params(self, config: Mapping | None = None) -> dict:
        """combine's parameters besides its parts: the config's fields, defaults filled in."""
        return _params(self.config, config)


def _params(model: type[pydantic.BaseModel] | None, config: Mapping | None) -> dict:
    return model(**(config or {})).model_dump() if model else {}


def key_identity_codes(keys: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Code of every key's canonical identity (keycodes.key_identity: one name across sources, a
    character lower-cased) in the sorted identities, which are returned too; computed on the
    categories, not per row. Sorted means code-point order. A null key is `Unidentified`."""
    keys = keys.astype("category")
    # a null key's code is -1: the last entry, None, whose identity is Unidentified
    identity = key_identity(pd.Series([*keys.cat.categories, None], dtype=object)).to_numpy()
    identities = pd.Index(sorted(set(identity if keys.isna().any() else identity[:-1])))
    return identities.get_indexer(identity)[keys.cat.codes.to_numpy()], identities
