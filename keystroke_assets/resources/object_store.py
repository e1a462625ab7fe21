"""Object stores: a flat namespace of immutable objects in a local folder or a GCS prefix.

The upload store (what the web app writes) and the data store (what the assets write) are both
object stores; asset code only sees this interface, never where it lives.
"""

import base64
import hashlib
import os
import posixpath
import shutil
import tempfile
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import dagster as dg
from dagster_gcp import GCSResource
from google.api_core.exceptions import NotFound
from pydantic import PrivateAttr

from keystroke_assets.lib.segments import crc32c


@dataclass(frozen=True)
class ObjectInfo:
    name: str  # relative to the store's root, '/'-separated
    size: int
    md5: str  # hex
    crc32c: str | None  # hex, where the store reports it
    generation: str  # GCS generation, or the local mtime in ns


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


def safe_name(name: str) -> str:
    """Refuse names that could escape the store's root."""
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or "\x00" in name or any(p in ("", ".", "..") for p in parts):
        raise UnsafeObjectName(f"unsafe object name {name!r}")
    return name


class ObjectStore(dg.ConfigurableResource, ABC):
    @abstractmethod
    def list_objects(self, prefix: str = "", earlier: EarlierListing | None = None) -> list[ObjectInfo]:
        """Every object under prefix with size and checksum, sorted by name. A store whose listing
        has no checksums takes an unchanged object's checksum from `earlier` instead of reading it."""

    @abstractmethod
    def list_names(self, prefix: str = "") -> set[str]:
        """Names only: cheap, no checksums."""

    @abstractmethod
    def list_stamps(self) -> dict[str, ObjectStamp]:
        """Every object's stamp, as cheaply as a listing allows (no object is read)."""

    def read_many(self, names: list[str]) -> list[bytes]:
        """Read in parallel threads (a GCS read is mostly waiting)."""
        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(self.read_bytes, names))

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

    def write_file(self, name: str, path: str) -> None:
        """The local file at `path` as object `name`, atomically as write_bytes."""
        with open(path, "rb") as f:
            self.write_bytes(name, f.read())

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove the object (gone already: nothing to do)."""

    @abstractmethod
    def touch(self, names: list[str]) -> None:
        """Make each object's modification time now, its bytes unchanged (a run keeps a segment it
        reuses from a garbage collection in flight)."""

    @abstractmethod
    def checksums(self, names: list[str]) -> dict[str, tuple[int, str, float]]:
        """(size, CRC32C hex, last modified in seconds since the epoch) of each of `names` that
        exists: what a stored segment is checked against before it is reused."""

    @abstractmethod
    def uri(self, name: str = "") -> str: ...


RACY_SECONDS = 2.0


def _read_spans(f: BinaryIO, spans: list[tuple[int, int]]) -> list[bytes]:
    out = {}
    for offset, size in sorted(set(spans)):
        f.seek(offset)
        out[offset, size] = f.read(size)
    return [out[span] for span in spans]


class LocalObjectStore(ObjectStore):
    """Objects are files under `root`. Files have no stored checksum: a listing reads every file
    it cannot take from an earlier listing (by size and mtime)."""

    root: str

    def _path(self, name: str) -> str:
        # plain strings, not pathlib: tens of thousands of uploads are listed and read per snapshot
        return os.path.join(self.root, safe_name(name))

    def list_objects(self, prefix: str = "", earlier: EarlierListing | None = None) -> list[ObjectInfo]:
        known = earlier.objects if earlier else {}
        found = []
        for path, name in self._walk(prefix):
            if (info := known.get(name)) is None or not self._unchanged(path, info, earlier.began_after):
                info = self._info(path, name)
            found.append(info)
        return sorted(found, key=lambda o: o.name)

    @staticmethod
    def _unchanged(path: str, known: ObjectInfo, began_after: float) -> bool:
        """Same size and mtime as when listed, and last written well before that listing began:
        a rewrite within one tick of the file system's clock (1 s on some) keeps size and mtime,
        so a file written just before a listing is checksummed again (git's "racy" rule)."""
        stat = os.stat(path)
        return (
            stat.st_size == known.size
            and str(stat.st_mtime_ns) == known.generation
            and stat.st_mtime < began_after - RACY_SECONDS
        )

    def _walk(self, prefix: str = ""):
        """(path, name) of every file under prefix."""
        base = self._path(prefix) if prefix else self.root
        skip = len(os.path.join(self.root, ""))
        for dirpath, _, filenames in os.walk(base):
            for filename in filenames:
                if not filename.startswith(".tmp-"):  # our own writes in progress
                    path = os.path.join(dirpath, filename)
                    yield path, path[skip:].replace(os.sep, "/")

    @staticmethod
    def _info(path: str, name: str) -> ObjectInfo:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            # an upload may be large: hashed in chunks; a small one (all real ones) in one read,
            # ~1.5x faster over tens of thousands of files
            md5 = (hashlib.md5(f.read()) if stat.st_size < 2**23 else hashlib.file_digest(f, "md5")).hexdigest()
        return ObjectInfo(name=name, size=stat.st_size, md5=md5, crc32c=None, generation=str(stat.st_mtime_ns))

    def list_names(self, prefix: str = "") -> set[str]:
        return {name for _, name in self._walk(prefix)}

    def list_stamps(self) -> dict[str, ObjectStamp]:
        stamps = {}
        for path, name in self._walk():
            try:
                stat = os.stat(path)
            except FileNotFoundError:  # removed while listing
                continue
            stamps[name] = ObjectStamp(stat.st_size, str(stat.st_mtime_ns), stat.st_mtime_ns / 1e9)
        return stamps

    def read_many(self, names: list[str]) -> list[bytes]:
        # A local read does not wait long enough for threads to pay: tens of thousands of small
        # uploads read ~3x faster one after the other than through a pool.
        return [self.read_bytes(n) for n in names]

    def read_bytes(self, name: str) -> bytes:
        with open(self._path(name), "rb") as f:
            return f.read()

    def open(self, name: str) -> BinaryIO:
        return open(self._path(name), "rb")  # the caller closes it

    def write_bytes(self, name: str, data: bytes) -> None:
        path = self._path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def write_file(self, name: str, path: str) -> None:
        target = self._path(name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".tmp-")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def delete(self, name: str) -> None:
        Path(self._path(name)).unlink(missing_ok=True)

    def touch(self, names: list[str]) -> None:
        for name in names:
            os.utime(self._path(name))

    def checksums(self, names: list[str]) -> dict[str, tuple[int, str, float]]:
        found = {}
        for name in names:  # a local file has no stored checksum: read it (CRC32C runs at GB/s)
            try:
                with open(self._path(name), "rb") as f:
                    data, modified = f.read(), os.fstat(f.fileno()).st_mtime
            except FileNotFoundError:
                continue
            found[name] = (len(data), crc32c(data), modified)
        return found

    def uri(self, name: str = "") -> str:
        return os.path.normpath(self._path(name) if name else self.root)


def _b64_to_hex(value: str | None) -> str | None:
    return base64.b64decode(value).hex() if value else None


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

    def list_objects(self, prefix: str = "", earlier: EarlierListing | None = None) -> list[ObjectInfo]:
        # GCS lists every object's MD5 and CRC32C: `earlier` is not needed
        root = f"{self.prefix.rstrip('/')}/" if self.prefix else ""
        found = []
        for blob in self._client_bucket().list_blobs(prefix=root + prefix):
            name = blob.name[len(root) :]
            if not name or name.endswith("/"):
                continue
            found.append(
                ObjectInfo(
                    name=name,
                    size=int(blob.size),
                    md5=_b64_to_hex(blob.md5_hash) or "",
                    crc32c=_b64_to_hex(blob.crc32c),
                    generation=str(blob.generation),
                )
            )
        return sorted(found, key=lambda o: o.name)

    def list_names(self, prefix: str = "") -> set[str]:
        root = f"{self.prefix.rstrip('/')}/" if self.prefix else ""
        return {b.name[len(root) :] for b in self._client_bucket().list_blobs(prefix=root + prefix)}

    def list_stamps(self) -> dict[str, ObjectStamp]:
        root = f"{self.prefix.rstrip('/')}/" if self.prefix else ""
        blobs = self._client_bucket().list_blobs(
            prefix=root, fields="items(name,size,generation,updated),nextPageToken"
        )
        return {
            b.name[len(root) :]: ObjectStamp(int(b.size), str(b.generation), b.updated.timestamp())
            for b in blobs
            if not b.name.endswith("/")
        }

    def _blob(self, name: str):
        blob_name = self._blob_name(name)  # an unsafe name is refused before any client or request
        return self._client_bucket().blob(blob_name)

    def read_bytes(self, name: str) -> bytes:
        return self._blob(name).download_as_bytes()

    def open(self, name: str) -> BinaryIO:
        # a local temporary file, not memory: its reader takes a row group at a time (the whole
        # download is checksummed, as in read_ranges)
        f = tempfile.TemporaryFile(prefix="keystroke-assets-gcs-")
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
                self._folder = tempfile.TemporaryDirectory(prefix="keystroke-assets-gcs-")
            path = os.path.join(self._folder.name, hashlib.sha256(name.encode()).hexdigest())
            self._blob(name).download_to_filename(path)
            self._copies[name] = path
        with open(self._copies[name], "rb") as f:
            return _read_spans(f, spans)

    def write_bytes(self, name: str, data: bytes) -> None:
        # The object appears whole or not at all: GCS creates it when its upload completes (one
        # request, or resumable chunks above 8 MB).
        self._blob(name).upload_from_string(data)

    def write_file(self, name: str, path: str) -> None:
        self._blob(name).upload_from_filename(path)  # whole or not at all, as write_bytes

    def exists(self, name: str) -> bool:
        return self._blob(name).exists()

    def delete(self, name: str) -> None:
        try:
            self._blob(name).delete()
        except NotFound:
            pass

    def touch(self, names: list[str]) -> None:
        # a metadata update is a modification (`updated`), the object's bytes and generation stay
        def touched(name: str) -> None:
            blob = self._blob(name)
            blob.metadata = {"touched": datetime.now(UTC).isoformat()}
            blob.patch()

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(touched, names))

    def checksums(self, names: list[str]) -> dict[str, tuple[int, str, float]]:
        # GCS lists every object's size and CRC32C: one listing per folder, no object is read
        wanted, found = set(names), {}
        root = f"{self.prefix.rstrip('/')}/" if self.prefix else ""
        fields = "items(name,size,crc32c,updated),nextPageToken"
        for folder in {posixpath.dirname(n) for n in names}:
            for blob in self._client_bucket().list_blobs(prefix=f"{root}{folder}/", fields=fields):
                name = blob.name[len(root) :]
                if name in wanted:
                    found[name] = (int(blob.size), _b64_to_hex(blob.crc32c) or "", blob.updated.timestamp())
        return found

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
