"""Asset backfills over dataset versions, and which versions of an asset are stale.

`launch_asset_backfill` submits the same backfill object the UI's "Materialize → backfill" dialog
creates (GraphQL `launchPartitionBackfill`): it is listed on the UI's Backfills page and the
daemon (`dagster-daemon run`, or `dg dev`) runs it, one run per version, through the run queue.
`stale_partitions` asks the same resolver as the UI's "unsynced" badge. Dagster's Python API (1.13)
has no public call for either, so both use the classes the UI's server uses: the imports from
`dagster._core` below, to be checked on every Dagster upgrade (test_backfill.py, test_restale.py
and test_cli.py exercise them).
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.definitions.temporal_context import TemporalContext
from dagster._core.definitions.utils import check_valid_title
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.utils import make_new_backfill_id

from keystroke_assets.partitions import dataset_versions, validate_version_id


def launch_asset_backfill(
    instance: dg.DagsterInstance,
    asset_keys: Sequence[dg.AssetKey | str],
    partition_keys: Sequence[str],
    title: str | None = None,
) -> str:
    """Submit an asset backfill of `asset_keys` over the versions `partition_keys`; return its id.

    Every asset must be partitioned by `dataset_versions` and every key must be a version already
    added to the instance. Only the selected assets run (upstream assets are read, not
    re-materialized); several selected assets run in dependency order. The daemon executes the
    backfill; follow it on the UI's Backfills page or with `instance.get_backfill(id)`.
    """
    keys = [k if isinstance(k, dg.AssetKey) else dg.AssetKey.from_user_string(k) for k in asset_keys]
    versions = [validate_version_id(v) for v in partition_keys]
    if not keys or not versions:
        raise ValueError("a backfill needs at least one asset key and one version")
    known = set(instance.get_dynamic_partitions(dataset_versions.name))
    unknown = [v for v in versions if v not in known]
    if unknown:
        raise ValueError(f"versions not added to this instance: {', '.join(unknown)}")
    subset = dataset_versions.subset_with_partition_keys(versions)
    backfill = PartitionBackfill.from_asset_graph_subset(
        backfill_id=make_new_backfill_id(),
        backfill_timestamp=datetime.now(UTC).timestamp(),
        tags={},
        dynamic_partitions_store=instance,
        asset_graph_subset=AssetGraphSubset(partitions_subsets_by_asset_key={k: subset for k in keys}),
        title=check_valid_title(title),
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def stale_partitions(
    instance: dg.DagsterInstance, asset_graph: dg.Definitions | BaseAssetGraph, asset_key: dg.AssetKey | str
) -> list[str]:
    """Versions of `asset_key` whose latest materialization is stale, in the order versions were added.

    Stale is Dagster's own verdict (the same resolver as the UI's "unsynced" badge): the asset's
    `code_version` differs from the one recorded on the materialization, or an upstream partition
    has a new data version since. Versions never materialized are missing, not stale: they are
    not listed. `asset_graph` is the code location's `Definitions` (or its asset graph), i.e. the
    code as it is now.
    """
    key = asset_key if isinstance(asset_key, dg.AssetKey) else dg.AssetKey.from_user_string(asset_key)
    graph = asset_graph.resolve_asset_graph() if isinstance(asset_graph, dg.Definitions) else asset_graph
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=datetime.now(UTC), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    materialized = instance.get_materialized_partitions(key)
    return [
        version
        for version in instance.get_dynamic_partitions(dataset_versions.name)
        if version in materialized and resolver.get_status(key, version) == StaleStatus.STALE
    ]
