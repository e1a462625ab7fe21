"""keystrokes and keypairs: every keystroke of every task, and consecutive keystrokes as pairs with
TypeNet latencies (ms). One step makes both from one pass over cleaned_data's segments
(docs/features.md §1-2): the pairs are the keystrokes' neighbours, and the counts of what was
dropped on the way stay with keypairs' quality report."""

import warnings

import dagster as dg
import pandas as pd
from dagster_pandas import PandasColumn
from dagster_pandas.constraints import (
    ColumnDTypeInSetConstraint,
    ConstraintViolationException,
    NonNullableColumnConstraint,
)

from keystroke_assets import engine
from keystroke_assets.assets.common import check_specs, report_table, version_multi_asset
from keystroke_assets.engine import Made, Output, Read, Stage
from keystroke_assets.lib.latencies import (
    KEYPAIR_COLUMNS,
    KEYSTROKE_COLUMNS,
    QUALITY_COUNTS,
    RENAMED_COUNTS,
    OutlierThresholds,
    keystrokes_from_events,
    pairs_from_keystrokes,
)
from keystroke_assets.lib.plots import (
    latency_histograms,
    latency_summary,
    merge_latency_summaries,
    participant_quality,
    quality_table,
)
from keystroke_assets.lib.rules import OutputCheck, has_columns, no_nulls, non_empty
from keystroke_assets.lib.segments import SegmentList
from keystroke_assets.resources.object_store import ObjectStore
from keystroke_assets.resources.outlier_rules import OutlierRules
from keystroke_assets.resources.segment_executor import SegmentExecutor

_MS = 10**13  # bound on any latency: more than 300 years in ms means a broken time
CLEANED_DATA, KEYSTROKES, KEYPAIRS = dg.AssetKey("cleaned_data"), dg.AssetKey("keystrokes"), dg.AssetKey("keypairs")


# dagster-pandas column constraints of keystrokes and keypairs: types, nulls, ranges (ms, docs/features.md §1-2).
# PandasColumn is marked beta: without the filter every process that loads the code location (each
# server, daemon and run worker) prints the same block of BetaWarnings, which nobody can act on.
def _categorical(*columns: str) -> list[PandasColumn]:
    return [
        PandasColumn(c, constraints=[ColumnDTypeInSetConstraint({"category"}), NonNullableColumnConstraint()])
        for c in columns
    ]


def _times(*columns: str) -> list[PandasColumn]:
    return [PandasColumn.integer_column(c, min_value=0, non_nullable=True) for c in columns]


with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    _SHARED_CONSTRAINTS = [
        PandasColumn.categorical_column("device_type", categories={"desktop", "mobile"}, non_nullable=True),
        PandasColumn.integer_column("sequence_id", min_value=0, non_nullable=True),
        PandasColumn.integer_column("HL", min_value=0, max_value=_MS, non_nullable=True),
    ]
    KEYSTROKE_CONSTRAINTS = [*_categorical("user_id", "key"), *_SHARED_CONSTRAINTS, *_times("press_ms", "release_ms")]
    KEYPAIR_CONSTRAINTS = [
        *_categorical("user_id", "key1", "key2"),
        *_SHARED_CONSTRAINTS,
        *_times("key1_press", "key1_release", "key2_press", "key2_release"),
        *[PandasColumn.integer_column(c, min_value=-_MS, max_value=_MS, non_nullable=True) for c in ["IL", "PL", "RL"]],
        PandasColumn.boolean_column("outlier", non_nullable=True),
    ]


def _latency_identities(df: pd.DataFrame) -> tuple[bool, dict]:
    hl2 = df["key2_release"] - df["key2_press"]
    bad_pl = df["PL"] != df["HL"] + df["IL"]
    bad_rl = df["RL"] != df["PL"] + hl2 - df["HL"]
    bad_order = (df["PL"] < 0) | (df["HL"] < 0) | (hl2 < 0)
    return not (bad_pl.any() or bad_rl.any() or bad_order.any()), {
        "pairs_PL_ne_HL_plus_IL": int(bad_pl.sum()),
        "pairs_RL_ne_PL_plus_HL2_minus_HL1": int(bad_rl.sum()),
        "pairs_out_of_press_order_or_negative_hold": int(bad_order.sum()),
    }


def _press_order(df: pd.DataFrame) -> tuple[bool, dict]:
    seq, press = df["sequence_id"].to_numpy(), df["press_ms"].to_numpy()
    following = seq[1:] != 0  # the next row is the same task's next keystroke
    gaps = int((following & (seq[1:] != seq[:-1] + 1)).sum()) + int(len(seq) > 0 and seq[0] != 0)
    back = int((following & (press[1:] < press[:-1])).sum())
    bad_hold = int((df["HL"] != df["release_ms"] - df["press_ms"]).sum() + (df["HL"] < 0).sum())
    return gaps + back + bad_hold == 0, {
        "sequence_gaps": gaps,
        "presses_out_of_order": back,
        "holds_not_release_minus_press_or_negative": bad_hold,
    }


KEYSTROKE_CHECKS = [
    has_columns(KEYSTROKE_COLUMNS),
    no_nulls([c for c in KEYSTROKE_COLUMNS if c not in ("platform_id", "video_id")]),
    non_empty(),
    OutputCheck(
        "press_order",
        "Task by task, keystrokes numbered 0, 1, 2, ... in press order; HL = release_ms - press_ms >= 0.",
        _press_order,
    ),
]
CHECKS = [
    has_columns(KEYPAIR_COLUMNS),
    no_nulls([c for c in KEYPAIR_COLUMNS if c not in ("platform_id", "video_id")]),
    non_empty(),
    OutputCheck(
        "latency_identities",
        "On every pair PL = HL + IL and RL = PL + HL2 - HL1; presses in order; holds non-negative.",
        _latency_identities,
    ),
]


# Column meanings of keystrokes where they differ from the shared ones (schema.py), units included.
KEYSTROKE_DESCRIPTIONS = {
    "sequence_id": "index of the keystroke within its task in press order, from 0",
    "key": "key as typed in the press event; an empty key name (`P,,<t>`) is `Unidentified`",
    "press_ms": "press time, ms on the file's own clock",
    "release_ms": "release time, ms on the file's own clock",
    "HL": "hold latency = release_ms - press_ms, ms",
}


def _valid(df: pd.DataFrame, constraints: list[PandasColumn], name: str) -> None:
    """Column constraints on one segment: a violation stops the step, with its reason. Column by
    column, not dg.check_dagster_type: that builds an ephemeral instance per call (~0.1 s a segment)."""
    try:
        for column in constraints:
            column.validate(df)
    except ConstraintViolationException as e:
        raise dg.Failure(description=f"{name} not valid: {e}", allow_retries=False) from e


def valid_keypairs(pairs: pd.DataFrame) -> None:
    _valid(pairs, KEYPAIR_CONSTRAINTS, "keypairs")


def valid_keystrokes(strokes: pd.DataFrame) -> None:
    _valid(strokes, KEYSTROKE_CONSTRAINTS, "keystrokes")


def describe_thresholds(thresholds: dict[str, OutlierThresholds]) -> str:
    """The outlier rule of every device type, as the UI shows it."""
    return "; ".join(
        f"{device}: "
        + " or ".join(
            ([f"HL < {t.hl_min_ms}"] if t.hl_min_ms > 0 else []) + [f"HL > {t.hl_max_ms}", f"|IL| > {t.il_abs_max_ms}"]
        )
        + " ms"
        for device, t in thresholds.items()
    )


def keypairs_of_segment(cleaned_data: pd.DataFrame, thresholds: dict) -> dict[str, Made]:
    """One segment's keystrokes and keypairs from its cleaned_data; keypairs' facts: the quality
    counts per participant, the outlier count and the latency histograms' counts."""
    limits = {device: OutlierThresholds(**t) for device, t in thresholds.items()}
    strokes, quality = keystrokes_from_events(cleaned_data)
    valid_keystrokes(strokes)
    strokes.attrs["column_descriptions"] = KEYSTROKE_DESCRIPTIONS
    pairs = pairs_from_keystrokes(strokes, limits)
    valid_keypairs(pairs)
    pairs.attrs["column_descriptions"] = {
        "outlier": f"by the pair's device type (outlier_rules): {describe_thresholds(limits)}"
    }
    per_user = quality.join(quality_table(pairs, quality)[["keypairs", "outlier_share"]], how="outer")
    facts = {
        "outliers": int(pairs["outlier"].sum()),
        "per_user": per_user.reset_index().to_dict("list"),
        "latencies": latency_summary(pairs),
    }
    return {"keystrokes": Made(strokes), "keypairs": Made(pairs, facts)}


STAGE = Stage(
    keypairs_of_segment,
    outputs=(Output(KEYSTROKES, tuple(KEYSTROKE_CHECKS)), Output(KEYPAIRS, tuple(CHECKS))),
    code_version="3",
    reads=(Read(CLEANED_DATA),),
)


def quality_metadata(facts: list[dict], thresholds: dict[str, OutlierThresholds]) -> dict:
    """keypairs' metadata from its segments' facts: what was dropped, outliers, per participant."""
    per_user = pd.concat([pd.DataFrame(f["per_user"]) for f in facts], ignore_index=True).set_index("user_id")
    per_user = per_user.reindex(columns=[*QUALITY_COUNTS, *RENAMED_COUNTS, "keypairs", "outlier_share"])
    totals = per_user.sum()
    pairs = int(per_user["keypairs"].fillna(0).sum())
    outliers = sum(f["outliers"] for f in facts)
    quality = per_user[QUALITY_COUNTS].fillna(0)
    return {
        **{f"dropped/{k}": int(totals.get(k, 0)) for k in QUALITY_COUNTS},
        **{k: int(totals.get(k, 0)) for k in RENAMED_COUNTS},
        "outlier_thresholds": describe_thresholds(thresholds),
        "outliers": outliers,
        "outlier_share": outliers / pairs if pairs else 0.0,
        "participants": int((per_user["keypairs"] > 0).sum()),
        "quality_per_participant": report_table(
            per_user[[*QUALITY_COUNTS, *RENAMED_COUNTS, "outlier_share"]].round(4).reset_index()
        ),
        "latency_histograms": latency_histograms(merge_latency_summaries([f["latencies"] for f in facts]), thresholds),
        "participant_quality_plot": participant_quality(
            per_user[["keypairs", "outlier_share"]].fillna({"keypairs": 0}).assign(dropped_events=quality.sum(axis=1))
        ),
    }


@version_multi_asset(
    {
        "keystrokes": dict(
            group_name="keystrokes",
            code_version=STAGE.code_version,
            description=(
                "Every keystroke of every task (docs/features.md §1), task by task in press order: the task's ids, "
                "sequence_id (index in the task), key as recorded (an empty key name is `Unidentified`), keycode, "
                "press_ms, release_ms and HL = release - press, in ms. Exact duplicate events, auto-repeat presses, "
                "orphan releases and unreleased presses are dropped (counted in keypairs' quality report). A task of "
                "one keystroke is here though it has no pair. Made with keypairs, one participant segment at a time."
            ),
        ),
        "keypairs": dict(
            group_name="keystrokes",
            code_version=STAGE.code_version,
            description=(
                "Consecutive keystrokes of every task as pairs (docs/features.md §1-2): HL = release1 - press1, "
                "IL = press2 - release1, PL = press2 - press1, RL = release2 - release1, all in ms; outlier by the "
                "pair's device type, thresholds from the `outlier_rules` resource (defaults: desktop HL > 2000 or "
                "HL < 30 or |IL| > 1000; mobile HL > 2000 or |IL| > 1000, a phone's holds being a few ms). The "
                "quality report counts what was dropped and the empty key names kept as `Unidentified`. Computed "
                "and stored one participant segment at a time (dagster-pandas column constraints checked on each)."
            ),
        ),
    },
    check_specs=[*check_specs(KEYSTROKES, KEYSTROKE_CHECKS), *check_specs(KEYPAIRS, CHECKS)],
)
def keypairs(
    context: dg.AssetExecutionContext,
    cleaned_data: SegmentList,
    outlier_rules: OutlierRules,
    storage: ObjectStore,
    segment_executor: SegmentExecutor,
):
    thresholds = outlier_rules.thresholds()
    yield from engine.materialize(
        context,
        STAGE,
        {"thresholds": outlier_rules.as_params()},
        engine.plan(STAGE, {"cleaned_data": cleaned_data}),
        storage,
        segment_executor,
        metadata={KEYPAIRS: lambda facts: quality_metadata(facts, thresholds)},
    )
