"""keypairs: consecutive keystroke pairs of every task with TypeNet latencies (ms)."""

import warnings

import dagster as dg
import pandas as pd
from dagster_pandas import PandasColumn
from dagster_pandas.constraints import ColumnDTypeInSetConstraint, ConstraintViolationException, NonNullableColumnConstraint

from keystroke_assets.assets.common import OutputCheck, ShardChecks, check_specs, has_columns, no_nulls, non_empty, report_table, version_asset
from keystroke_assets.frames import stack_shards
from keystroke_assets.keystrokes import KEYPAIR_COLUMNS, LATENCIES, QUALITY_COUNTS, keypairs as build_keypairs
from keystroke_assets.plots import latency_histograms, participant_quality, quality_table
from keystroke_assets.resources.parquet_io_manager import ParticipantShards, TableSpool

_MS = 10**13  # bound on any latency: more than 300 years in ms means a broken time

# dagster-pandas column constraints of keypairs: types, nulls, ranges (HL, IL, PL, RL in ms, spec/features.md §2).
# PandasColumn is marked beta: without the filter every process that loads the code location (each
# server, daemon and run worker) prints the same block of BetaWarnings, which nobody can act on.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    KEYPAIR_CONSTRAINTS = [
        *[PandasColumn(c, constraints=[ColumnDTypeInSetConstraint({"category"}), NonNullableColumnConstraint()])
          for c in ["user_id", "key1", "key2"]],
        PandasColumn.categorical_column("device_type", categories={"desktop", "mobile"}, non_nullable=True),
        PandasColumn.integer_column("sequence_id", min_value=0, non_nullable=True),
        *[PandasColumn.integer_column(c, min_value=0, non_nullable=True)
          for c in ["key1_press", "key1_release", "key2_press", "key2_release"]],
        PandasColumn.integer_column("HL", min_value=0, max_value=_MS, non_nullable=True),
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


# The histograms draw every pair up to about this many, an even sample beyond.
PLOT_PAIRS = 2_000_000


def valid_keypairs(pairs: pd.DataFrame) -> None:
    """KEYPAIR_CONSTRAINTS on one shard: a violation stops the step, with its reason. Column by
    column, not dg.check_dagster_type: that builds an ephemeral instance per call (~0.1 s a shard)."""
    try:
        for column in KEYPAIR_CONSTRAINTS:
            column.validate(pairs)
    except ConstraintViolationException as e:
        raise dg.Failure(description=f"keypairs not valid: {e}", allow_retries=False) from e


@version_asset(
    group_name="keystrokes",
    code_version="1",
    check_specs=check_specs("keypairs", CHECKS),
    description=(
        "Consecutive keystrokes of every task as pairs (spec/features.md §1-2): HL = release1 - press1, "
        "IL = press2 - release1, PL = press2 - press1, RL = release2 - release1, all in ms; "
        "outlier = HL > 2000 or HL < 30 or |IL| > 1000. Exact duplicate events, auto-repeat presses, "
        "orphan releases and unreleased presses are dropped and counted. Computed and stored one "
        "participant shard at a time (dagster-pandas column constraints checked on each)."
    ),
)
def keypairs(context: dg.AssetExecutionContext, cleaned_data: ParticipantShards):
    checks, quality, per_user, sample, outliers = ShardChecks(CHECKS), [], [], [], 0
    every = 1 + cleaned_data.rows // (2 * PLOT_PAIRS)  # a web-app keystroke is two events
    with TableSpool() as out:
        for events in cleaned_data.shards():
            pairs, shard_quality = build_keypairs(events)
            valid_keypairs(pairs)
            out.write(pairs)
            checks.add(pairs)
            outliers += int(pairs["outlier"].sum())
            quality.append(shard_quality)
            per_user.append(quality_table(pairs, shard_quality))
            sample.append(pairs[["device_type", *LATENCIES]].iloc[::every])
    quality, per_user = pd.concat(quality), pd.concat(per_user)
    totals = quality.sum()
    yield dg.Output(
        out,
        metadata={
            **{f"dropped/{k}": int(totals.get(k, 0)) for k in QUALITY_COUNTS},
            "outliers": outliers,
            "outlier_share": outliers / out.rows if out.rows else 0.0,
            "participants": int((per_user["keypairs"] > 0).sum()),
            "quality_per_participant": report_table(
                quality.join(per_user["outlier_share"].dropna().round(4)).reset_index()
            ),
            "latency_histograms": latency_histograms(stack_shards(sample), total=out.rows),
            "participant_quality_plot": participant_quality(per_user),
        },
    )
    yield from checks.results()
