"""keep_complete() evaluated tick by tick on a real instance (Dagster's own evaluator, no daemon):
what it requests for a new version, for a feature missing everywhere, and what it never does."""

from unittest import mock

import dagster as dg

from keystroke_assets.definitions import defs
from keystroke_assets.partitions import dataset_versions
from keystroke_assets.synthetic import web_app_uploads, write_uploads

from .conftest import failed_rules_of, materialize_version

V1, V2 = "2026-02-01_00-00-00_lab", "2026-02-02_00-00-00_lab"
GRAPH = defs.resolve_asset_graph()
ASSETS = list(GRAPH.toposorted_asset_keys)
SNAPSHOT = dg.AssetKey("web_app_data")
FEATURE = dg.AssetKey(["features", "kvc"])


def stored(instance, version: str, keys) -> None:
    """Materializations as a run would have recorded them."""
    for key in keys:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=version))


def tick(instance, cursor=None):
    # Dagster's tester asks the instance for the list of versions once per condition node and
    # partition subset (the daemon reads it through a cache): seconds per tick. Same list, once.
    versions = instance.get_dynamic_partitions(dataset_versions.name)
    with mock.patch.object(instance, "get_dynamic_partitions", lambda *_, **__: list(versions)):
        return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)


def downstream_of(key: dg.AssetKey) -> set[str]:
    children = GRAPH.get(key).child_keys
    return {c.to_user_string() for c in children}.union(*(downstream_of(c) for c in children))


def requested(result) -> dict:
    return {
        k.to_user_string(): sorted(result.get_requested_partitions(k))
        for k in ASSETS
        if result.get_requested_partitions(k)
    }


def test_a_new_version_gets_everything_after_its_snapshot_in_one_tick(instance):
    instance.add_dynamic_partitions(dataset_versions.name, [V1])
    first = tick(instance)
    assert first.total_requested == 0  # no snapshot yet: automation never takes one
    stored(instance, V1, [SNAPSHOT])
    second = tick(instance, first.cursor)
    assert requested(second) == {k.to_user_string(): [V1] for k in ASSETS if k != SNAPSHOT}


def test_a_feature_missing_for_existing_versions_is_filled(instance):
    instance.add_dynamic_partitions(dataset_versions.name, [V1, V2])
    for version in (V1, V2):
        stored(instance, version, [k for k in ASSETS if k != FEATURE])
    # on the very first evaluation, unlike eager()
    assert requested(tick(instance)) == {"features/kvc": [V1, V2]}


def test_a_request_is_not_repeated_before_its_materialization_is_seen(instance):
    instance.add_dynamic_partitions(dataset_versions.name, [V1])
    stored(instance, V1, [k for k in ASSETS if k != FEATURE])
    first = tick(instance)
    assert requested(first) == {"features/kvc": [V1]}
    second = tick(instance, first.cursor)  # the run has not stored it yet
    assert second.total_requested == 0
    stored(instance, V1, [FEATURE])
    assert tick(instance, second.cursor).total_requested == 0


def test_an_updated_input_reruns_what_reads_it(instance):
    instance.add_dynamic_partitions(dataset_versions.name, [V1])
    stored(instance, V1, ASSETS)
    quiet = tick(instance)
    assert quiet.total_requested == 0
    stored(instance, V1, [dg.AssetKey("keypairs")])  # e.g. `keystroke-assets materialize --force -f keypairs`
    # what reads keypairs, and what reads those (their evaluations, the summary), in one tick;
    # kvc, typenet_sequences and behavioral read keystrokes instead
    after_pairs = downstream_of(dg.AssetKey("keypairs"))
    assert "features/statistical" in after_pairs and "features/kvc" not in after_pairs
    assert requested(after := tick(instance, quiet.cursor)) == {k: [V1] for k in after_pairs}
    stored(instance, V1, [dg.AssetKey("keystrokes")])
    # the summary, requested a tick ago, is not requested again before its materialization is seen
    after_strokes = downstream_of(dg.AssetKey("keystrokes")) - after_pairs
    assert requested(tick(instance, after.cursor)) == {k: [V1] for k in after_strokes}


def test_nothing_runs_downstream_of_a_failed_blocking_check(instance, tmp_path):
    uploads = tmp_path / "uploads"
    write_uploads(uploads, web_app_uploads(1, seed=2))
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(tmp_path / "storage")}
    for path in uploads.glob("*.csv"):
        path.write_bytes(b"")  # every keystroke file empty: raw_data's blocking non_empty check fails
    result = materialize_version(instance, env, V1, selection=["web_app_data", "raw_data"], raise_on_error=False)
    assert failed_rules_of(result) == [("raw_data", "non_empty")]
    assert tick(instance).total_requested == 0  # cleaned_data would read raw_data: held back
