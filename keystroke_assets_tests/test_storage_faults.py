"""Storage faults: GCS answering errors, down, slow or returning wrong bytes mid-run; writes that
fail half-way; the upload sensor during an outage.

Faults are injected by a proxy on 127.0.0.1 in front of fake-gcs-server (fault_proxy.py); the
pipeline's client is pointed at the proxy, the test reads the bucket directly. Two layers retry:
the google-cloud-storage client retries every request on 429/5xx and connection errors for up to
120 s (1, 2, 4 .. 60 s apart), and each asset's RetryPolicy re-runs the step on anything the
client gives up on (2±2, 6±2, 14±2 s later).
"""

import errno
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pandas as pd
import pytest
from dagster_gcp import GCSResource

from keystroke_assets.partitions import dataset_versions
from keystroke_assets.resources import object_store
from keystroke_assets.resources.object_store import GCSObjectStore, LocalObjectStore
from keystroke_assets.sensors import upload_sensor
from keystroke_assets.synthetic import web_app_uploads, write_uploads

from .conftest import VERSION, materialize_version, stored
from .fault_proxy import FaultProxy, Rule, body_has

SELECTION = [dg.AssetKey(k) for k in ["web_app_data", "raw_data", "cleaned_data"]]
UPLOADS = dict(web_app_uploads(2, seed=7, broken_every=0))
# every line of every task CSV but its header is an event
EVENTS = sum(data.count(b"\n") - 1 for name, data in UPLOADS.items() if name.endswith(".csv"))


@pytest.fixture
def proxy(fake_gcs, gcs_bucket, monkeypatch):
    """The bucket holds UPLOADS; the pipeline's GCS client goes through the proxy (the test's
    `gcs_bucket` client was made before and talks to the server directly)."""
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda item: gcs_bucket.blob(f"uploads/{item[0]}").upload_from_string(item[1]), UPLOADS.items()))
    p = FaultProxy(fake_gcs)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", p.url)
    yield p
    p.close()


def env_of(bucket) -> dict:
    return {"KEYSTROKE_UPLOADS": f"gs://{bucket.name}/uploads", "KEYSTROKE_STORAGE": f"gs://{bucket.name}/datasets"}


def retries(result, step: str) -> list:
    return [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY" and e.step_key == step]


def parquet(bucket, key: str):
    return stored(f"gs://{bucket.name}/datasets", key)


def test_wrong_bytes_from_storage_make_dagster_retry_the_step_with_backoff(instance, gcs_bucket, proxy):
    # raw_data reads the snapshot's pack of task CSVs; its first two answers arrive with a flipped
    # byte, which the client's checksum check refuses and does not retry
    packs = "web_app_data%2Fpacks%2F" + VERSION + "%2F"
    rule = proxy.add(
        Rule(
            lambda method, path, body: method == "GET" and packs in path and "-keystrokes.pack" in path,
            "corrupt",
            times=2,
        )
    )
    result = materialize_version(instance, env_of(gcs_bucket), selection=SELECTION)

    assert result.success and rule.hits == 2
    up = retries(result, "raw_data")
    assert len(up) == 2 and "DataCorruption" in up[0].event_specific_data.error.to_string()
    # exponential backoff with jitter: (2**n - 1) * 2 s ± 2 s before attempt n + 1
    waits = [e.event_specific_data.seconds_to_wait for e in up]
    assert 0 <= waits[0] <= 4 and 4 <= waits[1] <= 8
    assert len(parquet(gcs_bucket, "raw_data")) == EVENTS


def test_a_stage_table_opened_from_gcs_is_a_checked_local_file(gcs_bucket, proxy):
    # how a step reads its input shard by shard: the download goes to a local file, checksummed
    store = GCSObjectStore(gcs=GCSResource(project="test"), bucket=gcs_bucket.name, prefix="datasets")
    data = os.urandom(3 * 2**20)
    store.write_bytes("raw_data/v.parquet", data)
    proxy.add(Rule(lambda method, path, body: method == "GET" and "raw_data%2Fv.parquet" in path, "corrupt"))
    with pytest.raises(Exception) as refused:
        store.open("raw_data/v.parquet")
    assert refused.typename == "DataCorruption"
    with store.open("raw_data/v.parquet") as f:
        assert os.fstat(f.fileno()).st_size == len(data) and f.read() == data


def test_storage_down_answering_errors_and_slow_mid_run_the_run_still_succeeds(instance, gcs_bucket, proxy):
    outage = proxy.add(Rule(body_has(b"datasets/raw_data/"), "outage", seconds=3))  # down for 3 s when raw_data writes
    errors = proxy.add(
        Rule(lambda m, path, body: m == "GET" and "/o/uploads%2F" in path, "503", times=5)
    )  # snapshot reads
    slow = proxy.add(
        Rule(lambda m, path, body: m == "GET" and "web_app_data%2Fpacks" in path, "delay", times=2, seconds=2)
    )
    result = materialize_version(instance, env_of(gcs_bucket), selection=SELECTION)

    assert result.success
    assert (outage.hits, errors.hits, slow.hits) == (1, 5, 2)  # slow: the packs raw_data and cleaned_data read
    # every fault was absorbed by the client's own retries: no step had to be re-run
    assert [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"] == []
    assert len(parquet(gcs_bucket, "raw_data")) == EVENTS
    assert parquet(gcs_bucket, "cleaned_data")["user_id"].nunique() == 2


def test_a_failed_run_leaves_the_previous_materialization_intact(instance, gcs_bucket, proxy, no_retry_waits):
    env = env_of(gcs_bucket)
    first = materialize_version(instance, env, selection=SELECTION)
    blob = gcs_bucket.get_blob(f"datasets/raw_data/{VERSION}.segments.json")
    before = blob.download_as_bytes()
    names = {b.name for b in gcs_bucket.list_blobs(prefix="datasets/")}
    raw = parquet(gcs_bucket, "raw_data")

    # Another max_file_mb: raw_data's segments have new addresses, so the run writes segments, not
    # only the list. The first segment write reaches the server cut in half, then every later
    # write of raw_data is refused.
    config = {"ops": {"raw_data": {"config": {"max_file_mb": 31}}}}
    cut = proxy.add(Rule(body_has(b"datasets/raw_data/segments/"), "cut"))
    refused = proxy.add(Rule(body_has(b"datasets/raw_data/"), "403", times=4))
    second = materialize_version(instance, env, selection=SELECTION, raise_on_error=False, run_config=config)

    assert not second.success and cut.hits == 1 and refused.hits == 4  # one per attempt: the last fails the run
    assert len(retries(second, "raw_data")) == 3
    after = gcs_bucket.get_blob(f"datasets/raw_data/{VERSION}.segments.json")
    assert (after.generation, after.download_as_bytes()) == (blob.generation, before)
    pd.testing.assert_frame_equal(parquet(gcs_bucket, "raw_data"), raw)
    assert {b.name for b in gcs_bucket.list_blobs(prefix="datasets/")} == names  # nothing half-written appeared
    latest = instance.get_latest_materialization_event(dg.AssetKey("raw_data"))
    assert latest.run_id == first.run_id
    assert instance.get_latest_materialization_event(dg.AssetKey("cleaned_data")).run_id == first.run_id

    # the store back: the same run computes the new segments whole, and the same table
    third = materialize_version(instance, env, selection=SELECTION, run_config=config)
    assert third.success
    pd.testing.assert_frame_equal(parquet(gcs_bucket, "raw_data"), raw)


def test_a_local_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    store = LocalObjectStore(root=str(tmp_path))
    store.write_bytes("raw_data/v.parquet", b"old")
    replace = os.replace

    def disk_full(src, dst):
        if str(dst).endswith("v.parquet"):
            raise OSError(errno.ENOSPC, "No space left on device")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        store.write_bytes("raw_data/v.parquet", b"new" * 1000)
    assert store.read_bytes("raw_data/v.parquet") == b"old"
    assert os.listdir(tmp_path / "raw_data") == ["v.parquet"]


@pytest.mark.parametrize("mode", ["local", pytest.param("gcs", marks=pytest.mark.servers)])
def test_readers_never_see_a_partial_object(mode, tmp_path, request):
    """One thread rewrites an object with 1 MB or 9 MB (a multipart, then a resumable upload on
    GCS) while another reads it: every read is one whole version."""
    if mode == "local":
        store = LocalObjectStore(root=str(tmp_path))
    else:
        bucket = request.getfixturevalue("gcs_bucket")
        store = GCSObjectStore(gcs=GCSResource(project="test"), bucket=bucket.name, prefix="datasets")
    small, large = b"s" * 2**20, b"L" * 9 * 2**20
    store.write_bytes("raw_data/v.parquet", small)
    done, seen = threading.Event(), []

    def read():
        while not done.is_set():
            seen.append(store.read_bytes("raw_data/v.parquet"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for data in [large, small] * 4:
            store.write_bytes("raw_data/v.parquet", data)
    finally:
        done.set()
        reader.join()
    assert seen and all(data in (small, large) for data in seen)


def test_the_upload_sensor_survives_an_outage_without_duplicating_versions(instance, gcs_bucket, proxy, monkeypatch):
    monkeypatch.setenv("KEYSTROKE_QUIET_SECONDS", "0")
    store = GCSObjectStore(gcs=GCSResource(project="test"), bucket=gcs_bucket.name, prefix="uploads")

    def tick(cursor):
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"uploads": store}) as context:
            result = upload_sensor(context)
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(dataset_versions.name, list(request.partition_keys))
        return result

    first = tick(None)
    assert len(first.run_requests) == 1

    # a third participant arrives, then the store goes down for 3 s as the sensor lists it:
    # the client waits it out within the tick, which makes exactly one new version
    for name, data in web_app_uploads(1, seed=7, first_index=2, broken_every=0):
        gcs_bucket.blob(f"uploads/{name}").upload_from_string(data)
    outage = proxy.add(Rule(lambda m, path, body: m == "GET" and "/o?" in path, "outage", seconds=3))
    second = tick(first.cursor)
    assert outage.hits == 1 and len(second.run_requests) == 1
    assert second.run_requests[0].partition_key != first.run_requests[0].partition_key

    # an outage longer than the client waits: the listing raises, so does the tick (the daemon
    # keeps the old cursor); it is not taken for an empty store, which would version a withdrawal
    def down(self):
        raise ConnectionError("storage unreachable")

    with monkeypatch.context() as m:
        m.setattr(GCSObjectStore, "list_stamps", down)
        with pytest.raises(ConnectionError):
            tick(second.cursor)

    # the daemon died after the tick above evaluated and before it saved the cursor: the same
    # tick again asks for the same version under the same run key, which Dagster runs once
    again = tick(first.cursor)
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in second.run_requests]
    assert tick(second.cursor).run_requests == []
    assert sorted(instance.get_dynamic_partitions(dataset_versions.name)) == sorted(
        [first.run_requests[0].partition_key, second.run_requests[0].partition_key]
    )


@pytest.mark.parametrize("mode", ["local", pytest.param("gcs", marks=pytest.mark.servers)])
def test_damaged_kept_bytes_fail_the_stage_loudly_and_nothing_is_stored(
    mode, instance, tmp_path, request, no_retry_waits
):
    """A pack whose bytes no longer match the manifest's MD5 (damaged in storage, or written over
    by a second writer before writers had packs of their own): the stage that reads it fails, naming
    the object, and stores no segment made from it."""
    if mode == "local":
        write_uploads(tmp_path / "uploads", UPLOADS.items())
        env = {"KEYSTROKE_UPLOADS": str(tmp_path / "uploads"), "KEYSTROKE_STORAGE": str(tmp_path / "storage")}
    else:
        bucket = request.getfixturevalue("gcs_bucket")
        for name, data in UPLOADS.items():
            bucket.blob(f"uploads/{name}").upload_from_string(data)
        env = env_of(bucket)
    assert materialize_version(instance, env, selection=[dg.AssetKey("web_app_data")]).success
    manifest = stored(env["KEYSTROKE_STORAGE"], "web_app_data")
    victim = manifest[manifest["kind"] == "keystrokes"].iloc[5]
    pack, span = victim["kept_as"].rsplit("@", 1)
    offset = int(span.split(":")[0]) + 40
    store = object_store(env["KEYSTROKE_STORAGE"])
    data = bytearray(store.read_bytes(pack))
    data[offset] ^= 0x01  # one bit
    store.write_bytes(pack, bytes(data))

    result = materialize_version(instance, env, selection=[dg.AssetKey("raw_data")], raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.to_string()
    assert "KeptBytesDamaged" in message and f"upload {victim['name']!r}" in message
    assert f"do not match the snapshot's MD5 {victim['md5']}" in message
    assert store.list_names("raw_data") == set() and store.list_names("raw_data/segments") == set()
