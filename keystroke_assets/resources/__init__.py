"""Resources chosen by environment: local folders by default, GCS for gs:// locations."""

import os
from collections.abc import Mapping

from dagster_gcp import GCSResource

from keystroke_assets.resources.object_store import GCSObjectStore, LocalObjectStore, ObjectStore
from keystroke_assets.resources.outlier_rules import OutlierRules
from keystroke_assets.resources.parquet_io_manager import ParquetIOManager

DEFAULT_UPLOADS = "./data/uploads"
DEFAULT_STORAGE = "./data/storage"


def object_store(location: str) -> ObjectStore:
    """`gs://bucket/prefix` → GCS through dagster-gcp; anything else → a local folder."""
    if location.startswith("gs://"):
        bucket, _, prefix = location.removeprefix("gs://").partition("/")
        return GCSObjectStore(
            gcs=GCSResource(project=os.environ.get("GOOGLE_CLOUD_PROJECT")), bucket=bucket, prefix=prefix.strip("/")
        )
    return LocalObjectStore(root=os.path.abspath(location))


def resources_from_env(env: Mapping[str, str] = os.environ) -> dict:
    uploads = object_store(env.get("KEYSTROKE_UPLOADS", DEFAULT_UPLOADS))
    storage = object_store(env.get("KEYSTROKE_STORAGE", DEFAULT_STORAGE))
    return {
        "uploads": uploads,
        "storage": storage,
        "io_manager": ParquetIOManager(store=storage),
        "outlier_rules": OutlierRules(),
    }
