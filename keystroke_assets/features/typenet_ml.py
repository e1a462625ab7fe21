"""features/typenet_ml/{platform,session,video}: per-key HL and top-k digraph IL statistics (ms).

docs/features.md §3. One row per (user, platform[, session[, video]]) group. Each device type has
its own columns (its keys, its top-k digraphs), named `<device type>__HL__<key>__<statistic>` and
`<device type>__IL__<key1>__<key2>__<statistic>`; a row has values only in its own device type's.
"""

import math
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa
import pydantic

from keystroke_assets.features.common import (
    Evaluable,
    Feature,
    FromWholeVersion,
    Made,
    OutputCheck,
    Partial,
    Parts,
    Table,
    group_codes,
    grouped_stats,
    key_identity_codes,
    stack_tables,
)
from keystroke_assets.features.typenet_ml_fill import (
    OBSERVED,
    OBSERVED_DESCRIPTION,
    column_sums,
    fill_values,
    group_order,
    merge_fills,
    observed_fits,
    own_columns_filled,
    unfilled_statistics,
)
from keystroke_assets.lib.latencies import DEFAULT_OUTLIER_THRESHOLDS, OutlierThresholds

GRAINS = {
    "platform": ["user_id", "platform_id"],
    "session": ["user_id", "platform_id", "session_id"],
    "video": ["user_id", "platform_id", "session_id", "video_id"],
}
STATS = ["median", "mean", "std", "q1", "q3"]
COLUMN_LEVELS = ("device_type", "latency", "key1", "key2", "statistic")


class TypenetMLConfig(pydantic.BaseModel):
    top_k: int = 10


def _digraph_codes(pairs: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    """Digraph code id1 * n + id2 of every pair (keys by identity), and the identities."""
    id1, identities = key_identity_codes(pairs["key1"])
    id2, _ = key_identity_codes(pairs["key2"])  # key1 and key2 share categories, so identities too
    return id1 * len(identities) + id2, identities


DIGRAPH_COUNT_COLUMNS = ["user_id", "device_type", "key1", "key2"]
TOP_COLUMNS = ["device_type", "key1", "key2", "count"]


def digraph_counts(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs per (device type, user, digraph), keys by canonical identity (key_identity_codes): all the
    top-k choice needs, a few thousand rows per user, so it can be gathered over a whole version."""
    code, identities = _digraph_codes(pairs)
    n = len(identities)
    user = pairs["user_id"].cat.codes.to_numpy().astype(np.int64)
    device_of_user = np.zeros(len(pairs["user_id"].cat.categories), np.int64)
    device_of_user[user] = pairs["device_type"].cat.codes.to_numpy()
    found, count = np.unique(user * (n * n) + code, return_counts=True)
    user, code = found // (n * n), found % (n * n)
    return pd.DataFrame(
        {
            "device_type": pairs["device_type"].cat.categories[device_of_user[user]].astype(str),
            "user_id": pairs["user_id"].cat.categories[user],
            "key1": identities[code // n],
            "key2": identities[code % n],
            "count": count,
        }
    )


def common_digraphs(counts: pd.DataFrame) -> tuple[dict[str, int], pd.DataFrame]:
    """Of `digraph_counts` (one participant segment's), the users per device type and the digraphs
    every one of them typed, their counts summed: all the top-k choice needs of the segment."""
    users = counts.groupby("device_type")["user_id"].nunique()
    per = counts.groupby(["device_type", "key1", "key2"]).agg(count=("count", "sum"), typed_by=("user_id", "size"))
    per = per.reset_index()
    per = per[per["typed_by"].to_numpy() == users.reindex(per["device_type"]).to_numpy()]
    return {str(d): int(n) for d, n in users.items()}, per[TOP_COLUMNS].reset_index(drop=True)


def choose_top_digraphs(parts: list[tuple[dict[str, int], pd.DataFrame]], k: int) -> pd.DataFrame:
    """Per device type, the k most frequent digraphs typed by every user of that device type, from
    each participant segment's `common_digraphs` (a user is in one segment): those every user of
    every segment with users of the device type typed. Ties broken by (key1, key2) in code-point order."""
    segments = pd.Series([d for users, _ in parts for d in users], dtype=object).value_counts()
    per = pd.concat([common for _, common in parts], ignore_index=True)
    per = per.groupby(["device_type", "key1", "key2"]).agg(count=("count", "sum"), segments=("count", "size"))
    per = per.reset_index()
    # Python string order is code-point order
    per = per[per["segments"].to_numpy() == segments.reindex(per["device_type"]).to_numpy()].sort_values(
        ["device_type", "count", "key1", "key2"], ascending=[True, False, True, True], kind="stable"
    )
    return per.groupby("device_type").head(k)[TOP_COLUMNS].reset_index(drop=True)


def top_digraphs(pairs: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per device type, the k most frequent digraphs typed by every user of that device type;
    ties broken by (key1, key2) in code-point order. Keys by canonical identity (key_identity_codes)."""
    return choose_top_digraphs([common_digraphs(digraph_counts(pairs))], k)


def _wide(codes, n_groups, column_ids, values, n_columns):
    """Statistics per (group, column) as a (n_groups, n_columns * len(STATS)) block."""
    stats = grouped_stats(codes * n_columns + column_ids, values, n_groups * n_columns, STATS)
    block = np.stack([stats[s].reshape(n_groups, n_columns) for s in STATS], axis=2)
    return block.reshape(n_groups, n_columns * len(STATS))


def _statistics_table(block: np.ndarray, names: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(block, columns=pd.MultiIndex.from_tuples(names, names=COLUMN_LEVELS))


def hl_statistics(
    strokes: pd.DataFrame, grain: list[str], thresholds: dict[str, OutlierThresholds]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ids, HL statistics) per group of the grain from the keystrokes table: for each
    device type, a column per key (by identity) with at least one hold inside that device type's
    HL range (`thresholds`), statistics over the group's holds inside it. ids: the grain and
    device_type; a group's other-device columns stay NaN."""
    codes, groups = group_codes(strokes, grain, [*grain, "device_type"])
    device, devices = pd.factorize(strokes["device_type"], sort=True)
    low = np.array([thresholds[d].hl_min_ms for d in devices])
    high = np.array([thresholds[d].hl_max_ms for d in devices])
    hl = strokes["HL"].to_numpy()
    inside = (hl >= low[device]) & (hl <= high[device]) if len(devices) else np.zeros(len(hl), bool)
    key_ids, identities = key_identity_codes(strokes["key"])
    n = len(identities)
    # a column per (device type, key) seen inside the range: device types, then keys in code-point order
    seen, column = np.unique(device[inside] * n + key_ids[inside], return_inverse=True)
    block = _wide(codes[inside], len(groups), column, hl[inside], len(seen))
    names = [(devices[c // n], "HL", identities[c % n], "", s) for c in seen for s in STATS]
    return groups, _statistics_table(block, names)


def il_statistics(pairs: pd.DataFrame, grain: list[str], top: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ids, IL statistics) per group of the grain from keypairs: a column per digraph of `top`
    (choose_top_digraphs: per device type), statistics over the group's non-outlier pairs of that
    digraph when the group is of the digraph's device type. ids: the grain and device_type."""
    codes, groups = group_codes(pairs, grain, [*grain, "device_type"])
    device, devices = pd.factorize(pairs["device_type"], sort=True)
    digraph_code, identities = _digraph_codes(pairs)
    n = len(identities)
    # device types, then (key1, key2) in code-point order, as the identities: the codes increase
    top = top.sort_values(["device_type", "key1", "key2"], ignore_index=True)
    top_device = devices.get_indexer(top["device_type"]) if len(devices) else np.full(len(top), -1)
    first, second = identities.get_indexer(top["key1"]), identities.get_indexer(top["key2"])
    known = (top_device >= 0) & (first >= 0) & (second >= 0)  # a digraph these pairs never had matches none
    chosen = (top_device * n * n + first * n + second)[known]
    code = device * n * n + digraph_code
    at = np.minimum(np.searchsorted(chosen, code), max(len(chosen) - 1, 0))
    use = ~pairs["outlier"].to_numpy() & (chosen[at] == code if len(chosen) else False)
    block = _wide(codes[use], len(groups), np.flatnonzero(known)[at[use]], pairs["IL"].to_numpy()[use], len(top))
    names = [(d, "IL", a, b, s) for d, a, b in zip(top["device_type"], top["key1"], top["key2"]) for s in STATS]
    return groups, _statistics_table(block, names)


def join_statistics(grain: list[str], *parts: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ids, statistics) of hl_statistics and il_statistics joined on the group ids (a group in
    either), NaN where a part has no row for the group."""
    ids = [*grain, "device_type"]
    row, groups = group_codes(pd.concat([g for g, _ in parts], ignore_index=True), ids)
    values = np.full((len(groups), sum(s.shape[1] for _, s in parts)), np.nan)
    first_row = first_column = 0
    for g, s in parts:
        values[row[first_row : first_row + len(g)], first_column : first_column + s.shape[1]] = s.to_numpy()
        first_row, first_column = first_row + len(g), first_column + s.shape[1]
    columns = pd.MultiIndex.from_tuples([c for _, s in parts for c in s.columns], names=COLUMN_LEVELS)
    return groups, pd.DataFrame(values, columns=columns)


def _column_name(device_type: str, latency: str, key1: str, key2: str, statistic: str) -> str:
    return "__".join([device_type, latency, key1, *([key2] if latency == "IL" else []), statistic])


def column_dictionary(columns) -> pd.DataFrame:
    """The dictionary of statistic columns (COLUMN_LEVELS tuples) in the features' order: device
    type, then HL per key and IL per digraph (code-point order), statistics in STATS order."""
    stat_order = {s: i for i, s in enumerate(STATS)}
    names = sorted(columns, key=lambda c: (*c[:4], stat_order[c[4]]))
    dictionary = pd.DataFrame(names, columns=list(COLUMN_LEVELS))
    dictionary.insert(0, "column", [_column_name(*c) for c in names])
    dictionary["key2"] = dictionary["key2"].replace("", None)
    dictionary["unit"] = "ms"
    return dictionary


def fill_statistics(groups: pd.DataFrame, statistics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(features, column dictionary, fill counts) from typenet_ml_statistics, of one segment or of
    several stacked. Columns in the column_dictionary's order; rows in order of the group ids. A
    missing cell of a row's own device type's columns is filled with the user's mean of the column
    over the user's observed groups, else the column mean over the observed cells of rows of that
    device type, else 0 (both means taken before any fill); the other device type's columns stay
    null. Fill counts: device type -> FILL_RULES counts, `cells` (own cells) and `filled_share`."""
    dictionary = column_dictionary(statistics.columns)
    names = pd.MultiIndex.from_frame(dictionary[list(COLUMN_LEVELS)].fillna({"key2": ""}))
    return fill_values(groups, statistics[names].to_numpy(dtype=np.float64), dictionary)


def typenet_ml_features(
    strokes: pd.DataFrame,
    pairs: pd.DataFrame,
    grain: list[str],
    top: pd.DataFrame,
    thresholds: dict[str, OutlierThresholds] = DEFAULT_OUTLIER_THRESHOLDS,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(features, column dictionary, fill counts) for one grain of one participant segment's (or the
    whole version's) keystrokes and keypairs; `top` = top_digraphs(pairs, k)."""
    return fill_statistics(
        *join_statistics(grain, hl_statistics(strokes, grain, thresholds), il_statistics(pairs, grain, top))
    )


def _quartiles_ordered(df: pd.DataFrame) -> tuple[bool, dict]:
    bad = 0
    for column in [c for c in df.columns if c.endswith("__q1")]:
        stem = column[: -len("q1")]
        bad += int(
            (df[column] > df[stem + "median"] + 1e-9).sum() + (df[stem + "median"] > df[stem + "q3"] + 1e-9).sum()
        )
    return bad == 0, {"cells_out_of_order": bad}


PLATFORM_NOT_EVALUABLE = (
    "its rows pool sessions 1 and 2, so enrolment and probe would share a session "
    "(typenet_ml/session has the same statistics per session)"
)


def _description(grain: list[str]) -> str:
    return (
        f"TypeNet-style statistics per ({', '.join(grain)}), with columns per device type (named "
        "`<device type>__...`; a row's other device type's columns are null): for every key held inside "
        "the device type's HL range (outlier_rules), HL median / mean / std / q1 / q3 over those holds; "
        "for the top-k digraphs typed by every user of the device type, IL statistics over non-outlier "
        "pairs. Values in ms; a missing own cell is filled with the user's mean over all its groups, else the "
        "column mean over observed cells, else 0 (a fill that carries a user's identity across sessions: "
        "compare or train across a split on load(..., fill_from=rows) or filled=False instead); `observed` "
        "says which cells were observed. The column dictionary and the fill counts per device type are in "
        "the metadata. Made with the other grains in one step, from per-segment partial results (digraph counts, "
        "unfilled statistics) that later versions reuse."
    )


def typenet_ml_feature(grain_name: str) -> Feature:
    return Feature(
        f"typenet_ml/{grain_name}",
        [*GRAINS[grain_name], "device_type", OBSERVED],
        checks=(
            OutputCheck(
                "own_columns_filled",
                "No cell of a row's own device type's columns is left null by the fill rule; the other device "
                "type's columns are all null.",
                own_columns_filled,
            ),
            OutputCheck("quartiles_ordered", "q1 <= median <= q3 in every statistic.", _quartiles_ordered),
            OutputCheck(
                "observed_fits",
                f"`{OBSERVED}` has a bit per statistic column on every row, none set in another device type's columns.",
                observed_fits,
            ),
        ),
        # compared on the statistics before the fill: the stored fill uses every row of a user
        evaluation=Evaluable(
            vectors=partial(unfilled_statistics, dtype=np.float32),
            key_dependent=True,
            not_evaluable=PLATFORM_NOT_EVALUABLE if grain_name == "platform" else "",
        ),
        description=_description(GRAINS[grain_name]),
    )


def digraphs_of_segment(keypairs: pd.DataFrame) -> Made:
    """The common_digraphs of one keypairs segment, kept as facts alone (a few hundred digraphs):
    what choosing the top-k reads instead of the segment's rows."""
    # an empty segment (participants all broken) may have untyped columns, and has no digraph
    users, common = (
        common_digraphs(digraph_counts(keypairs)) if len(keypairs) else ({}, pd.DataFrame(columns=TOP_COLUMNS))
    )
    return Made(facts={"users": users, "digraphs": common.to_dict("list")})


DIGRAPHS = Partial("digraphs", digraphs_of_segment, table=False, columns={"keypairs": tuple(DIGRAPH_COUNT_COLUMNS)})
_IDS = (*GRAINS["video"], "device_type")  # the finest grain's: every grain's


def statistics_of_segment(
    keystrokes: pd.DataFrame, keypairs: pd.DataFrame, top: dict, thresholds: dict
) -> dict[str, Made]:
    """One participant segment's unfilled statistics at each grain: HL from its keystrokes, IL from
    its keypairs with the version's top digraphs. A grain's table: the group ids and `statistics`,
    the row's values as a list (one column, not hundreds: a column costs more to write and read
    than its values); its facts: the columns (COLUMN_LEVELS) and per column the parts of its sum
    (column_sums) and its number of observed cells, from which the version's column means come."""
    top = pd.DataFrame(top, columns=TOP_COLUMNS[:3])
    limits = {device: OutlierThresholds(**t) for device, t in thresholds.items()}
    out = {}
    for name, grain in GRAINS.items():
        # a segment without keystrokes or pairs adds no group (nor columns) of its own
        parts = [
            *([hl_statistics(keystrokes, grain, limits)] if len(keystrokes) else []),
            *([il_statistics(keypairs, grain, top)] if len(keypairs) else []),
        ]
        if parts:
            groups, statistics = join_statistics(grain, *parts)
            columns, values = list(statistics.columns), statistics.to_numpy(np.float64)
        else:
            groups, columns, values = pd.DataFrame(columns=[*grain, "device_type"]), [], np.empty((0, 0))
        table = pa.Table.from_pandas(groups, preserve_index=False)
        offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32) * values.shape[1])
        table = table.append_column("statistics", pa.ListArray.from_arrays(offsets, pa.array(values.ravel())))
        sums, errors = column_sums(values)
        facts = {
            "statistics": columns,
            "sums": sums.tolist(),
            "sum_errors": errors.tolist(),
            "observed": (~np.isnan(values)).sum(axis=0).tolist(),
        }
        out[name] = Made(table, facts)
    return out


STATISTICS = Partial(
    "statistics",
    statistics_of_segment,
    outputs=tuple(GRAINS),
    columns={"keystrokes": (*_IDS, "key", "HL"), "keypairs": (*_IDS, "key1", "key2", "IL", "outlier")},
)


def column_means(summaries: list[dict], columns: pd.Index) -> np.ndarray:
    """The version's mean of each of `columns` (flat names) over its observed cells, from its
    segments' statistics summaries: its sum rounded once, as column_sums rounds it; NaN for a
    column with no observed cell."""
    where = columns.get_indexer([_column_name(*c) for s in summaries for c in s["statistics"]])
    sums = np.array([x for s in summaries for x in s["sums"]], np.float64)
    errors = np.array([x for s in summaries for x in s["sum_errors"]], np.float64)
    observed = np.bincount(where, [x for s in summaries for x in s["observed"]], minlength=len(columns))
    order = np.argsort(where, kind="stable")
    bounds = np.searchsorted(where[order], np.arange(len(columns) + 1))
    total = [math.fsum([*sums[order[a:b]], *errors[order[a:b]]]) for a, b in zip(bounds[:-1], bounds[1:])]
    return np.array(total, np.float64) / np.where(observed > 0, observed, np.nan)


def filled_segment(
    table: pa.Table, facts: dict, dictionary: pd.DataFrame, means: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """fill_values of one statistics segment (its table and facts), its columns placed among the
    version's (`dictionary`; a column none of its participants has stays missing) and the
    version's column means."""
    values = np.full((len(table), len(dictionary)), np.nan)
    where = pd.Index(dictionary["column"]).get_indexer([_column_name(*c) for c in facts["statistics"]])
    flat = table["statistics"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    values[:, where] = flat.reshape(len(table), len(where))
    return fill_values(table.drop_columns(["statistics"]).to_pandas(), values, dictionary, means)


# one feature type per grain
TYPENET_ML = [typenet_ml_feature(g) for g in GRAINS]


def typenet_ml_tables(parts: Parts, top_k: int, thresholds: dict) -> dict[str, tuple[pd.DataFrame, dict]]:
    """The three grains' tables. Per segment, stored and reused by any version: its digraph counts,
    then its unfilled statistics (HL from its keystrokes, IL from its pairs; a group is one
    participant's). Version-wide, from those partial results: the top-k and the column means, then
    each segment's statistics filled (the user mean is within the segment) and stacked, a row per
    group in the order of the group ids."""
    digraphs = [s.facts for s in parts.compute(DIGRAPHS)["digraphs"]]
    top = choose_top_digraphs([(d["users"], pd.DataFrame(d["digraphs"], columns=TOP_COLUMNS)) for d in digraphs], top_k)
    # the statistics depend on which digraphs, not their counts
    statistics = parts.compute(STATISTICS, top=top[TOP_COLUMNS[:3]].to_dict("list"), thresholds=thresholds)
    tables = {}
    for grain, feature in zip(GRAINS, TYPENET_ML):
        segments = statistics[grain]
        dictionary = column_dictionary({tuple(c) for s in segments for c in s.facts["statistics"]})
        means = column_means([s.facts for s in segments], pd.Index(dictionary["column"]))
        filled = [filled_segment(s.read(), s.facts, dictionary, means) for s in segments if s.rows]
        ids = [*GRAINS[grain], "device_type"]
        if filled:
            features = stack_tables(f for f, _, _ in filled)
            features = features.iloc[group_order(features[ids])].reset_index(drop=True)
        else:
            features, _, _ = fill_values(pd.DataFrame(columns=ids), np.empty((0, len(dictionary))), dictionary, means)
        fills = merge_fills([f for _, _, f in filled])
        features.attrs["column_descriptions"] = {
            r.column: f"{r.statistic} of {r.latency} for {r.key1!r}"
            + (f" then {r.key2!r}" if r.key2 else "")
            + f", ms ({r.device_type} rows only)"
            for r in dictionary.itertuples()
        }
        features.attrs["column_descriptions"][OBSERVED] = OBSERVED_DESCRIPTION
        tables[feature.name] = (
            features,
            {
                "top_k": top_k,
                "digraphs": top,
                "column_dictionary": Table(dictionary, max_rows=5000),
                **{f"columns/{d}": int(n) for d, n in dictionary["device_type"].value_counts(sort=False).items()},
                **{f"fill/{d}/{rule}": v for d, counts in fills.items() for rule, v in counts.items()},
            },
        )
    return tables


# The three grains in one step: one read of each segment, one top-k choice, instead of three of each.
TYPENET_ML_STEP = FromWholeVersion(
    "typenet_ml", tuple(TYPENET_ML), (DIGRAPHS, STATISTICS), typenet_ml_tables, TypenetMLConfig, code_version="4"
)
