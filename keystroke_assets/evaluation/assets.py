"""evaluation/<feature> for every evaluable feature, and evaluation/summary over them all, made by
one step (few events per version run).

Each evaluation reads its feature table (and the phones' keyboards from the behavioral feature's
user rows), scores it by the protocol of protocol.py per device type and stores a small results
table (results.py: a row per device type x stratum, then the enrolment curve and TypeNet's Aalto
protocol); its metadata has `eer/<device type>` of the pooled rows (numbers Dagster plots across
versions), the table, DET curves, score histograms and the enrolment curves. A device type with
fewer than two users, or mostly not comparable, is reported as such, never a failure.
"""

from collections.abc import Iterable
from types import ModuleType

import dagster as dg
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

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
from keystroke_assets.evaluation.plots import REFERENCES, det_curves, eer_bars, enrolment_curves, score_histograms
from keystroke_assets.evaluation.protocol import MAX_IMPOSTOR_TEMPLATES
from keystroke_assets.evaluation.results import (
    FMR_TARGETS,
    PROTOCOLS,
    RESULT_COLUMNS,
    RESULT_DESCRIPTIONS,
    evaluate_device,
    keyboards,
)
from keystroke_assets.evaluation.samples import feature_matrix
from keystroke_assets.lib.metadata import Markdown
from keystroke_assets.lib.plots import DEVICE_COLORS
from keystroke_assets.lib.rules import OutputCheck, has_columns
from keystroke_assets.resources.object_store import ObjectStore
from keystroke_assets.resources.parquet_io_manager import read_version_table

GROUP = "evaluation"
SUMMARY_KEY = dg.AssetKey([GROUP, "summary"])
# the phones' keyboards (strata, docs/evaluation.md) come from the behavioral feature's user rows
KEYBOARDS_FROM = dg.AssetKey(["features", "behavioral"])
SUMMARY_COLUMNS = ["feature", "label", *RESULT_COLUMNS]
RATES = ["eer", "eer_low", "eer_high", "mean_subject_eer", "auc", *(c for c in RESULT_COLUMNS if c.startswith("fnmr"))]
PROTOCOL = (
    "Verification by scaled Manhattan distance (docs/evaluation.md): per user, enrolment and probe samples "
    "from different sessions (web app session 1 enrols, session 2 probes; Aalto's first 5 sections enrol); "
    "fitted on enrolment samples only: the columns compared, each column's scale (mean absolute deviation) and "
    "the template (mean of the user's enrolment samples); a probe is compared on the columns observed in both "
    "(none: not comparable, counted); impostors: the other users of the same device type "
    f"(a draw of {MAX_IMPOSTOR_TEMPLATES} per block of probes beyond that many). Per device type and stratum "
    "(source, phone keyboard): global EER with a 95 % bootstrap interval over users, mean per-subject EER, "
    f"ROC AUC, FNMR at FMR {', '.join(f'{a:.1%}' for a in FMR_TARGETS)}; then EER against enrolment size "
    "and TypeNet's Aalto protocol."
)


def _rates_valid(df: pd.DataFrame) -> tuple[bool, dict]:
    evaluated = df["status"] == "evaluated"
    rates = df[RATES].to_numpy(dtype=np.float64)
    outside = int((evaluated.to_numpy()[:, None] & ~((rates >= 0) & (rates <= 1) | np.isnan(rates))).sum())
    unrated = int((evaluated & df[["eer", "auc"]].isna().any(axis=1)).sum())
    no_comparisons = int((evaluated & ((df["genuine"] == 0) | (df["impostor"] == 0) | (df["users"] < 2))).sum())
    return outside + unrated + no_comparisons == 0, {
        "rates_outside_0_1": outside,
        "evaluated_rows_without_eer_or_auc": unrated,
        "evaluated_rows_without_comparisons": no_comparisons,
    }


CHECKS = [
    has_columns(RESULT_COLUMNS),
    OutputCheck(
        "rates_valid",
        "On every evaluated row: an EER and an AUC, and every rate (EER, its interval, mean per-subject EER, AUC, "
        "FNMRs; an FNMR may be null: not estimable) in [0, 1], from at least two users' genuine and impostor scores.",
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


def pooled_rows(table: pd.DataFrame) -> pd.Series:
    """The row per device type that pools its users (same-source or same-keyboard impostors, or the
    one source or keyboard there is): the session protocol's first row of each device type."""
    sessions = table["protocol"] == "sessions"
    per = [c for c in ("feature", "device_type") if c in table]  # a summary has every feature's
    return sessions & ~table[sessions].duplicated(per).reindex(table.index, fill_value=True)


def evaluate(
    declaration: Evaluable, features: pd.DataFrame, phone_keyboards: pd.Series | None = None
) -> tuple[pd.DataFrame, dict]:
    """(results table, metadata) of one feature table; `phone_keyboards`: user -> keyboard
    (results.keyboards), None when unknown."""
    ids, values = evaluation_samples(declaration, features)
    devices = [*DEVICE_COLORS, *sorted(set(ids["device_type"].astype(str)) - set(DEVICE_COLORS))]
    rows = []
    for device in devices:
        if declaration.not_evaluable:
            rows.append(
                {
                    "device_type": device,
                    "protocol": "sessions",
                    "stratum": "all",
                    "status": f"not evaluable: {declaration.not_evaluable}",
                }
            )
        elif device != "desktop" and declaration.key_dependent and phone_keyboards is None:
            rows.append(
                {
                    "device_type": device,
                    "protocol": "sessions",
                    "stratum": "same keyboard",
                    "status": f"not evaluable: the phones' keyboards come from {KEYBOARDS_FROM.to_user_string()}, "
                    "not stored for this version",
                }
            )
        else:
            rows += evaluate_device(ids, values, device, declaration.key_dependent, phone_keyboards)
    table = pd.DataFrame(rows).reindex(columns=[*RESULT_COLUMNS, "det", "scores"])
    plotted = table[pooled_rows(table) & (table["status"] == "evaluated")]
    table = table[RESULT_COLUMNS].astype({"enrolment": "float64"})
    table.attrs["column_descriptions"] = RESULT_DESCRIPTIONS
    title = f"{declaration.feature}{' (' + declaration.label + ')' if declaration.label else ''}"
    metadata = {
        **{f"eer/{r.device_type}": float(r.eer) for r in plotted.itertuples()},
        **{f"users/{r.device_type}": int(r.users) for r in table[pooled_rows(table)].itertuples() if pd.notna(r.users)},
        "results": report_table(table),
        "samples": len(ids),
    }
    if declaration.label:
        metadata["label"] = declaration.label
    if len(plotted):
        metadata["det_curve"] = det_curves({r.device_type: (*r.det, r.eer) for r in plotted.itertuples()}, title)
        metadata["score_histograms"] = score_histograms({r.device_type: r.scores for r in plotted.itertuples()}, title)
    return table, metadata


def stored_keyboards(storage: ObjectStore, version: str) -> pd.Series | None:
    """results.keyboards of the version's behavioral user rows, None when they are not stored."""
    try:
        behavioral = read_version_table(storage, KEYBOARDS_FROM, version)
    except FileNotFoundError:
        return None
    return keyboards(behavioral.select(["grain", "user_id", "unidentified_share"]).to_pandas())


def _description(declaration: Evaluable) -> str:
    what = f"How well features/{declaration.feature}{' (a ' + declaration.label + ')' if declaration.label else ''} "
    if declaration.not_evaluable:
        return what + f"tells typists apart: not evaluable, {declaration.not_evaluable}."
    return what + "tells typists apart. " + PROTOCOL


PROTOCOL_ORDER = {name: i for i, name in enumerate(PROTOCOLS)}


def summary_table(results: dict[str, tuple[Evaluable, pd.DataFrame]]) -> pd.DataFrame:
    """Every row of the evaluations {input name: (declaration, table)}, by (feature, device type):
    those with the best pooled EER first (the not evaluable last), each with its strata, then its
    enrolment curve and TypeNet rows."""
    parts = [table.assign(feature=d.feature, label=d.label) for d, table in results.values()]
    summary = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SUMMARY_COLUMNS)
    summary = summary[SUMMARY_COLUMNS].reset_index(drop=True)
    group = summary[["feature", "device_type"]].apply(tuple, axis=1)
    pooled_eer = summary["eer"].where(pooled_rows(summary)).groupby(group).transform("max")
    order = pd.DataFrame(
        {
            "pooled_eer": pooled_eer,
            "feature": summary["feature"],
            "device_type": summary["device_type"],
            "protocol": summary["protocol"].map(PROTOCOL_ORDER),
            "within": np.arange(len(summary)),
        }
    )
    summary = summary.loc[order.sort_values(list(order.columns), na_position="last", kind="stable").index]
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
        "Every evaluated feature type x device type of the version, best pooled EER first, with its EER and "
        "95 % interval, mean per-subject EER, ROC AUC and FNMR at FMR "
        f"{', '.join(f'{a:.1%}' for a in FMR_TARGETS)}; its strata (source, phone keyboard), enrolment curve and "
        "TypeNet's Aalto protocol beside the published TypeNet and scaled-Manhattan EERs. Tables and a bar chart."
    )

    # The features are deps, not inputs: Dagster would load every input whatever is selected, so a
    # step making one evaluation would read every feature table (and fail on one not stored yet).
    @version_multi_asset(
        {
            **{
                name: dict(key=evaluation[name], group_name=GROUP, code_version="2", description=_description(d))
                for name, d in by_output.items()
            },
            "summary": dict(key=SUMMARY_KEY, group_name=GROUP, code_version="2", description=summary_description),
        },
        name=GROUP,
        deps=[*feature.values(), KEYBOARDS_FROM],
        internal_asset_deps={
            **{name: {key, KEYBOARDS_FROM} for name, key in feature.items()},
            "summary": set(evaluation.values()),
        },
        check_specs=[
            *(spec for key in evaluation.values() for spec in check_specs(key, CHECKS)),
            *check_specs(SUMMARY_KEY, SUMMARY_CHECKS),
        ],
    )
    def evaluations(context: dg.AssetExecutionContext, storage: ObjectStore):
        # BLAS on one thread: the step's matrix products are small and many, and OpenBLAS's second
        # thread, spinning between them, took the core the step needs (+15 % of the step at 600
        # participants on 2 cores, docs/performance.md)
        with threadpool_limits(limits=1, user_api="blas"):
            yield from _evaluations(context, storage)

    def _evaluations(context: dg.AssetExecutionContext, storage: ObjectStore):
        version = partition_version(context)
        selected = context.selected_asset_keys
        phone_keyboards = stored_keyboards(storage, version)
        tables = {}
        for name, declaration in by_output.items():
            if evaluation[name] in selected:
                features = stored_table(storage, feature[name], version)
                table, metadata = evaluate(declaration, features, phone_keyboards)
                yield dg.Output(table, output_name=name, metadata=as_metadata(metadata))
                yield from run_checks(table, CHECKS, evaluation[name])
                tables[name] = table
        if SUMMARY_KEY in selected:
            for name in by_output.keys() - tables.keys():
                tables[name] = stored_table(storage, evaluation[name], version)
            table = summary_table({name: (by_output[name], tables[name]) for name in by_output})
            pooled = table[pooled_rows(table)]
            # one number per (feature, device type): Dagster plots each across versions on this asset too
            eers = {
                f"eer/{r.feature}/{r.device_type}": float(r.eer) for r in pooled.itertuples() if r.status == "evaluated"
            }
            typenet = table[table["protocol"] == "TypeNet"]
            curves = table[(table["protocol"] != "sessions") & (table["status"] == "evaluated")]
            yield dg.Output(
                table,
                output_name="summary",
                metadata=as_metadata(
                    {
                        "summary": report_table(pooled),
                        "strata": report_table(table[(table["protocol"] == "sessions") & ~pooled_rows(table)]),
                        "typenet_protocol": report_table(typenet),
                        "published_references": Markdown(
                            "\n".join(f"- {name}: EER {eer:.1%}" for name, eer in REFERENCES.items())
                            + "\n\nThe TypeNet rows here are a baseline without training (scaled Manhattan, "
                            "docs/evaluation.md)."
                        ),
                        "eer_chart": eer_bars(pooled),
                        **({"enrolment_curves": enrolment_curves(curves)} if len(curves) else {}),
                        **eers,
                    }
                ),
            )
            yield from run_checks(table, SUMMARY_CHECKS, SUMMARY_KEY)

    return [evaluations]
