"""A new version made after more uploads arrive reuses what an earlier version already has (upload
checksums, kept bytes) and gives exactly what a from-scratch build of it gives."""

import os
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

from keystroke_assets.partitions import make_version_id
from keystroke_assets.resources.object_store import LocalObjectStore
from keystroke_assets.synthetic import aalto_uploads, participant_id, web_app_uploads, write_uploads

from .conftest import materialize_version, stored

# The stages up to keypairs: every feature is a function of keypairs alone (test_shards.py compares
# the features of shards with those of a whole version), so equal keypairs give equal features.
STAGES = ["web_app_data", "raw_data", "cleaned_data", "keypairs"]


def outputs(result: dg.ExecuteInProcessResult, storage, version: str) -> dict[str, pd.DataFrame]:
    """Every asset's table the run materialized, participant by participant: a version's segments
    order participants by the version that first had them, which differs in a from-scratch build."""
    tables = {}
    for event in result.get_asset_materialization_events():
        key = event.asset_key.to_user_string()
        table = stored(storage, key, version)
        table = table.astype({c: str for c in table.select_dtypes("category")})
        if key != "web_app_data":
            table = table.sort_values("user_id", kind="stable", ignore_index=True)
        tables[key] = table
    return tables


def test_a_new_version_reads_only_new_uploads_and_equals_a_full_rebuild(tmp_path, monkeypatch):
    uploads = tmp_path / "uploads"
    write_uploads(uploads, web_app_uploads(4))
    write_uploads(uploads, aalto_uploads(2))
    an_hour_ago = time.time() - 3600
    for path in uploads.iterdir():
        os.utime(path, (an_hour_ago, an_hour_ago))
    now = datetime.now(UTC)
    first_version, version = make_version_id("lab", now - timedelta(minutes=1)), make_version_id("lab", now)
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(tmp_path / "storage")}

    with dg.instance_for_test() as instance:
        # what the new version can reuse so far is the snapshot's: the first needs no more
        first = materialize_version(instance, env, first_version, selection=["web_app_data", "raw_data"])
        first = outputs(first, env["KEYSTROKE_STORAGE"], first_version)
        # then: two new participants, and one task CSV uploaded again without its last line
        new = write_uploads(uploads, web_app_uploads(2, first_index=4))
        changed = uploads / f"f_{participant_id(1)}_3.csv"
        changed.write_bytes(changed.read_bytes().rsplit(b"\n", 2)[0] + b"\n")
        checksummed = []
        read_to_checksum = LocalObjectStore.read_upload

        def spy(store, info):
            checksummed.append(info.name)
            return read_to_checksum(store, info)

        monkeypatch.setattr(LocalObjectStore, "read_upload", spy)
        incremental = materialize_version(instance, env, version, selection=STAGES)
        monkeypatch.undo()
    with dg.instance_for_test() as instance:
        scratch = materialize_version(
            instance, {**env, "KEYSTROKE_STORAGE": str(tmp_path / "scratch")}, version, selection=STAGES
        )

    # only the new and the changed uploads were read to checksum them, and only their bytes kept
    added = {p.name for p in uploads.iterdir() if p.stat().st_mtime > an_hour_ago + 1} - {changed.name}
    assert len(added) == new and sorted(checksummed) == sorted(added | {changed.name})
    kept = incremental.asset_materializations_for_node("web_app_data")[0].metadata["bytes_new"].value
    assert kept == sum((uploads / name).stat().st_size for name in added | {changed.name})

    got = outputs(incremental, env["KEYSTROKE_STORAGE"], version)
    want = outputs(scratch, tmp_path / "scratch", version)
    assert sorted(got) == sorted(want) == sorted(STAGES)
    for key in want:
        # where the bytes are kept and which version first had a participant differ, by design
        drop = ["kept_as", "first_seen"] if key == "web_app_data" else []
        pd.testing.assert_frame_equal(got[key].drop(columns=drop), want[key].drop(columns=drop), obj=key)
    # and the new version does hold the new participants and the changed upload
    users = set(got["raw_data"]["user_id"])
    assert {participant_id(4), participant_id(5)} <= users and not {participant_id(4), participant_id(5)} & set(
        first["raw_data"]["user_id"]
    )
    events = lambda tables: int((tables["raw_data"]["file"] == changed.name).sum())  # noqa: E731
    assert events(got) == events(first) - 1
