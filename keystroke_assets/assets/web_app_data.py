"""web_app_data: a version's immutable snapshot of the upload store."""

from concurrent.futures import ThreadPoolExecutor
import hashlib

import dagster as dg
import pandas as pd

from keystroke_assets.assets.common import (
    check_specs,
    has_columns,
    non_empty,
    partition_version,
    report_table,
    run_checks,
    version_asset,
)
from keystroke_assets.ingest.names import classify
from keystroke_assets.partitions import version_created_at, version_creator
from keystroke_assets.resources.object_store import ObjectStore

KEPT_PREFIX = "web_app_data/objects"
# Objects the later stages read; the rest are listed in the report, never processed.
KEPT_KINDS = {"keystrokes", "task_metadata", "raw_text", "record", "aalto"}
MANIFEST_COLUMNS = ["name", "size", "md5", "crc32c", "generation", "kind", "user_id", "kept_as"]
CHECKS = [has_columns(MANIFEST_COLUMNS), non_empty()]


def kept_name(md5: str) -> str:
    """Content address of a kept object: equal bytes are kept once across all versions."""
    return f"{KEPT_PREFIX}/{md5[:2]}/{md5}"


def snapshot_manifest(objects: list) -> pd.DataFrame:
    manifest = pd.DataFrame([vars(o) for o in objects], columns=MANIFEST_COLUMNS[:5])
    names = classify(manifest["name"])
    manifest["kind"] = names["kind"]
    manifest["user_id"] = names["user_id"]
    manifest["kept_as"] = manifest["md5"].map(kept_name).where(manifest["kind"].isin(KEPT_KINDS))
    return manifest


def keep_objects(uploads: ObjectStore, storage: ObjectStore, manifest: pd.DataFrame) -> int:
    """Copy the bytes of objects not kept yet; return how many bytes were new."""
    already = storage.list_names(KEPT_PREFIX)
    todo = manifest[manifest["kept_as"].notna() & ~manifest["kept_as"].isin(already)].drop_duplicates("kept_as")

    def keep(row) -> int:
        data = uploads.read_bytes(row.name)
        if hashlib.md5(data).hexdigest() != row.md5:
            raise RuntimeError(f"upload {row.name!r} changed while it was snapshotted; materialize again")
        storage.write_bytes(row.kept_as, data)
        return len(data)

    with ThreadPoolExecutor(max_workers=16) as pool:
        return sum(pool.map(keep, todo.itertuples(index=False)))


@version_asset(
    group_name="ingest",
    code_version="1",
    check_specs=check_specs("web_app_data", CHECKS),
    description=(
        "The version's snapshot of the upload store: a manifest of every object (name, size, MD5, "
        "CRC32C, generation) with the bytes kept content-addressed, so every later stage reads the "
        "snapshot, never the live bucket. Holds personal objects (demographics, typed text) as uploaded."
    ),
)
def web_app_data(context: dg.AssetExecutionContext, uploads: ObjectStore, storage: ObjectStore):
    version = partition_version(context)
    manifest = snapshot_manifest(uploads.list_objects())
    new_bytes = keep_objects(uploads, storage, manifest)
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
            "ignored_objects": len(ignored),
            "ignored_objects_report": report_table(
                ignored[["name", "kind"]].assign(
                    reason=ignored["kind"].map(
                        {"partial": "partial upload (.gstmp): ignored", "unrecognised": "unrecognised name: never processed"}
                    )
                )
            ),
        },
    )
    yield from run_checks(manifest, CHECKS)
