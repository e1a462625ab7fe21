"""What every feature type shares: grouped statistics, key identity, the asset decorator."""

import numpy as np
import pandas as pd

from keystroke_assets.assets.common import version_asset
from keystroke_assets.frames import group_codes
from keystroke_assets.keycodes import key_identity

__all__ = ["feature_asset", "grouped_stats", "group_codes", "key_identity", "task_keystrokes", "STAT_DESCRIPTIONS"]

STAT_DESCRIPTIONS = {
    "count": "number of values",
    "mean": "mean",
    "std": "standard deviation (ddof = 1; missing when n < 2)",
    "min": "minimum",
    "p05": "5th percentile (linear interpolation)",
    "q1": "first quartile (linear interpolation)",
    "median": "median",
    "q3": "third quartile (linear interpolation)",
    "p95": "95th percentile (linear interpolation)",
    "max": "maximum",
    "iqr": "q3 - q1",
    "skewness": "adjusted Fisher-Pearson sample skewness G1 (missing when n < 3)",
    "kurtosis": "sample excess kurtosis G2 (missing when n < 4)",
}
_QUANTILES = {"min": 0.0, "p05": 0.05, "q1": 0.25, "median": 0.5, "q3": 0.75, "p95": 0.95, "max": 1.0}


def feature_asset(name: str, **kwargs):
    """@asset for a feature type: key `features/<name>`, group `features`."""
    *prefix, last = name.split("/")
    return version_asset(name=last, key_prefix=["features", *prefix], group_name="features", **kwargs)


def grouped_stats(group: np.ndarray, values: np.ndarray, n_groups: int, stats: list[str]) -> dict[str, np.ndarray]:
    """Statistics of `values` per group code 0..n_groups-1 in one sort; NaN for empty groups.

    Quantiles interpolate linearly between order statistics (numpy's default method).
    """
    values = np.asarray(values, dtype=np.float64)
    group = np.asarray(group, dtype=np.int64)
    order = np.lexsort((values, group))
    g, v = group[order], values[order]
    n = np.bincount(g, minlength=n_groups)
    start = np.r_[0, np.cumsum(n)[:-1]]
    empty = n == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(g, weights=v, minlength=n_groups) / n
        dev = v - mean[g]
        m2 = np.bincount(g, weights=dev**2, minlength=n_groups)

        def quantile(q: float) -> np.ndarray:
            pos = (np.maximum(n, 1) - 1) * q
            lo = np.floor(pos).astype(np.int64)
            i = np.minimum(start + lo, max(len(v) - 1, 0))
            j = np.minimum(np.minimum(i + 1, start + np.maximum(n, 1) - 1), max(len(v) - 1, 0))
            out = v[i] + (pos - lo) * (v[j] - v[i]) if len(v) else np.full(n_groups, np.nan)
            return np.where(empty, np.nan, out)

        out = {}
        for stat in stats:
            if stat == "count":
                out[stat] = n.astype(np.float64)
            elif stat == "mean":
                out[stat] = np.where(empty, np.nan, mean)
            elif stat == "std":
                out[stat] = np.where(n >= 2, np.sqrt(m2 / (n - 1)), np.nan)
            elif stat in _QUANTILES:
                out[stat] = quantile(_QUANTILES[stat])
            elif stat == "iqr":
                out[stat] = quantile(0.75) - quantile(0.25)
            elif stat == "skewness":
                m3 = np.bincount(g, weights=dev**3, minlength=n_groups) / n
                g1 = m3 / (m2 / n) ** 1.5
                out[stat] = np.where((n >= 3) & (m2 > 0), np.sqrt(n * (n - 1)) / (n - 2) * g1, np.nan)
            elif stat == "kurtosis":
                m4 = np.bincount(g, weights=dev**4, minlength=n_groups) / n
                g2 = m4 / (m2 / n) ** 2 - 3
                out[stat] = np.where(
                    (n >= 4) & (m2 > 0), ((n + 1) * g2 + 6) * (n - 1) / ((n - 2) * (n - 3)), np.nan
                )
            else:
                raise ValueError(f"unknown statistic {stat!r}; known: {', '.join(STAT_DESCRIPTIONS)}")
    return out


def task_keystrokes(pairs: pd.DataFrame, carry: list[str]) -> pd.DataFrame:
    """Every keystroke of every task rebuilt from keypairs: key1 of each pair plus key2 of the
    task's last pair, with `carry` columns, key, keycode, press_ms, release_ms, HL (ms) and
    sequence_id (the keystroke's index in its task). Rows stay in task and press order."""
    # keypairs are stored task by task in sequence order: a task's last pair is followed by a 0.
    seq = pairs["sequence_id"].to_numpy()
    last = np.r_[seq[1:] == 0, True] if len(pairs) else np.zeros(0, bool)
    first = pd.DataFrame(
        {"_row": np.arange(len(pairs)) * 2, "key": pairs["key1"].to_numpy(), "keycode": pairs["keycode1"].to_numpy(),
         "press_ms": pairs["key1_press"].to_numpy(), "release_ms": pairs["key1_release"].to_numpy(), "sequence_id": seq}
    )
    final = pd.DataFrame(
        {"_row": np.flatnonzero(last) * 2 + 1, "key": pairs["key2"].to_numpy()[last],
         "keycode": pairs["keycode2"].to_numpy()[last], "press_ms": pairs["key2_press"].to_numpy()[last],
         "release_ms": pairs["key2_release"].to_numpy()[last], "sequence_id": seq[last] + 1}
    )
    strokes = pd.concat([first, final], ignore_index=True)
    source = np.r_[np.arange(len(pairs)), np.flatnonzero(last)]
    for column in carry:
        strokes[column] = pairs[column].to_numpy()[source]
    strokes = strokes.sort_values("_row", kind="stable").drop(columns="_row").reset_index(drop=True)
    strokes["HL"] = strokes["release_ms"] - strokes["press_ms"]
    return strokes
