"""Runs at once on the local SQLite instance, through the real run queue: the local instance settings
(QueuedRunCoordinator, at most 3 runs, 1 run per `dagster/partition` value), dagster-webserver
and dagster-daemon as processes, each run in its own worker process."""

import json
import time
import urllib.request

import dagster as dg
import pytest

from keystroke_assets.partitions import dataset_versions
from keystroke_assets.synthetic import web_app_uploads, write_uploads

from .conftest import stored
from .servers import dagster_servers, instance_at

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


def launch(url: str, version: str) -> str:
    """Launch the chain for one version as the UI's Materialize button does."""
    params = {
        "selector": {
            "repositoryLocationName": "keystroke_assets",
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": [k]} for k in CHAIN],
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": version}]},
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
    # both versions hold the same events (the same uploads), each under its own path
    cleaned = [stored(storage, "cleaned_data", v) for v in (V1, V2)]
    assert len(cleaned[0]) == len(cleaned[1]) > 0
