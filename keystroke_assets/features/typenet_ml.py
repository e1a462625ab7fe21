"""features/typenet_ml/{platform,session,video}: per-key HL and top-k digraph IL statistics (ms).

spec/features.md §3. One row per (user, platform[, session[, video]]) group.
"""

import dagster as dg
import numpy as np
import pandas as pd

from keystroke_assets.assets.common import OutputCheck, check_specs, has_columns, non_empty, report_table, run_checks
from keystroke_assets.features.common import feature_asset, group_codes, grouped_stats, key_identity, task_keystrokes
from keystroke_assets.keystrokes import HL_MAX_MS, HL_MIN_MS

GRAINS = {
    "platform": ["user_id", "platform_id"],
    "session": ["user_id", "platform_id", "session_id"],
    "video": ["user_id", "platform_id", "session_id", "video_id"],
}
STATS = ["median", "mean", "std", "q1", "q3"]


class TypenetMLConfig(dg.Config):
    top_k: int = 10


def top_digraphs(pairs: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per device type, the k most frequent digraphs typed by every user of that device type;
    ties broken by (key1, key2) in code-point order. Keys by identity (a character lower-cased)."""
    d = pd.DataFrame(
        {"device_type": pairs["device_type"].astype(str), "user_id": pairs["user_id"],
         "key1": key_identity(pairs["key1"]), "key2": key_identity(pairs["key2"])}
    )
    users = d.groupby("device_type")["user_id"].nunique().rename("users")
    per = d.groupby(["device_type", "key1", "key2"]).agg(count=("user_id", "size"), typed_by=("user_id", "nunique"))
    per = per.reset_index().join(users, on="device_type")
    per = per[per["typed_by"] == per["users"]]
    # sort_values compares Python strings: code-point order
    per = per.sort_values(["device_type", "count", "key1", "key2"], ascending=[True, False, True, True], kind="stable")
    return per.groupby("device_type").head(k)[["device_type", "key1", "key2", "count"]].reset_index(drop=True)


def _wide(codes, n_groups, column_ids, values, names):
    """Statistics per (group, column) as a (n_groups, len(names) * len(STATS)) block."""
    cell = codes * len(names) + column_ids
    stats = grouped_stats(cell, values, n_groups * len(names), STATS)
    block = np.stack([stats[s].reshape(n_groups, len(names)) for s in STATS], axis=2)
    return block.reshape(n_groups, len(names) * len(STATS))


def typenet_ml_features(pairs: pd.DataFrame, grain: list[str], k: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(features, column dictionary, fill counts) for one grain."""
    codes, groups = group_codes(pairs, grain, [*grain, "device_type"])
    n_groups = len(groups)

    strokes = task_keystrokes(pairs.assign(_group=codes), ["_group"])
    strokes = strokes[(strokes["HL"] >= HL_MIN_MS) & (strokes["HL"] <= HL_MAX_MS)]
    key_ids, keys = pd.factorize(key_identity(strokes["key"]), sort=True)
    hl = _wide(strokes["_group"].to_numpy(), n_groups, key_ids, strokes["HL"].to_numpy(), list(keys))

    top = top_digraphs(pairs, k)
    digraphs = sorted(set(zip(top["key1"], top["key2"])))
    ok = ~pairs["outlier"].to_numpy()
    pair_keys = pd.Series(list(zip(key_identity(pairs["key1"][ok]), key_identity(pairs["key2"][ok]))), dtype=object)
    lookup = {dg_: i for i, dg_ in enumerate(digraphs)}
    digraph_ids = pair_keys.map(lookup).to_numpy()
    chosen = ~pd.isna(digraph_ids)
    il = _wide(
        codes[ok][chosen], n_groups, digraph_ids[chosen].astype(np.int64), pairs["IL"].to_numpy()[ok][chosen], digraphs
    )

    dictionary = pd.DataFrame(
        [("HL", key, None, s) for key in keys for s in STATS]
        + [("IL", a, b, s) for a, b in digraphs for s in STATS],
        columns=["latency", "key1", "key2", "statistic"],
    )
    dictionary.insert(
        0, "column",
        [f"HL__{r.key1}__{r.statistic}" if r.latency == "HL" else f"IL__{r.key1}__{r.key2}__{r.statistic}"
         for r in dictionary.itertuples()],
    )
    dictionary["unit"] = "ms"
    values = pd.DataFrame(np.hstack([hl, il]), columns=dictionary["column"])
    missing = values.isna()
    user_mean = values.groupby(groups["user_id"].to_numpy()).transform("mean")
    values = values.fillna(user_mean)
    after_user = values.isna()
    values = values.fillna(values.mean())
    after_column = values.isna()
    values = values.fillna(0.0)
    fills = {
        "cells": int(values.size),
        "missing": int(missing.to_numpy().sum()),
        "filled_with_user_mean": int((missing & ~after_user).to_numpy().sum()),
        "filled_with_column_mean": int((after_user & ~after_column).to_numpy().sum()),
        "filled_with_zero": int(after_column.to_numpy().sum()),
    }
    features = pd.concat([groups, values], axis=1)
    features["device_type"] = features["device_type"].astype(str)
    return features, dictionary, fills


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
    def typenet_ml(context: dg.AssetExecutionContext, config: TypenetMLConfig, keypairs: pd.DataFrame):
        features, dictionary, fills = typenet_ml_features(keypairs, grain, config.top_k)
        features.attrs["column_descriptions"] = {
            r.column: f"{r.statistic} of {r.latency} for {r.key1!r}" + (f" then {r.key2!r}" if r.key2 else "") + ", ms"
            for r in dictionary.itertuples()
        }
        yield dg.Output(
            features,
            metadata={
                "top_k": config.top_k,
                "digraphs": report_table(top_digraphs(keypairs, config.top_k)),
                "column_dictionary": report_table(dictionary, max_rows=5000),
                **{f"fill/{k}": v for k, v in fills.items()},
            },
        )
        yield from run_checks(features, checks)

    return typenet_ml


typenet_ml_platform, typenet_ml_session, typenet_ml_video = (build_typenet_ml_asset(g) for g in GRAINS)
