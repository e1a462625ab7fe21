"""The benchmark's figures, inline PNGs in the UI as the project's other plots."""

import numpy as np
import pandas as pd

from keystroke_assets.lib.metadata import Markdown
from keystroke_assets.lib.plots import DEVICE_COLORS, SIZE, _figure, _styled, _title, log_scale, png_markdown

DET_POINTS = 1000  # points drawn per curve, spread evenly on the log FMR axis


def _thinned(fmr: np.ndarray, fnmr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    positive = fmr[fmr > 0]
    if len(fmr) <= DET_POINTS or not len(positive):
        return fmr, fnmr
    grid = np.r_[0.0, np.geomspace(positive[0], 1.0, DET_POINTS)]
    at = np.unique(np.minimum(np.searchsorted(fmr, grid), len(fmr) - 1))
    return fmr[at], fnmr[at]


@_styled
def det_curves(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str) -> Markdown:
    """DET curves {device type: (FMR, FNMR, EER)} on log axes, each with its EER point; rates
    of 0 drawn at the axes' lower edge."""
    fig = _figure(figsize=(SIZE[0] * 0.7, SIZE[1]))
    ax = fig.subplots()
    low = 1e-4
    for device, (fmr, fnmr, eer) in curves.items():
        x, y = _thinned(fmr, fnmr)
        ax.plot(
            np.maximum(x, low), np.maximum(y, low), color=DEVICE_COLORS.get(device), label=f"{device}: EER {eer:.1%}"
        )
        ax.plot([max(eer, low)], [max(eer, low)], "o", color=DEVICE_COLORS.get(device))
    ax.plot([low, 1], [low, 1], color="grey", linestyle=":", linewidth=1)
    log_scale(ax, "x", "{x:g}")
    log_scale(ax, "y", "{x:g}")
    ax.set_xlim(low, 1)
    ax.set_ylim(low, 1)
    ax.set_xlabel("FMR (impostors accepted)", fontsize=8)
    ax.set_ylabel("FNMR (genuine rejected)", fontsize=8)
    ax.legend(fontsize=8, loc="lower left")
    _title(ax, f"DET, {title} (dotted: FMR = FNMR)")
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.1, top=0.93)
    return png_markdown(fig, "DET curves")


@_styled
def score_histograms(scores: dict[str, tuple[np.ndarray, np.ndarray, int]], title: str) -> Markdown:
    """Genuine and impostor score densities per device type {device: (genuine scores, a sample of
    the impostor scores, impostors)}, one panel each, up to the larger 99th percentile of the two."""
    fig = _figure(figsize=(SIZE[0], SIZE[1] / 2))
    axes = np.atleast_1d(fig.subplots(1, len(scores)))
    for ax, (device, (genuine, sample, impostors)) in zip(axes, scores.items()):
        top = max(float(np.quantile(v, 0.99, method="lower")) for v in (genuine, sample) if len(v)) or 1.0
        sampled = "" if len(sample) == impostors else f"a sample of {len(sample):,} of "
        for values, name, color in [
            (sample, f"impostor ({sampled}{impostors:,})", "tab:red"),
            (genuine, f"genuine ({len(genuine):,})", "tab:green"),
        ]:
            counts, edges = np.histogram(values, bins=50, range=(0, top))
            ax.stairs(counts / max(len(values), 1), edges, color=color, label=name)
        ax.set_xlabel("scaled Manhattan distance", fontsize=8)
        ax.legend(fontsize=7)
        _title(ax, f"{device}: share of scores per bin")
    fig.suptitle(f"Scores, {title}", fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.82, wspace=0.25)
    return png_markdown(fig, "score histograms")


# Published EERs the Aalto TypeNet protocol's figure sits beside (docs/evaluation.md)
REFERENCES = {
    "TypeNet, trained LSTM, 5 enrolment sequences (Acien et al. 2021)": 0.022,
    "scaled Manhattan, CMU benchmark (Killourhy & Maxion 2009)": 0.096,
}


@_styled
def enrolment_curves(curves: pd.DataFrame) -> Markdown:
    """Against the samples each user enrolled, a line per feature type: the enrolment curve's EER
    per device type of the web-app users, and TypeNet's protocol's mean per-subject EER (as TypeNet
    reports it) of the Aalto users with the published EERs as dotted lines. Rows as the summary's."""
    panels = [
        (device, source, protocol)
        for (device, source, protocol), _ in curves.groupby(["device_type", "stratum", "protocol"], sort=True)
    ]
    fig = _figure(figsize=(SIZE[0], SIZE[1] / 2))
    axes = np.atleast_1d(fig.subplots(1, max(len(panels), 1)))
    for ax, (device, source, protocol) in zip(axes, panels):
        typenet = protocol == "TypeNet"
        rows = curves[
            (curves["device_type"] == device) & (curves["stratum"] == source) & (curves["protocol"] == protocol)
        ]
        for feature, line in rows.groupby("feature", sort=True):
            ax.plot(
                line["enrolment"], line["mean_subject_eer" if typenet else "eer"], "o-", markersize=3, label=feature
            )
        if typenet:
            for name, eer in REFERENCES.items():
                ax.axhline(eer, color="grey", linestyle=":", linewidth=1)
                ax.text(ax.get_xlim()[0], eer, f" {name}: {eer:.1%}", fontsize=5, va="bottom")
        ax.set_ylim(0, 0.55)
        ax.set_xlabel(f"{'sections' if typenet else 'session-1 samples'} enrolled per user", fontsize=8)
        ax.set_ylabel("mean per-subject EER" if typenet else "EER", fontsize=8)
        ax.legend(fontsize=6)
        _title(ax, f"{device}, {source}: {'TypeNet protocol' if typenet else 'enrolment curve'}")
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.16, top=0.88, wspace=0.25)
    return png_markdown(fig, "enrolment curves")


@_styled
def eer_bars(summary: pd.DataFrame) -> Markdown:
    """EER of every evaluated (feature, device type, stratum) of `summary` with its 95 % interval,
    best at the top."""
    rows = summary[summary["status"] == "evaluated"].iloc[::-1]
    fig = _figure(figsize=(SIZE[0], max(2.0, 0.3 * len(rows) + 1)))
    ax = fig.subplots()
    names = [
        f"{f}{' (' + lab + ')' if lab else ''} · {d}{'' if s in ('all', None) else ' · ' + s}"
        for f, lab, d, s in zip(
            rows["feature"], rows["label"], rows["device_type"], rows.get("stratum", [None] * len(rows))
        )
    ]
    ax.barh(names, rows["eer"], color=[DEVICE_COLORS.get(d, "grey") for d in rows["device_type"]])
    if "eer_low" in rows:
        low, high = rows["eer_low"].to_numpy(float), rows["eer_high"].to_numpy(float)
        eer = rows["eer"].to_numpy(float)
        spread = np.clip([eer - low, high - eer], 0, None)  # NaN (no interval) draws nothing
        ax.errorbar(eer, range(len(rows)), xerr=spread, fmt="none", ecolor="black", linewidth=0.8)
    for y, eer in enumerate(rows["eer"]):
        ax.text(eer, y, f" {eer:.1%}", va="center", fontsize=7)
    ax.set_xlim(0, 0.6)
    ax.set_xlabel("EER with its 95 % interval over users (lower tells typists apart better)", fontsize=8)
    _title(ax, "Equal error rate per feature type and device type")
    fig.subplots_adjust(left=0.35, right=0.97, bottom=0.6 / fig.get_figheight(), top=1 - 0.35 / fig.get_figheight())
    return png_markdown(fig, "EER per feature type")
