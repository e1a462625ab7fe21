"""Object stores: a flat namespace of immutable objects in a local folder or a GCS prefix.

The upload store (what the web app writes) and the data store (what the assets write) are both
object stores; asset code only sees this interface, never where it lives.

The upload store is untrusted input (docs/reliability.md): only regular files directly in a local
upload folder are objects. Its listing never follows a symbolic link, never opens a FIFO, device or
socket and never enters a folder; each such entry is listed with what it is (`ObjectInfo.special`)
and never read, and a name that is not valid UTF-8 is listed escaped, never read.
"""

import base64
import hashlib
import os
import posixpath
import shutil
import stat
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import dagster as dg
from dagster_gcp import GCSResource
from google.api_core.exceptions import NotFound, PreconditionFailed
from pydantic import PrivateAttr


@dataclass(frozen=True)
class ObjectInfo:
    name: str  # relative to the store's root, '/'-separated; a name not valid UTF-8 escaped
    size: int
    md5: str | None  # hex; None where the store lists no checksum and the object was not read
    crc32c: str | None  # hex, where the store reports it
    generation: str  # GCS generation, or the local mtime in ns
    special: str | None = None  # an entry that is no object (SPECIAL_ENTRIES): never opened


# What a local upload folder may hold besides objects; none of them is ever opened.
SPECIAL_ENTRIES = ("symlink", "folder", "fifo", "socket", "device", "special_file", "undecodable_name")


@dataclass(frozen=True)
class ObjectStamp:
    """An object's state without its bytes: a new or rewritten object changes it."""

    size: int
    generation: str  # GCS generation, or the local mtime in ns
    modified: float  # seconds since the epoch: local mtime, GCS `updated`


@dataclass(frozen=True)
class EarlierListing:
    """What an earlier listing found, for a store that must read an object to checksum it."""

    objects: dict[str, ObjectInfo]  # by name
    began_after: float  # seconds since the epoch: the listing began at or after this


class UnsafeObjectName(ValueError):
    pass


class UploadChanged(RuntimeError):
    """An upload is no longer what the listing said (rewritten, removed, or not a regular file)."""


class NotARegularFile(OSError):
    """A local path that is a symbolic link, a folder, a FIFO, a device or a socket: never read."""


def safe_name(name: str) -> str:
    """Refuse names that could escape the store's root."""
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or "\x00" in name or any(p in ("", ".", "..") for p in parts):
        raise UnsafeObjectName(f"unsafe object name {name!r}")
    return name


class ObjectStore(dg.ConfigurableResource, ABC):
    @abstractmethod
    def list_objects(self, earlier: EarlierListing | None = None) -> list[ObjectInfo]:
        """Every entry of the store with its size and the checksum the store lists, sorted by
        name. A store that lists no checksum takes an unchanged object's from `earlier` (else
        md5 is None: whoever reads the object hashes it)."""

    @abstractmethod
    def list_names(self, prefix: str = "") -> set[str]:
        """Names of the objects directly in the folder `prefix`: cheap, no checksums."""

    @abstractmethod
    def list_stamps(self) -> dict[str, ObjectStamp]:
        """Every object's stamp, as cheaply as a listing allows (no object is read)."""

    def read_many(self, names: list[str]) -> list[bytes]:
        """Read in parallel threads (a GCS read is mostly waiting)."""
        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(self.read_bytes, names))

    @abstractmethod
    def read_upload(self, info: ObjectInfo) -> bytes:
        """The bytes of an object as `info` listed it; UploadChanged if it is no longer that."""

    def read_uploads(self, infos: list[ObjectInfo]) -> list[bytes]:
        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(self.read_upload, infos))

    @abstractmethod
    def read_bytes(self, name: str) -> bytes: ...

    @abstractmethod
    def open(self, name: str) -> BinaryIO:
        """The object as a seekable binary file, for readers that take only the parts they need:
        a local file, never the object in memory."""

    def read_ranges(self, name: str, spans: list[tuple[int, int]]) -> list[bytes]:
        """The bytes at each (offset, size) of one object, read in offset order."""
        with self.open(name) as f:
            return _read_spans(f, spans)

    @abstractmethod
    def write_bytes(self, name: str, data: bytes) -> None:
        """Write atomically: readers see the old object or the whole new one, never a part."""

    @abstractmethod
    def writer(self, name: str):
        """A context manager giving a binary file to write object `name` into, in parts: the
        object appears whole when the block ends without an error, else not at all."""

    @abstractmethod
    def create_bytes(self, name: str, data: bytes) -> bool:
        """Write `name` only if no object has that name, atomically (two writers at once: one
        wins). True if this call created it."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove the object; nothing happens if it is absent."""

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def uri(self, name: str = "") -> str: ...


RACY_SECONDS = 2.0
# A temporary file's name says which process writes it, so that a later process can tell one whose
# writer died (killed mid-write) from one still being written.
TMP = ".tmp-"
LEGACY_TMP_SECONDS = 24 * 3600  # a temporary named before the pid was in the name: gone after a day
GCS_TMP = "keystroke-assets-gcs-"


def _read_spans(f: BinaryIO, spans: list[tuple[int, int]]) -> list[bytes]:
    out = {}
    for offset, size in sorted(set(spans)):
        f.seek(offset)
        out[offset, size] = f.read(size)
    return [out[span] for span in spans]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_if_orphaned(path: str, prefix: str) -> bool:
    """Remove the temporary `path` (named `<prefix><pid>-...`) if the process writing it is gone.
    True if removed. One named without a pid (an older release) goes once a day old."""
    pid = os.path.basename(path).removeprefix(prefix).split("-", 1)[0]
    try:
        if pid.isdigit():
            if int(pid) == os.getpid() or _alive(int(pid)):
                return False
        elif time.time() - os.lstat(path).st_mtime < LEGACY_TMP_SECONDS:
            return False
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
    return True


def _special(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    for test, kind in [
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "device"),
        (stat.S_ISBLK, "device"),
    ]:
        if test(mode):
            return kind
    return "special_file"


def _open_regular(path: str) -> int:
    """A descriptor of the regular file at `path`: never through a symbolic link (O_NOFOLLOW),
    never blocking on a FIFO (O_NONBLOCK), and anything but a regular file refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # ELOOP for a symbolic link, ENXIO for a socket, ...
        mode = os.lstat(path).st_mode
        if stat.S_ISREG(mode):
            raise
        raise NotARegularFile(f"{path} is a {_special(mode)}, not a regular file: never read") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotARegularFile(f"{path} is a {_special(mode)}, not a regular file: never read")
    os.set_blocking(fd, True)
    return fd


class LocalObjectStore(ObjectStore):
    """Objects are files under `root`. Files have no stored checksum: whoever reads an object
    hashes it, unless an earlier listing has it (same size and mtime)."""

    root: str

    def _path(self, name: str) -> str:
        # plain strings, not pathlib: tens of thousands of uploads are listed and read per snapshot
        return os.path.join(self.root, safe_name(name))

    def _entries(self) -> Iterator[tuple[str, os.stat_result, str | None]]:
        """(name, lstat, special) of every entry directly in the root: nothing followed or opened."""
        try:
            entries = os.scandir(self.root)
        except FileNotFoundError:
            return
        with entries:
            for entry in entries:
                try:
                    lstat = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed while listing
                    continue
                try:
                    entry.name.encode("utf-8")
                except UnicodeEncodeError:  # undecodable bytes, kept by Python as lone surrogates
                    escaped = os.fsencode(entry.name).decode("utf-8", "backslashreplace")
                    yield escaped, lstat, "undecodable_name"
                    continue
                yield entry.name, lstat, _special(lstat.st_mode)

    def list_objects(self, earlier: EarlierListing | None = None) -> list[ObjectInfo]:
        known = earlier.objects if earlier else {}
        found = []
        for name, lstat, special in self._entries():
            info = known.get(name)
            md5 = info.md5 if special is None and info and self._unchanged(lstat, info, earlier.began_after) else None
            found.append(ObjectInfo(name, lstat.st_size, md5, None, str(lstat.st_mtime_ns), special))
        return sorted(found, key=lambda o: o.name)

    @staticmethod
    def _unchanged(lstat: os.stat_result, known: ObjectInfo, began_after: float) -> bool:
        """Same size and mtime as when listed, and last written well before that listing began:
        a rewrite within one tick of the file system's clock (1 s on some) keeps size and mtime,
        so a file written just before a listing is checksummed again (git's "racy" rule)."""
        return (
            lstat.st_size == known.size
            and str(lstat.st_mtime_ns) == known.generation
            and lstat.st_mtime < began_after - RACY_SECONDS
        )

    def list_names(self, prefix: str = "") -> set[str]:
        """The files directly in the folder `prefix`. A temporary met on the way whose writer is
        gone (a write killed mid-way) is removed: the next listing by the stage cleans up."""
        folder = self._path(prefix) if prefix else self.root
        try:
            entries = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return set()
        names = set()
        with entries:
            for entry in entries:
                if entry.name.startswith(TMP):
                    remove_if_orphaned(entry.path, TMP)
                elif entry.is_file(follow_symlinks=False):
                    names.add(f"{prefix.rstrip('/')}/{entry.name}" if prefix else entry.name)
        return names

    def list_stamps(self) -> dict[str, ObjectStamp]:
        return {
            name: ObjectStamp(lstat.st_size, str(lstat.st_mtime_ns), lstat.st_mtime_ns / 1e9)
            for name, lstat, special in self._entries()
            if special is None
        }

    def read_many(self, names: list[str]) -> list[bytes]:
        # A local read does not wait long enough for threads to pay: tens of thousands of small
        # uploads read ~3x faster one after the other than through a pool.
        return [self.read_bytes(n) for n in names]

    def read_uploads(self, infos: list[ObjectInfo]) -> list[bytes]:
        return [self.read_upload(i) for i in infos]

    def read_upload(self, info: ObjectInfo) -> bytes:
        try:
            fd = _open_regular(self._path(info.name))
        except (NotARegularFile, FileNotFoundError) as e:
            raise UploadChanged(f"upload {info.name!r} is no longer the file listed: {e}") from None
        with os.fdopen(fd, "rb") as f:
            before = os.fstat(fd)
            data = f.read(info.size + 1)  # one byte more tells a file that grew
            after = os.fstat(fd)
        if not (len(data) == before.st_size == after.st_size == info.size) or str(after.st_mtime_ns) != info.generation:
            raise UploadChanged(
                f"upload {info.name!r} changed after it was listed (size {info.size} -> {after.st_size})"
            )
        return data

    def read_bytes(self, name: str) -> bytes:
        with os.fdopen(_open_regular(self._path(name)), "rb") as f:
            return f.read()

    def open(self, name: str) -> BinaryIO:
        return os.fdopen(_open_regular(self._path(name)), "rb")  # the caller closes it

    def _temporary(self, path: str) -> tuple[int, str]:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return tempfile.mkstemp(dir=os.path.dirname(path), prefix=f"{TMP}{os.getpid()}-")

    @contextmanager
    def writer(self, name: str):
        path = self._path(name)
        fd, tmp = self._temporary(path)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.writer(name) as f:
            f.write(data)

    def create_bytes(self, name: str, data: bytes) -> bool:
        path = self._path(name)
        fd, tmp = self._temporary(path)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.link(tmp, path)  # fails if `path` exists, whoever made it: the whole file or nothing
            return True
        except FileExistsError:
            return False
        finally:
            _unlink(tmp)

    def delete(self, name: str) -> None:
        _unlink(self._path(name))

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def uri(self, name: str = "") -> str:
        return os.path.normpath(self._path(name) if name else self.root)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _b64_to_hex(value: str | None) -> str | None:
    return base64.b64decode(value).hex() if value else None


def _remove_orphaned_downloads() -> None:
    """Local copies of GCS objects left by processes killed while they read them."""
    folder = tempfile.gettempdir()
    for entry in os.listdir(folder):
        if entry.startswith(GCS_TMP):
            remove_if_orphaned(os.path.join(folder, entry), GCS_TMP)


class GCSObjectStore(ObjectStore):
    """Objects are blobs under gs://bucket/prefix, through dagster-gcp's GCSResource."""

    gcs: GCSResource
    bucket: str
    prefix: str = ""

    _bucket = PrivateAttr(default=None)
    _folder = PrivateAttr(default=None)  # local copies of objects read_ranges downloaded
    _copies: dict = PrivateAttr(default_factory=dict)

    def _client_bucket(self):
        if self._bucket is None:
            self._bucket = self.gcs.get_client().bucket(self.bucket)
        return self._bucket

    def _blob_name(self, name: str) -> str:
        return posixpath.join(self.prefix, safe_name(name)) if self.prefix else safe_name(name)

    def _root(self) -> str:
        return f"{self.prefix.rstrip('/')}/" if self.prefix else ""

    def list_objects(self, earlier: EarlierListing | None = None) -> list[ObjectInfo]:
        # GCS lists every object's MD5 and CRC32C: `earlier` is not needed. A bucket has no
        # symbolic links, devices or folders, and its names are UTF-8.
        root = self._root()
        found = []
        for blob in self._client_bucket().list_blobs(prefix=root):
            name = blob.name[len(root) :]
            if not name or name.endswith("/"):
                continue
            found.append(
                ObjectInfo(
                    name=name,
                    size=int(blob.size),
                    md5=_b64_to_hex(blob.md5_hash) or None,
                    crc32c=_b64_to_hex(blob.crc32c),
                    generation=str(blob.generation),
                )
            )
        return sorted(found, key=lambda o: o.name)

    def list_names(self, prefix: str = "") -> set[str]:
        root = self._root()
        folder = f"{prefix.rstrip('/')}/" if prefix else ""
        blobs = self._client_bucket().list_blobs(prefix=root + folder, delimiter="/")
        return {b.name[len(root) :] for b in blobs}

    def list_stamps(self) -> dict[str, ObjectStamp]:
        root = self._root()
        blobs = self._client_bucket().list_blobs(
            prefix=root, fields="items(name,size,generation,updated),nextPageToken"
        )
        return {
            b.name[len(root) :]: ObjectStamp(int(b.size), str(b.generation), b.updated.timestamp())
            for b in blobs
            if not b.name.endswith("/")
        }

    def _blob(self, name: str, generation: int | None = None):
        blob_name = self._blob_name(name)  # an unsafe name is refused before any client or request
        return self._client_bucket().blob(blob_name, generation=generation)

    def read_upload(self, info: ObjectInfo) -> bytes:
        # that generation's bytes, checksummed by the client; a rewritten object is another generation
        try:
            return self._blob(info.name, int(info.generation)).download_as_bytes()
        except NotFound:
            raise UploadChanged(f"upload {info.name!r} (generation {info.generation}) is gone") from None

    def read_bytes(self, name: str) -> bytes:
        return self._blob(name).download_as_bytes()

    def open(self, name: str) -> BinaryIO:
        # a local temporary file, not memory: its reader takes a row group at a time (the whole
        # download is checksummed, as in read_ranges)
        f = tempfile.TemporaryFile(prefix=GCS_TMP)
        try:
            self._blob(name).download_to_file(f)
        except BaseException:
            f.close()
            raise
        f.seek(0)
        return f  # the caller closes it; the file goes with it

    def read_ranges(self, name: str, spans: list[tuple[int, int]]) -> list[bytes]:
        # Ranged downloads are not checksummed, so the object (an immutable pack) is downloaded
        # whole once per process to a local file, which the client verifies, and read from there.
        if name not in self._copies:
            if self._folder is None:
                _remove_orphaned_downloads()
                self._folder = tempfile.TemporaryDirectory(prefix=f"{GCS_TMP}{os.getpid()}-")
            path = os.path.join(self._folder.name, hashlib.sha256(name.encode()).hexdigest())
            self._blob(name).download_to_filename(path)
            self._copies[name] = path
        with open(self._copies[name], "rb") as f:
            return _read_spans(f, spans)

    def write_bytes(self, name: str, data: bytes) -> None:
        # The object appears whole or not at all: GCS creates it when its upload completes (one
        # request, or resumable chunks above 8 MB).
        self._blob(name).upload_from_string(data)

    @contextmanager
    def writer(self, name: str):
        # spooled to a local file (gone with its handle, even if the process is killed), then
        # uploaded whole, as write_bytes
        with tempfile.TemporaryFile(prefix=GCS_TMP) as f:
            yield f
            f.flush()
            self._blob(name).upload_from_file(f, rewind=True)

    def create_bytes(self, name: str, data: bytes) -> bool:
        try:
            self._blob(name).upload_from_string(data, if_generation_match=0)
            return True
        except PreconditionFailed:  # another writer's object, or ours if a retry lost the answer
            return False

    def delete(self, name: str) -> None:
        try:
            self._blob(name).delete()
        except NotFound:
            pass

    def exists(self, name: str) -> bool:
        return self._blob(name).exists()

    def uri(self, name: str = "") -> str:
        return f"gs://{self.bucket}/{self._blob_name(name) if name else self.prefix}"


def object_store(location: str) -> ObjectStore:
    """`gs://bucket/prefix` → GCS through dagster-gcp; anything else → a local folder. A store's
    `uri()` is such a location: a worker elsewhere rebuilds the store from it."""
    if location.startswith("gs://"):
        bucket, _, prefix = location.removeprefix("gs://").partition("/")
        return GCSObjectStore(
            gcs=GCSResource(project=os.environ.get("GOOGLE_CLOUD_PROJECT")), bucket=bucket, prefix=prefix.strip("/")
        )
    return LocalObjectStore(root=os.path.abspath(location))
