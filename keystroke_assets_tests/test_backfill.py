"""Item 4: a feature type added after three versions exist is backfilled over all of them by the
real daemon, and nothing upstream (or any other feature) is materialized again."""

from pathlib import Path

import dagster as dg
import pytest

from keystroke_assets.backfills import launch_asset_backfill
from keystroke_assets.definitions import defs
from keystroke_assets.synthetic import web_app_uploads, write_uploads

from .conftest import REPO, materialize_version
from .feature_samples import make_keystrokes
from .hold_by_key_class import HOLD_BY_KEY_CLASS, hold_by_key_class_features
from .servers import Servers, dagster_home, server_env, wait_for

VERSIONS = ["2025-09-01_10-00-00_lab-mac", "2025-09-02_10-00-00_lab-mac", "2025-09-03_10-00-00_lab-mac"]
# the chain and one other feature: enough to see that nothing but the new asset runs, and quick
MATERIALIZED = [dg.AssetKey(k) for k in ["web_app_data", "raw_data", "cleaned_data", "keystrokes", "keypairs"]] + [
    dg.AssetKey(["features", "statistical"])
]
PROJECT_KEYS = sorted(defs.resolve_asset_graph().get_all_asset_keys(), key=lambda k: k.to_user_string())
BACKFILL_TIMEOUT_S = 300  # a bound for a loaded machine; idle, the backfill finishes in about 40 s


def materialization_counts(instance, keys) -> dict:
    return {k.to_user_string(): len(instance.fetch_materializations(k, limit=1000).records) for k in keys}


@pytest.fixture
def daemon_instance(tmp_path, monkeypatch):
    """A DAGSTER_HOME with the project's dagster.yaml (run queue on), the instance on it, the env
    for the stores, and the servers, to start `dagster-daemon run` on the test code location."""
    home = dagster_home(tmp_path / "dagster_home")
    env = {"KEYSTROKE_UPLOADS": str(tmp_path / "uploads"), "KEYSTROKE_STORAGE": str(tmp_path / "storage")}
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: keystroke_assets_tests.extra_feature_defs\n"
        f"      attribute: defs\n      working_directory: {REPO}\n      location_name: keystroke_assets_test\n"
    )
    servers = Servers(home, server_env({**env, "DAGSTER_HOME": str(home)}), tmp_path, cwd=tmp_path)

    def start_daemon() -> Servers:
        servers.start_daemon(workspace)
        return servers

    with dg.DagsterInstance.from_config(str(home)) as instance:
        try:
            yield instance, env, start_daemon
        finally:
            servers.stop()  # the daemon, its code server and run workers share one process group


def test_the_new_feature_by_hand():
    ids = {"user_id": "u1", "device_type": "desktop", "platform_id": 1, "video_id": 1, "session_id": 1, "task_id": 0}
    features = hold_by_key_class_features(
        make_keystrokes(
            [
                {
                    **ids,
                    "strokes": [
                        ("a", 65, 0, 100),
                        ("Key.space", 32, 150, 230),
                        ("b", 66, 300, 360),
                        ("Key.shift", 16, 400, 450),
                        ("C", 67, 420, 500),
                    ],
                }
            ]
        )
    )
    task = features[features["grain"] == "task"].iloc[0]
    # letters a, b, C hold 100, 60, 80 ms: median 80; space 80; Shift 50
    assert (task["HL_median_letter"], task["HL_median_space"], task["HL_median_other"]) == (80, 80, 50)


@pytest.mark.servers
def test_new_feature_backfilled_over_every_version(daemon_instance):
    instance, env, start_daemon = daemon_instance
    uploads = Path(env["KEYSTROKE_UPLOADS"])
    # three versions of a growing upload store: 4, then 5, then 6 participants
    for version, (first, n) in zip(VERSIONS, [(0, 4), (4, 1), (5, 1)]):
        write_uploads(uploads, web_app_uploads(n, seed=11, first_index=first, broken_every=0))
        assert materialize_version(instance, env, version, selection=MATERIALIZED).success
    before = materialization_counts(instance, PROJECT_KEYS)
    # the chain and another feature exist for every version; the other features for none
    assert before == {k.to_user_string(): 3 if k in MATERIALIZED else 0 for k in PROJECT_KEYS}
    assert instance.get_materialized_partitions(dg.AssetKey(HOLD_BY_KEY_CLASS.key_path)) == set()

    backfill_id = launch_asset_backfill(
        instance, [dg.AssetKey(HOLD_BY_KEY_CLASS.key_path)], VERSIONS, title="add hold_by_key_class"
    )
    # the UI's Backfills page lists exactly these
    backfill = instance.get_backfill(backfill_id)
    assert backfill.is_asset_backfill and backfill.title == "add hold_by_key_class"
    assert backfill.asset_selection == [dg.AssetKey(HOLD_BY_KEY_CLASS.key_path)]

    servers = start_daemon()
    done = wait_for(
        lambda: (b := instance.get_backfill(backfill_id)).status.value != "REQUESTED" and b,
        BACKFILL_TIMEOUT_S,
        "the backfill to finish",
        servers.log_tails,
    )
    assert done.status.value == "COMPLETED_SUCCESS", servers.log_tails()  # BulkActionStatus: not public

    assert instance.get_materialized_partitions(dg.AssetKey(HOLD_BY_KEY_CLASS.key_path)) == set(VERSIONS)
    for version in VERSIONS:
        listed = Path(env["KEYSTROKE_STORAGE"]) / "features" / "hold_by_key_class" / f"{version}.segments.json"
        assert listed.is_file()
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(VERSIONS)
    assert all(r.asset_selection == {dg.AssetKey(HOLD_BY_KEY_CLASS.key_path)} for r in runs)
    # no upstream asset and no other feature was materialized (again)
    assert materialization_counts(instance, PROJECT_KEYS) == before
