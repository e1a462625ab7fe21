"""Small DataFrame helpers used by several stages."""

from collections.abc import Iterable

import numpy as np
import pandas as pd


def without_attrs(df: pd.DataFrame) -> pd.DataFrame:
    """A view of df without `attrs` (column descriptions): pandas deep-copies attrs on every column
    access, which cost seconds for a feature table of a thousand described columns."""
    df = df.copy(deep=False)
    df.attrs = {}
    return df


def group_codes(df: pd.DataFrame, by: list[str], columns: list[str] | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Group number of every row (groups sorted, nulls kept as a group after the others) and one
    row per group with `columns` (default: `by`) taken from the group's first row.

    The columns' sorted codes are packed into one int64 key, grouped by hashing: ~2x faster than
    a pandas groupby over several columns. Rows of a group mostly come together (a task's events,
    a user's pairs), so only the first row of each run of equal values is keyed and hashed."""
    codes = []
    size = 1
    for column in by:
        column_codes, n = _sorted_codes(df[column])
        size *= n
        if size >= 2**62:  # too many combinations for one int64: pandas groups them
            groups = df.groupby(by, sort=True, dropna=False, observed=True).ngroup().to_numpy()
            firsts = pd.Series(np.arange(len(df))).groupby(groups).first().to_numpy()
            return groups, df.iloc[firsts][columns or by].reset_index(drop=True)
        codes.append((column_codes, n))
    new_run = np.zeros(len(df), dtype=bool)
    new_run[:1] = True
    for column_codes, _ in codes:
        new_run[1:] |= column_codes[1:] != column_codes[:-1]
    starts = np.flatnonzero(new_run)
    key = np.zeros(len(starts), np.int64)
    for column_codes, n in codes:
        key = key * n + column_codes[starts]
    # keys numbered by hashing in order of first appearance, then renumbered in key order: no sort
    # of all rows. A key is new where its number exceeds every number before it.
    seen, uniques = pd.factorize(key)
    first = np.ones(len(seen), dtype=bool)
    first[1:] = seen[1:] > np.maximum.accumulate(seen)[:-1]
    order = np.argsort(uniques)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    group_rows = starts[np.flatnonzero(first)[order]]
    return np.repeat(rank[seen], np.diff(np.r_[starts, len(df)])), df.iloc[group_rows][columns or by].reset_index(
        drop=True
    )


def _sorted_codes(values: pd.Series) -> tuple[np.ndarray, int]:
    """Codes numbering the values in sorted order (categoricals: category order), null last, and
    how many codes there are."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes, n = values.cat.codes.to_numpy().astype(np.int64), len(values.cat.categories)
    else:
        codes, uniques = pd.factorize(values, sort=True)
        codes, n = codes.astype(np.int64), len(uniques)
    return np.where(codes < 0, n, codes), n + 1


def run_starts(values: np.ndarray) -> np.ndarray:
    """Where each run of equal neighbouring values begins (a participant's rows, when ordered)."""
    return np.flatnonzero(np.r_[True, values[1:] != values[:-1]]) if len(values) else np.zeros(0, np.int64)


def drop_unused_categories(values: pd.Series) -> pd.Series:
    """`.cat.remove_unused_categories()` by a count and a lookup of the codes (pandas' own finds the
    unique codes by hashing: ~0.2 s per column of 4M rows)."""
    codes = values.cat.codes.to_numpy()
    used = np.bincount(codes[codes >= 0], minlength=len(values.cat.categories)) > 0
    if used.all():
        return values
    new_code = np.where(used, np.cumsum(used) - 1, -1)
    return pd.Series(
        pd.Categorical.from_codes(
            np.where(codes >= 0, new_code[codes], -1),
            dtype=pd.CategoricalDtype(values.cat.categories[used], ordered=values.cat.ordered),
        ),
        index=values.index,
        name=values.name,
    )


def stack_tables(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Tables of the same columns stacked, a categorical column still categorical when the tables'
    categories differ (pd.concat would make it object), with only the categories used, sorted by
    their text: the same whichever tables (segments) the rows came in, as a version's table read
    back (lib.segments.version_table)."""
    tables = list(tables)
    stacked = pd.concat(tables, ignore_index=True)
    for column in tables[0].columns:
        if isinstance(tables[0][column].dtype, pd.CategoricalDtype):
            values = stacked[column]
            if values.dtype == object:
                values = pd.Series(pd.api.types.union_categoricals([t[column] for t in tables]), name=column)
            categories = drop_unused_categories(values).cat.categories
            order = np.argsort(categories.astype(str), kind="stable")
            stacked[column] = values.cat.set_categories(categories[order])
    return stacked
