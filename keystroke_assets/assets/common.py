"""What every version-partitioned asset shares: partitions, owners, retries, checks, reports."""

from collections.abc import Iterable, Iterator

import dagster as dg
import pandas as pd

from keystroke_assets.automation import keep_complete
from keystroke_assets.lib.metadata import Markdown, Table
from keystroke_assets.lib.rules import OutputCheck, rule_outcomes
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
                **{"kinds": {"pandas", "parquet"}, **out},
                owners=OWNERS,
                automation_condition=keep_complete(),
                is_required=False,
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


# One check per asset (its metadata lists every rule): a check per rule stored two events each,
# which made most of a small version's run.
RULES_CHECK = "rules"


def check_specs(key: dg.AssetKey | str, checks: Iterable[OutputCheck]) -> list[dg.AssetCheckSpec]:
    """The asset's one blocking check; its description names every rule. A failed rule stops
    everything downstream of the asset."""
    rules = "\n".join(f"- {c.name}: {c.description}" for c in checks)
    return [dg.AssetCheckSpec(RULES_CHECK, asset=key, blocking=True, description=f"Every rule holds:\n{rules}")]


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


def as_metadata(values: dict) -> dict:
    """Metadata as Dagster shows it: a DataFrame or a Table as a table, a Markdown text (a plot) as
    markdown; other values as they are."""
    shown = {
        Markdown: dg.MetadataValue.md,
        pd.DataFrame: report_table,
        Table: lambda t: report_table(t.df, max_rows=t.max_rows),
    }
    return {name: shown.get(type(v), lambda x: x)(v) for name, v in values.items()}


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
