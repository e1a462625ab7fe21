"""Feature assets in the shapes training code wants, read straight from the data store.

    from keystroke_assets.export import load_typenet_sequences, export_kvc
    x, ids = load_typenet_sequences("2025-09-07_00-27-43_lab-mac")   # (n, M, 5) float32, one row of ids per task
    paths = export_kvc("2025-09-07_00-27-43_lab-mac", "out/kvc")     # the KVC .npy files

The store is the one the code location uses (KEYSTROKE_STORAGE: a local folder or gs://bucket/prefix)
unless `storage` is given.
"""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from keystroke_assets.features.kvc import KEY as KVC_KEY, VALUES
from keystroke_assets.features.typenet_sequences import KEY as SEQUENCES_KEY, sequence_array
from keystroke_assets.resources import resources_from_env
from keystroke_assets.resources.object_store import ObjectStore
from keystroke_assets.resources.parquet_io_manager import asset_object_name

PLATFORM_NAMES = {1: "facebook", 2: "instagram", 3: "twitter"}  # platform_id (spec/data.md §1)


def _read(key, version: str, storage: ObjectStore | None) -> pd.DataFrame:
    store = storage if storage is not None else resources_from_env()["storage"]
    name = asset_object_name(key, version)
    if not store.exists(name):
        raise FileNotFoundError(f"{store.uri(name)} does not exist: materialize {key.to_user_string()} for {version} first")
    return pq.read_table(io.BytesIO(store.read_bytes(name))).to_pandas()


def load_typenet_sequences(version: str, storage: ObjectStore | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """(x, ids): x is (n, M, 5) float32, step = [HL, IL, PL, RL in s, keycode / 255], zero-padded;
    ids has one row per task (user_id, device_type, platform_id, video_id, session_id, task_id, length)
    in the order of x."""
    table = _read(SEQUENCES_KEY, version, storage)
    return np.ascontiguousarray(sequence_array(table), dtype=np.float32), table.drop(columns="steps")


def kvc_dict(keystrokes: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """user -> task -> (n, 3) int64 [press_ms, release_ms, keycode], from rows of features/kvc."""
    rows = keystrokes.sort_values(["user_id", "task", "sequence_id"], kind="stable")
    values = rows[VALUES].to_numpy(np.int64)
    users, tasks = rows["user_id"].to_numpy(), rows["task"].to_numpy()
    starts = np.flatnonzero(np.r_[True, (users[1:] != users[:-1]) | (tasks[1:] != tasks[:-1])])
    out: dict[str, dict[str, np.ndarray]] = {}
    # the layout is a dict of arrays: one entry per task is built here, nothing is computed
    for user, task, array in zip(users[starts], tasks[starts], np.split(values, starts[1:])):
        out.setdefault(str(user), {})[str(task)] = array
    return out


def export_kvc(version: str, out_path: str | Path, storage: ObjectStore | None = None) -> dict[str, Path]:
    """Write features/kvc of `version` in the KVC layout under the folder `out_path`:

    - `kvc.npy`: every user and task;
    - `leave_out_<platform>/train.npy` and `test.npy` for facebook, instagram and twitter: test holds
      the tasks typed on that platform, train those typed on the other two (web-app users only:
      Aalto sections have no platform and are only in kvc.npy).

    Each file is a dict user -> task -> (n, 3) int64 [press_ms, release_ms, keycode] saved with
    numpy: `np.load(path, allow_pickle=True).item()`. Returns {name: path}.
    """
    keystrokes = _read(KVC_KEY, version, storage)
    out = Path(out_path)
    out.mkdir(parents=True, exist_ok=True)
    written = {"all": out / "kvc.npy"}
    np.save(written["all"], kvc_dict(keystrokes), allow_pickle=True)
    platform = keystrokes["platform_id"]
    for pid, name in PLATFORM_NAMES.items():
        folder = out / f"leave_out_{name}"
        folder.mkdir(exist_ok=True)
        for split, rows in [("train", platform.notna() & (platform != pid)), ("test", platform == pid)]:
            written[f"leave_out_{name}/{split}"] = folder / f"{split}.npy"
            np.save(folder / f"{split}.npy", kvc_dict(keystrokes[rows.fillna(False).to_numpy(bool)]), allow_pickle=True)
    return written
