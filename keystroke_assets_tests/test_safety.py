"""Safety: version ids are checked wherever they enter, object names never leave a store's root,
the webserver listens on 127.0.0.1 unless told otherwise, and no credential is in the repo, the
logs or the metadata."""

import re
import subprocess
import sys
from functools import partial
from pathlib import Path

import dagster as dg
import pytest
from dagster_gcp import GCSResource

from keystroke_assets import cli
from keystroke_assets.definitions import defs
from keystroke_assets.partitions import InvalidVersionId, dataset_versions
from keystroke_assets.resources.object_store import GCSObjectStore, LocalObjectStore, UnsafeObjectName
from keystroke_assets.resources.parquet_io_manager import asset_object_name
from keystroke_assets.synthetic import web_app_uploads, write_uploads

from .conftest import REPO, materialize_version

BAD_VERSIONS = [
    "2025-09-07 bad",  # typed into the UI's "add partition" box
    "2025-09-07_00-27-43_lab-mac/../../../tmp/x",  # a path out of the storage root
    "2025-13-01_00-00-00_lab-mac",  # no 13th month
    "2025-09-07_00-27-43_Lab-Mac",  # upper case
    "2025-09-07_00-27-43_lab,mac",
    "",
]
UNSAFE_NAMES = ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a/.", "a\\b", "a\x00b", ""]
FORMAT = "YYYY-MM-DD_HH-MM-SS_<creator>"


def test_the_io_manager_refuses_bad_version_ids():
    for version in BAD_VERSIONS:
        with pytest.raises(InvalidVersionId, match=re.escape(FORMAT)):
            asset_object_name(dg.AssetKey(["features", "kvc"]), version)


def test_the_cli_refuses_bad_version_ids(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    for version in BAD_VERSIONS[:2]:
        assert cli.main(["materialize", "--version", version]) == 2
        assert FORMAT in capsys.readouterr().err


def _stage_sample() -> list[dg.AssetKey]:
    """The root, a stage, keypairs and the first feature asset: the first reads the uploads, the
    others their inputs through the IO manager, which is where a bad key meets them first."""
    keys = sorted(defs.resolve_asset_graph().get_all_asset_keys(), key=lambda k: k.path)
    features = [k for k in keys if k.path[0] == "features"]
    return [dg.AssetKey("web_app_data"), dg.AssetKey("cleaned_data"), dg.AssetKey("keypairs"), *features[:1]]


@pytest.mark.parametrize("key", _stage_sample(), ids=lambda k: k.to_user_string())
def test_a_partition_added_with_a_bad_key_fails_at_once_and_writes_nothing(key, instance, tmp_path):
    uploads = tmp_path / "uploads"
    write_uploads(uploads, web_app_uploads(1, seed=2, broken_every=0))
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(tmp_path / "storage")}
    bad = BAD_VERSIONS[1]
    # what the UI's "add partition" does: Dagster takes any key
    instance.add_dynamic_partitions(dataset_versions.name, [bad])
    assert bad in instance.get_dynamic_partitions(dataset_versions.name)

    result = materialize_version(instance, env, version=bad, selection=[key], raise_on_error=False)
    assert not result.success
    (failure,) = [e.step_failure_data for e in result.all_events if e.is_step_failure]
    reason = failure.user_failure_data.description if failure.user_failure_data else failure.error.to_string()
    assert FORMAT in reason
    # final: no retry with backoff for a key that can never become valid
    assert [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"] == []
    # nothing in the storage root, nor where the key's `../../../tmp` would have led from it
    assert not (tmp_path / "storage").exists() and not (tmp_path / "tmp").exists()


def write_x(store, name: str) -> None:
    store.write_bytes(name, b"x")


def test_object_names_never_leave_the_store(tmp_path):
    root = tmp_path / "store"
    local = LocalObjectStore(root=str(root))
    # refused before any request is made: the bucket does not even exist
    gcs = GCSObjectStore(gcs=GCSResource(project="test"), bucket="no-such-bucket", prefix="datasets")
    for store in (local, gcs):
        for name in UNSAFE_NAMES:
            for call in (store.read_bytes, store.exists, partial(write_x, store)):
                with pytest.raises(UnsafeObjectName):
                    call(name)
    assert list(tmp_path.iterdir()) == []  # not even the root was made
    # names with dots that are no path step are ordinary names
    local.write_bytes("a/..b", b"1")
    local.write_bytes("a/b..", b"2")
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == ["a/..b", "a/b.."]


def test_the_webserver_listens_on_loopback_unless_told_otherwise(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "(`dg dev`) on 127.0.0.1" in " ".join(capsys.readouterr().out.split())  # the demo command's line
    # Dagster's own default, which `dg dev` and the repo's test servers rely on too
    webserver = Path(sys.executable).parent / "dagster-webserver"
    help_text = subprocess.run([str(webserver), "--help"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"--host TEXT\s+Host to run server on\s+\[default:\s+127\.0\.0\.1\]", help_text)


CREDENTIAL_PATTERNS = [
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    r'"private_key(_id)?"\s*:',
    r'"type"\s*:\s*"service_account"',
    r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
    r"\bAIza[0-9A-Za-z_\-]{35}\b",  # Google API key
    r"\bya29\.[0-9A-Za-z_\-]{20,}",  # Google OAuth access token
    r"\bgh[pousr]_[0-9A-Za-z]{36}\b",  # GitHub token
    r"\bxox[abprs]-[0-9A-Za-z-]{10,}",  # Slack token
    r"postgres(?:ql)?(?:\+\w+)?://[^:/\s'\"]+:[^@/\s'\"]+@",  # a database URL with a password
    r"(?i)\b(?:password|passwd|secret|api_key|access_token|client_secret)\b\s*[:=]\s*['\"][^'\"\s]{8,}['\"]",
]


def credentials_in(text: str) -> list[str]:
    return [m.group(0)[:40] for p in CREDENTIAL_PATTERNS for m in re.finditer(p, text)]


def test_no_credential_in_the_repo():
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(files) > 20
    found = {}
    for name in files:
        path = REPO / name
        if name == "keystroke_assets_tests/test_safety.py" or not path.is_file():
            continue  # this file spells the patterns out
        hits = credentials_in(path.read_bytes().decode("utf-8", errors="replace"))
        if hits:
            found[name] = hits
    assert found == {}
    # the patterns do find what they are for
    assert credentials_in('{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\n"}')
    assert credentials_in("postgresql+psycopg2://dagster:hunter2@db:5432/dagster")
    assert not credentials_in("postgresql+psycopg2://db:5432/dagster  password: {env: DAGSTER_PG_PASSWORD}")


def test_no_credential_in_the_logs_or_metadata(disk_instance, gcs_bucket, tmp_path, monkeypatch):
    """A GCS run, with a secret in the environment: afterwards nothing in the instance's storage
    (event log, run storage, captured stdout and stderr) holds the secret or a credential."""
    instance = disk_instance
    secret = "s3cr3t-" + "9f2b" * 8
    monkeypatch.setenv("KEYSTROKE_TEST_SECRET", secret)
    for name, data in web_app_uploads(1, seed=4, broken_every=0):
        gcs_bucket.blob(f"uploads/{name}").upload_from_string(data)
    env = {
        "KEYSTROKE_UPLOADS": f"gs://{gcs_bucket.name}/uploads",
        "KEYSTROKE_STORAGE": f"gs://{gcs_bucket.name}/datasets",
    }
    result = materialize_version(instance, env, selection=[dg.AssetKey("web_app_data"), dg.AssetKey("raw_data")])
    assert result.success

    home = Path(instance.root_directory)
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files)
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert secret not in text and credentials_in(text) == [], path
    metadata = instance.get_latest_materialization_event(dg.AssetKey("web_app_data")).asset_materialization.metadata
    assert metadata["upload_store"].value == f"gs://{gcs_bucket.name}/uploads"
