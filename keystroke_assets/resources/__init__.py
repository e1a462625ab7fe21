"""Resources chosen by environment: local folders by default, GCS for gs:// locations; a step's
segments on every core of this machine by default, on a Dask cluster when one is named."""

import os
from collections.abc import Mapping

from keystroke_assets.resources.object_store import object_store
from keystroke_assets.resources.outlier_rules import OutlierRules
from keystroke_assets.resources.parquet_io_manager import ParquetIOManager
from keystroke_assets.resources.segment_executor import SegmentExecutor

DEFAULT_UPLOADS = "./data/uploads"
DEFAULT_STORAGE = "./data/storage"


__all__ = ["object_store", "resources_from_env"]  # callers import object_store from here


def resources_from_env(env: Mapping[str, str] = os.environ) -> dict:
    uploads = object_store(env.get("KEYSTROKE_UPLOADS", DEFAULT_UPLOADS))
    storage = object_store(env.get("KEYSTROKE_STORAGE", DEFAULT_STORAGE))
    return {
        "uploads": uploads,
        "storage": storage,
        "io_manager": ParquetIOManager(store=storage),
        "outlier_rules": OutlierRules(),
        "segment_executor": segment_executor(env),
    }


def segment_executor(env: Mapping[str, str]) -> SegmentExecutor:
    """KEYSTROKE_DASK_SCHEDULER (`tcp://host:8786`) → segments on that Dask cluster; else
    KEYSTROKE_SEGMENT_WORKERS processes on this machine, by default 0: one per core (1: the step's
    own process) (docs/performance.md "Scaling")."""
    if scheduler := env.get("KEYSTROKE_DASK_SCHEDULER"):
        return SegmentExecutor(scheduler=scheduler)
    return SegmentExecutor(workers=int(env.get("KEYSTROKE_SEGMENT_WORKERS", "0")))
