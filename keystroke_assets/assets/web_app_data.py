"""web_app_data: a version's immutable snapshot of the upload store."""

import hashlib
import io

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from keystroke_assets.assets.common import (
    check_specs,
    has_columns,
    non_empty,
    partition_version,
    report_table,
    run_checks,
    version_asset,
)
from keystroke_assets.ingest.names import classify, ignored_reason
from keystroke_assets.partitions import version_created_at, version_creator
from keystroke_assets.resources.object_store import ObjectStore
from keystroke_assets.resources.parquet_io_manager import asset_object_name, from_parquet_bytes

PACKS = "web_app_data/packs"
# Objects the later stages read; the rest are listed in the report, never processed.
KEPT_KINDS = ["keystrokes", "aalto", "record", "task_metadata", "raw_text"]
MANIFEST_COLUMNS = ["name", "size", "md5", "crc32c", "generation", "kind", "user_id", "kept_as"]
CHECKS = [has_columns(MANIFEST_COLUMNS), non_empty()]


def snapshot_manifest(objects: list) -> pd.DataFrame:
    manifest = pd.DataFrame([vars(o) for o in objects], columns=MANIFEST_COLUMNS[:5])
    names = classify(manifest["name"])
    manifest["kind"] = names["kind"]
    manifest["user_id"] = names["user_id"]
    manifest["kept_as"] = None
    return manifest


def _address(pack: str, offset: int, size: int) -> str:
    return f"{pack}@{offset}:{size}"


def read_kept(storage: ObjectStore, addresses: list[str]) -> list[bytes]:
    """The bytes the snapshot kept at `addresses` (manifest's kept_as); each pack is read once."""
    located = [a.rsplit("@", 1) for a in addresses]
    packs = sorted({pack for pack, _ in located})
    content = dict(zip(packs, storage.read_many(packs)))
    out = []
    for pack, span in located:
        offset, size = map(int, span.split(":"))
        out.append(content[pack][offset: offset + size])
    return out


def earlier_addresses(storage: ObjectStore, version: str) -> dict[str, str]:
    """md5 → where an earlier version's snapshot already keeps those bytes."""
    own = asset_object_name(dg.AssetKey("web_app_data"), version)
    manifests = sorted(n for n in storage.list_names("web_app_data") if n.endswith(".parquet") and n.count("/") == 1 and n != own)
    found: dict[str, str] = {}
    for data in storage.read_many(manifests):
        kept = pq.read_table(io.BytesIO(data), columns=["md5", "kept_as"]).to_pandas().dropna()
        found.update(zip(kept["md5"], kept["kept_as"]))
    return found


def keep_objects(uploads: ObjectStore, storage: ObjectStore, manifest: pd.DataFrame, version: str) -> int:
    """Fill `kept_as` for every object the stages read. Bytes an earlier version kept are pointed
    at; the others are copied into one pack per kind for this version. Returns the new bytes."""
    keep = manifest["kind"].isin(KEPT_KINDS)
    manifest.loc[keep, "kept_as"] = manifest.loc[keep, "md5"].map(earlier_addresses(storage, version))
    new_bytes = 0
    for kind in KEPT_KINDS:
        todo = manifest[(manifest["kind"] == kind) & manifest["kept_as"].isna()].drop_duplicates("md5")
        if todo.empty:
            continue
        contents = uploads.read_many(todo["name"].tolist())
        for name, md5, data in zip(todo["name"], todo["md5"], contents):
            if hashlib.md5(data).hexdigest() != md5:
                raise RuntimeError(f"upload {name!r} changed while it was snapshotted; materialize again")
        pack = f"{PACKS}/{version}/{kind}.pack"
        storage.write_bytes(pack, b"".join(contents))
        sizes = np.fromiter(map(len, contents), dtype=np.int64, count=len(contents))
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
        "again), so every later stage reads the snapshot, never the live bucket. Taken once: materializing "
        "the version again keeps its object set. Holds personal objects (demographics, typed text) as uploaded."
    ),
)
def web_app_data(context: dg.AssetExecutionContext, uploads: ObjectStore, storage: ObjectStore):
    version = partition_version(context)
    taken = asset_object_name(context.asset_key, version)
    if storage.exists(taken):
        # A version never changes: materializing it again keeps the object set it was made with.
        manifest, new_bytes, snapshot = from_parquet_bytes(storage.read_bytes(taken)), 0, "kept from its first materialization"
    else:
        manifest, snapshot = snapshot_manifest(uploads.list_objects()), "taken now"
        new_bytes = keep_objects(uploads, storage, manifest, version)
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
