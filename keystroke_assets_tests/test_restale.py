"""Item 5: bumping a feature's code_version makes exactly its materialized versions stale;
re-materializing those (and nothing else) leaves nothing stale. New keypairs data for one version
makes the feature stale for that version only."""

import dagster as dg

from keystroke_assets.backfills import stale_partitions
from keystroke_assets.definitions import defs
from keystroke_assets.resources import resources_from_env
from keystroke_assets.synthetic import web_app_uploads, write_uploads

from .conftest import materialize_version

V1, V2, V3 = "2025-10-01_09-00-00_lab-mac", "2025-10-02_09-00-00_lab-mac", "2025-10-03_09-00-00_lab-mac"
STATISTICAL = dg.AssetKey(["features", "statistical"])
KEYPAIRS = dg.AssetKey("keypairs")
CHAIN = [dg.AssetKey(k) for k in ["web_app_data", "raw_data", "cleaned_data", "keystrokes", "keypairs"]]


def with_code_version(key: dg.AssetKey, version: str, assets=defs.assets) -> list[dg.AssetsDefinition]:
    """`assets` with `key`'s code_version changed: the code after an edit."""
    return [
        a.map_asset_specs(lambda s: s.replace_attributes(code_version=version)) if key in a.keys else a for a in assets
    ]


def counts(instance) -> dict:
    return {
        k.to_user_string(): len(instance.fetch_materializations(k, limit=1000).records)
        for k in defs.resolve_asset_graph().get_all_asset_keys()
    }


def test_restale_after_a_code_change_then_after_new_upstream_data(instance, tmp_path):
    env = {"KEYSTROKE_UPLOADS": str(tmp_path / "uploads"), "KEYSTROKE_STORAGE": str(tmp_path / "storage")}
    write_uploads(tmp_path / "uploads", web_app_uploads(2, seed=5, broken_every=0))
    for version in [V1, V2]:
        assert materialize_version(instance, env, version, selection=[*CHAIN, STATISTICAL]).success
    assert materialize_version(instance, env, V3, selection=CHAIN).success  # statistical missing for V3
    assert stale_partitions(instance, defs, STATISTICAL) == []

    # 1. statistical's algorithm changes: its code_version goes from 1 to 2
    bumped = with_code_version(STATISTICAL, "2")
    bumped_defs = dg.Definitions(assets=bumped, resources=resources_from_env(env))
    # V3 was never materialized: missing, not stale
    assert stale_partitions(instance, bumped_defs, STATISTICAL) == [V1, V2]
    assert stale_partitions(instance, bumped_defs, KEYPAIRS) == []

    before = counts(instance)
    for version in stale_partitions(instance, bumped_defs, STATISTICAL):
        result = dg.materialize(
            bumped, selection=[STATISTICAL], partition_key=version, instance=instance, resources=resources_from_env(env)
        )
        assert result.success
    assert stale_partitions(instance, bumped_defs, STATISTICAL) == []
    after = counts(instance)
    assert after.pop("features/statistical") == before.pop("features/statistical") + 2
    assert after == before  # nothing else ran
    assert instance.get_materialized_partitions(STATISTICAL) == {V1, V2}
    latest = instance.get_latest_materialization_event(STATISTICAL).asset_materialization
    assert latest.tags["dagster/code_version"] == "2"

    # 2. keypairs' algorithm changes and is re-run for V1 only: keypairs' data version for V1
    # changes, so statistical is stale for V1 and for no other version
    both = with_code_version(KEYPAIRS, "edited", bumped)
    assert dg.materialize(
        both, selection=[KEYPAIRS], partition_key=V1, instance=instance, resources=resources_from_env(env)
    ).success
    both_defs = dg.Definitions(assets=both, resources=resources_from_env(env))
    assert stale_partitions(instance, both_defs, STATISTICAL) == [V1]
    assert stale_partitions(instance, both_defs, KEYPAIRS) == [V2, V3]
