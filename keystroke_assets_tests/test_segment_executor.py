"""The keypairs step's segments computed in a local pool or on a Dask cluster, a worker killed on
the way included, give the tables and metadata of the in-process run."""

import json
import os
import shutil
from functools import partial

import dagster as dg
import pandas as pd
import pytest

from keystroke_assets.assets.keypairs import KEYPAIRS, KEYSTROKES
from keystroke_assets.definitions import defs
from keystroke_assets.features.typenet_ml import GRAINS, top_digraphs, typenet_ml_features
from keystroke_assets.resources import resources_from_env
from keystroke_assets.resources.object_store import LocalObjectStore
from keystroke_assets.resources.parquet_io_manager import from_parquet_bytes, to_parquet_bytes
from keystroke_assets.resources.segment_executor import SegmentExecutor, _in_order
from keystroke_assets.synthetic import aalto_uploads, web_app_uploads, write_uploads

from .conftest import SEGMENTED, VERSION, stored

FEATURES = [key for key in SEGMENTED if key.startswith("features/")]  # the features stored per segment
# typenet_ml: one table per version, from partial results computed per segment
TYPENET_ML = [f"features/typenet_ml/{grain}" for grain in GRAINS]


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value

    def cancel(self):
        pass


def test_results_come_in_segment_order_with_a_bounded_window():
    submitted = []

    def submit(segment):
        submitted.append(segment)
        return _Done(segment * 10)

    taken = []
    for result in _in_order(submit, range(7), window=3):
        taken.append(result)
        # the k-th result is taken with k - 1 taken before it and 3 in flight: k + 2 submitted, of 7
        assert len(submitted) == min(len(taken) + 2, 7)
    assert taken == [0, 10, 20, 30, 40, 50, 60]


def test_the_executor_is_chosen_by_environment(tmp_path):
    def executor(**env) -> SegmentExecutor:
        return resources_from_env({"KEYSTROKE_STORAGE": str(tmp_path), **env})["segment_executor"]

    assert executor().workers == 0  # one per core
    assert executor(KEYSTROKE_SEGMENT_WORKERS="1").workers == 1  # the step's own process
    assert executor(KEYSTROKE_DASK_SCHEDULER="tcp://d:8786").scheduler == "tcp://d:8786"


@pytest.fixture(scope="module")
def several_shards(tmp_path_factory):
    """A version whose cleaned_data has several segments (one participant each, as in
    test_shards.py), its keystrokes, keypairs and per-segment features made in the step's process."""
    folder = tmp_path_factory.mktemp("several_shards")
    uploads, storage = folder / "uploads", folder / "storage"
    write_uploads(uploads, web_app_uploads(6, seed=5, broken_every=4))
    write_uploads(uploads, aalto_uploads(2, seed=5))
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(storage)}
    run_config = {"ops": {"raw_data": {"config": {"participants_per_segment": 1}}}}
    with dg.DagsterInstance.ephemeral() as instance:
        resources = {**resources_from_env(env), "segment_executor": SegmentExecutor(workers=1)}
        selection = ["web_app_data", "raw_data", "cleaned_data", "keystrokes", "keypairs", *FEATURES]
        instance.add_dynamic_partitions("dataset_versions", [VERSION])
        result = dg.materialize(
            list(defs.assets),
            selection=selection,
            partition_key=VERSION,
            instance=instance,
            resources=resources,
            run_config=run_config,
        )
        assert result.success
    assert len(_segments(storage, "cleaned_data")) == 8
    return env, storage, _tables(storage), _metadata(result)


def _segments(storage, key: str) -> list[str]:
    return json.loads((storage / key / f"{VERSION}.segments.json").read_text())["names"]


def _tables(storage) -> dict[str, pd.DataFrame]:
    return {k: stored(storage, k) for k in ["keystrokes", "keypairs"]}


def _metadata(result) -> dict:
    """Counts, shares and texts of keystrokes' and keypairs' materializations (not the plots)."""
    return {
        (e.asset_key.to_user_string(), k): v.value
        for e in result.get_asset_materialization_events()
        if e.asset_key in (KEYSTROKES, KEYPAIRS)
        for k, v in e.materialization.metadata.items()
        if isinstance(v.value, int | float | str) and k != "path"
    }


def _keypairs_step(several_shards, tmp_path, executor: SegmentExecutor) -> dg.ExecuteInProcessResult:
    """The keypairs step again on a copy of the version's storage without keystrokes and keypairs,
    so that every segment is computed by `executor` (none reused)."""
    env, storage = several_shards[0], tmp_path / "storage"
    shutil.copytree(several_shards[1], storage, ignore=lambda folder, _: ["keystrokes", "keypairs"])
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("dataset_versions", [VERSION])
        return dg.materialize(
            list(defs.assets),
            selection=[KEYSTROKES, KEYPAIRS],
            partition_key=VERSION,
            instance=instance,
            resources={**resources_from_env({**env, "KEYSTROKE_STORAGE": str(storage)}), "segment_executor": executor},
        )


def _same_as_in_process(several_shards, result, tmp_path, retried: bool = False) -> None:
    """The tables and metadata of the in-process run; `retried`: the step ran again, so the
    segments its failed attempt stored whole are reused, not computed again."""
    _, _, tables, metadata = several_shards
    assert result.success
    for key, table in _tables(tmp_path / "storage").items():
        pd.testing.assert_frame_equal(table, tables[key], obj=key)
    got = _metadata(result)
    assert metadata[("keypairs", "segments/computed")] == 8
    if retried:
        for key in ["keystrokes", "keypairs"]:
            computed, reused = (got.pop((key, f"segments/{s}")) for s in ["computed", "reused"])
            metadata = {k: v for k, v in metadata.items() if k[0] != key or not k[1].startswith("segments/")}
            assert computed + reused == 8 and computed >= 2  # at least the two that failed
    assert got == metadata
    assert all(c.passed for c in result.get_asset_check_evaluations())


def test_a_local_pool_gives_the_in_process_tables(several_shards, tmp_path):
    _same_as_in_process(several_shards, _keypairs_step(several_shards, tmp_path, SegmentExecutor(workers=2)), tmp_path)


def test_features_in_a_local_pool_give_the_in_process_tables(several_shards, tmp_path):
    # the segment functions and the features' checks go to the pool's processes by pickle
    env, storage = several_shards[0], tmp_path / "storage"
    shutil.copytree(several_shards[1], storage, ignore=lambda folder, _: ["features"])
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("dataset_versions", [VERSION])
        result = dg.materialize(
            list(defs.assets),
            selection=[*FEATURES, *TYPENET_ML],
            partition_key=VERSION,
            instance=instance,
            resources={
                **resources_from_env({**env, "KEYSTROKE_STORAGE": str(storage)}),
                "segment_executor": SegmentExecutor(workers=2),
            },
        )
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    computed = {
        e.asset_key.to_user_string(): e.materialization.metadata["segments/computed"].value
        for e in result.get_asset_materialization_events()
    }
    assert computed == dict.fromkeys([*FEATURES, *TYPENET_ML], 8)  # every segment in the pool, none reused
    for key in FEATURES:
        pd.testing.assert_frame_equal(stored(storage, key), stored(several_shards[1], key), obj=key)
    strokes, pairs = stored(storage, "keystrokes"), stored(storage, "keypairs")
    for key, grain in zip(TYPENET_ML, GRAINS.values()):
        want, _, _ = typenet_ml_features(strokes, pairs, grain, top_digraphs(pairs, 10))
        pd.testing.assert_frame_equal(stored(storage, key), from_parquet_bytes(to_parquet_bytes(want)), obj=key)


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.mark.servers
def test_a_dask_cluster_gives_the_in_process_tables(several_shards, dask_cluster, tmp_path):
    executor = resources_from_env({"KEYSTROKE_DASK_SCHEDULER": dask_cluster.scheduler_address})["segment_executor"]
    _same_as_in_process(several_shards, _keypairs_step(several_shards, tmp_path, executor), tmp_path)


def _fails_once(marker_folder: str, dying: str, failing: str, fn, job):
    """fn(job), except the first time for the segments `dying` and `failing`: the first's worker
    process dies inside the segment function, its table written and its summary not (as on a lost
    machine, or a worker killed by the OOM killer); the second raises (as on a failed read). The
    marker files say it happened, whichever worker runs the segment next."""
    role = {dying: "dies", failing: "raises"}.get(job.source)
    marker = os.path.join(marker_folder, f"segment-{role}")
    if role and not os.path.exists(marker):
        open(marker, "w").close()
        if role == "raises":
            raise OSError("the store did not answer")
        write = LocalObjectStore.write_bytes

        def die_before_the_summary(store, name, data):
            if name.endswith(".json"):
                os._exit(1)
            write(store, name, data)

        LocalObjectStore.write_bytes = die_before_the_summary  # in this worker, which is about to die
    return fn(job)


class FailingOnce(SegmentExecutor):
    marker_folder: str
    dying: str
    failing: str

    def map(self, fn, jobs):
        return super().map(partial(_fails_once, self.marker_folder, self.dying, self.failing, fn), jobs)


@pytest.mark.parametrize("where", ["pool", pytest.param("dask", marks=pytest.mark.servers)])
def test_a_worker_killed_mid_segment_and_a_failed_segment_are_computed_again(
    where, several_shards, tmp_path, request, no_retry_waits
):
    """On Dask the scheduler computes both again on a live worker within the step; in a local
    pool the dead worker breaks the pool, the step fails and its retry starts a new one."""
    markers = tmp_path / "markers"
    markers.mkdir()
    sources = _segments(several_shards[1], "cleaned_data")
    place = {"scheduler": request.getfixturevalue("dask_cluster").scheduler_address} if where == "dask" else {}
    executor = FailingOnce(**place, workers=2, marker_folder=str(markers), dying=sources[1], failing=sources[2])
    result = _keypairs_step(several_shards, tmp_path, executor)
    assert sorted(os.listdir(markers)) == ["segment-dies", "segment-raises"]  # both failed once
    retried = len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"])
    # in a pool, the raise comes in the attempt the death broke, or in the next one
    assert retried == 0 if where == "dask" else 1 <= retried <= 2
    _same_as_in_process(several_shards, result, tmp_path, retried=where == "pool")
