"""web_app_data: a version's immutable snapshot of the upload store, taken once.

However a version is materialized (the CLI in its own process, a queued run, the sensor,
automation, two machines on one bucket), its snapshot is taken once: each writer keeps the upload
bytes in packs named with a token of its own, then creates the manifest only if no manifest
exists (ObjectStore.create_bytes: a hard link locally, a GCS generation precondition). The writer
that loses removes its packs and uses the winner's manifest. Every read of a kept object checks
its bytes against the manifest's MD5 (read_kept).
"""

import hashlib
import io
import uuid
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
from keystroke_assets.resources.object_store import EarlierListing, ObjectInfo, ObjectStore, UploadChanged
from keystroke_assets.resources.parquet_io_manager import asset_object_name, from_parquet_bytes, to_parquet_bytes

PACKS = "web_app_data/packs"
# Objects the later stages read; the rest are listed in the report, never processed.
KEPT_KINDS = ["keystrokes", "aalto", "record", "task_metadata", "raw_text"]
# Uploads read at once into a pack: at most this many, and this many bytes (each at most its cap).
PACK_BATCH_FILES = 2000
PACK_BATCH_BYTES = 64 * 2**20
LISTING_COLUMNS = ["name", "size", "md5", "crc32c", "generation"]  # what the store lists of an object
MANIFEST_COLUMNS = [*LISTING_COLUMNS, "kind", "user_id", "kept_as", "refused", "first_seen"]
CHECKS = [has_columns(MANIFEST_COLUMNS), non_empty()]


class SnapshotConfig(dg.Config):
    # A real task CSV is ~20 KB, an Aalto file ~130 KB, a JSON record or a typed text ~1 KB. A
    # larger object is refused from its listed size: never read, never kept, reported.
    max_keystroke_file_mb: float = 32.0  # task CSVs and Aalto files; parsing costs ~15x their size
    max_record_kb: float = 1024.0  # JSON records and task metadata
    max_raw_text_kb: float = 1024.0  # typed texts

    def limits(self) -> dict[str, tuple[float, str]]:
        """Per kept kind: (the most bytes kept, the limit as a report says it)."""
        keystrokes = (self.max_keystroke_file_mb * 1e6, f"{self.max_keystroke_file_mb:g} MB limit for a keystroke file")
        record = (self.max_record_kb * 1e3, f"{self.max_record_kb:g} KB limit for a JSON record")
        return {
            "keystrokes": keystrokes,
            "aalto": keystrokes,
            "record": record,
            "task_metadata": record,
            "raw_text": (self.max_raw_text_kb * 1e3, f"{self.max_raw_text_kb:g} KB limit for a typed text"),
        }


def _size(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB"


def snapshot_manifest(objects: list[ObjectInfo], config: SnapshotConfig) -> pd.DataFrame:
    """One row per listed entry: its kind by name (or what it is, for an entry that is no object),
    and why an object of a kept kind is refused (over its kind's size limit)."""
    manifest = pd.DataFrame([vars(o) for o in objects], columns=[*LISTING_COLUMNS, "special"])
    names = classify(manifest["name"])
    special = manifest.pop("special")
    manifest["kind"] = special.where(special.notna(), names["kind"])
    manifest["user_id"] = names["user_id"].where(special.isna(), None)
    manifest["kept_as"] = None
    limits = config.limits()
    limit = manifest["kind"].map(lambda k: limits.get(k, (np.inf, ""))[0]).astype(float)
    refused = manifest["size"].to_numpy() > limit.to_numpy()
    manifest["refused"] = None
    manifest.loc[refused, "refused"] = [
        f"{_size(size)}, over the {limits[kind][1]}: never read"
        for size, kind in zip(manifest.loc[refused, "size"], manifest.loc[refused, "kind"])
    ]
    return manifest


class KeptBytesDamaged(RuntimeError):
    """Bytes read from a pack are not those the snapshot kept: the stage stores nothing from them."""


def _address(pack: str, offset: int, size: int) -> str:
    return f"{pack}@{offset}:{size}"


def read_kept(storage: ObjectStore, rows: pd.DataFrame) -> list[bytes | None]:
    """The bytes the snapshot kept of each manifest row (columns name, md5, kept_as), None for an
    object not kept, each checked against its MD5: a mismatch raises KeptBytesDamaged naming the
    object. Only those parts of each pack are read (a version's pack holds all its uploads of a
    kind, gigabytes at 10,000 participants)."""
    wanted = defaultdict(list)  # pack -> [(position in rows, (offset, size))]
    for i, address in enumerate(rows["kept_as"]):
        if isinstance(address, str):
            pack, span = address.rsplit("@", 1)
            offset, size = map(int, span.split(":"))
            wanted[pack].append((i, (offset, size)))
    out: list[bytes | None] = [None] * len(rows)
    for pack, parts in wanted.items():
        for (i, _), data in zip(parts, storage.read_ranges(pack, [span for _, span in parts])):
            out[i] = data
    names, md5s, addresses = rows["name"].tolist(), rows["md5"].tolist(), rows["kept_as"].tolist()
    for name, md5, address, data in zip(names, md5s, addresses, out):
        if data is not None and hashlib.md5(data).hexdigest() != md5:
            raise KeptBytesDamaged(
                f"the bytes kept of upload {name!r} at {storage.uri(address.rsplit('@', 1)[0])} "
                f"({address.rsplit('@', 1)[1]}) do not match the snapshot's MD5 {md5}: the pack is damaged; "
                "nothing is computed from it"
            )
    return out


def earlier_manifests(storage: ObjectStore, version: str) -> dict[str, pd.DataFrame]:
    """Every other version's manifest (the listing and where its bytes are kept), by version."""
    own = asset_object_name(dg.AssetKey("web_app_data"), version)
    names = sorted(n for n in storage.list_names("web_app_data") if n.endswith(".parquet") and n != own)
    columns = [*LISTING_COLUMNS, "user_id", "kept_as"]
    return {
        name.removeprefix("web_app_data/").removesuffix(".parquet"): pq.read_table(
            io.BytesIO(data), columns=columns
        ).to_pandas()
        for name, data in zip(names, storage.read_many(names))
    }


def first_seen(manifest: pd.DataFrame, version: str, earlier: dict[str, pd.DataFrame]) -> pd.Series:
    """For every row, the first version (ids sort by their time) whose snapshot has the row's
    participant: the order in which participants fall into segments (keystroke_assets.lib.segments)."""
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
    md5 = m["md5"].astype(object).where(m["md5"].notna(), None)  # None: a local object that was never read
    objects = map(ObjectInfo, m["name"], m["size"].tolist(), md5, m["crc32c"], m["generation"])
    return EarlierListing({o.name: o for o in objects}, began)


def _batches(todo: pd.DataFrame) -> list[pd.DataFrame]:
    """todo's rows in batches of at most PACK_BATCH_FILES rows and about PACK_BATCH_BYTES bytes."""
    ends = np.cumsum(todo["size"].to_numpy())
    batch = np.maximum(ends // PACK_BATCH_BYTES, np.arange(len(todo)) // PACK_BATCH_FILES)
    return [rows for _, rows in todo.groupby(batch, sort=True)]


def keep_objects(
    uploads: ObjectStore,
    storage: ObjectStore,
    manifest: pd.DataFrame,
    listed: dict[str, ObjectInfo],
    packs_at: str,
    earlier: dict[str, pd.DataFrame],
) -> int:
    """Fill `kept_as` (and the MD5 a local listing has not) of every object the stages read and
    the snapshot did not refuse. Bytes an `earlier` version kept are pointed at; the others are
    read (in bounded batches) and written to one pack per kind `<packs_at>-<kind>.pack`. Returns
    the new bytes; on an error the packs written are removed (each attempt writes new ones)."""
    keep = manifest["kind"].isin(KEPT_KINDS) & manifest["refused"].isna()
    addresses: dict[str, str] = {}
    for m in earlier.values():
        kept = m.dropna(subset=["kept_as"])
        addresses.update(zip(kept["md5"], kept["kept_as"]))
    manifest.loc[keep, "kept_as"] = manifest.loc[keep, "md5"].map(addresses)
    new_bytes, packs = 0, []
    try:
        for kind in KEPT_KINDS:
            todo = manifest[keep & (manifest["kind"] == kind) & manifest["kept_as"].isna()]
            todo = todo[todo["md5"].isna() | ~todo["md5"].duplicated()]  # a listed MD5 is read once
            if todo.empty:
                continue
            pack, written = f"{packs_at}-{kind}.pack", 0
            with storage.writer(pack) as out:
                for batch in _batches(todo):
                    contents = uploads.read_uploads([listed[name] for name in batch["name"]])
                    for row, listed_md5, data in zip(batch.index, batch["md5"], contents):
                        md5 = hashlib.md5(data).hexdigest()
                        if isinstance(listed_md5, str) and md5 != listed_md5:
                            raise UploadChanged(f"upload {manifest.at[row, 'name']!r} changed while it was snapshotted")
                        if md5 not in addresses:
                            out.write(data)
                            addresses[md5] = _address(pack, written, len(data))
                            written += len(data)
                        manifest.at[row, "md5"] = md5
            packs.append(pack)
            new_bytes += written
        # objects whose MD5 another object of the version has (listed MD5s read once above)
        manifest.loc[keep, "kept_as"] = manifest.loc[keep, "md5"].map(addresses)
    except BaseException:
        for pack in packs:
            storage.delete(pack)
        raise
    return new_bytes


def remove_unused_packs(storage: ObjectStore, version: str, manifest: pd.DataFrame) -> int:
    """Remove the packs under the version's folder its manifest does not point into (those of a
    writer that lost the race or died before its manifest), and, locally, temporaries of killed
    writes. Only once the manifest exists: no later writer of the version can win. Returns how many."""
    kept_as = manifest["kept_as"].dropna().astype(str)
    # a few packs per writer, hundreds of thousands of addresses: test each pack, split no address
    unused = {p for p in storage.list_names(f"{PACKS}/{version}") if not kept_as.str.startswith(f"{p}@").any()}
    for name in unused:
        storage.delete(name)
    return len(unused)


def take_snapshot(uploads: ObjectStore, storage: ObjectStore, version: str, config: SnapshotConfig):
    """(manifest, new bytes, how it was taken): the version's snapshot as stored, taken now if no
    run has taken it yet."""
    taken = asset_object_name(dg.AssetKey("web_app_data"), version)
    if storage.exists(taken):
        return from_parquet_bytes(storage.read_bytes(taken)), 0, "kept from its first materialization"
    earlier = earlier_manifests(storage, version)
    listing = uploads.list_objects(earlier=earlier_listing(earlier))
    manifest = snapshot_manifest(listing, config)
    new_bytes = keep_objects(
        uploads, storage, manifest, {o.name: o for o in listing}, f"{PACKS}/{version}/{uuid.uuid4().hex[:16]}", earlier
    )
    manifest["first_seen"] = first_seen(manifest, version, earlier)
    data = to_parquet_bytes(manifest)
    # ours if created now, or if a retried create found its own first attempt (the packs' token is ours);
    # else another writer's, and our packs go with the unused ones (remove_unused_packs)
    if storage.create_bytes(taken, data) or storage.read_bytes(taken) == data:
        return manifest, new_bytes, "taken now"
    lost = "taken by another run at the same time: its snapshot is kept, this run's copy removed"
    return from_parquet_bytes(storage.read_bytes(taken)), 0, lost


@version_asset(
    group_name="ingest",
    code_version="2",
    check_specs=check_specs("web_app_data", CHECKS),
    description=(
        "The version's snapshot of the upload store: a manifest of every object (name, size, MD5, "
        "CRC32C, generation) with the bytes kept in packs (bytes an earlier version kept are not stored "
        "again; a local upload unchanged since the previous version is not read again), so every later "
        "stage reads the snapshot, never the live bucket. Taken once, by whichever run creates the "
        "manifest first: materializing the version again keeps its object set. Only regular files "
        "directly in the store are read; objects over their kind's size limit are refused unread. "
        "Holds personal objects (demographics, typed text) as uploaded."
    ),
)
def web_app_data(context: dg.AssetExecutionContext, config: SnapshotConfig, uploads: ObjectStore, storage: ObjectStore):
    version = partition_version(context)
    manifest, new_bytes, snapshot = take_snapshot(uploads, storage, version, config)
    manifest = manifest.reindex(columns=MANIFEST_COLUMNS)  # a snapshot taken before `refused` existed
    removed = remove_unused_packs(storage, version, manifest)
    ignored = manifest[~manifest["kind"].isin(KEPT_KINDS) | manifest["refused"].notna()]
    reasons = ignored["refused"].where(ignored["refused"].notna(), ignored_reason(ignored["name"], ignored["kind"]))
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
            "unused_packs_removed": removed,
            "ignored_objects": len(ignored),
            "ignored_objects_report": report_table(ignored[["name", "kind"]].assign(reason=reasons)),
        },
    )
    yield from run_checks(manifest, CHECKS)
