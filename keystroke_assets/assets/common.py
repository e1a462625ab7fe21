"""What every version-partitioned asset shares: partitions, owners, retries, checks, reports."""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from keystroke_assets.automation import keep_complete
from keystroke_assets.frames import without_attrs
from keystroke_assets.partitions import InvalidVersionId, dataset_versions, validate_version_id

OWNERS = ["team:keystroke-research"]
# Storage on GCS can blip; every asset reads or writes the store, so every asset retries.
STORAGE_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def version_asset(**kwargs):
    """@asset with the settings every stage and feature shares."""
    kwargs.setdefault("kinds", {"pandas", "parquet"})
    return dg.asset(
        partitions_def=dataset_versions,
        owners=OWNERS,
        retry_policy=STORAGE_RETRY,
        automation_condition=keep_complete(),
        **kwargs,
    )


def version_multi_asset(outs: dict[str, dict], **kwargs):
    """@multi_asset of several assets made in one step, each with version_asset's settings (`outs`:
    asset name -> AssetOut arguments). Subsettable: the step stores only the selected assets."""
    return dg.multi_asset(
        outs={
            name: dg.AssetOut(owners=OWNERS, automation_condition=keep_complete(), kinds={"pandas", "parquet"},
                              is_required=False, **out)
            for name, out in outs.items()
        },
        partitions_def=dataset_versions,
        retry_policy=STORAGE_RETRY,
        can_subset=True,
        **kwargs,
    )


def partition_version(context: dg.AssetExecutionContext) -> str:
    """The run's version id, validated before anything is read or written (a key typed into the
    UI is not checked by Dagster). A bad id is final: no retry."""
    try:
        return validate_version_id(context.partition_key)
    except InvalidVersionId as e:
        raise dg.Failure(description=str(e), allow_retries=False) from e


@dataclass(frozen=True)
class OutputCheck:
    """A check of an asset's output, computed on the DataFrame by a plain function.

    fn returns (passed, metadata). Blocking checks stop everything downstream in the run.
    """

    name: str
    description: str
    fn: Callable[[pd.DataFrame], tuple[bool, dict]]
    blocking: bool = True


def check_specs(key: dg.AssetKey | str, checks: Iterable[OutputCheck]) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(c.name, asset=key, description=c.description, blocking=c.blocking) for c in checks]


def run_checks(
    df: pd.DataFrame, checks: Iterable[OutputCheck], asset_key: dg.AssetKey | None = None
) -> Iterator[dg.AssetCheckResult]:
    df = without_attrs(df)
    for c in checks:
        passed, metadata = c.fn(df)
        yield dg.AssetCheckResult(asset_key=asset_key, check_name=c.name, passed=bool(passed), metadata=metadata)


class ShardChecks:
    """Checks of a table seen shard by shard (a TableSpool's), with the results they would have on
    the whole table. Every check used this way holds row by row or on the columns, so it passes
    when it passes on every non-empty shard (on the empty table when all are empty); its counts
    add up and its lists of names unite. `asset_key` names the checked asset where a step makes
    several."""

    def __init__(self, checks: Iterable[OutputCheck], asset_key: dg.AssetKey | None = None):
        self._checks = list(checks)
        self._asset_key = asset_key
        self._results: dict[str, tuple[bool, dict]] = {}
        self._empty: pd.DataFrame | None = None

    def add(self, df: pd.DataFrame) -> None:
        if not len(df):
            self._empty = without_attrs(df)
            return
        df = without_attrs(df)
        for c in self._checks:
            passed, metadata = c.fn(df)
            if c.name in self._results:
                before, merged = self._results[c.name]
                passed, metadata = before and passed, {k: _merged(merged[k], v) for k, v in metadata.items()}
            self._results[c.name] = (bool(passed), metadata)

    def results(self) -> Iterator[dg.AssetCheckResult]:
        if not self._results:
            yield from run_checks(self._empty, self._checks, self._asset_key)
            return
        for name, (passed, metadata) in self._results.items():
            yield dg.AssetCheckResult(asset_key=self._asset_key, check_name=name, passed=passed, metadata=metadata)


def _merged(a, b):
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool):
        return a + b
    if isinstance(a, str) and isinstance(b, str):  # "none" or names joined by ", "
        names = dict.fromkeys(n for n in [*a.split(", "), *b.split(", ")] if n != "none")
        return ", ".join(names) or "none"
    raise TypeError(f"no rule to merge check metadata {a!r} and {b!r} over shards")


def non_empty() -> OutputCheck:
    return OutputCheck("non_empty", "The output has at least one row.", lambda df: (len(df) > 0, {"rows": len(df)}))


def has_columns(columns: list[str]) -> OutputCheck:
    def fn(df):
        missing = [c for c in columns if c not in df.columns]
        return not missing, {"missing_columns": ", ".join(missing) or "none"}

    return OutputCheck("schema", f"Columns present: {', '.join(columns)}.", fn)


def no_nulls(columns: list[str]) -> OutputCheck:
    def fn(df):
        present = [c for c in columns if c in df.columns]
        nulls = {c: int(df[c].isna().sum()) for c in present}
        return sum(nulls.values()) == 0 and len(present) == len(columns), {
            "null_cells": sum(nulls.values()),
            "columns_with_nulls": ", ".join(c for c, n in nulls.items() if n) or "none",
        }

    return OutputCheck("no_nulls", f"No missing values in {', '.join(columns)}.", fn)


def report_table(df: pd.DataFrame, max_rows: int = 200) -> dg.MetadataValue:
    """A DataFrame as a table the UI shows (the first max_rows rows; the count is separate)."""
    shown = df.head(max_rows).astype(object).where(df.head(max_rows).notna(), None)
    return dg.MetadataValue.table(
        records=[dg.TableRecord({str(k): (v if isinstance(v, (int, float, bool)) else str(v)) for k, v in r.items()})
                 for r in shown.to_dict("records")],
        schema=dg.TableSchema(columns=[dg.TableColumn(str(c), "string") for c in df.columns]),
    )
