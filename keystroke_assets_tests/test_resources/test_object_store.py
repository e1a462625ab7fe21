"""The local object store: a listing reads nothing (an unchanged file keeps an earlier listing's
checksum: same size and mtime, written well before that listing began); the upload folder is a
boundary (only regular files directly in it are objects, nothing else is opened); writes appear
whole, a conditional create has one winner, and temporaries of killed writers are removed."""

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from keystroke_assets.resources.object_store import (
    TMP,
    EarlierListing,
    LocalObjectStore,
    NotARegularFile,
    UploadChanged,
)

HOUR = 3600


def write(path, data: bytes, age: float) -> None:
    """Write `data` with an mtime `age` seconds ago."""
    path.write_bytes(data)
    when = time.time() - age
    os.utime(path, (when, when))


def restamp(path, like) -> None:
    """Give `path` the mtime of `like` (nanoseconds included)."""
    stat = os.stat(like)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_listing_reads_nothing_and_trusts_only_an_unchanged_files_earlier_checksum(tmp_path, monkeypatch):
    store = LocalObjectStore(root=str(tmp_path))
    write(tmp_path / "old.csv", b"a,1\n", age=HOUR)
    write(tmp_path / "fresh.csv", b"b,2\n", age=0)
    write(tmp_path / "grown.csv", b"c,3\n", age=HOUR)
    first = store.list_objects()
    assert [(o.name, o.size, o.md5) for o in first] == [
        ("fresh.csv", 4, None),
        ("grown.csv", 4, None),
        ("old.csv", 4, None),
    ]
    # what the snapshot learnt by reading them
    hashed = {o.name: hashlib.md5(store.read_upload(o)).hexdigest() for o in first}
    earlier = EarlierListing({o.name: o.__class__(**{**vars(o), "md5": hashed[o.name]}) for o in first}, time.time())

    # old.csv: other bytes of the same size, mtime put back: the earlier checksum is trusted, so
    # the file is not read (what rsync and git do too)
    os.rename(tmp_path / "old.csv", tmp_path / "keep")
    write(tmp_path / "old.csv", b"X,9\n", age=0)
    restamp(tmp_path / "old.csv", tmp_path / "keep")
    os.remove(tmp_path / "keep")
    # fresh.csv: written just before the earlier listing; the same trick does not fool it
    stamp = tmp_path / "stamp"
    stamp.touch()
    restamp(stamp, tmp_path / "fresh.csv")
    write(tmp_path / "fresh.csv", b"Y,8\n", age=0)
    restamp(tmp_path / "fresh.csv", stamp)
    stamp.unlink()
    # grown.csv: longer now; new.csv: not listed before
    write(tmp_path / "grown.csv", b"c,3\nc,4\n", age=HOUR)
    write(tmp_path / "new.csv", b"d,5\n", age=HOUR)

    monkeypatch.setattr(os, "open", None)  # a listing opens no file
    again = {o.name: o for o in store.list_objects(earlier=earlier)}
    monkeypatch.undo()
    assert again["old.csv"] == earlier.objects["old.csv"]
    assert (again["fresh.csv"].md5, again["new.csv"].md5) == (None, None)  # to be read and hashed
    assert (again["grown.csv"].size, again["grown.csv"].md5) == (8, None)
    assert sorted(again) == ["fresh.csv", "grown.csv", "new.csv", "old.csv"]


@pytest.fixture
def boundary(tmp_path):
    """An upload folder holding one regular file and one of everything that is no object."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"not an upload")
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "ok.csv").write_bytes(b"P,a,1735660013225\n")
    (uploads / "t_link_2.csv").symlink_to(outside / "secret.txt")
    (uploads / "folder").mkdir()
    (uploads / "folder" / "zero").symlink_to("/dev/zero")
    os.mkfifo(uploads / "pipe.csv")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(uploads / "sock"))
    name = os.fsdecode(b"f_\xff\xfe_0.csv")
    with open(os.fsencode(uploads) + b"/f_\xff\xfe_0.csv", "wb") as f:
        f.write(b"P,a,1735660013225\n")
    yield uploads, name
    server.close()


def test_only_regular_files_directly_in_the_upload_folder_are_objects(boundary, monkeypatch):
    uploads, _ = boundary
    store = LocalObjectStore(root=str(uploads))
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    listing = {o.name: o.special for o in store.list_objects()}
    assert opened == []  # nothing was opened: the FIFO would have blocked, /dev/zero filled memory
    assert listing == {
        "ok.csv": None,
        "t_link_2.csv": "symlink",
        "folder": "folder",
        "pipe.csv": "fifo",
        "sock": "socket",
        "f_\\xff\\xfe_0.csv": "undecodable_name",  # the name's bytes escaped
    }
    assert set(store.list_stamps()) == {"ok.csv"}


@pytest.mark.parametrize("name", ["t_link_2.csv", "pipe.csv", "folder", "sock"])
def test_reading_anything_but_a_regular_file_is_refused_at_once(boundary, name):
    uploads, _ = boundary
    store = LocalObjectStore(root=str(uploads))
    (info,) = [o for o in store.list_objects() if o.name == name]
    with pytest.raises(UploadChanged, match="no longer the file listed"):
        store.read_upload(info)  # never blocks on the FIFO, never follows the link
    with pytest.raises(NotARegularFile):
        store.read_bytes(name)


def test_a_file_replaced_after_the_listing_is_refused(tmp_path):
    store = LocalObjectStore(root=str(tmp_path))
    (tmp_path / "a.csv").write_bytes(b"12345")
    (info,) = store.list_objects()
    assert store.read_upload(info) == b"12345"
    (tmp_path / "a.csv").write_bytes(b"123456")
    with pytest.raises(UploadChanged, match="changed after it was listed"):
        store.read_upload(info)
    (tmp_path / "a.csv").unlink()
    (tmp_path / "a.csv").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UploadChanged):
        store.read_upload(info)


def test_a_conditional_create_has_one_winner_and_leaves_no_temporary(tmp_path):
    store = LocalObjectStore(root=str(tmp_path))
    results, start = {}, threading.Barrier(8)

    def create(i):
        start.wait()
        results[i] = store.create_bytes("web_app_data/v.parquet", f"writer {i}".encode() * 1000)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (winner,) = [i for i, won in results.items() if won]
    assert store.read_bytes("web_app_data/v.parquet") == f"writer {winner}".encode() * 1000
    assert os.listdir(tmp_path / "web_app_data") == ["v.parquet"]


def test_a_writer_appears_whole_or_not_at_all(tmp_path):
    store = LocalObjectStore(root=str(tmp_path))
    with pytest.raises(RuntimeError):
        with store.writer("packs/a.pack") as f:
            f.write(b"half")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path / "packs") == []
    with store.writer("packs/a.pack") as f:
        f.write(b"whole")
    assert store.read_bytes("packs/a.pack") == b"whole"


def test_a_listing_removes_the_temporaries_of_killed_writers_only(tmp_path):
    """A writer killed mid-write leaves its temporary; the next listing of the folder removes it,
    never one whose writer still runs."""
    store = LocalObjectStore(root=str(tmp_path))
    folder = tmp_path / "raw_data" / "segments"
    code = (
        "import sys, time; from keystroke_assets.resources.object_store import LocalObjectStore\n"
        f"w = LocalObjectStore(root={str(tmp_path)!r}).writer('raw_data/segments/x.parquet')\n"
        "f = w.__enter__(); f.write(b'x' * 1000); f.flush(); print('writing', flush=True); time.sleep(60)\n"
    )
    killed = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    alive = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert killed.stdout.readline() == alive.stdout.readline() == b"writing\n"
        killed.kill()
        killed.wait()
        assert sorted(p.split("-")[1] for p in os.listdir(folder)) == sorted([str(killed.pid), str(alive.pid)])
        (folder / "y.json").write_bytes(b"{}")
        assert store.list_names("raw_data/segments") == {"raw_data/segments/y.json"}
        assert [p.split("-")[1] for p in os.listdir(folder) if p.startswith(TMP)] == [str(alive.pid)]
    finally:
        alive.kill()
        alive.wait()
