"""One snapshot per version, however many writers take it at once (docs/reliability.md).

Two first materializations of one version run at once on one local store, their steps
interleaved on purpose: the first lists the uploads, new uploads arrive, the second lists them,
and both have packed their copies before either creates the manifest. One manifest is kept, the
loser's packs are removed, every table of the version equals a clean build of the winner's object
set, and a later version made after them equals a clean build too (nothing damaged to reuse). The
CLI racing a queued run across processes, on GCS, is in test_concurrency.py.
"""

import threading
from pathlib import Path

import dagster as dg
import pytest
from dagster_gcp import GCSResource

from keystroke_assets.assets.web_app_data import PACKS, read_kept
from keystroke_assets.resources.object_store import GCSObjectStore, LocalObjectStore, UploadChanged
from keystroke_assets.synthetic import aalto_uploads, web_app_uploads, write_uploads

from .clean_build import STAGES, assert_same_tables, clean_build, tables
from .conftest import materialize_version, stored

V, LATER = "2025-10-01_00-00-00_lab-a", "2025-10-02_00-00-00_lab-a"
LOST = "taken by another run at the same time: its snapshot is kept, this run's copy removed"


def snapshot_of(result) -> str:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("web_app_data")]
    return event.materialization.metadata["snapshot"].value


def pack_tokens(storage: Path, version: str) -> set[str]:
    return {p.name.split("-")[0] for p in (storage / PACKS / version).iterdir()}


def test_two_writers_at_once_keep_one_snapshot_equal_to_a_clean_build(tmp_path, monkeypatch):
    uploads, storage = tmp_path / "uploads", tmp_path / "storage"
    write_uploads(uploads, web_app_uploads(3, seed=5, broken_every=0))
    write_uploads(uploads, aalto_uploads(1, seed=5))
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(storage)}

    listings, lock = [], threading.Lock()
    listed, changed, packed = threading.Event(), threading.Event(), threading.Barrier(2, timeout=60)
    real_list, real_create = LocalObjectStore.list_objects, LocalObjectStore.create_bytes

    def list_objects(store, earlier=None):
        with lock:
            turn = len(listings)
            listings.append(turn)
        if turn == 1:
            assert changed.wait(60)  # the second writer lists once new uploads have arrived
        found = real_list(store, earlier)
        listed.set()
        return found

    def create_bytes(store, name, data):
        if name == f"web_app_data/{V}.parquet":
            packed.wait()  # both have packed their copies: neither has created the manifest
        return real_create(store, name, data)

    monkeypatch.setattr(LocalObjectStore, "list_objects", list_objects)
    monkeypatch.setattr(LocalObjectStore, "create_bytes", create_bytes)
    results = {}

    def writer(i):
        with dg.DagsterInstance.ephemeral() as instance:
            results[i] = materialize_version(instance, env, V, selection=STAGES)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    assert listed.wait(60)
    write_uploads(uploads, web_app_uploads(2, seed=5, first_index=3, broken_every=0))
    changed.set()
    for t in threads:
        t.join(120)
    monkeypatch.undo()

    assert all(r.success for r in results.values())
    assert sorted(snapshot_of(r) for r in results.values()) == [LOST, "taken now"]
    manifest = stored(storage, "web_app_data", V)
    assert manifest["user_id"].nunique() in (4, 6)  # the winner listed before or after the new uploads
    assert len(pack_tokens(storage, V)) == 1  # the loser's copy is gone
    kept = manifest[manifest["kept_as"].notna()]
    assert len(read_kept(LocalObjectStore(root=str(storage)), kept)) == len(kept) > 0  # every MD5 checked
    assert_same_tables(tables(storage, V), tables(clean_build({V: manifest}, uploads, tmp_path / "clean"), V))

    # a later version, made after the race: nothing it reuses is damaged
    write_uploads(uploads, web_app_uploads(1, seed=5, first_index=5, broken_every=0))
    with dg.DagsterInstance.ephemeral() as instance:
        assert materialize_version(instance, env, LATER, selection=STAGES).success
    later = stored(storage, "web_app_data", LATER)
    clean = clean_build({V: manifest, LATER: later}, uploads, tmp_path / "clean-later")
    assert_same_tables(tables(storage, LATER), tables(clean, LATER))


def test_a_create_whose_answer_was_lost_is_still_the_writers_own(tmp_path, monkeypatch):
    """A create that succeeded but whose answer was lost (a GCS request retried after a timeout
    then finds its own object): the snapshot is this writer's, its packs are kept."""
    uploads, storage = tmp_path / "uploads", tmp_path / "storage"
    write_uploads(uploads, web_app_uploads(1, seed=5, broken_every=0))
    real_create = LocalObjectStore.create_bytes
    monkeypatch.setattr(LocalObjectStore, "create_bytes", lambda s, n, d: real_create(s, n, d) and False)
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(storage)}
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize_version(instance, env, V, selection=STAGES)
    assert result.success and snapshot_of(result) == "taken now"
    assert len(pack_tokens(storage, V)) == 1


def test_a_gcs_create_has_one_winner(gcs_bucket):
    store = GCSObjectStore(gcs=GCSResource(project="test"), bucket=gcs_bucket.name, prefix="datasets")
    assert store.create_bytes("web_app_data/v.parquet", b"first")
    assert not store.create_bytes("web_app_data/v.parquet", b"second")
    assert store.read_bytes("web_app_data/v.parquet") == b"first"


@pytest.mark.parametrize("where", ["packs", "segments"])
def test_the_next_run_removes_what_a_killed_write_left(tmp_path, where):
    """A writer killed mid-write leaves a temporary (and a snapshot writer killed before its
    manifest, whole packs): the next run of the stage removes them, and only them."""
    uploads, storage = tmp_path / "uploads", tmp_path / "storage"
    write_uploads(uploads, web_app_uploads(1, seed=5, broken_every=0))
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(storage)}
    folder = storage / (f"{PACKS}/{V}" if where == "packs" else "raw_data/segments")
    folder.mkdir(parents=True)
    dead = 2**22 + 1  # above the default pid_max: no process has it
    leftovers = [folder / f".tmp-{dead}-abc", *([folder / f"{'0' * 16}-keystrokes.pack"] if where == "packs" else [])]
    for path in leftovers:
        path.write_bytes(b"x" * 1000)
    with dg.DagsterInstance.ephemeral() as instance:
        assert materialize_version(instance, env, V, selection=["web_app_data", "raw_data"]).success
    assert not [p for p in leftovers if p.exists()]
    assert any(folder.iterdir())  # the run's own objects are there


def test_a_snapshot_that_fails_half_way_leaves_no_pack(tmp_path, monkeypatch, no_retry_waits):
    """An upload that changes while it is packed fails the step (every attempt): the packs each
    attempt wrote before it are removed, so failed attempts do not pile up copies."""
    uploads, storage = tmp_path / "uploads", tmp_path / "storage"
    write_uploads(uploads, web_app_uploads(1, seed=5, broken_every=0))
    read = LocalObjectStore.read_upload

    def typed_text_changed(store, info):
        if info.name.endswith("_raw.txt"):  # the last kind packed: the other kinds' packs are written
            raise UploadChanged(f"upload {info.name!r} changed after it was listed")
        return read(store, info)

    monkeypatch.setattr(LocalObjectStore, "read_upload", typed_text_changed)
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(storage)}
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize_version(instance, env, V, selection=["web_app_data"], raise_on_error=False)
    attempts = [e for e in result.all_events if e.event_type_value in ("STEP_UP_FOR_RETRY", "STEP_FAILURE")]
    assert not result.success and len(attempts) == 4
    assert list((storage / PACKS / V).iterdir()) == []
