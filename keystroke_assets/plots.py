"""Figures attached to materializations as inline markdown images, so the UI shows at a glance
whether a version looks right: latency histograms and a per-participant quality view.

Each function takes plain DataFrames and returns a `MetadataValue.md` holding one small PNG
(about 900 x 600 px) as a base64 data URI.
"""

import base64
import io

import dagster as dg
import numpy as np
import pandas as pd

from keystroke_assets.keystrokes import LATENCIES, QUALITY_COUNTS, OutlierThresholds

DPI = 100
SIZE = (9, 6)  # inches at DPI: 900 x 600 px
DEVICE_COLORS = {"desktop": "tab:blue", "mobile": "tab:orange"}


def _figure(figsize: tuple[float, float] = SIZE):
    """A bare matplotlib Figure, imported when a figure is drawn: every process that loads the code
    location (code server, run workers, the CLI) would otherwise pay for it. No pyplot: it sets up
    a GUI backend and keeps figures alive, neither of which a PNG needs."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=DPI)


def png_markdown(fig, alt: str) -> dg.MetadataValue:
    """The figure as an inline markdown image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")


def _title(ax, text: str) -> None:
    # a fixed title position: matplotlib would otherwise measure every tick label to place it
    ax.set_title(text, fontsize=9, y=1.0, pad=4)


def _threshold_lines(t: OutlierThresholds) -> dict[str, list[int]]:
    """Where a device type's outlier thresholds lie on each latency's axis (ms); HL's lower bound
    only where there is one (mobile has none: 0)."""
    return {
        "HL": ([t.hl_min_ms] if t.hl_min_ms > 0 else []) + [t.hl_max_ms],
        "IL": [-t.il_abs_max_ms, t.il_abs_max_ms],
        "PL": [],
        "RL": [],
    }


def latency_histograms(
    pairs: pd.DataFrame, thresholds: dict[str, OutlierThresholds], total: int | None = None
) -> dg.MetadataValue:
    """HL, IL, PL, RL histograms per device type of `pairs`: every pair, or an even sample of
    `total` pairs (the counts in the legend are the sample's). Top row: linear, 1st to 95th percentile (the bulk).
    Bottom row: every value; HL, PL, RL on a log time axis (they are positive with long tails;
    values below 1 ms count in the first bin), IL (negative when keys overlap) on a linear axis
    with log counts. Dotted lines: each device type's outlier thresholds (`thresholds`, the
    outlier_rules setting; docs/features.md §2), in its colour."""
    from matplotlib.ticker import NullLocator

    fig = _figure()
    axes = fig.subplots(2, 4)
    device = pairs["device_type"].astype("category")  # compares by code, not string by string
    devices = {d: m for d in DEVICE_COLORS if (m := (device == d).to_numpy()).any()}
    for col, latency in enumerate(LATENCIES):
        values = pairs[latency].to_numpy(dtype=np.float64)
        lo, hi = np.percentile(values, [1, 95]) if len(values) else (0.0, 1.0)
        low, top = (values.min(), values.max()) if len(values) else (0.0, 1.0)
        log_time = latency != "IL"
        for row in range(2):
            ax = axes[row, col]
            if row == 0:
                edges, x = np.linspace(lo, max(hi, lo + 1), 51), values
            elif log_time:
                edges, x = np.linspace(0, np.log10(max(top, 10)), 61), np.log10(np.maximum(values, 1))
            else:
                edges, x = np.linspace(low, max(top, low + 1), 81), values
            for name, mask in devices.items():
                # bins as a count and a range: np.histogram's fast path (edges make it sort)
                counts, _ = np.histogram(x[mask], bins=len(edges) - 1, range=(edges[0], edges[-1]))
                ax.stairs(
                    counts,
                    10**edges if row and log_time else edges,
                    color=DEVICE_COLORS[name],
                    label=f"{name} ({int(mask.sum()):,})",
                )
            span = (10 ** edges[[0, -1]]) if row and log_time else edges[[0, -1]]
            for name in devices:
                for t in _threshold_lines(thresholds[name])[latency]:
                    if span[0] <= t <= span[1]:
                        ax.axvline(t, color=DEVICE_COLORS[name], linestyle=":", linewidth=1)
            if row == 0:
                _title(ax, f"{latency} (ms), 1st-95th percentile")
            elif log_time:
                ax.set_xscale("log")
                ax.xaxis.set_minor_locator(NullLocator())  # minor log ticks cost ~0.5 s to draw
                _title(ax, f"{latency} (ms), all, log time")
            else:
                ax.set_yscale("log")
                ax.yaxis.set_minor_locator(NullLocator())
                _title(ax, f"{latency} (ms), all, log count")
            ax.tick_params(labelsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=8)
    drawn = f"{len(pairs):,} pairs" if total in (None, len(pairs)) else f"a sample of {len(pairs):,} of {total:,} pairs"
    fig.suptitle(f"Keypair latencies, {drawn} (dotted: each device type's outlier thresholds)", fontsize=10)
    # fixed margins: tight_layout measures every tick label and takes seconds
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.06, top=0.86, wspace=0.3, hspace=0.35)
    return png_markdown(fig, "latency histograms")


def quality_table(pairs: pd.DataFrame, quality_per_user: pd.DataFrame) -> pd.DataFrame:
    """Per participant: keypairs, outlier share, dropped events (the QUALITY_COUNTS of quality_per_user)."""
    per_user = pairs.groupby("user_id", observed=True).agg(
        keypairs=("outlier", "size"), outlier_share=("outlier", "mean")
    )
    dropped = quality_per_user[QUALITY_COUNTS].sum(axis=1).rename("dropped_events")
    return per_user.join(dropped, how="outer").fillna({"keypairs": 0, "dropped_events": 0})


def participant_quality(table: pd.DataFrame) -> dg.MetadataValue:
    """Of a quality_table: left, every participant as a point (keypairs vs outlier share, size =
    dropped events); then the 15 participants with the most dropped events and the 15 with the
    highest outlier share."""
    fig = _figure()
    left, middle, right = fig.subplots(1, 3, gridspec_kw={"width_ratios": [2.2, 1, 1]})
    left.scatter(
        table["keypairs"],
        table["outlier_share"],
        s=10 + 4 * np.sqrt(table["dropped_events"]),
        alpha=0.6,
        edgecolor="k",
        linewidth=0.3,
    )
    left.set_xlabel("keypairs", fontsize=8)
    left.set_ylabel("outlier share", fontsize=8)
    _title(left, f"{len(table)} participants (size: dropped events)")
    left.tick_params(labelsize=7)
    for ax, column, title in [
        (middle, "dropped_events", "most dropped events"),
        (right, "outlier_share", "highest outlier share"),
    ]:
        top = table[column].fillna(0).sort_values(ascending=True).tail(15)
        ax.barh([u[:8] for u in top.index.astype(str)], top.to_numpy(), color="tab:red")
        _title(ax, title)
        ax.tick_params(labelsize=6)
    fig.suptitle("Data quality per participant (ids shortened to 8 characters)", fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.09, top=0.88, wspace=0.45)
    return png_markdown(fig, "participant quality")


def user_medians(user_rows: pd.DataFrame) -> dg.MetadataValue:
    """How participants differ: one histogram per latency of every user's median (ms), the
    view in which a user typing unlike everyone else, or a whole version shifted, stands out."""
    fig = _figure(figsize=(SIZE[0], SIZE[1] / 2))
    axes = fig.subplots(1, 4)
    for ax, latency in zip(axes, LATENCIES):
        medians = user_rows[f"{latency}_median"].dropna().to_numpy()
        ax.hist(medians, bins=30, color="tab:blue")
        _title(ax, f"{latency} median per user (ms)")
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{len(user_rows)} participants, non-outlier pairs", fontsize=10)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.16, top=0.80, wspace=0.3)
    return png_markdown(fig, "user medians")
