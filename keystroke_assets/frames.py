"""Small DataFrame helpers used by several stages."""

import numpy as np
import pandas as pd


def group_codes(df: pd.DataFrame, by: list[str], columns: list[str] | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Group number of every row (groups sorted, nulls kept as a group) and one row per group
    with `columns` (default: `by`) taken from the group's first row."""
    codes = df.groupby(by, sort=True, dropna=False, observed=True).ngroup().to_numpy()
    firsts = pd.Series(np.arange(len(df))).groupby(codes).first().to_numpy()
    return codes, df.iloc[firsts][columns or by].reset_index(drop=True)
