"""Small DataFrame helpers, against pandas' own slower equivalents and by hand."""

import numpy as np
import pandas as pd

from keystroke_assets.lib.frames import drop_unused_categories, group_codes, stack_tables


def test_drop_unused_categories_matches_pandas():
    rng = np.random.default_rng(0)
    categories = [f"k{i}" for i in range(50)]
    for used in (50, 7, 1):
        codes = rng.integers(-1, used, size=1000)  # -1: missing
        values = pd.Series(
            pd.Categorical.from_codes(codes, categories=categories), index=np.arange(1000) * 3, name="key"
        )
        dropped = drop_unused_categories(values)
        pd.testing.assert_series_equal(dropped, values.cat.remove_unused_categories())
        assert len(dropped.cat.categories) == len(set(codes) - {-1})


def test_group_codes_match_a_sorted_pandas_groupby_with_nulls_last():
    rng = np.random.default_rng(1)
    n = 5000
    df = pd.DataFrame(
        {
            "user_id": pd.Categorical.from_codes(
                rng.integers(-1, 6, n), categories=list("fedcba")
            ),  # category order, not alphabetical
            "platform_id": pd.array(rng.integers(1, 4, n), dtype="Int64"),
            "key": rng.choice(["a", "B", ",", "Shift"], n),
            "time_ms": rng.integers(0, 10**12, n),
        }
    )
    df.loc[rng.random(n) < 0.1, "platform_id"] = pd.NA
    # rows in random order, and in runs (a group's rows together, some groups in several runs)
    runs = df.sort_values(["user_id", "key"], kind="stable").reset_index(drop=True)
    runs = pd.concat([runs.iloc[: n // 2], runs.iloc[n // 4 :], runs.iloc[:10]], ignore_index=True)
    for rows in (df, runs):
        for by in (["user_id"], ["user_id", "platform_id"], ["platform_id", "key"], ["key", "user_id", "platform_id"]):
            codes, groups = group_codes(rows, by, [*by, "time_ms"])
            expected = rows.groupby(by, sort=True, dropna=False, observed=True).ngroup().to_numpy()
            np.testing.assert_array_equal(codes, expected)
            first_rows = pd.Series(np.arange(len(rows))).groupby(expected).first().to_numpy()
            pd.testing.assert_frame_equal(groups, rows.iloc[first_rows][[*by, "time_ms"]].reset_index(drop=True))
    # by hand: nulls are the last group, categories in their own order
    small = pd.DataFrame({"u": pd.Categorical(["b", None, "a", "b"], categories=["b", "a"])})
    assert group_codes(small, ["u"])[0].tolist() == [0, 2, 1, 0]
    runs = pd.DataFrame({"u": ["b", "b", "a", "a", "a", "b", None, None], "t": range(8)})
    codes, groups = group_codes(runs, ["u"], ["u", "t"])
    assert codes.tolist() == [1, 1, 0, 0, 0, 1, 2, 2]
    assert groups["t"].tolist() == [2, 0, 6]  # each group's first row
    assert len(group_codes(runs.iloc[:0], ["u"])[0]) == 0


def test_stacked_tables_have_the_categories_used_sorted_whichever_tables_they_came_in():
    # two segments' tables, categories unsorted and with a value no row uses; then the same rows in
    # one table with yet another category order
    a = pd.DataFrame({"user_id": pd.Categorical(["u2", "u0"], categories=["u2", "u0", "u9"]), "x": [1, 2]})
    b = pd.DataFrame({"user_id": pd.Categorical(["u1"], categories=["u1"]), "x": [3]})
    whole = pd.DataFrame(
        {"user_id": pd.Categorical(["u2", "u0", "u1"], categories=["u1", "u9", "u0", "u2"]), "x": [1, 2, 3]}
    )
    want = pd.DataFrame({"user_id": pd.Categorical(["u2", "u0", "u1"], categories=["u0", "u1", "u2"]), "x": [1, 2, 3]})
    pd.testing.assert_frame_equal(stack_tables([a, b]), want)
    pd.testing.assert_frame_equal(stack_tables([whole]), want)
    pd.testing.assert_frame_equal(stack_tables([a.iloc[:1], a.iloc[1:], b]), want)
