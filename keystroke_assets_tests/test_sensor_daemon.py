"""The upload sensor and automation with the real daemon: uploads copied into the local folder of
the README's Start (`keystroke-assets demo`, i.e. `dg dev`), or into a bucket of
fake-gcs-server, become one fully materialized version by themselves, even when the daemon is
killed and restarted on the way."""

import math
import time
from datetime import UTC, datetime

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import InstigatorType  # the cursor of a sensor: no public reader

from keystroke_assets.definitions import defs
from keystroke_assets.partitions import dataset_versions, make_version_id
from keystroke_assets.resources import object_store
from keystroke_assets.sensors import UploadCursor, listing_digest
from keystroke_assets.synthetic import web_app_uploads

from .servers import dagster_servers, demo, instance_at, wait_for

pytestmark = pytest.mark.servers

ASSETS = list(defs.resolve_asset_graph().toposorted_asset_keys)
# seconds for each wait below. Measured on 2 cores shared with other work (load 3-4): a burst to
# a complete version in 91 s (GCS) and 152 s (the demo killed and started again); the
# rest is room for a busier machine, where each step's subprocess starts slower.
BOUND = 420


def drop(store, participants: range, chunks: int = 3) -> str:
    """Upload the participants' objects in a few chunks a second apart (less than the quiet
    period); return the version id the burst must get: its newest object's time."""
    objects = list(web_app_uploads(len(participants), seed=9, first_index=participants.start, broken_every=0))
    for i in range(chunks):
        for name, data in objects[i::chunks]:
            store.write_bytes(name, data)
        time.sleep(1)
    newest = max(s.modified for s in store.list_stamps().values())
    return make_version_id("sensor", datetime.fromtimestamp(math.floor(newest), UTC))


def upload_sensor_state(instance):
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.origin.instigator_name == "upload_sensor":
            return state
    return None


def sensor_cursor(instance) -> UploadCursor | None:
    state = upload_sensor_state(instance)
    return UploadCursor.from_json(state.instigator_data.cursor) if state and state.instigator_data else None


def evaluated_sensor_ticks(instance, after: float) -> list:
    """The upload sensor's ticks started after `after` (a timestamp) that finished evaluating."""
    state = upload_sensor_state(instance)
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=after)
    return [t for t in ticks if t.status.value in ("SKIPPED", "SUCCESS")]


def missing(instance, version: str) -> list[str]:
    return [k.to_user_string() for k in ASSETS if version not in instance.get_materialized_partitions(k)]


def versions(instance) -> list[str]:
    return instance.get_dynamic_partitions(dataset_versions.name)


def participants_in(instance, version: str) -> int:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("web_app_data"), asset_partitions=[version]), limit=1
    ).records
    return records[0].asset_materialization.metadata["participants"].value


def sensors_status(servers) -> dict:
    data = servers.graphql(
        '{ sensorsOrError(repositorySelector: {repositoryName: "__repository__", '
        'repositoryLocationName: "keystroke_assets"}) { ... on Sensors { results { name sensorState { status } } } } }'
    )
    return {s["name"]: s["sensorState"]["status"] for s in data["sensorsOrError"]["results"]}


def seen_by_the_sensor(instance, store) -> bool:
    """The sensor's cursor holds the current listing and complete participants not versioned yet."""
    cursor = sensor_cursor(instance)
    return (
        bool(cursor) and cursor.listing == listing_digest(store.list_stamps()) and cursor.complete != cursor.versioned
    )


def test_readme_demo_makes_a_version_of_a_copied_participant_across_a_daemon_crash(tmp_path):
    """`keystroke-assets demo` (the README's Start: `dg dev`), a participant's files
    copied into the upload folder, the daemon killed in the quiet period (dg dev stops) and
    dg dev started again."""
    with demo(tmp_path, {}, tmp_path / "logs") as servers, instance_at(servers.home) as instance:
        assert sensors_status(servers) == {"upload_sensor": "RUNNING", "keep_versions_complete": "RUNNING"}
        (demo_version,) = versions(instance)
        assert demo_version.endswith("_demo")
        store = object_store(str(tmp_path / "data" / "uploads"))
        expected = drop(store, range(1, 2))
        copied = time.monotonic()
        wait_for(
            lambda: seen_by_the_sensor(instance, store), BOUND, "the sensor to see the participant", servers.log_tails
        )
        assert versions(instance) == [demo_version]
        servers.kill_dev_daemon()
        servers.start_demo()
        servers.wait_until_up()

        wait_for(
            lambda: len(versions(instance)) == 2 and not missing(instance, versions(instance)[1]),
            BOUND,
            "the copied participant's version fully materialized",
            servers.log_tails,
        )
        took = time.monotonic() - copied
        assert versions(instance) == [demo_version, expected]
        assert participants_in(instance, expected) == 2
        assert [r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.FAILURE] == []
        # automation never takes a snapshot: the demo version waits for "Materialize all" in the UI
        assert missing(instance, demo_version) == [k.to_user_string() for k in ASSETS]
        print(f"README demo, daemon killed and dg dev restarted: copied participant → complete version in {took:.0f} s")
    # the first start logged no warning (by then its daemon had ticked many times)
    started = (tmp_path / "logs" / "demo-0.log").read_text()
    assert "Checking for new runs for sensor" in started and "WARNING" not in started, started
    # the root's dagster.yaml: everything Dagster stores is under .dagster/, nothing else appears
    assert {p.name for p in tmp_path.iterdir()} == {
        ".dagster",
        ".nux",
        "dagster.yaml",
        "workspace.yaml",
        "data",
        "logs",
    }


def test_gcs_uploads_make_one_version_across_a_daemon_crash(tmp_path, gcs_bucket):
    """A burst into a bucket of fake-gcs-server; the daemon killed as soon as the version exists
    (its snapshot queued or running) and started again."""
    env = {
        "KEYSTROKE_UPLOADS": f"gs://{gcs_bucket.name}/uploads",
        "KEYSTROKE_STORAGE": f"gs://{gcs_bucket.name}/datasets",
    }
    store = object_store(env["KEYSTROKE_UPLOADS"])
    with dagster_servers(tmp_path / "home", env, tmp_path / "logs") as servers, instance_at(servers.home) as instance:
        expected = drop(store, range(0, 2))
        dropped = time.monotonic()
        wait_for(lambda: versions(instance), BOUND, "the sensor to add the version", servers.log_tails)
        servers.kill_daemon()
        servers.start_daemon()

        wait_for(
            lambda: not missing(instance, versions(instance)[0]),
            BOUND,
            "the version fully materialized",
            servers.log_tails,
        )
        took = time.monotonic() - dropped
        assert versions(instance) == [expected]
        assert participants_in(instance, expected) == 2
        assert gcs_bucket.get_blob(f"datasets/keypairs/{expected}.segments.json") is not None
        # a tick of the restarted daemon evaluated after the version was complete: still one version
        complete = time.time()
        wait_for(
            lambda: evaluated_sensor_ticks(instance, complete),
            BOUND,
            "a sensor tick after completion",
            servers.log_tails,
        )
        assert versions(instance) == [expected]
        print(f"GCS, daemon killed and restarted: burst → complete version in {took:.0f} s")
