"""Runs at once on the local SQLite instance, through the real run queue: the local instance settings
(QueuedRunCoordinator, at most 3 runs, 1 run per `dagster/partition` value), dagster-webserver
and dagster-daemon as processes, each run in its own worker process; and the CLI, which runs in
its own process outside the queue, taking a version's snapshot while a queued run takes it."""

import json
import time
import urllib.request

import dagster as dg
import pytest

from keystroke_assets import cli
from keystroke_assets.partitions import dataset_versions
from keystroke_assets.synthetic import aalto_uploads, web_app_uploads, write_uploads

from .clean_build import assert_same_tables, clean_build, tables
from .conftest import stored
from .fault_proxy import FaultProxy, Rule
from .servers import dagster_servers, instance_at, wait_for

pytestmark = pytest.mark.servers

V1, V2 = "2025-10-01_00-00-00_lab-a", "2025-10-01_00-00-00_lab-b"
CHAIN = ["web_app_data", "raw_data", "cleaned_data"]
QUIET = {  # the sensors stay out of the way: no version and no automation run of their own
    "KEYSTROKE_QUIET_SECONDS": "100000",
    "KEYSTROKE_SENSOR_INTERVAL_SECONDS": "100000",
    "KEYSTROKE_AUTOMATION_INTERVAL_SECONDS": "100000",
}
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on Error { message }
  }
}"""
DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
LOST = "taken by another run at the same time: its snapshot is kept, this run's copy removed"


def launch(url: str, version: str, assets=CHAIN, run_config: dict | None = None, tags: dict | None = None) -> str:
    """Launch `assets` (the chain) for one version as the UI's Materialize button does."""
    params = {
        "selector": {
            "repositoryLocationName": "keystroke_assets",
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": k.split("/")} for k in assets],
        },
        "executionMetadata": {
            "tags": [{"key": k, "value": v} for k, v in {"dagster/partition": version, **(tags or {})}.items()]
        },
        **({"runConfigData": run_config} if run_config else {}),
    }
    body = json.dumps({"query": LAUNCH, "variables": {"params": params}}).encode()
    request = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        answer = json.load(r)["data"]["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return answer["run"]["runId"]


def event_time(instance, run_id: str, kind: str) -> float:
    (event,) = instance.all_logs(run_id, of_type=dg.DagsterEventType[kind])
    return event.timestamp


def test_two_versions_run_at_once_and_one_version_never_twice_at_once(tmp_path):
    uploads, storage, home = tmp_path / "uploads", tmp_path / "storage", tmp_path / "home"
    write_uploads(uploads, web_app_uploads(3, seed=5, broken_every=0))
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(storage), **QUIET}
    with dagster_servers(home, env, tmp_path / "logs") as servers, instance_at(home) as instance:
        instance.add_dynamic_partitions(dataset_versions.name, [V1, V2])
        first, other, again = (launch(servers.url, v) for v in (V1, V2, V1))
        deadline = time.time() + 600
        while time.time() < deadline:
            records = {
                r.dagster_run.run_id: r for r in instance.get_run_records(dg.RunsFilter(run_ids=[first, other, again]))
            }
            if all(r.dagster_run.status in DONE for r in records.values()):
                break
            time.sleep(1)
        logs = [e.message or "" for run_id in records for e in instance.all_logs(run_id)]

        queued, launched = (
            {r: event_time(instance, r, kind) for r in records} for kind in ("RUN_ENQUEUED", "RUN_STARTING")
        )

    assert {r.dagster_run.status for r in records.values()} == {dg.DagsterRunStatus.SUCCESS}
    a, b = records[first], records[other]
    # the queue let the two versions go together: each was launched before the other had ended
    # (how much their workers overlap then depends on how fast each process starts)
    assert launched[other] < a.end_time and launched[first] < b.end_time
    # the second run of V1 was queued while the first ran, and launched only after it ended
    assert queued[again] < a.end_time <= launched[again]
    assert not [m for m in logs if "database is locked" in m]
    for log in (tmp_path / "logs").iterdir():
        assert "database is locked" not in log.read_text(errors="replace"), log.name
    # both versions hold the same tables (the same uploads), each as a clean build of them gives
    clean = clean_build({V1: stored(storage, "web_app_data", V1)}, uploads, tmp_path / "clean", CHAIN)
    # which version first had a participant depends on which snapshot was made first
    want = tables(clean, V1, CHAIN)
    want["web_app_data"] = want["web_app_data"].drop(columns="first_seen")
    for version in (V1, V2):
        got = tables(storage, version, CHAIN)
        got["web_app_data"] = got["web_app_data"].drop(columns="first_seen")
        assert_same_tables(got, want)


def wait_done(instance, run_id: str) -> dg.DagsterRun:
    def done():
        run = instance.get_run_by_id(run_id)
        return run if run.status in DONE else None

    return wait_for(done, 300, f"run {run_id} to end")


def snapshots(instance, version: str) -> dict[str, str]:
    """How each run of `version` that materialized web_app_data got its snapshot, by run id."""
    return {
        r.run_id: r.asset_materialization.metadata["snapshot"].value
        for r in instance.fetch_materializations(dg.AssetKey("web_app_data"), limit=100).records
        if r.partition_key == version
    }


def test_the_cli_and_a_queued_run_taking_one_snapshot_at_once_on_gcs(
    fake_gcs, gcs_bucket, tmp_path, monkeypatch, capsys
):
    """A queued run lists the uploads and is held mid-snapshot (its read of one upload waits in the
    proxy); new uploads arrive; the CLI, in its own process outside the queue, takes the snapshot
    of the same version and wins the manifest's conditional create (if_generation_match=0); the
    queued run, released, loses it, removes its packs and goes on with the CLI's snapshot. Every
    table equals a clean build of the kept object set, and so does a later version."""
    first = dict(web_app_uploads(3, seed=8, broken_every=0))
    arriving = dict(web_app_uploads(2, seed=8, first_index=3, broken_every=0)) | dict(aalto_uploads(1, seed=8))
    for name, data in first.items():
        gcs_bucket.blob(f"uploads/{name}").upload_from_string(data)
    proxy = FaultProxy(fake_gcs)
    held = next(name for name in first if name.endswith("_0.csv"))
    hold = proxy.add(Rule(lambda m, path, body: m == "GET" and f"uploads%2F{held}" in path, "hold", seconds=240))
    env = {
        "KEYSTROKE_UPLOADS": f"gs://{gcs_bucket.name}/uploads",
        "KEYSTROKE_STORAGE": f"gs://{gcs_bucket.name}/datasets",
        "STORAGE_EMULATOR_HOST": proxy.url,
        **QUIET,
    }
    home = tmp_path / "home"
    try:
        with dagster_servers(home, env, tmp_path / "logs") as servers, instance_at(home) as instance:
            instance.add_dynamic_partitions(dataset_versions.name, [V1])
            queued = launch(servers.url, V1)
            wait_for(lambda: hold.hits == 1, 120, "the queued run to read the uploads it listed", servers.log_tails)
            for name, data in arriving.items():
                gcs_bucket.blob(f"uploads/{name}").upload_from_string(data)
            for name, value in {**env, "DAGSTER_HOME": str(home)}.items():
                monkeypatch.setenv(name, value)
            assert cli.main(["materialize", "--version", V1, "-f", "web_app_data"]) == 0
            hold.release.set()
            assert wait_done(instance, queued).status == dg.DagsterRunStatus.SUCCESS, servers.log_tails()
            assert cli.main(["materialize", "--version", V1, "-f", "keystrokes", "-f", "keypairs"]) == 0
            capsys.readouterr()

            taken = {("queued" if run == queued else "cli"): how for run, how in snapshots(instance, V1).items()}
            # the later version: more uploads, made by the CLI after the race
            for name, data in web_app_uploads(1, seed=8, first_index=6, broken_every=0):
                gcs_bucket.blob(f"uploads/{name}").upload_from_string(data)
            assert cli.main(["new-version", "--creator", "lab-later"]) == 0
            later = capsys.readouterr().out.strip()
            assert cli.main(["materialize", "--version", later, "-f", "keystrokes", "-f", "keypairs"]) == 0
    finally:
        hold.release.set()
        proxy.close()
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs)  # the test reads the bucket directly now

    assert taken == {"cli": "taken now", "queued": LOST}
    storage = env["KEYSTROKE_STORAGE"]
    manifest = stored(storage, "web_app_data", V1)
    assert manifest["user_id"].nunique() == 6  # the CLI's listing: after the new uploads arrived
    packs = {
        b.name.split("/")[-1].split("-")[0] for b in gcs_bucket.list_blobs(prefix=f"datasets/web_app_data/packs/{V1}/")
    }
    assert len(packs) == 1  # the queued run's copy is gone
    local = tmp_path / "uploads"
    for blob in gcs_bucket.list_blobs(prefix="uploads/"):
        (local / blob.name.removeprefix("uploads/")).parent.mkdir(exist_ok=True)
        blob.download_to_filename(local / blob.name.removeprefix("uploads/"))
    clean = clean_build({V1: manifest, later: stored(storage, "web_app_data", later)}, local, tmp_path / "clean")
    for version in (V1, later):
        assert_same_tables(tables(storage, version), tables(clean, version))
