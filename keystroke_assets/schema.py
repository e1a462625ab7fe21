"""Column meanings and units, shared by every asset's `dagster/column_schema`."""

import dagster as dg
import pandas as pd

# The ids of a task (docs/features.md §3): one web-app task file, or one Aalto section.
TASK_IDS = ["user_id", "device_type", "platform_id", "video_id", "session_id", "task_id"]
# Tables with a task and a user grain: `grain` says which; ids finer than the grain are null.
GRAIN_IDS = ["grain", *TASK_IDS]

COLUMN_DESCRIPTIONS = {
    # identities
    "user_id": "participant id (web app: 32 hex characters; Aalto: PARTICIPANT_ID)",
    "device_type": "desktop or mobile",
    "platform_id": "1 facebook, 2 instagram, 3 twitter; null for Aalto",
    "video_id": "1-3; null for Aalto",
    "session_id": "web app: 1-2; Aalto: TEST_SECTION_ID",
    "task_id": "web app: task number 0-17 from the file name; Aalto: TEST_SECTION_ID",
    "sequence_id": "index of the pair (or keystroke) within its task, from 0",
    "file": "upload object the row comes from",
    "line": "line number in the upload object (file order), from 1",
    # events and keystrokes
    "event": "P press, R release (web app); K a whole keystroke row (Aalto)",
    "key": "key as typed (KeyboardEvent.key with the web app's renames, or Aalto LETTER)",
    "time_ms": "event time, ms on the file's own clock (Aalto: press time)",
    "release_ms": "Aalto release time, ms",
    "keycode": "key code (browser keyCode; Aalto KEYCODE)",
    "key1": "first key of the pair, as typed",
    "key2": "second key of the pair, as typed",
    "keycode1": "keycode of key1",
    "keycode2": "keycode of key2",
    "key1_press": "press time of key1, ms",
    "key1_release": "release time of key1, ms",
    "key2_press": "press time of key2, ms",
    "key2_release": "release time of key2, ms",
    "HL": "hold latency of key1 = key1_release - key1_press, ms",
    "IL": "inter-key latency = key2_press - key1_release, ms (negative when keys overlap)",
    "PL": "press latency = key2_press - key1_press, ms",
    "RL": "release latency = key2_release - key1_release, ms",
    "outlier": "by the pair's device type's thresholds (outlier_rules resource; desktop by default HL > 2000 ms "
    "or HL < 30 ms or |IL| > 1000 ms, mobile HL > 2000 ms or |IL| > 1000 ms)",
    # snapshot manifest
    "name": "object name relative to the upload store",
    "size": "object size, bytes",
    "md5": "MD5 of the object's bytes, hex (content address of the kept copy); null for a local object never read",
    "crc32c": "CRC32C reported by GCS, hex (null in a local folder)",
    "generation": "GCS generation, or local mtime in ns",
    "kind": "what the object is by its name (keystrokes, task_metadata, raw_text, record, aalto, partial, "
    "unrecognised), or a local entry that is no object (symlink, folder, fifo, socket, device, special_file, "
    "undecodable_name)",
    "kept_as": "where the snapshot keeps the bytes: <pack in the data store>@<offset>:<size>",
    "refused": "why the snapshot did not keep an object of a kind the stages read (over its kind's size limit)",
}


def column_descriptions(df: pd.DataFrame) -> dict[str, str]:
    """Meaning and unit of df's columns: the shared ones, then those of `attrs["column_descriptions"]`."""
    return {**COLUMN_DESCRIPTIONS, **df.attrs.get("column_descriptions", {})}


def table_schema(df: pd.DataFrame) -> dg.TableSchema:
    descriptions = column_descriptions(df)
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=str(c), type=str(dtype), description=descriptions.get(str(c)))
            for c, dtype in df.dtypes.items()
        ]
    )
