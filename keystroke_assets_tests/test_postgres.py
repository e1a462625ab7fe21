"""Instance storage on Postgres (dagster-postgres) with the production instance's own `storage`
settings (deploy/dagster.yaml: every value from DAGSTER_PG_* variables, `scheme:
postgresql+psycopg2`): a private cluster on 127.0.0.1 started for the test (skipped where the
Postgres binaries are absent; `.ci/run` installs them), the chain materialized, every record found
again by a new instance and in Postgres itself, no SQLite file written."""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
import pytest
import yaml

from keystroke_assets.synthetic import web_app_uploads, write_uploads

from .conftest import REPO, VERSION, _free_port, materialize_version, require

CHAIN = [dg.AssetKey(k) for k in ["web_app_data", "raw_data", "cleaned_data", "keystrokes", "keypairs"]]
PASSWORD = os.urandom(12).hex()  # a fresh one each run, never stored


def _bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres(argv: list) -> list[str]:
    """initdb and postgres refuse to run as root: as root, run them as the postgres user."""
    argv = [str(a) for a in argv]
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="module")
def postgres():
    """A private cluster on a free port of 127.0.0.1 with a database `dagster`; yields the port."""
    bindir = _bin()
    require(bindir is not None, "Postgres binaries (initdb, pg_ctl) are absent: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="ks-pg-"))  # not under pytest's tmp: the postgres user must reach it
    data, port = root / "data", _free_port()
    (root / "pw").write_text(PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pw", "postgres")
    subprocess.run(
        _as_postgres(
            [
                bindir / "initdb",
                "-D",
                data,
                "-U",
                "dagster",
                "--pwfile",
                root / "pw",
                "-E",
                "UTF8",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
            ]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    subprocess.run(
        _as_postgres([bindir / "pg_ctl", "-D", data, "-o", options, "-l", root / "log", "-w", "start"]),
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            _as_postgres([bindir / "createdb", "-h", root, "-p", port, "-U", "dagster", "dagster"]),
            check=True,
            capture_output=True,
        )
        yield port
    finally:
        subprocess.run(_as_postgres([bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_chain_on_postgres_instance_storage(postgres, tmp_path, monkeypatch):
    import psycopg2

    settings = {
        "HOST": "127.0.0.1",
        "PORT": str(postgres),
        "USERNAME": "dagster",
        "PASSWORD": PASSWORD,
        "DB": "dagster",
    }
    for name, value in settings.items():
        monkeypatch.setenv(f"DAGSTER_PG_{name}", value)
    storage = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())["storage"]
    assert "postgres" in storage
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump({"storage": storage, "telemetry": {"enabled": False}}))
    uploads = tmp_path / "uploads"
    write_uploads(uploads, web_app_uploads(2, seed=9, broken_every=0))
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(tmp_path / "storage")}

    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = materialize_version(instance, env, selection=CHAIN)
        assert result.success
    with dg.DagsterInstance.from_config(str(home)) as again:  # a new process would see the same
        for key in CHAIN:
            event = again.get_latest_materialization_event(key)
            assert event.run_id == result.run_id and event.dagster_event.partition == VERSION
        assert again.get_dynamic_partitions("dataset_versions") == [VERSION]

    with psycopg2.connect(host="127.0.0.1", port=postgres, user="dagster", password=PASSWORD, dbname="dagster") as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
            assert cur.fetchone()[0] == len(CHAIN)
            cur.execute("SELECT run_id, status FROM runs")
            assert cur.fetchall() == [(result.run_id, "SUCCESS")]
    assert not list(home.rglob("*.db"))  # nothing went to SQLite
