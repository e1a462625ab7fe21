"""A local listing reads a file to checksum it unless an earlier listing already has it: same
size and mtime, and written well before that listing began."""

import hashlib
import os
import time

from keystroke_assets.resources.object_store import EarlierListing, LocalObjectStore

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


def test_unchanged_files_are_not_read_again(tmp_path):
    store = LocalObjectStore(root=str(tmp_path))
    write(tmp_path / "old.csv", b"a,1\n", age=HOUR)
    write(tmp_path / "fresh.csv", b"b,2\n", age=0)
    write(tmp_path / "grown.csv", b"c,3\n", age=HOUR)
    first = store.list_objects()
    assert [o.md5 for o in first] == [hashlib.md5(d).hexdigest() for d in [b"b,2\n", b"c,3\n", b"a,1\n"]]
    earlier = EarlierListing({o.name: o for o in first}, began_after=time.time())

    # old.csv: other bytes of the same size, mtime put back: the earlier checksum is trusted, so
    # the file was not read (what rsync and git do too)
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

    again = {o.name: o for o in store.list_objects(earlier=earlier)}
    assert again["old.csv"] == earlier.objects["old.csv"]
    assert again["fresh.csv"].md5 == hashlib.md5(b"Y,8\n").hexdigest()
    assert (again["grown.csv"].size, again["grown.csv"].md5) == (8, hashlib.md5(b"c,3\nc,4\n").hexdigest())
    assert again["new.csv"].md5 == hashlib.md5(b"d,5\n").hexdigest()
    assert sorted(again) == ["fresh.csv", "grown.csv", "new.csv", "old.csv"]
