"""Figures attached to materializations as inline markdown images, so the UI shows at a glance
whether a version looks right: latency histograms and a per-participant quality view.

Each function takes plain DataFrames (the latency histograms: the merged latency summaries of a
version's segments, so that no step re-reads every pair) and returns a `MetadataValue.md` holding
one small PNG (about 900 x 600 px) as a base64 data URI.
"""

import base64
import functools
import io

import numpy as np
import pandas as pd

from keystroke_assets.lib.latencies import LATENCIES, QUALITY_COUNTS, OutlierThresholds
from keystroke_assets.lib.metadata import Markdown

DPI = 100
SIZE = (9, 6)  # inches at DPI: 900 x 600 px
DEVICE_COLORS = {"desktop": "tab:blue", "mobile": "tab:orange"}
# rcParams of every figure: tick labels sized once instead of by tick_params on every Axes, which
# re-styles each tick already made (~0.05 s of the latency histograms)
STYLE = {"xtick.labelsize": 7, "ytick.labelsize": 7}


def _styled(plot):
    """`plot` drawn under STYLE: the ticks are made when the figure is saved, so the whole of it."""

    @functools.wraps(plot)
    def styled(*args, **kwargs):
        from matplotlib import rc_context

        with rc_context(STYLE):
            return plot(*args, **kwargs)

    return styled


def _figure(figsize: tuple[float, float] = SIZE):
    """A bare matplotlib Figure, imported when a figure is drawn: every process that loads the code
    location (code server, run workers, the CLI) would otherwise pay for it. No pyplot: it sets up
    a GUI backend and keeps figures alive, neither of which a PNG needs."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=DPI)


def png_markdown(fig, alt: str) -> Markdown:
    """The figure as an inline markdown image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return Markdown(f"![{alt}](data:image/png;base64,{encoded})")


def log_scale(ax, which: str, labels: str = "{x:,.0f}") -> None:
    """A log scale on the x or y axis (`which`) of a matplotlib Axes, ticks at powers of ten only
    labelled in plain digits (`labels`, a str.format pattern of x): the default 10^n labels load
    matplotlib's math-text parser (~0.1 s in a new process), minor log ticks cost ~0.5 s to draw."""
    from matplotlib.ticker import NullLocator, StrMethodFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    getattr(ax, f"set_{which}scale")("log")
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(StrMethodFormatter(labels))


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


# The latency summaries' bins (ms), the same for every segment so that summaries add up exactly:
# 1 ms wide below LINEAR_MS in magnitude (a bin holds one integer latency), then PER_DOUBLING bins
# per doubling (wide 1/64 of their lower edge at most) out to ±2^30 ms (12 days); values beyond
# count in the outermost bins.
LINEAR_MS = 1024
PER_DOUBLING = 64
_TAIL = np.concatenate([2**n + np.arange(PER_DOUBLING) * (2**n // PER_DOUBLING) for n in range(10, 30)] + [[2**30]])
EDGES = np.concatenate([-_TAIL[::-1], np.arange(-LINEAR_MS + 1, LINEAR_MS), _TAIL])
# stored in every summary: summaries of other bins never add up with these
BINS = f"1 ms below {LINEAR_MS}, {PER_DOUBLING} per doubling to 2^30 ms"


def latency_summary(pairs: pd.DataFrame) -> dict:
    """What the latency histograms need of a table of keypairs, as JSON: per device type and
    latency, the smallest and largest value (ms) and the counts in EDGES' bins from the first
    occupied one ({"first": bin index, "counts": [...]}). Summaries of segments add up exactly
    (merge_latency_summaries); percentiles taken from them are numpy's on the rows below
    LINEAR_MS ms in magnitude and within one bin (1/64 of the value) beyond."""
    device = pairs["device_type"].astype("category")
    codes = device.cat.codes.to_numpy()
    device_types = {}
    for code, name in enumerate(device.cat.categories):
        mask = codes == code
        if mask.any():
            device_types[str(name)] = {latency: _binned(pairs[latency].to_numpy()[mask]) for latency in LATENCIES}
    return {"bins": BINS, "device_types": device_types}


def _binned(values: np.ndarray) -> dict:
    at = np.clip(np.searchsorted(EDGES, values, side="right") - 1, 0, len(EDGES) - 2)
    first = int(at.min())
    return {
        "min": int(values.min()),
        "max": int(values.max()),
        "first": first,
        "counts": np.bincount(at - first).tolist(),
    }


def merge_latency_summaries(summaries: list[dict]) -> dict:
    """The latency summary of the segments' pairs together: counts added bin by bin."""
    parts: dict[str, dict[str, list[dict]]] = {}
    for summary in summaries:
        if summary["bins"] != BINS:
            raise ValueError(f"a latency summary of other bins ({summary['bins']!r}) cannot add up with {BINS!r}")
        for name, latencies in summary["device_types"].items():
            for latency, binned in latencies.items():
                parts.setdefault(name, {}).setdefault(latency, []).append(binned)
    return {
        "bins": BINS,
        "device_types": {
            name: {latency: _added(binned) for latency, binned in latencies.items()}
            for name, latencies in parts.items()
        },
    }


def _added(parts: list[dict]) -> dict:
    first = min(p["first"] for p in parts)
    counts = np.zeros(max(p["first"] + len(p["counts"]) for p in parts) - first, dtype=np.int64)
    for p in parts:
        counts[p["first"] - first : p["first"] - first + len(p["counts"])] += p["counts"]
    return {
        "min": min(p["min"] for p in parts),
        "max": max(p["max"] for p in parts),
        "first": first,
        "counts": counts.tolist(),
    }


def _counts(binned: dict) -> np.ndarray:
    """A summary's counts over every bin of EDGES."""
    counts = np.zeros(len(EDGES) - 1, dtype=np.int64)
    counts[binned["first"] : binned["first"] + len(binned["counts"])] = binned["counts"]
    return counts


def _percentiles(counts: np.ndarray, q: list[float]) -> np.ndarray:
    """np.percentile (linear) of the values counted in EDGES' bins: a 1-ms bin holds the integer
    at its lower edge, a wider bin its values spread evenly."""
    cum = np.cumsum(counts)

    def ranked(r: np.ndarray) -> np.ndarray:  # the value of rank r (from 0) in sorted order
        i = np.searchsorted(cum, r, side="right")
        width = EDGES[i + 1] - EDGES[i]
        return EDGES[i] + np.where(width > 1, (r - (cum[i] - counts[i]) + 0.5) / counts[i] * width, 0)

    position = np.asarray(q) / 100 * (cum[-1] - 1)
    below = np.floor(position).astype(np.int64)
    low, high = ranked(below), ranked(np.minimum(below + 1, cum[-1] - 1))
    return low + (position - below) * (high - low)


def _between(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """How many of the values counted in EDGES' bins lie between consecutive `edges`, as
    np.histogram would count integer ms; a bin wider than 1 ms spread evenly over its width."""
    below = np.concatenate([[0], np.cumsum(counts)])  # values below each of EDGES
    at = np.where(np.abs(edges) < LINEAR_MS, np.ceil(edges), edges)
    return np.diff(np.interp(at, EDGES, below))


@_styled
def latency_histograms(summary: dict, thresholds: dict[str, OutlierThresholds]) -> Markdown:
    """HL, IL, PL, RL histograms per device type of a latency summary (merge_latency_summaries
    of a version's segments): every pair, counts exact to the summary's bins. Top row: linear,
    1st to 95th percentile of all device types (the bulk). Bottom row: every value; HL, PL, RL
    on a log time axis (they are positive with long tails; values below 1 ms count in the first
    bin), IL (negative when keys overlap) on a linear axis with log counts. Dotted lines: each
    device type's outlier thresholds (`thresholds`, the outlier_rules setting; docs/features.md
    §2), in its colour."""
    fig = _figure()
    axes = fig.subplots(2, 4)
    for ax in axes.flat:
        ax.locator_params(nbins=4)  # about 5 ticks, not 9, on each small panel: fewer artists to make
    drawn = {name: summary["device_types"][name] for name in DEVICE_COLORS if name in summary["device_types"]}
    pairs = {name: int(sum(latencies["HL"]["counts"])) for name, latencies in drawn.items()}
    for col, latency in enumerate(LATENCIES):
        counts = {name: _counts(latencies[latency]) for name, latencies in drawn.items()}
        if drawn:
            lo, hi = _percentiles(sum(counts.values()), [1, 95])
            low = min(latencies[latency]["min"] for latencies in drawn.values())
            top = max(latencies[latency]["max"] for latencies in drawn.values())
        else:
            lo, hi, low, top = 0.0, 1.0, 0, 1
        log_time = latency != "IL"
        for row in range(2):
            ax = axes[row, col]
            if row == 0:
                # at most 50 bins of whole ms from the 1st percentile's: each holds as many integer latencies
                span = np.floor(hi) + 1 - np.floor(lo)
                width = np.ceil(span / 50)
                edges = np.floor(lo) + width * np.arange(np.ceil(span / width) + 1)
            elif log_time:
                edges = np.logspace(0, np.log10(max(top, 10)), 61)
            else:
                edges = np.linspace(low, max(top, low + 1), 81)
            counted = edges.copy()
            if row == 1:  # every value: the outer bins take whatever lies beyond them
                counted[[0, -1]] = EDGES[[0, -1]]
            for name, c in counts.items():
                ax.stairs(_between(c, counted), edges, color=DEVICE_COLORS[name], label=f"{name} ({pairs[name]:,})")
            for name in drawn:
                for t in _threshold_lines(thresholds[name])[latency]:
                    if edges[0] <= t <= edges[-1]:
                        ax.axvline(t, color=DEVICE_COLORS[name], linestyle=":", linewidth=1)
            if row == 0:
                _title(ax, f"{latency} (ms), 1st-95th percentile")
            elif log_time:
                log_scale(ax, "x")
                _title(ax, f"{latency} (ms), all, log time")
            else:
                log_scale(ax, "y")
                ax.set_ylim(bottom=0.5)  # a bin wider than 1 ms spreads a lone value into fractions of one
                _title(ax, f"{latency} (ms), all, log count")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.suptitle(
        f"Keypair latencies, {sum(pairs.values()):,} pairs (dotted: each device type's outlier thresholds)", fontsize=10
    )
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


@_styled
def participant_quality(table: pd.DataFrame) -> Markdown:
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


@_styled
def user_medians(user_rows: pd.DataFrame) -> Markdown:
    """How participants differ: one histogram per latency of every user's median (ms), the
    view in which a user typing unlike everyone else, or a whole version shifted, stands out."""
    fig = _figure(figsize=(SIZE[0], SIZE[1] / 2))
    axes = fig.subplots(1, 4)
    for ax, latency in zip(axes, LATENCIES):
        ax.locator_params(nbins=4)
        medians = user_rows[f"{latency}_median"].dropna().to_numpy()
        ax.hist(medians, bins=30, color="tab:blue")
        _title(ax, f"{latency} median per user (ms)")
    fig.suptitle(f"{len(user_rows)} participants, non-outlier pairs", fontsize=10)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.16, top=0.80, wspace=0.3)
    return png_markdown(fig, "user medians")
