"""keystroke-assets, command by command, on a real instance in a temporary DAGSTER_HOME: what each
prints, what it writes (or not), its errors and exit codes."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from keystroke_assets import cli, commands
from keystroke_assets.partitions import dataset_versions
from keystroke_assets.synthetic import web_app_uploads, write_uploads

from .conftest import REPO, materialize_version
from .servers import dagster_home

V1 = "2026-01-01_00-00-00_lab-mac"
V2 = "2026-01-02_00-00-00_lab-mac"
FEATURES = ["features/typenet_ml/platform", "features/typenet_ml/session", "features/typenet_ml/video"]
INGEST = ["web_app_data", "raw_data", "cleaned_data"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    """DAGSTER_HOME and the two stores in tmp_path; uploads of one generated participant."""
    home = dagster_home(tmp_path / "home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("KEYSTROKE_UPLOADS", str(tmp_path / "uploads"))
    monkeypatch.setenv("KEYSTROKE_STORAGE", str(tmp_path / "storage"))
    write_uploads(tmp_path / "uploads", web_app_uploads(1, seed=4, broken_every=0))
    return tmp_path


@pytest.fixture
def instance(env):
    with dg.DagsterInstance.get() as instance:
        yield instance


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def materialized(instance, key: str) -> set:
    return set(instance.get_materialized_partitions(dg.AssetKey.from_user_string(key)))


def ingest(capsys, instance, version: str) -> None:
    """web_app_data, raw_data and cleaned_data of `version`, through the commands themselves."""
    instance.add_dynamic_partitions(dataset_versions.name, [version])
    assert run(capsys, "materialize", "--version", version, "-f", "cleaned_data")[0] == 0


def report_old_code(instance, key: str, version: str) -> None:
    """A materialization as an older code version would have recorded it."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=dg.AssetKey.from_user_string(key), partition=version, tags={"dagster/code_version": "0"}
        )
    )


# --- errors common to every command ---------------------------------------------------------------


def test_no_dagster_home(monkeypatch, capsys):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    code, out, err = run(capsys, "versions")
    assert code == 2 and out == "" and "DAGSTER_HOME is not set" in err


ERRORS = [
    (["materialize", "--version", "2026-01-01_00-00-00_Lab Mac"], 2, "invalid dataset version id"),
    (["materialize", "--version", "2026-13-01_00-00-00_lab"], 2, "invalid dataset version id"),
    (["materialize", "--version", "2030-01-01_00-00-00_nobody"], 3, "unknown version '2030-01-01_00-00-00_nobody'"),
    (["materialize", "--version", V1, "-f", "typenet_nope"], 3, "unknown asset or feature 'typenet_nope'"),
    (["backfill", "-f", "nope", "--missing"], 3, "unknown asset or feature 'nope'"),
    (["new-version", "--creator", "Lab_Mac"], 2, "invalid creator 'Lab_Mac'"),
]


def test_errors_and_exit_codes(env, instance, capsys):
    instance.add_dynamic_partitions(dataset_versions.name, [V1])
    for argv, code, message in ERRORS:
        got, out, err = run(capsys, *argv)
        assert (got, out) == (code, ""), argv
        assert message in err, argv
    assert instance.get_dynamic_partitions(dataset_versions.name) == [V1]  # nothing added
    assert instance.get_runs() == []


def test_argument_errors_exit_2(env, capsys):
    for argv in (
        ["backfill", "-f", "typenet_ml"],
        ["backfill", "-f", "kvc", "--missing", "--all-versions"],
        ["materialize"],
        ["frobnicate"],
    ):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2, argv
    capsys.readouterr()


def test_unknown_feature_lists_the_known_ones(env, instance, capsys):
    instance.add_dynamic_partitions(dataset_versions.name, [V1])
    _, _, err = run(capsys, "materialize", "--version", V1, "-f", "typenet")
    assert "typenet_ml/platform" in err and "keypairs" in err


# --- new-version ----------------------------------------------------------------------------------


def test_new_version_snapshots_the_store_and_prints_the_id(env, instance, capsys):
    code, out, err = run(capsys, "new-version", "--creator", "ci-bot")
    assert code == 0
    version = out.strip()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_ci-bot", version)
    assert instance.get_dynamic_partitions(dataset_versions.name) == [version]
    assert materialized(instance, "web_app_data") == {version}
    assert materialized(instance, "raw_data") == set()  # the rest is automation's, or `materialize`'s
    event = instance.get_latest_materialization_event(dg.AssetKey("web_app_data"))
    assert event.asset_materialization.metadata["objects"].value == len(list((env / "uploads").iterdir()))
    assert "stored   web_app_data" in err


def test_new_version_of_an_empty_store_fails_and_leaves_no_version(env, instance, capsys, monkeypatch):
    (env / "empty").mkdir()
    monkeypatch.setenv("KEYSTROKE_UPLOADS", str(env / "empty"))
    code, out, err = run(capsys, "new-version", "--creator", "ci-bot")
    assert (code, out) == (1, "")
    assert "check failed: web_app_data non_empty" in err and "removed" in err
    assert instance.get_dynamic_partitions(dataset_versions.name) == []


# --- versions -------------------------------------------------------------------------------------


def test_versions_table_and_json(env, instance, capsys):
    ingest(capsys, instance, V1)
    instance.add_dynamic_partitions(dataset_versions.name, [V2])
    report_old_code(instance, "cleaned_data", V1)

    code, out, _ = run(capsys, "versions", "--json")
    assert code == 0
    rows = {r["version"]: r for r in json.loads(out)["versions"]}
    assert list(rows) == [V1, V2]
    assert rows[V1]["created_by"] == "lab-mac" and rows[V1]["created_at"] == "2026-01-01T00:00:00Z"
    one = rows[V1]["assets"]
    assert one["web_app_data"]["status"] == one["raw_data"]["status"] == "materialized"
    assert one["web_app_data"]["code_version"] == "2"
    assert one["cleaned_data"] == {**one["cleaned_data"], "status": "stale", "code_version": "0"}
    assert one["keypairs"] == {"status": "missing", "materialized_at": None, "code_version": None}
    assert {a["status"] for a in rows[V2]["assets"].values()} == {"missing"}
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_data"), asset_partitions=[V1]), limit=1
    ).records[0]
    assert one["raw_data"]["materialized_at"] == commands._iso(record.timestamp)

    code, out, _ = run(capsys, "versions")
    lines = out.splitlines()
    n_assets = len(one)
    assert code == 0 and lines[0] == f"{V1}  (2 materialized, 1 stale, {n_assets - 3} missing)"
    assert re.fullmatch(r"  cleaned_data +stale +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +code 0", lines[3])
    assert re.fullmatch(r"  keypairs +missing", lines[4])
    assert lines[n_assets + 1] == f"{V2}  (0 materialized, 0 stale, {n_assets} missing)"


def test_versions_when_there_are_none(env, capsys):
    code, out, _ = run(capsys, "versions")
    assert code == 0 and out.startswith("no versions yet")
    assert json.loads(run(capsys, "versions", "--json")[1]) == {"versions": []}


# --- materialize ----------------------------------------------------------------------------------


def test_materialize_runs_only_what_is_missing(env, instance, capsys):
    instance.add_dynamic_partitions(dataset_versions.name, [V1])
    code, out, err = run(capsys, "materialize", "--version", V1, "-f", "raw_data")
    assert code == 0
    assert out.splitlines() == [f"running for {V1}:", "  web_app_data  (missing)", "  raw_data      (missing)"]
    assert "stored   raw_data" in err
    assert materialized(instance, "raw_data") == {V1} and materialized(instance, "cleaned_data") == set()

    code, out, _ = run(capsys, "materialize", "--version", V1, "-f", "raw_data")
    assert code == 0 and out.startswith(f"nothing to run for {V1}")


def test_materialize_dry_run_prints_the_plan_and_writes_nothing(env, instance, capsys):
    ingest(capsys, instance, V1)
    report_old_code(instance, "raw_data", V1)  # made by older code: stale
    runs, files = len(instance.get_runs()), sorted(p for p in (env / "storage").rglob("*"))

    code, out, _ = run(capsys, "materialize", "--version", V1, "-f", "typenet_ml/platform", "--dry-run")
    assert code == 0
    assert out.splitlines() == [
        f"would run for {V1}:",
        "  raw_data                      (stale)",
        "  cleaned_data                  (stale)",  # Dagster's verdict: its input changed
        "  keypairs                      (missing)",
        "  keystrokes                    (missing)",  # typenet_ml reads both
        "  features/typenet_ml/platform  (missing)",
    ]
    # --force re-runs the selection only, never the snapshot
    code, out, _ = run(capsys, "materialize", "--version", V1, "-f", "web_app_data", "--force", "--dry-run")
    assert out.startswith(f"nothing to run for {V1}")
    assert (len(instance.get_runs()), sorted((env / "storage").rglob("*"))) == (runs, files)


def test_materialize_force_and_stale(env, instance, capsys):
    ingest(capsys, instance, V1)
    code, out, _ = run(capsys, "materialize", "--version", V1, "-f", "cleaned_data", "--force", "--dry-run")
    assert out.splitlines()[1:] == ["  cleaned_data  (--force)"]
    code, out, _ = run(
        capsys, "materialize", "--version", V1, "-f", "raw_data", "-f", "keypairs", "--force", "--dry-run"
    )
    assert out.splitlines()[1:] == [
        "  raw_data      (--force)",
        "  cleaned_data  (reads raw_data, which runs)",
        "  keypairs      (missing)",
    ]
    report_old_code(instance, "raw_data", V1)
    code, out, err = run(capsys, "materialize", "--version", V1, "-f", "cleaned_data")
    assert code == 0 and out.splitlines()[1:] == ["  raw_data      (stale)", "  cleaned_data  (stale)"]
    rows = json.loads(run(capsys, "versions", "--json")[1])["versions"][0]["assets"]
    assert rows["raw_data"]["status"] == rows["cleaned_data"]["status"] == "materialized"


def test_materialize_failure_exits_1(env, instance, capsys, monkeypatch):
    (env / "empty").mkdir()
    monkeypatch.setenv("KEYSTROKE_UPLOADS", str(env / "empty"))
    instance.add_dynamic_partitions(dataset_versions.name, [V1])
    code, _, err = run(capsys, "materialize", "--version", V1, "-f", "raw_data")
    assert code == 1
    assert "check failed: web_app_data non_empty" in err and "the run failed" in err
    assert materialized(instance, "raw_data") == set()


# --- backfill -------------------------------------------------------------------------------------


def backfill_targets(instance, backfill_id: str) -> tuple[list, list]:
    subset = instance.get_backfill(backfill_id).asset_backfill_data.target_subset
    keys = sorted(k.to_user_string() for k in subset.asset_keys)
    versions = sorted({p for k in subset.asset_keys for p in subset.get_partitions_subset(k).get_partition_keys()})
    return keys, versions


def test_backfill_missing_and_all_versions(env, instance, capsys):
    instance.add_dynamic_partitions(dataset_versions.name, [V1, V2])
    # V1 has keystrokes and keypairs (typenet_ml's inputs), V2 has not: V2 is skipped with a word why
    for version in (V1,):
        for key in [*INGEST, "keystrokes", "keypairs", FEATURES[0]]:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=dg.AssetKey.from_user_string(key), partition=version)
            )

    code, out, err = run(capsys, "backfill", "-f", "typenet_ml", "--missing")
    assert code == 0 and f"skipping {V2}: keypairs, keystrokes not materialized" in err
    (backfill_id,) = out.split()
    # platform exists for V1: only session and video are missing there
    assert backfill_targets(instance, backfill_id) == (FEATURES[1:], [V1])
    assert instance.get_backfill(backfill_id).title == "keystroke-assets backfill typenet_ml"

    code, out, _ = run(capsys, "backfill", "-f", "typenet_ml/platform", "--missing")
    assert code == 0 and out.startswith("nothing to backfill")

    code, out, _ = run(capsys, "backfill", "-f", "typenet_ml", "--all-versions")
    (backfill_id,) = out.split()
    assert backfill_targets(instance, backfill_id) == (FEATURES, [V1])
    assert len(instance.get_backfills()) == 2


def test_backfill_stale_after_a_code_version_bump(env, instance, capsys, monkeypatch):
    """statistical materialized for V1 and V2 at its code version, missing for V3; once the module's
    code_version changes, `--stale` backfills V1 and V2 only and `--missing` V3 only."""
    from keystroke_assets.definitions import defs

    v3 = "2026-01-03_00-00-00_lab-mac"
    stores = {k: os.environ[k] for k in ("KEYSTROKE_UPLOADS", "KEYSTROKE_STORAGE")}
    statistical = dg.AssetKey(["features", "statistical"])
    chain = [dg.AssetKey(k) for k in [*INGEST, "keypairs"]]
    for version, selection in [(V1, [*chain, statistical]), (V2, [*chain, statistical]), (v3, chain)]:
        assert materialize_version(instance, stores, version, selection=selection).success
    code, out, _ = run(capsys, "backfill", "-f", "statistical", "--stale")
    assert code == 0 and out.startswith("nothing to backfill: no version has these assets stale")

    bumped = [
        a.map_asset_specs(lambda s: s.replace_attributes(code_version="2")) if statistical in a.keys else a
        for a in defs.assets
    ]
    monkeypatch.setattr(
        commands, "_graph", lambda: dg.Definitions(assets=bumped, resources=defs.resources).resolve_asset_graph()
    )
    code, out, _ = run(capsys, "backfill", "-f", "statistical", "--stale")
    (backfill_id,) = out.split()
    assert backfill_targets(instance, backfill_id) == (["features/statistical"], [V1, V2])
    code, out, _ = run(capsys, "backfill", "-f", "statistical", "--missing")
    (backfill_id,) = out.split()
    assert backfill_targets(instance, backfill_id) == (["features/statistical"], [v3])


def test_backfill_without_versions(env, capsys):
    code, _, err = run(capsys, "backfill", "-f", "kvc", "--all-versions")
    assert code == 3 and "no versions yet" in err


# --- export-versions-json -------------------------------------------------------------------------


def test_export_versions_json(env, instance, capsys):
    instance.add_dynamic_partitions(dataset_versions.name, [V1, V2])
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="raw_data",
            partition=V1,
            metadata={"path": dg.MetadataValue.path("/data/raw_data/v1.parquet")},
            tags={"dagster/code_version": "1"},
        )
    )
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=["features", "kvc"],
            partition=V1,
            metadata={"path": dg.MetadataValue.path("gs://b/features/kvc/v1.parquet")},
            tags={"dagster/code_version": "3"},
        )
    )
    kvc = instance.fetch_materializations(dg.AssetKey(["features", "kvc"]), limit=1).records[0]

    path = env / "out" / "versions.json"
    code, out, err = run(capsys, "export-versions-json", str(path))
    assert code == 0 and out == "" and f"wrote {path}" in err
    assert json.loads(path.read_text()) == {
        "versions": [
            {
                "version_id": V1,
                "created_by": "lab-mac",
                "timestamp": "2026-01-01T00:00:00Z",
                "stages": {"raw_data": {"path": "/data/raw_data/v1.parquet"}},
                "features": {
                    "kvc": {
                        "path": "gs://b/features/kvc/v1.parquet",
                        "extracted_at": commands._iso(kvc.timestamp),
                        "version": "3",
                    }
                },
            },
            {
                "version_id": V2,
                "created_by": "lab-mac",
                "timestamp": "2026-01-02T00:00:00Z",
                "stages": {},
                "features": {},
            },
        ]
    }
    code, out, _ = run(capsys, "export-versions-json")
    assert json.loads(out) == json.loads(path.read_text())


# --- demo (up to the exec of `dg dev`) ---------------------------------------------------------


def test_demo_prepares_home_uploads_and_a_version(tmp_path, monkeypatch, capsys):
    """In a copy of the repository root: DAGSTER_HOME is that folder (its dagster.yaml, storage under
    .dagster/), telemetry's uploader off, uploads and a demo version made, then `dg dev` on the root's
    workspace."""
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    for name in (
        "DAGSTER_HOME",
        "DAGSTER_DISABLE_TELEMETRY",
        "KEYSTROKE_UPLOADS",
        "KEYSTROKE_STORAGE",
        "KEYSTROKE_QUIET_SECONDS",
    ):
        # set first, so monkeypatch records the variable and removes what the demo sets after the test
        # (delenv of an unset variable records nothing to restore)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    execs = []
    monkeypatch.setattr(os, "execv", lambda path, argv: execs.append(argv))

    cli.main(["demo", "--participants", "2", "--port", "3123"])
    assert os.environ["DAGSTER_HOME"] == str(tmp_path)
    assert os.environ["DAGSTER_DISABLE_TELEMETRY"] == "1"
    assert (tmp_path / ".dagster" / "storage" / "history" / "runs.db").is_file()  # dagster.yaml's relative folders
    assert (tmp_path / ".nux" / "nux.yaml").read_text() == "seen: 1\n"
    uploads = sorted(p.name for p in (tmp_path / "data" / "uploads").iterdir())
    assert uploads == sorted(name for name, _ in web_app_uploads(2, seed=0))
    assert execs == [
        [
            str(Path(sys.executable).with_name("dg")),
            "dev",
            "-h",
            "127.0.0.1",
            "-p",
            "3123",
            "-w",
            str(tmp_path / "workspace.yaml"),
        ]
    ]
    assert os.environ["KEYSTROKE_UPLOADS"] == str(tmp_path / "data" / "uploads")
    assert os.environ["KEYSTROKE_QUIET_SECONDS"] == "60"
    with dg.DagsterInstance.get() as instance:
        (version,) = instance.get_dynamic_partitions(dataset_versions.name)
    assert version.endswith("_demo")
    assert "http://127.0.0.1:3123" in capsys.readouterr().err

    # a second start keeps the uploads and the versions as they are
    (tmp_path / "data" / "uploads" / "extra.txt").write_text("x")
    cli.main(["demo", "--participants", "5"])
    assert len(list((tmp_path / "data" / "uploads").iterdir())) == len(uploads) + 1
    with dg.DagsterInstance.get() as instance:
        assert instance.get_dynamic_partitions(dataset_versions.name) == [version]

    # elsewhere the relative folders would be another, empty instance: refused, with where to run
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    code, out, err = run(capsys, "versions")
    assert code == 2 and out == "" and f"relative to {tmp_path}: run this there" in err


def test_demo_outside_the_repository_root_says_where_to_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "demo", "--participants", "1")
    assert code == 2 and out == ""
    assert "no dagster.yaml or workspace.yaml" in err and "from the repository root" in err


def test_console_script_is_installed(env):
    done = subprocess.run(
        [Path(sys.executable).with_name("keystroke-assets"), "versions", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and json.loads(done.stdout) == {"versions": []}


def test_backfill_here_runs_each_version_in_this_process(env, instance, capsys):
    """`--here`: a run per version in this process, no daemon; a version whose inputs are broken
    fails alone and the command says which."""
    v3 = "2026-01-03_00-00-00_lab-mac"
    for version in (V1, V2):
        ingest(capsys, instance, version)
    assert run(capsys, "materialize", "--version", V1, "-f", "keypairs")[0] == 0
    assert run(capsys, "materialize", "--version", V2, "-f", "keypairs")[0] == 0
    instance.add_dynamic_partitions(dataset_versions.name, [v3])
    # v3's keypairs are recorded as materialized but never stored: its run fails, the others do not
    for key in [*INGEST, "keystrokes", "keypairs"]:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=dg.AssetKey(key), partition=v3))

    code, out, err = run(capsys, "backfill", "-f", "statistical", "--all-versions", "--here")
    assert code == 1 and f"1 of 3 runs failed: {v3}" in err
    assert materialized(instance, "features/statistical") == {V1, V2}

    def plans_statistical(run_id: str) -> bool:
        planned = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
        return any(r.event_log_entry.dagster_event.asset_key.path[-1] == "statistical" for r in planned.records)

    runs = [r for r in instance.get_runs() if plans_statistical(r.run_id)]
    assert sorted(r.tags["dagster/partition"] for r in runs) == [V1, V2, v3]  # one run per version
    assert instance.get_backfills() == []  # and no backfill for the daemon
