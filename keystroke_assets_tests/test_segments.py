"""Participant segments: a stable plan, and a version with new participants that computes only
its new segments yet has the tables of a full rebuild."""

import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from keystroke_assets.definitions import defs
from keystroke_assets.features.typenet_ml import (
    GRAINS,
    choose_top_digraphs,
    column_means,
    common_digraphs,
    top_digraphs,
    typenet_ml_features,
)
from keystroke_assets.features.typenet_ml_fill import column_sums
from keystroke_assets.lib.segments import participant_segments
from keystroke_assets.resources import resources_from_env
from keystroke_assets.resources.parquet_io_manager import from_parquet_bytes, to_parquet_bytes
from keystroke_assets.synthetic import aalto_uploads, web_app_uploads, write_uploads

from .conftest import SEGMENTED, materialize_version, segment_names, stored

V1, V2 = "2025-09-07_00-27-43_lab-mac", "2025-09-08_09-00-00_lab-mac"


def test_new_participants_add_segments_and_leave_the_old_ones():
    v1 = pd.DataFrame({"user_id": ["e", "a", "d", "c", "b"], "first_seen": V1})
    # "0" sorts before every old id, but came later: it goes after them, in a segment of its own
    v2 = pd.concat([v1, pd.DataFrame({"user_id": ["0", "f"], "first_seen": V2})])
    before = [list(s) for s in participant_segments(v1, size=2)]
    after = [list(s) for s in participant_segments(v2, size=2)]
    assert before == [["a", "b"], ["c", "d"], ["e"]]
    assert after == [["a", "b"], ["c", "d"], ["e"], ["0", "f"]]
    assert [list(s) for s in participant_segments(v1.head(0), size=2)] == [[]]  # one empty segment


def test_typenet_ml_top_k_from_each_segments_common_digraphs():
    def counts(rows):
        return pd.DataFrame(rows, columns=["device_type", "user_id", "key1", "key2", "count"])

    # segment A: u1 and u2 both typed a-b (3 + 1 = 4); b-c and c-d only one of them
    a = counts([["desktop", "u1", "a", "b", 3], ["desktop", "u1", "b", "c", 1], ["desktop", "u2", "a", "b", 1]])
    a = pd.concat([a, counts([["desktop", "u2", "c", "d", 2]])], ignore_index=True)
    # segment B: u3 (desktop) typed b-c 5 and a-b 1; u4 is the only phone, x-y 2
    b = counts([["desktop", "u3", "b", "c", 5], ["desktop", "u3", "a", "b", 1], ["mobile", "u4", "x", "y", 2]])
    parts = [common_digraphs(a), common_digraphs(b)]
    assert parts[0][0] == {"desktop": 2} and parts[0][1].values.tolist() == [["desktop", "a", "b", 4]]
    # every desktop user typed a-b (4 + 1 = 5) but u2 never b-c, though its count (6) is higher
    assert choose_top_digraphs(parts, 2).values.tolist() == [["desktop", "a", "b", 5], ["mobile", "x", "y", 2]]


def test_typenet_ml_column_means_from_segment_sums_are_the_whole_columns():
    def summary(values):
        sums, errors = column_sums(np.array(values))
        observed = (~np.isnan(np.array(values))).sum(axis=0).tolist()
        columns = [["desktop", "HL", "a", "", "mean"], ["desktop", "HL", "b", "", "mean"]]
        return {"statistics": columns, "sums": sums, "sum_errors": errors, "observed": observed}

    # column a: 0.1, 0.2 in one segment and 0.3 in the other; b: only 7 and 8 (NaN is not observed)
    names = pd.Index(["desktop__HL__a__mean", "desktop__HL__b__mean"])
    means = column_means([summary([[0.1, np.nan], [0.2, 7.0]]), summary([[0.3, 8.0]])], names)
    # 0.1 + 0.2 + 0.3 rounded once is 0.6; summed in that order, 0.6000000000000001
    assert means.tolist() == [0.6 / 3, 15 / 2]
    assert means[0] != ((0.1 + 0.2) + 0.3) / 3


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    """V1 with 6 web-app and 2 Aalto participants, then V2 with one web-app and one Aalto more,
    every asset materialized, two participants per segment."""
    folder = tmp_path_factory.mktemp("two_versions")
    uploads, storage = folder / "uploads", folder / "storage"
    write_uploads(uploads, web_app_uploads(6, seed=11, broken_every=5))
    write_uploads(uploads, aalto_uploads(2, seed=11))
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(storage)}
    with dg.DagsterInstance.ephemeral() as instance:
        results = {V1: _materialize(instance, env, V1)}
        write_uploads(uploads, web_app_uploads(1, seed=11, first_index=6, broken_every=5))
        write_uploads(uploads, aalto_uploads(1, seed=11, first_index=2))
        results[V2] = _materialize(instance, env, V2)
    return env, storage, results


def _materialize(instance, env: dict, version: str) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("dataset_versions", [version])
    result = dg.materialize(
        list(defs.assets),
        partition_key=version,
        instance=instance,
        resources=resources_from_env(env),
        run_config={"ops": {"raw_data": {"config": {"participants_per_segment": 2}}}},
    )
    assert result.success
    return result


def _segment_counts(result) -> dict[str, tuple[int, int]]:
    """(computed, reused) of each asset's segments: its own, or typenet_ml's statistics segments."""
    return {
        e.asset_key.to_user_string(): (md[f"{part}segments/computed"].value, md[f"{part}segments/reused"].value)
        for e in result.get_asset_materialization_events()
        for part in ["", "statistics/"]
        if f"{part}segments/computed" in (md := e.materialization.metadata)
    }


def _metadata(result, key: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return event.materialization.metadata


def test_a_version_with_new_participants_computes_only_their_segments(two_versions):
    _, storage, results = two_versions
    # V1: 6 web-app + 2 Aalto participants with uploads, 2 a segment: 4 segments, all computed
    assert set(_segment_counts(results[V1]).values()) == {(4, 0)}
    # V2 adds 2 participants, first seen in V2: one more segment; V1's four are reused
    counts = _segment_counts(results[V2])
    assert {k: counts[k] for k in SEGMENTED} == {k: (1, 4) for k in SEGMENTED}
    # typenet_ml: the digraph counts of V1's segments are reused; their statistics too unless the
    # new participants changed the top-k digraphs, which the statistics' IL columns are of
    for g in GRAINS:
        v1, v2 = (_metadata(results[v], f"features/typenet_ml/{g}") for v in (V1, V2))
        assert (v2["digraphs/segments/computed"].value, v2["digraphs/segments/reused"].value) == (1, 4)
        same_top = v1["digraphs"].value.records == v2["digraphs"].value.records
        assert counts[f"features/typenet_ml/{g}"] == ((1, 4) if same_top else (5, 0))
    names = {v: segment_names(storage, "keypairs", v) for v in (V1, V2)}
    assert names[V2][:4] == names[V1]


def test_the_tables_of_a_version_are_those_of_a_full_rebuild(two_versions, tmp_path):
    env, storage, _ = two_versions
    rebuilt = tmp_path / "storage"
    # the snapshot (web_app_data and its packs) is kept; every computed segment and table goes
    shutil.copytree(storage / "web_app_data", rebuilt / "web_app_data")
    with dg.DagsterInstance.ephemeral() as instance:
        result = _materialize(instance, {**env, "KEYSTROKE_STORAGE": str(rebuilt)}, V2)
    assert set(_segment_counts(result).values()) == {(5, 0)}
    keys = [key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()]
    assert len(keys) == 19
    for key in keys:
        pd.testing.assert_frame_equal(stored(rebuilt, key, V2), stored(storage, key, V2), obj=key)


def test_typenet_ml_made_again_with_the_same_top_k_reuses_every_segments_statistics(two_versions):
    env, _, _ = two_versions
    typenet_ml = [dg.AssetKey(["features", "typenet_ml", g]) for g in GRAINS]
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize_version(instance, env, V2, selection=typenet_ml)
    assert _segment_counts(result) == {key.to_user_string(): (0, 5) for key in typenet_ml}
    digraphs = _metadata(result, "features/typenet_ml/video")
    assert (digraphs["digraphs/segments/computed"].value, digraphs["digraphs/segments/reused"].value) == (0, 5)


def test_typenet_ml_from_segments_is_the_whole_version_computed_at_once(two_versions):
    """The top-k from the segments' digraph summaries, the column means from their statistics'
    summaries, the fill segment by segment: the tables and fill counts of typenet_ml_features
    over the whole version's keystrokes and keypairs."""
    _, storage, results = two_versions
    strokes, pairs = stored(storage, "keystrokes", V2), stored(storage, "keypairs", V2)
    assert len(segment_names(storage, "keypairs", V2)) == 5
    for g, grain in GRAINS.items():
        # exactly: the column means' sums are rounded once, over the rows or over the segments (column_sums)
        want, _, fills = typenet_ml_features(strokes, pairs, grain, top_digraphs(pairs, 10))
        key = f"features/typenet_ml/{g}"
        pd.testing.assert_frame_equal(
            stored(storage, key, V2), from_parquet_bytes(to_parquet_bytes(want)), obj=key, check_exact=True
        )
        metadata = _metadata(results[V2], key)
        assert {k: v.value for k, v in metadata.items() if k.startswith("fill/")} == {
            f"fill/{d}/{rule}": v for d, counts in fills.items() for rule, v in counts.items()
        }
