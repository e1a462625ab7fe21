"""The keypairs step's segments computed in a local pool or on a Dask cluster, a worker killed on
the way included, give the tables and metadata of the in-process run."""

import os
import pickle
from functools import partial

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from keystroke_assets.assets.keypairs import KEYPAIRS, KEYSTROKES
from keystroke_assets.definitions import defs
from keystroke_assets.resources import object_store, resources_from_env
from keystroke_assets.resources.parquet_io_manager import ParticipantShards, to_parquet_bytes
from keystroke_assets.resources.segment_executor import SegmentExecutor, _in_order
from keystroke_assets.synthetic import aalto_uploads, web_app_uploads, write_uploads

from .conftest import VERSION


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

    assert executor().workers == 1  # the step's own process
    assert executor(KEYSTROKE_SEGMENT_WORKERS="0").workers == 0  # one per core
    assert executor(KEYSTROKE_DASK_SCHEDULER="tcp://d:8786").scheduler == "tcp://d:8786"


def test_a_segment_sent_to_another_process_reads_its_row_group_from_the_store(tmp_path):
    store, name = object_store(str(tmp_path)), "cleaned_data/v.parquet"
    users = pd.Categorical(["u2"] * 3 + ["u0"] * 4 + ["u1"] * 2)
    store.write_bytes(name, to_parquet_bytes(pd.DataFrame({"user_id": users, "HL": range(9)}), shard_rows=3))
    with store.open(name) as f:
        segments = ParticipantShards(f, store.uri(), name).segments()
        # row groups start at rows 0, 3, 7 (whole participants, ~3 rows each)
        assert [s.read()["HL"].tolist() for s in segments] == [[0, 1, 2], [3, 4, 5, 6], [7, 8]]
    sent = pickle.loads(pickle.dumps(segments[1]))  # without the step's open file, which is closed now
    assert sent.file is None
    assert sent.read()["HL"].tolist() == [3, 4, 5, 6]
    assert sent.read()["user_id"].tolist() == ["u0"] * 4


@pytest.fixture(scope="module")
def several_shards(tmp_path_factory):
    """A version whose cleaned_data has several row groups (one participant each, as in
    test_shards.py), its keystrokes and keypairs made in the step's process."""
    folder = tmp_path_factory.mktemp("several_shards")
    uploads, storage = folder / "uploads", folder / "storage"
    write_uploads(uploads, web_app_uploads(6, seed=5, broken_every=4))
    write_uploads(uploads, aalto_uploads(2, seed=5))
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(storage)}
    run_config = {"ops": {"raw_data": {"config": {"batch_mb": 0.2}}}}
    with dg.DagsterInstance.ephemeral() as instance:
        resources = {**resources_from_env(env), "segment_executor": SegmentExecutor(workers=1)}
        selection = ["web_app_data", "raw_data", "cleaned_data", "keystrokes", "keypairs"]
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
    assert pq.ParquetFile(storage / "cleaned_data" / f"{VERSION}.parquet").num_row_groups >= 5
    return env, storage, _tables(storage), _metadata(result)


def _tables(storage) -> dict[str, pd.DataFrame]:
    return {k: pq.read_table(storage / k / f"{VERSION}.parquet").to_pandas() for k in ["keystrokes", "keypairs"]}


def _metadata(result) -> dict:
    """Counts, shares and texts of keystrokes' and keypairs' materializations (not the plots)."""
    return {
        (e.asset_key.to_user_string(), k): v.value
        for e in result.get_asset_materialization_events()
        if e.asset_key in (KEYSTROKES, KEYPAIRS)
        for k, v in e.materialization.metadata.items()
        if isinstance(v.value, int | float | str)
    }


def _keypairs_step(env: dict, executor: SegmentExecutor) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("dataset_versions", [VERSION])
        return dg.materialize(
            list(defs.assets),
            selection=[KEYSTROKES, KEYPAIRS],
            partition_key=VERSION,
            instance=instance,
            resources={**resources_from_env(env), "segment_executor": executor},
        )


def _same_as_in_process(several_shards, result) -> None:
    _, storage, tables, metadata = several_shards
    assert result.success
    for key, table in _tables(storage).items():
        pd.testing.assert_frame_equal(table, tables[key], obj=key)
    assert _metadata(result) == metadata
    assert all(c.passed for c in result.get_asset_check_evaluations())


def test_a_local_pool_gives_the_in_process_tables(several_shards):
    env = several_shards[0]
    _same_as_in_process(several_shards, _keypairs_step(env, SegmentExecutor(workers=2)))


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.mark.servers
def test_a_dask_cluster_gives_the_in_process_tables(several_shards, dask_cluster):
    env = {**several_shards[0], "KEYSTROKE_DASK_SCHEDULER": dask_cluster.scheduler_address}
    result = _keypairs_step(env, resources_from_env(env)["segment_executor"])
    _same_as_in_process(several_shards, result)


def _fails_once(marker_folder: str, fn, segment):
    """fn(segment), except the first time for segments 1 and 2: segment 1's worker process dies
    (as on a lost machine), segment 2 raises (as on a failed read). The marker files say it
    happened, whichever worker runs the segment next."""
    marker = os.path.join(marker_folder, f"segment-{segment.index}")
    if segment.index in (1, 2) and not os.path.exists(marker):
        open(marker, "w").close()
        if segment.index == 1:
            os._exit(1)
        raise OSError("the store did not answer")
    return fn(segment)


class FailingOnce(SegmentExecutor):
    marker_folder: str

    def map(self, fn, segments):
        return super().map(partial(_fails_once, self.marker_folder, fn), segments)


@pytest.mark.servers
def test_a_killed_worker_and_a_failed_segment_are_computed_again_once(several_shards, dask_cluster, tmp_path):
    env = several_shards[0]
    executor = FailingOnce(scheduler=dask_cluster.scheduler_address, marker_folder=str(tmp_path))
    result = _keypairs_step(env, executor)
    assert sorted(os.listdir(tmp_path)) == ["segment-1", "segment-2"]  # both failed once
    _same_as_in_process(several_shards, result)
