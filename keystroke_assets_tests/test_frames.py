"""Small DataFrame helpers, against pandas' own slower equivalents."""

import numpy as np
import pandas as pd

from keystroke_assets.frames import drop_unused_categories


def test_drop_unused_categories_matches_pandas():
    rng = np.random.default_rng(0)
    categories = [f"k{i}" for i in range(50)]
    for used in (50, 7, 1):
        codes = rng.integers(-1, used, size=1000)  # -1: missing
        values = pd.Series(pd.Categorical.from_codes(codes, categories=categories), index=np.arange(1000) * 3, name="key")
        dropped = drop_unused_categories(values)
        pd.testing.assert_series_equal(dropped, values.cat.remove_unused_categories())
        assert len(dropped.cat.categories) == len(set(codes) - {-1})
