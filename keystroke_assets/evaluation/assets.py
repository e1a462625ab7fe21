"""evaluation/<feature> for every evaluable feature, and evaluation/summary over them all, made by
one step (few events per version run; each evaluation is a second or two).

Each evaluation reads its feature table, scores it by the protocol of protocol.py per device type
and stores a small results table (a row per device type); its metadata has `eer/<device type>`
(numbers Dagster plots across versions), the table, DET curves and score histograms. A device
type with fewer than two users is reported as not evaluable, never a failure.
"""

from collections.abc import Iterable
from types import ModuleType

import dagster as dg
import numpy as np
import pandas as pd

from keystroke_assets.assets.common import (
    as_metadata,
    check_specs,
    partition_version,
    report_table,
    run_checks,
    stored_table,
    version_multi_asset,
)
from keystroke_assets.evaluation.declaration import Evaluable, declarations
from keystroke_assets.evaluation.plots import det_curves, eer_bars, score_histograms
from keystroke_assets.evaluation.protocol import (
    FMR_TARGETS,
    RESULT_COLUMNS,
    RESULT_DESCRIPTIONS,
    det_points,
    evaluate_device,
    feature_matrix,
)
from keystroke_assets.lib.plots import DEVICE_COLORS
from keystroke_assets.lib.rules import OutputCheck, has_columns
from keystroke_assets.resources.object_store import ObjectStore

GROUP = "evaluation"
SUMMARY_KEY = dg.AssetKey([GROUP, "summary"])
SUMMARY_COLUMNS = ["feature", "label", *RESULT_COLUMNS]
RATES = ["eer", *(c for c in RESULT_COLUMNS if c.startswith("fnmr"))]
PROTOCOL = (
    "Verification by scaled Manhattan distance: per user, enrolment and probe samples from different sessions "
    "(web app session 1 enrols, session 2 probes; Aalto's first 5 sections enrol){pooled}; template = mean of the "
    "enrolment samples; each column scaled by its mean absolute deviation over the device type's enrolment samples "
    "(all-null and constant columns dropped; the distance averages the columns present in both); impostors: every "
    "other user of the same device type. EER (ties accepted together), FNMR at FMR 1 % and 0.1 % per device type."
)


def _rates_valid(df: pd.DataFrame) -> tuple[bool, dict]:
    evaluated = df["status"] == "evaluated"
    rates = df[RATES].to_numpy(dtype=np.float64)
    outside = int((evaluated.to_numpy()[:, None] & ~((rates >= 0) & (rates <= 1))).sum())
    no_comparisons = int((evaluated & ((df["genuine"] == 0) | (df["impostor"] == 0) | (df["users"] < 2))).sum())
    return outside + no_comparisons == 0, {
        "rates_outside_0_1": outside,
        "evaluated_rows_without_comparisons": no_comparisons,
    }


CHECKS = [
    has_columns(RESULT_COLUMNS),
    OutputCheck(
        "rates_valid",
        "On every evaluated row: EER and FNMRs lie in [0, 1], from at least two users' genuine and impostor scores.",
        _rates_valid,
    ),
]
SUMMARY_CHECKS = [has_columns(SUMMARY_COLUMNS), CHECKS[1]]


def evaluation_samples(declaration: Evaluable, features: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """(ids, values) of the declared samples of a feature table."""
    rows = np.ones(len(features), bool)
    for column, value in declaration.rows.items():
        rows &= (features[column] == value).to_numpy()
    samples = features[rows].reset_index(drop=True)
    return feature_matrix(declaration.vectors(samples) if declaration.vectors else samples)


def evaluate(declaration: Evaluable, features: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """(results table, metadata) of one feature table."""
    ids, values = evaluation_samples(declaration, features)
    devices = [*DEVICE_COLORS, *sorted(set(ids["device_type"].astype(str)) - set(DEVICE_COLORS))]
    rows, scored = [], {}
    for device in devices:
        row, scores = evaluate_device(ids, values, declaration.split, device)
        rows.append(row)
        if scores is not None:
            scored[device] = (scores, row["eer"])
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    table.attrs["column_descriptions"] = RESULT_DESCRIPTIONS
    title = f"{declaration.feature}{' (' + declaration.label + ')' if declaration.label else ''}"
    metadata = {
        **{f"eer/{r.device_type}": float(r.eer) for r in table.itertuples() if r.status == "evaluated"},
        **{f"users/{r.device_type}": int(r.users) for r in table.itertuples()},
        "results": report_table(table),
        "samples": len(ids),
        "split": declaration.split,
    }
    if declaration.label:
        metadata["label"] = declaration.label
    if scored:
        metadata["det_curve"] = det_curves({d: (*det_points(s)[1:], eer) for d, (s, eer) in scored.items()}, title)
        metadata["score_histograms"] = score_histograms({d: s for d, (s, _) in scored.items()}, title)
    return table, metadata


def _description(declaration: Evaluable) -> str:
    pooled = " (leave-one-platform-out: enrol on two platforms, probe the third, three folds pooled)"
    return (
        f"How well features/{declaration.feature}{' (a ' + declaration.label + ')' if declaration.label else ''} "
        "tells typists apart. " + PROTOCOL.format(pooled=pooled if declaration.split == "platform" else "")
    )


def summary_table(results: dict[str, tuple[Evaluable, pd.DataFrame]]) -> pd.DataFrame:
    """Every (feature, device type) row of the evaluations {input name: (declaration, table)},
    best EER first, the not evaluable last."""
    parts = [table.assign(feature=d.feature, label=d.label) for d, table in results.values()]
    summary = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SUMMARY_COLUMNS)
    summary = summary[SUMMARY_COLUMNS].sort_values(["eer", "feature", "device_type"], na_position="last", kind="stable")
    summary.attrs["column_descriptions"] = {
        "feature": "key under features/",
        "label": "e.g. 'baseline'",
        **RESULT_DESCRIPTIONS,
    }
    return summary.reset_index(drop=True)


def evaluation_assets(declared: Iterable[Evaluable] | ModuleType) -> list[dg.AssetsDefinition]:
    """An evaluation asset per declaration (or per declaration found in a package) and the summary,
    all made by one subsettable step: the selected evaluations, each from its feature table as
    stored, then the summary from them and, for the evaluations not selected, their stored tables."""
    found = declarations(declared) if isinstance(declared, ModuleType) else list(declared)
    # output name -> declaration; "summary" is no feature's name (Evaluable refuses it)
    by_output = {"__".join(d.feature.split("/")): d for d in found}
    feature = {name: dg.AssetKey(["features", *d.feature.split("/")]) for name, d in by_output.items()}
    evaluation = {name: dg.AssetKey([GROUP, *d.feature.split("/")]) for name, d in by_output.items()}
    summary_description = (
        "Every evaluated feature type x device type of the version with its EER and FNMR at FMR "
        f"{' and '.join(f'{a:.1%}' for a in FMR_TARGETS)}, best first, as a table and a bar chart."
    )

    # The features are deps, not inputs: Dagster would load every input whatever is selected, so a
    # step making one evaluation would read every feature table (and fail on one not stored yet).
    @version_multi_asset(
        {
            **{
                name: dict(key=evaluation[name], group_name=GROUP, code_version="1", description=_description(d))
                for name, d in by_output.items()
            },
            "summary": dict(key=SUMMARY_KEY, group_name=GROUP, code_version="1", description=summary_description),
        },
        name=GROUP,
        deps=list(feature.values()),
        internal_asset_deps={
            **{name: {key} for name, key in feature.items()},
            "summary": set(evaluation.values()),
        },
        check_specs=[
            *(spec for key in evaluation.values() for spec in check_specs(key, CHECKS)),
            *check_specs(SUMMARY_KEY, SUMMARY_CHECKS),
        ],
    )
    def evaluations(context: dg.AssetExecutionContext, storage: ObjectStore):
        version = partition_version(context)
        selected = context.selected_asset_keys
        tables = {}
        for name, declaration in by_output.items():
            if evaluation[name] in selected:
                table, metadata = evaluate(declaration, stored_table(storage, feature[name], version))
                yield dg.Output(table, output_name=name, metadata=as_metadata(metadata))
                yield from run_checks(table, CHECKS, evaluation[name])
                tables[name] = table
        if SUMMARY_KEY in selected:
            for name in by_output.keys() - tables.keys():
                tables[name] = stored_table(storage, evaluation[name], version)
            table = summary_table({name: (by_output[name], tables[name]) for name in by_output})
            # one number per (feature, device type): Dagster plots each across versions on this asset too
            eers = {
                f"eer/{r.feature}/{r.device_type}": float(r.eer) for r in table.itertuples() if r.status == "evaluated"
            }
            yield dg.Output(
                table,
                output_name="summary",
                metadata=as_metadata({"summary": report_table(table), "eer_chart": eer_bars(table), **eers}),
            )
            yield from run_checks(table, SUMMARY_CHECKS, SUMMARY_KEY)

    return [evaluations]
