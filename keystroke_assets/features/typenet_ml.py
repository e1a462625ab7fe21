"""features/typenet_ml/{platform,session,video}: per-key HL and top-k digraph IL statistics (ms).

spec/features.md §3. One row per (user, platform[, session[, video]]) group.
"""

import dagster as dg
import numpy as np
import pandas as pd

from keystroke_assets.assets.common import OutputCheck, check_specs, has_columns, non_empty, report_table, run_checks
from keystroke_assets.features.common import (
    ParticipantShards, feature_asset, group_codes, grouped_stats, key_identity_codes, stack_shards, task_keystrokes,
)
from keystroke_assets.keystrokes import HL_MAX_MS, HL_MIN_MS

GRAINS = {
    "platform": ["user_id", "platform_id"],
    "session": ["user_id", "platform_id", "session_id"],
    "video": ["user_id", "platform_id", "session_id", "video_id"],
}
STATS = ["median", "mean", "std", "q1", "q3"]
COLUMN_LEVELS = ("latency", "key1", "key2", "statistic")


class TypenetMLConfig(dg.Config):
    top_k: int = 10


def _digraph_codes(pairs: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    """Digraph code id1 * n + id2 of every pair (keys by identity), and the identities."""
    id1, identities = key_identity_codes(pairs["key1"])
    id2, _ = key_identity_codes(pairs["key2"])  # key1 and key2 share categories, so identities too
    return id1 * len(identities) + id2, identities


DIGRAPH_COUNT_COLUMNS = ["user_id", "device_type", "key1", "key2"]


def digraph_counts(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs per (device type, user, digraph), keys by identity (a character lower-cased): all the
    top-k choice needs, a few thousand rows per user, so it can be gathered over a whole version."""
    code, identities = _digraph_codes(pairs)
    n = len(identities)
    user = pairs["user_id"].cat.codes.to_numpy().astype(np.int64)
    device_of_user = np.zeros(len(pairs["user_id"].cat.categories), np.int64)
    device_of_user[user] = pairs["device_type"].cat.codes.to_numpy()
    found, count = np.unique(user * (n * n) + code, return_counts=True)
    user, code = found // (n * n), found % (n * n)
    return pd.DataFrame(
        {"device_type": pairs["device_type"].cat.categories[device_of_user[user]].astype(str),
         "user_id": pairs["user_id"].cat.categories[user], "key1": identities[code // n],
         "key2": identities[code % n], "count": count}
    )


def choose_top_digraphs(counts: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per device type, the k most frequent digraphs (of `digraph_counts`) typed by every user of
    that device type; ties broken by (key1, key2) in code-point order."""
    users = counts.groupby("device_type")["user_id"].nunique().rename("users")
    per = counts.groupby(["device_type", "key1", "key2"]).agg(count=("count", "sum"), typed_by=("user_id", "size"))
    per = per.reset_index().join(users, on="device_type")
    # Python string order is code-point order
    per = per[per["typed_by"] == per["users"]].sort_values(
        ["device_type", "count", "key1", "key2"], ascending=[True, False, True, True], kind="stable"
    )
    return per.groupby("device_type").head(k)[["device_type", "key1", "key2", "count"]].reset_index(drop=True)


def top_digraphs(pairs: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per device type, the k most frequent digraphs typed by every user of that device type;
    ties broken by (key1, key2) in code-point order. Keys by identity (a character lower-cased)."""
    return choose_top_digraphs(digraph_counts(pairs), k)


def _wide(codes, n_groups, column_ids, values, n_columns):
    """Statistics per (group, column) as a (n_groups, n_columns * len(STATS)) block."""
    stats = grouped_stats(codes * n_columns + column_ids, values, n_groups * n_columns, STATS)
    block = np.stack([stats[s].reshape(n_groups, n_columns) for s in STATS], axis=2)
    return block.reshape(n_groups, n_columns * len(STATS))


def typenet_ml_statistics(pairs: pd.DataFrame, grain: list[str], top: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ids, statistics) per group of the grain, not yet filled. ids: the grain and device_type.
    A statistics column per (latency, key1, key2, statistic), COLUMN_LEVELS: HL for every key with
    an HL in range in `pairs`, IL for every digraph of `top`. A group holds one participant's
    pairs, so the tables of participant shards, stacked, are those of the whole version."""
    codes, groups = group_codes(pairs, grain, [*grain, "device_type"])
    n_groups = len(groups)

    strokes = task_keystrokes(pairs.assign(_group=codes), ["_group"])
    strokes = strokes[(strokes["HL"] >= HL_MIN_MS) & (strokes["HL"] <= HL_MAX_MS)]
    key_ids, all_keys = key_identity_codes(strokes["key"])
    seen = np.unique(key_ids)  # keys seen, in code-point order
    keys = all_keys[seen]
    hl = _wide(strokes["_group"].to_numpy(), n_groups, np.searchsorted(seen, key_ids), strokes["HL"].to_numpy(), len(keys))

    digraph_code, identities = _digraph_codes(pairs)
    n = len(identities)
    digraphs = sorted(set(zip(top["key1"], top["key2"])))  # code-point order, as the identities
    first, second = identities.get_indexer([a for a, _ in digraphs]), identities.get_indexer([b for _, b in digraphs])
    known = (first >= 0) & (second >= 0)  # a digraph of keys these pairs never had matches none
    chosen = first[known] * n + second[known]  # increasing
    at = np.minimum(np.searchsorted(chosen, digraph_code), max(len(chosen) - 1, 0))
    use = ~pairs["outlier"].to_numpy() & (chosen[at] == digraph_code if len(chosen) else False)
    il = _wide(codes[use], n_groups, np.flatnonzero(known)[at[use]], pairs["IL"].to_numpy()[use], len(digraphs))

    names = [("HL", key, "", s) for key in keys for s in STATS] + [("IL", a, b, s) for a, b in digraphs for s in STATS]
    return groups, pd.DataFrame(np.hstack([hl, il]), columns=pd.MultiIndex.from_tuples(names, names=COLUMN_LEVELS))


def fill_statistics(groups: pd.DataFrame, statistics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(features, column dictionary, fill counts) from typenet_ml_statistics, of one shard or of
    several stacked: columns in order (HL per key, then IL per digraph, both in code-point order;
    statistics in STATS order), a missing cell filled with the user's mean, then the column mean
    over the version, then 0."""
    stat_order = {s: i for i, s in enumerate(STATS)}
    names = sorted(statistics.columns, key=lambda c: (c[0], c[1], c[2], stat_order[c[3]]))
    dictionary = pd.DataFrame(names, columns=list(COLUMN_LEVELS))
    dictionary["key2"] = dictionary["key2"].replace("", None)
    dictionary.insert(
        0, "column",
        [f"HL__{r.key1}__{r.statistic}" if r.latency == "HL" else f"IL__{r.key1}__{r.key2}__{r.statistic}"
         for r in dictionary.itertuples()],
    )
    dictionary["unit"] = "ms"
    values = pd.DataFrame(statistics[names].to_numpy(dtype=np.float64), columns=dictionary["column"])
    missing = values.isna()
    user_mean = values.groupby(groups["user_id"].to_numpy()).transform("mean")
    values = values.fillna(user_mean)
    after_user = values.isna()
    # as fillna(values.mean()), in one numpy step rather than column by column (~10x faster)
    values = pd.DataFrame(np.where(after_user, values.mean().to_numpy(), values.to_numpy()), columns=values.columns)
    after_column = values.isna()
    values = values.fillna(0.0)
    fills = {
        "cells": int(values.size),
        "missing": int(missing.to_numpy().sum()),
        "filled_with_user_mean": int((missing & ~after_user).to_numpy().sum()),
        "filled_with_column_mean": int((after_user & ~after_column).to_numpy().sum()),
        "filled_with_zero": int(after_column.to_numpy().sum()),
    }
    features = pd.concat([groups.reset_index(drop=True), values], axis=1)
    features["device_type"] = features["device_type"].astype(str)
    return features, dictionary, fills


def typenet_ml_features(pairs: pd.DataFrame, grain: list[str], top: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(features, column dictionary, fill counts) for one grain; `top` = top_digraphs(pairs, k)."""
    return fill_statistics(*typenet_ml_statistics(pairs, grain, top))


def _quartiles_ordered(df: pd.DataFrame) -> tuple[bool, dict]:
    bad = 0
    for column in [c for c in df.columns if c.endswith("__q1")]:
        stem = column[: -len("q1")]
        bad += int((df[column] > df[stem + "median"] + 1e-9).sum() + (df[stem + "median"] > df[stem + "q3"] + 1e-9).sum())
    return bad == 0, {"cells_out_of_order": bad}


def _no_nan(df: pd.DataFrame) -> tuple[bool, dict]:
    n = int(df.select_dtypes("number").drop(columns=["platform_id", "session_id", "video_id"], errors="ignore").isna().sum().sum())
    return n == 0, {"nan_cells": n}


def build_typenet_ml_asset(grain_name: str) -> dg.AssetsDefinition:
    grain = GRAINS[grain_name]
    checks = [
        has_columns([*grain, "device_type"]),
        non_empty(),
        OutputCheck("no_nan", "Every feature cell is filled (no NaN after the fill rule).", _no_nan),
        OutputCheck("quartiles_ordered", "q1 <= median <= q3 in every statistic.", _quartiles_ordered),
    ]
    key = dg.AssetKey(["features", "typenet_ml", grain_name])

    @feature_asset(
        f"typenet_ml/{grain_name}",
        code_version="1",
        check_specs=check_specs(key, checks),
        description=(
            f"TypeNet-style statistics per ({', '.join(grain)}): for every key, HL median / mean / std / q1 / q3 "
            "over keystrokes with 30 <= HL <= 2000 ms; for the top-k digraphs typed by every user of the "
            "device type, IL statistics over non-outlier pairs. Values in ms; missing cells filled with the "
            "user's mean, then the column mean, then 0. The column dictionary is in the metadata."
        ),
    )
    def typenet_ml(context: dg.AssetExecutionContext, config: TypenetMLConfig, keypairs: ParticipantShards):
        # two passes over the shards: the top-k choice needs every participant's digraph counts
        counts = pd.concat(map(digraph_counts, keypairs.shards(DIGRAPH_COUNT_COLUMNS)), ignore_index=True)
        top = choose_top_digraphs(counts, config.top_k)
        parts = [typenet_ml_statistics(pairs, grain, top) for pairs in keypairs.shards()]
        features, dictionary, fills = fill_statistics(*(stack_shards(p) for p in zip(*parts)))
        features.attrs["column_descriptions"] = {
            r.column: f"{r.statistic} of {r.latency} for {r.key1!r}" + (f" then {r.key2!r}" if r.key2 else "") + ", ms"
            for r in dictionary.itertuples()
        }
        yield dg.Output(
            features,
            metadata={
                "top_k": config.top_k,
                "digraphs": report_table(top),
                "column_dictionary": report_table(dictionary, max_rows=5000),
                **{f"fill/{k}": v for k, v in fills.items()},
            },
        )
        yield from run_checks(features, checks)

    return typenet_ml


typenet_ml_platform, typenet_ml_session, typenet_ml_video = (build_typenet_ml_asset(g) for g in GRAINS)

# Evaluated by the verification benchmark (keystroke_assets/evaluation); the platform grain pools sessions.
from keystroke_assets.evaluation import Evaluable  # noqa: E402

EVALUATION = [Evaluable(f"typenet_ml/{g}", split="platform" if g == "platform" else "session") for g in GRAINS]
