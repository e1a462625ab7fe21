"""typenet_ml's fill (docs/features.md §3) and what was observed before it.

The stored table fills a missing cell of a row's own device type's columns with the user's mean of
the column over the user's observed groups, else the column mean over the observed cells of rows
of that device type, else 0: the team's rule, which carries a user's identity from one session
into another. `observed` keeps which cells were observed, so the values before the fill
(`unfilled_statistics`) and a fill fitted on given rows only (`fill_fitted_on`) can always be had
back from the stored table (docs/evaluation.md).
"""

import math

import numpy as np
import pandas as pd

FILL_RULES = ["observed", "user_mean", "column_mean", "zero"]


def column_sums(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of `values`, the sum of its observed (non-NaN) cells rounded once (math.fsum: the
    same in any row order), and that sum's rounding error, rounded. A segment stores both: their
    fsum over every segment is the whole column's sum rounded once, as if summed over its rows (the
    parts are exact to ~2^-106 of the sum), so the column mean is the same bit for bit."""
    observed = [column[~np.isnan(column)].tolist() for column in values.T]
    sums = [math.fsum(column) for column in observed]
    return np.array(sums, np.float64), np.array([math.fsum([*c, -s]) for c, s in zip(observed, sums)], np.float64)


def group_order(groups: pd.DataFrame) -> np.ndarray:
    """The rows of `groups` (a RangeIndex) in order of the group ids (user ids as text), whatever
    the segments' order or id dtypes."""
    ids = groups.drop(columns="device_type")
    ids = ids.astype({c: str for c in ids if not pd.api.types.is_numeric_dtype(ids[c])})
    return ids.sort_values(list(ids.columns), kind="stable").index.to_numpy()


def fill_values(
    groups: pd.DataFrame, values: np.ndarray, dictionary: pd.DataFrame, column_means: np.ndarray | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """fill_statistics of `values`, a column per row of `dictionary`. `column_means`: when the rows
    are one participant segment's, the version's column means (from every segment's summary). The
    table's last column, OBSERVED, records which cells were observed before the fill."""
    groups = groups.reset_index(drop=True)
    order = group_order(groups)
    groups = groups.iloc[order].reset_index(drop=True)
    values = values[order]
    observed = ~np.isnan(values)
    devices = groups["device_type"].astype(str).to_numpy()
    fit = np.ones(len(groups), bool)  # the stored rule: fitted on every row
    values, fills = _filled(values, devices, dictionary["device_type"].to_numpy(), groups["user_id"], fit, column_means)
    features = pd.concat([groups, pd.DataFrame(values, columns=dictionary["column"])], axis=1)
    features["device_type"] = features["device_type"].astype(str)
    features[OBSERVED] = pack_observed(observed)
    return features, dictionary, fills


def _filled(
    values: np.ndarray,
    row_device: np.ndarray,
    column_device: np.ndarray,
    users: pd.Series,
    fit: np.ndarray,
    column_means: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """(values filled in place, fill counts per device type): a missing cell of a row's own device
    type's columns gets, if the row is in `fit`, its user's mean of the column over the user's `fit`
    rows, else (or without one) the column mean over the `fit` rows of that device type
    (`column_means` when given), else 0; all means over observed cells. The other device type's
    columns stay null."""
    user_codes = pd.factorize(users)[0]
    fills = {}
    for device in np.unique(row_device):
        rows, columns = np.flatnonzero(row_device == device), np.flatnonzero(column_device == device)
        own = values[np.ix_(rows, columns)]  # before any fill
        missing = np.isnan(own)
        fitted = own if fit[rows].all() else np.where(fit[rows][:, None], own, np.nan)
        user_mean = pd.DataFrame(fitted).groupby(user_codes[rows]).transform("mean").to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):  # a column nobody has: NaN, then 0
            if column_means is not None:
                means = column_means[columns]
            elif fit.all():
                means = column_sums(own)[0] / (~missing).sum(axis=0)
            else:
                means = np.nansum(fitted, axis=0) / (~np.isnan(fitted)).sum(axis=0)
        column_mean = np.broadcast_to(means, own.shape)
        by_user = missing & fit[rows][:, None] & ~np.isnan(user_mean)
        by_column = missing & ~by_user & ~np.isnan(column_mean)
        by_zero = missing & ~by_user & ~by_column
        own = np.where(by_user, user_mean, np.where(by_column, column_mean, np.where(by_zero, 0.0, own)))
        values[np.ix_(rows, columns)] = own
        counts = dict(zip(FILL_RULES, (int(m.sum()) for m in (~missing, by_user, by_column, by_zero))))
        fills[str(device)] = {**counts, "cells": int(own.size), "filled_share": int(missing.sum()) / max(own.size, 1)}
    return values, fills


# Which statistic cells of a row were observed, before any fill: bits of the row's statistic columns
# in table order (np.packbits: most significant bit first), a list of bytes per row. Stored in the
# table itself, so that the stored values and what was observed of them can never come apart; a
# list, not text (a scan for personal data reads every text cell) nor numbers (not a feature).
OBSERVED = "observed"


def pack_observed(observed: np.ndarray) -> np.ndarray:
    """Each row of a boolean (rows, statistic columns) matrix as an array of the bytes of its bits."""
    packed = np.packbits(observed, axis=1)
    rows = np.empty(len(packed), dtype=object)
    rows[:] = list(packed)
    return rows


def statistic_columns(features: pd.DataFrame) -> list[str]:
    """The statistic columns of a typenet_ml table, in table order (`<device type>__...`)."""
    return [c for c in features.columns if "__" in c]


def observed_cells(features: pd.DataFrame) -> np.ndarray:
    """(rows, statistic columns) boolean: which cells of the stored table were observed before the fill."""
    columns = statistic_columns(features)
    width = (len(columns) + 7) // 8
    rows = features[OBSERVED].to_numpy()
    if any(len(row) != width for row in rows):
        raise ValueError(f"{OBSERVED}: not {width} bytes on every row for {len(columns)} statistic columns")
    bits = np.stack(rows).astype(np.uint8) if len(rows) else np.zeros((0, width), np.uint8)
    return np.unpackbits(bits, axis=1, count=len(columns)).astype(bool)


def unfilled_statistics(features: pd.DataFrame, dtype=np.float64) -> pd.DataFrame:
    """A typenet_ml table as it was before the fill: the ids and every statistic (as `dtype`),
    missing where the group had no observation (docs/features.md §3); nothing of another row in
    any cell."""
    columns = statistic_columns(features)
    values = np.where(observed_cells(features), features[columns].to_numpy(dtype), dtype(np.nan))
    statistics = pd.DataFrame(values, columns=columns, index=features.index, copy=False)
    return pd.concat([features.drop(columns=[*columns, OBSERVED]), statistics], axis=1, copy=False)


def fill_fitted_on(features: pd.DataFrame, fit: np.ndarray) -> tuple[pd.DataFrame, dict]:
    """A typenet_ml table's statistics filled again with every filled value fitted on the rows
    `fit` only (a boolean per row), so that rows outside it (a test split, probes) share no fitted
    value with them: a missing cell of a `fit` row takes its user's mean over the user's `fit` rows,
    else the column mean over the `fit` rows of its device type, else 0; a missing cell of any
    other row takes that column mean, else 0 (never anything of its own user). Observed cells
    stay. Returns the table and the fill counts per device type (FILL_RULES)."""
    fit = np.asarray(fit, dtype=bool)
    if fit.shape != (len(features),):
        raise ValueError(f"fit must be one boolean per row ({len(features)}), not of shape {fit.shape}")
    unfilled = unfilled_statistics(features)
    columns = statistic_columns(features)
    values, fills = _filled(
        unfilled[columns].to_numpy(np.float64, copy=True),
        features["device_type"].astype(str).to_numpy(),
        np.array([c.split("__", 1)[0] for c in columns]),
        features["user_id"],
        fit,
    )
    out = features.copy()
    out[columns] = values
    return out, fills


def merge_fills(parts: list[dict]) -> dict:
    """The fill counts (fill_statistics) of the version from those of its segments."""
    fills = {}
    for part in parts:
        for device, counts in part.items():
            total = fills.setdefault(device, dict.fromkeys([*FILL_RULES, "cells"], 0))
            for name in total:
                total[name] += counts[name]
    for total in fills.values():
        total["filled_share"] = (total["cells"] - total["observed"]) / max(total["cells"], 1)
    return dict(sorted(fills.items()))


def own_columns_filled(df: pd.DataFrame) -> tuple[bool, dict]:
    """No null in a row's own device type's columns; nothing but nulls in the other's."""
    devices = df["device_type"].to_numpy()
    columns = pd.Series([c for c in df.columns if "__" in c])
    column_device = columns.str.split("__").str[0].to_numpy()
    left_null = other_filled = 0
    for device in np.unique(column_device):
        block = df[columns[column_device == device]].isna().to_numpy()
        own = devices == device
        left_null += int(block[own].sum())
        other_filled += int((~block[~own]).sum())
    return left_null + other_filled == 0, {"own_cells_null": left_null, "other_device_cells_not_null": other_filled}


def observed_fits(df: pd.DataFrame) -> tuple[bool, dict]:
    """Every row's observed bits cover the statistic columns, and none is set in another device
    type's columns."""
    try:
        observed = observed_cells(df)
    except ValueError:
        return False, {"rows_with_other_widths": len(df), "other_device_cells_observed": 0}
    column_device = np.array([c.split("__", 1)[0] for c in statistic_columns(df)])
    devices, row_device = np.unique(df["device_type"].astype(str).to_numpy(), return_inverse=True)
    own = column_device[None, :] == devices[:, None]  # (device types, columns), compared once
    other = observed & ~own[row_device]
    return not other.any(), {"rows_with_other_widths": 0, "other_device_cells_observed": int(other.sum())}


OBSERVED_DESCRIPTION = (
    "which statistic cells of the row were observed before the fill: one bit per statistic column in table "
    "order (numpy.packbits, most significant bit first), as a list of bytes; typenet_ml_fill.observed_cells "
    "unpacks it, keystroke_assets.export.load(..., filled=False) gives the statistics before the fill"
)
