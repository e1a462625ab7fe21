"""web_app_data: a version's immutable snapshot of the upload store."""

import hashlib
import io
import os
import tempfile
from collections import defaultdict
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from keystroke_assets.assets.common import (
    check_specs,
    partition_version,
    report_table,
    run_checks,
    version_asset,
)
from keystroke_assets.lib.ingest.names import classify, ignored_reason
from keystroke_assets.lib.rules import has_columns, non_empty
from keystroke_assets.partitions import version_created_at, version_creator
from keystroke_assets.resources.object_store import EarlierListing, ObjectInfo, ObjectStore
from keystroke_assets.resources.parquet_io_manager import asset_object_name, from_parquet_bytes

PACKS = "web_app_data/packs"
# Objects the later stages read; the rest are listed in the report, never processed.
KEPT_KINDS = ["keystrokes", "aalto", "record", "task_metadata", "raw_text"]
PACK_CHUNK = 2000  # uploads read at once into a pack (a task CSV is ~20 KB)
LISTING_COLUMNS = ["name", "size", "md5", "crc32c", "generation"]  # what the store lists of an object
MANIFEST_COLUMNS = [*LISTING_COLUMNS, "kind", "user_id", "kept_as", "first_seen"]
CHECKS = [has_columns(MANIFEST_COLUMNS), non_empty()]


def snapshot_manifest(objects: list) -> pd.DataFrame:
    manifest = pd.DataFrame([vars(o) for o in objects], columns=LISTING_COLUMNS)
    names = classify(manifest["name"])
    manifest["kind"] = names["kind"]
    manifest["user_id"] = names["user_id"]
    manifest["kept_as"] = None
    return manifest


def _address(pack: str, offset: int, size: int) -> str:
    return f"{pack}@{offset}:{size}"


def read_kept(storage: ObjectStore, addresses: list[str]) -> list[bytes]:
    """The bytes the snapshot kept at `addresses` (manifest's kept_as): only those parts of each
    pack are read (a version's pack holds all its uploads of a kind, gigabytes at 10,000
    participants)."""
    wanted = defaultdict(list)  # pack -> [(position in addresses, (offset, size))]
    for i, address in enumerate(addresses):
        pack, span = address.rsplit("@", 1)
        offset, size = map(int, span.split(":"))
        wanted[pack].append((i, (offset, size)))
    out = [b""] * len(addresses)
    for pack, parts in wanted.items():
        for (i, _), data in zip(parts, storage.read_ranges(pack, [span for _, span in parts])):
            out[i] = data
    return out


def earlier_manifests(storage: ObjectStore, version: str) -> dict[str, pd.DataFrame]:
    """Every other version's manifest (the listing and where its bytes are kept), by version."""
    own = asset_object_name(dg.AssetKey("web_app_data"), version)
    names = sorted(
        n for n in storage.list_names("web_app_data") if n.endswith(".parquet") and n.count("/") == 1 and n != own
    )
    columns = [*LISTING_COLUMNS, "user_id", "kept_as"]
    return {
        name.removeprefix("web_app_data/").removesuffix(".parquet"): pq.read_table(
            io.BytesIO(data), columns=columns
        ).to_pandas()
        for name, data in zip(names, storage.read_many(names))
    }


def first_seen(manifest: pd.DataFrame, version: str, earlier: dict[str, pd.DataFrame]) -> pd.Series:
    """For every row, the first version (ids sort by their time) whose snapshot has the row's
    participant: the order in which participants fall into segments (keystroke_assets.segments)."""
    first = {}
    for other, m in sorted(earlier.items(), reverse=True):  # the earliest version written last
        first.update(dict.fromkeys(m["user_id"].dropna(), other))
    seen = manifest["user_id"].map(first).fillna(version).astype(str)
    return seen.where(seen < version, version)


def earlier_listing(manifests: dict[str, pd.DataFrame]) -> EarlierListing | None:
    """The upload store as the latest earlier version listed it. Its listing began after the
    version was named; a version dated in the future tells nothing of when it was listed."""
    dated = [(created.timestamp(), v) for v in manifests if (created := version_created_at(v)) <= datetime.now(UTC)]
    if not dated:
        return None
    began, latest = max(dated)
    m = manifests[latest]
    objects = map(ObjectInfo, m["name"], m["size"].tolist(), m["md5"], m["crc32c"], m["generation"])
    return EarlierListing({o.name: o for o in objects}, began)


def keep_objects(
    uploads: ObjectStore, storage: ObjectStore, manifest: pd.DataFrame, version: str, earlier: dict[str, pd.DataFrame]
) -> int:
    """Fill `kept_as` for every object the stages read. Bytes an `earlier` version kept are
    pointed at; the others are copied into one pack per kind for this version. Returns the new bytes."""
    keep = manifest["kind"].isin(KEPT_KINDS)
    addresses: dict[str, str] = {}
    for m in earlier.values():
        kept = m.dropna(subset=["kept_as"])
        addresses.update(zip(kept["md5"], kept["kept_as"]))
    manifest.loc[keep, "kept_as"] = manifest.loc[keep, "md5"].map(addresses)
    new_bytes = 0
    for kind in KEPT_KINDS:
        todo = manifest[(manifest["kind"] == kind) & manifest["kept_as"].isna()].drop_duplicates("md5")
        if todo.empty:
            continue
        pack, sizes = f"{PACKS}/{version}/{kind}.pack", []
        # spooled through a local file a few thousand uploads at a time: a pack holds all of a
        # version's new uploads of a kind, gigabytes at 10,000 participants
        fd, path = tempfile.mkstemp(prefix="keystroke-assets-", suffix=".pack")
        try:
            with os.fdopen(fd, "wb") as spool:
                for start in range(0, len(todo), PACK_CHUNK):
                    chunk = todo.iloc[start : start + PACK_CHUNK]
                    for name, md5, data in zip(chunk["name"], chunk["md5"], uploads.read_many(chunk["name"].tolist())):
                        if hashlib.md5(data).hexdigest() != md5:
                            raise RuntimeError(f"upload {name!r} changed while it was snapshotted; materialize again")
                        spool.write(data)
                        sizes.append(len(data))
            storage.write_file(pack, path)
        finally:
            os.unlink(path)
        sizes = np.array(sizes, dtype=np.int64)
        offsets = np.cumsum(sizes) - sizes
        address = {m: _address(pack, o, n) for m, o, n in zip(todo["md5"], offsets.tolist(), sizes.tolist())}
        rows = (manifest["kind"] == kind) & manifest["kept_as"].isna()
        manifest.loc[rows, "kept_as"] = manifest.loc[rows, "md5"].map(address)
        new_bytes += int(sizes.sum())
    return new_bytes


@version_asset(
    group_name="ingest",
    code_version="1",
    check_specs=check_specs("web_app_data", CHECKS),
    description=(
        "The version's snapshot of the upload store: a manifest of every object (name, size, MD5, "
        "CRC32C, generation) with the bytes kept in packs (bytes an earlier version kept are not stored "
        "again; a local upload unchanged since the previous version is not read again to checksum it), so "
        "every later stage reads the snapshot, never the live bucket. Taken once: materializing "
        "the version again keeps its object set. Holds personal objects (demographics, typed text) as uploaded."
    ),
)
def web_app_data(context: dg.AssetExecutionContext, uploads: ObjectStore, storage: ObjectStore):
    version = partition_version(context)
    taken = asset_object_name(context.asset_key, version)
    if storage.exists(taken):
        # A version never changes: materializing it again keeps the object set it was made with.
        manifest, new_bytes, snapshot = (
            from_parquet_bytes(storage.read_bytes(taken)),
            0,
            "kept from its first materialization",
        )
    else:
        earlier = earlier_manifests(storage, version)
        manifest, snapshot = snapshot_manifest(uploads.list_objects(earlier=earlier_listing(earlier))), "taken now"
        new_bytes = keep_objects(uploads, storage, manifest, version, earlier)
        manifest["first_seen"] = first_seen(manifest, version, earlier)
    ignored = manifest[~manifest["kind"].isin(KEPT_KINDS)]
    kinds = manifest["kind"].value_counts()
    yield dg.Output(
        manifest,
        metadata={
            "version": version,
            "created_by": version_creator(version),
            "created_at": dg.MetadataValue.timestamp(version_created_at(version)),
            "upload_store": dg.MetadataValue.path(uploads.uri()),
            "objects": len(manifest),
            **{f"objects/{k}": int(v) for k, v in kinds.items()},
            "participants": int(manifest.loc[manifest["kind"] != "aalto", "user_id"].nunique()),
            "bytes_total": int(manifest["size"].sum()),
            "bytes_new": new_bytes,
            "snapshot": snapshot,
            "ignored_objects": len(ignored),
            "ignored_objects_report": report_table(
                ignored[["name", "kind"]].assign(reason=ignored_reason(ignored["name"], ignored["kind"]))
            ),
        },
    )
    yield from run_checks(manifest, CHECKS)
