"""What every version-partitioned asset shares: partitions, owners, retries, checks, reports."""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import dagster as dg
import pandas as pd

from keystroke_assets.automation import keep_complete
from keystroke_assets.frames import without_attrs
from keystroke_assets.partitions import InvalidVersionId, dataset_versions, validate_version_id
from keystroke_assets.resources.object_store import ObjectStore
from keystroke_assets.resources.parquet_io_manager import read_version_table

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
            name: dg.AssetOut(
                owners=OWNERS,
                automation_condition=keep_complete(),
                kinds={"pandas", "parquet"},
                is_required=False,
                **out,
            )
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


def stored_table(storage: ObjectStore, key: dg.AssetKey, version: str) -> pd.DataFrame:
    """An asset's stored partition, read where the IO manager stores it: for a subsettable step that
    reads only what the selected assets need (Dagster loads every input of a step, selected or not)."""
    return read_version_table(storage, key, version).to_pandas()


@dataclass(frozen=True)
class OutputCheck:
    """A rule an asset's output must hold, computed on the DataFrame by a plain function.

    fn returns (passed, metadata). An asset's rules are reported together by its one blocking
    check, RULES_CHECK: every rule's verdict and counts in its metadata, one event per asset.
    """

    name: str
    description: str
    fn: Callable[[pd.DataFrame], tuple[bool, dict]]


# One check per asset (its metadata lists every rule): a check per rule stored two events each,
# which made most of a small version's run.
RULES_CHECK = "rules"


def check_specs(key: dg.AssetKey | str, checks: Iterable[OutputCheck]) -> list[dg.AssetCheckSpec]:
    """The asset's one blocking check; its description names every rule. A failed rule stops
    everything downstream of the asset."""
    rules = "\n".join(f"- {c.name}: {c.description}" for c in checks)
    return [dg.AssetCheckSpec(RULES_CHECK, asset=key, blocking=True, description=f"Every rule holds:\n{rules}")]


def rule_outcomes(df: pd.DataFrame, checks: Iterable[OutputCheck]) -> dict[str, tuple[bool, dict]]:
    """(passed, metadata) of every rule on df."""
    df = without_attrs(df)
    return {c.name: (bool(passed), metadata) for c in checks for passed, metadata in [c.fn(df)]}


def failed_rules(df: pd.DataFrame, checks: Iterable[OutputCheck]) -> set[str]:
    return {name for name, (passed, _) in rule_outcomes(df, checks).items() if not passed}


def rules_result(outcomes: dict[str, tuple[bool, dict]], asset_key: dg.AssetKey | None = None) -> dg.AssetCheckResult:
    """The asset's check result: passed when every rule holds; per rule its verdict and counts."""
    failed = [name for name, (passed, _) in outcomes.items() if not passed]
    metadata = {"failed_rules": ", ".join(failed) or "none"}
    for name, (passed, values) in outcomes.items():
        metadata[f"{name}/passed"] = passed
        metadata.update({f"{name}/{k}": v for k, v in values.items()})
    return dg.AssetCheckResult(asset_key=asset_key, check_name=RULES_CHECK, passed=not failed, metadata=metadata)


def run_checks(
    df: pd.DataFrame, checks: Iterable[OutputCheck], asset_key: dg.AssetKey | None = None
) -> Iterator[dg.AssetCheckResult]:
    yield rules_result(rule_outcomes(df, checks), asset_key)


class ShardChecks:
    """Rules of a table seen shard by shard (a segmented table's: each segment's outcomes as its
    summary stored them), with the outcomes they would have on the whole table. Every rule used
    this way holds row by row or on the columns, so it passes when it passes on every non-empty
    shard (on the empty table when all are empty); its counts add up and its lists of names unite.
    `asset_key` names the checked asset where a step makes several."""

    def __init__(self, asset_key: dg.AssetKey | None = None):
        self._asset_key = asset_key
        self._outcomes: dict[str, tuple[bool, dict]] = {}
        self._empty: dict[str, tuple[bool, dict]] | None = None

    def add_outcomes(self, outcomes: dict[str, tuple[bool, dict]], empty: bool) -> None:
        """The rules' outcomes on one shard (`empty`: a shard without rows)."""
        if empty:
            self._empty = outcomes
            return
        for name, (passed, metadata) in outcomes.items():
            if name in self._outcomes:
                before, merged = self._outcomes[name]
                passed, metadata = before and passed, {k: _merged(merged[k], v) for k, v in metadata.items()}
            self._outcomes[name] = (passed, metadata)

    def results(self) -> Iterator[dg.AssetCheckResult]:
        yield rules_result(self._outcomes or self._empty, self._asset_key)


def _merged(a, b):
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool):
        return a + b
    if isinstance(a, str) and isinstance(b, str):  # "none" or names joined by ", "
        names = dict.fromkeys(n for n in [*a.split(", "), *b.split(", ")] if n != "none")
        return ", ".join(names) or "none"
    raise TypeError(f"no rule to merge check metadata {a!r} and {b!r} over shards")


# The shared rules' functions are module-level (with functools.partial for their arguments), so
# a rule can be pickled to the process that computes a segment (segments.py).
def _rows(df: pd.DataFrame) -> tuple[bool, dict]:
    return len(df) > 0, {"rows": len(df)}


def non_empty() -> OutputCheck:
    return OutputCheck("non_empty", "The output has at least one row.", _rows)


def _missing_columns(columns: list[str], df: pd.DataFrame) -> tuple[bool, dict]:
    missing = [c for c in columns if c not in df.columns]
    return not missing, {"missing_columns": ", ".join(missing) or "none"}


def has_columns(columns: list[str]) -> OutputCheck:
    return OutputCheck("schema", f"Columns present: {', '.join(columns)}.", partial(_missing_columns, columns))


def _null_cells(columns: list[str], df: pd.DataFrame) -> tuple[bool, dict]:
    present = [c for c in columns if c in df.columns]
    nulls = {c: int(df[c].isna().sum()) for c in present}
    return sum(nulls.values()) == 0 and len(present) == len(columns), {
        "null_cells": sum(nulls.values()),
        "columns_with_nulls": ", ".join(c for c, n in nulls.items() if n) or "none",
    }


def no_nulls(columns: list[str]) -> OutputCheck:
    return OutputCheck("no_nulls", f"No missing values in {', '.join(columns)}.", partial(_null_cells, columns))


def report_table(df: pd.DataFrame, max_rows: int = 200) -> dg.MetadataValue:
    """A DataFrame as a table the UI shows (the first max_rows rows; the count is separate)."""
    shown = df.head(max_rows).astype(object).where(df.head(max_rows).notna(), None)
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({str(k): (v if isinstance(v, (int, float, bool)) else str(v)) for k, v in r.items()})
            for r in shown.to_dict("records")
        ],
        schema=dg.TableSchema(columns=[dg.TableColumn(str(c), "string") for c in df.columns]),
    )
