"""Inputs for the feature tests: keystrokes and keypairs written by hand, and one materialization
of the real samples shared by every feature test module of a session."""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd

from keystroke_assets.lib.latencies import DEFAULT_OUTLIER_THRESHOLDS, KEYPAIR_COLUMNS, KEYSTROKE_COLUMNS
from keystroke_assets.resources.object_store import LocalObjectStore

from .conftest import failed_rules_of, materialize_version, stored, upload_folder

FEATURE_KEYS = [dg.AssetKey(["features", name]) for name in ["statistical", "typenet_sequences", "kvc", "behavioral"]]
CHAIN_KEYS = [dg.AssetKey(k) for k in ["web_app_data", "raw_data", "cleaned_data", "keystrokes", "keypairs"]]


def make_pairs(tasks: list[dict]) -> pd.DataFrame:
    """Keypairs of hand-written tasks, laid out as the keypairs asset stores them. Each task is a
    dict of ids (user_id, device_type, platform_id, video_id, session_id, task_id; None for Aalto's
    platform and video) and `strokes`: [(key, keycode, press_ms, release_ms), ...] in press order."""
    rows = []
    for task in tasks:
        ids = {k: v for k, v in task.items() if k != "strokes"}
        t = DEFAULT_OUTLIER_THRESHOLDS[ids["device_type"]]  # the outlier rule by device type
        for i, ((k1, c1, p1, r1), (k2, c2, p2, r2)) in enumerate(zip(task["strokes"], task["strokes"][1:])):
            hl, il = r1 - p1, p2 - r1
            rows.append(
                {
                    **ids,
                    "sequence_id": i,
                    "key1": k1,
                    "key2": k2,
                    "keycode1": c1,
                    "keycode2": c2,
                    "key1_press": p1,
                    "key1_release": r1,
                    "key2_press": p2,
                    "key2_release": r2,
                    "HL": hl,
                    "IL": il,
                    "PL": p2 - p1,
                    "RL": r2 - r1,
                    "outlier": hl > t.hl_max_ms or hl < t.hl_min_ms or abs(il) > t.il_abs_max_ms,
                }
            )
    pairs = pd.DataFrame(rows)[KEYPAIR_COLUMNS]
    for column in ["platform_id", "video_id", "session_id", "task_id"]:
        pairs[column] = pairs[column].astype("Int64")
    for column in ["sequence_id", "keycode1", "keycode2"]:
        pairs[column] = pairs[column].astype("int32")
    pairs["device_type"] = pairs["device_type"].astype(pd.CategoricalDtype(["desktop", "mobile"]))
    return pairs


def make_keystrokes(tasks: list[dict]) -> pd.DataFrame:
    """The keystrokes table of hand-written tasks (as for make_pairs), laid out as the keystrokes
    asset stores it."""
    rows = [
        {
            **{k: v for k, v in task.items() if k != "strokes"},
            "sequence_id": i,
            "key": key,
            "keycode": code,
            "press_ms": press,
            "release_ms": release,
            "HL": release - press,
        }
        for task in tasks
        for i, (key, code, press, release) in enumerate(task["strokes"])
    ]
    strokes = pd.DataFrame(rows)[KEYSTROKE_COLUMNS]
    for column in ["platform_id", "video_id", "session_id", "task_id"]:
        strokes[column] = strokes[column].astype("Int64")
    for column in ["sequence_id", "keycode"]:
        strokes[column] = strokes[column].astype("int32")
    strokes["device_type"] = strokes["device_type"].astype(pd.CategoricalDtype(["desktop", "mobile"]))
    return strokes


@dataclass
class RealVersion:
    storage: Path
    metadata: dict  # asset key string -> materialization metadata
    failed_checks: list

    def read(self, key: str) -> pd.DataFrame:
        return stored(self.storage, key)

    @property
    def store(self) -> LocalObjectStore:
        return LocalObjectStore(root=str(self.storage))


_materialized: dict[str, RealVersion] = {}


def real_version(real_data: Path, tmp_path_factory) -> RealVersion:
    """The real samples through keypairs and the four feature assets, materialized once a session."""
    if "real" not in _materialized:
        root = tmp_path_factory.mktemp("real_features")
        uploads = upload_folder(
            root / "uploads", real_data / "fpd_webapp_2025" / "web_app_data", real_data / "aalto136m_desktop"
        )
        env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(root / "storage")}
        (root / "home").mkdir()
        with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
            result = materialize_version(instance, env, selection=[*CHAIN_KEYS, *FEATURE_KEYS])
            assert result.success
            metadata = {
                k.to_user_string(): instance.get_latest_materialization_event(k).asset_materialization.metadata
                for k in [*CHAIN_KEYS, *FEATURE_KEYS]
            }
            failed = failed_rules_of(result)
        _materialized["real"] = RealVersion(root / "storage", metadata, failed)
    return _materialized["real"]
