"""The benchmark's figures, inline PNGs in the UI as the project's other plots."""

import dagster as dg
import numpy as np
import pandas as pd

from keystroke_assets.evaluation.protocol import Scores
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
def det_curves(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str) -> dg.MetadataValue:
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
def score_histograms(scores: dict[str, Scores], title: str) -> dg.MetadataValue:
    """Genuine and impostor score densities per device type, one panel each, up to the larger
    99th percentile of the two (impostors: the Scores' sample of them)."""
    fig = _figure(figsize=(SIZE[0], SIZE[1] / 2))
    axes = np.atleast_1d(fig.subplots(1, len(scores)))
    for ax, (device, s) in zip(axes, scores.items()):
        top = max(float(v[int(0.99 * (len(v) - 1))]) for v in (s.genuine, s.impostor_sample) if len(v)) or 1.0
        sampled = "" if len(s.impostor_sample) == s.impostors else f"a sample of {len(s.impostor_sample):,} of "
        for values, name, color in [
            (s.impostor_sample, f"impostor ({sampled}{s.impostors:,})", "tab:red"),
            (s.genuine, f"genuine ({len(s.genuine):,})", "tab:green"),
        ]:
            counts, edges = np.histogram(values, bins=50, range=(0, top))
            ax.stairs(counts / max(len(values), 1), edges, color=color, label=name)
        ax.set_xlabel("scaled Manhattan distance", fontsize=8)
        ax.legend(fontsize=7)
        _title(ax, f"{device}: share of scores per bin")
    fig.suptitle(f"Scores, {title}", fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.82, wspace=0.25)
    return png_markdown(fig, "score histograms")


@_styled
def eer_bars(summary: pd.DataFrame) -> dg.MetadataValue:
    """EER of every evaluated (feature, device type), best at the top."""
    rows = summary[summary["status"] == "evaluated"].iloc[::-1]
    fig = _figure(figsize=(SIZE[0], max(2.0, 0.3 * len(rows) + 1)))
    ax = fig.subplots()
    names = [
        f"{f}{' (' + lab + ')' if lab else ''} · {d}"
        for f, lab, d in zip(rows["feature"], rows["label"], rows["device_type"])
    ]
    ax.barh(names, rows["eer"], color=[DEVICE_COLORS.get(d, "grey") for d in rows["device_type"]])
    for y, eer in enumerate(rows["eer"]):
        ax.text(eer, y, f" {eer:.1%}", va="center", fontsize=7)
    ax.set_xlim(0, 0.55)
    ax.set_xlabel("EER (lower tells typists apart better)", fontsize=8)
    _title(ax, "Equal error rate per feature type and device type")
    fig.subplots_adjust(left=0.35, right=0.97, bottom=0.6 / fig.get_figheight(), top=1 - 0.35 / fig.get_figheight())
    return png_markdown(fig, "EER per feature type")
