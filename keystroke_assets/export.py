"""Feature assets in the shapes training code wants, read straight from the data store.

    from keystroke_assets.export import load, load_typenet_sequences, export_kvc
    keypairs = load("keypairs", "2025-09-07_00-27-43_lab-mac")                # any asset's table
    train_filled = load("features/typenet_ml/session", "2025-09-07_00-27-43_lab-mac",
                        fill_from=lambda df: df["session_id"] == 1)   # the fill fitted on session 1 only
    x, ids = load_typenet_sequences("2025-09-07_00-27-43_lab-mac")   # (n, M, 5) float32, one row of ids per task
    paths = export_kvc("2025-09-07_00-27-43_lab-mac", "out/kvc")     # the KVC .npy files

The store is the one the code location uses (KEYSTROKE_STORAGE: a local folder or gs://bucket/prefix)
unless `storage` is given.

Keycodes in order can spell out what was typed: `keycodes="classes"` (the kind of key) or `"none"`
(0) exports without it, whatever the assets were materialized with; an export cannot give back
more than the asset stored (asking `full` of a `classes` asset is an error).
"""

from collections.abc import Callable
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from keystroke_assets.features.kvc import KVC, VALUES
from keystroke_assets.features.typenet_ml_fill import OBSERVED, fill_fitted_on, unfilled_statistics
from keystroke_assets.features.typenet_sequences import TYPENET_SEQUENCES, sequence_array
from keystroke_assets.lib.keycodes import KEYCODE_POLICIES, KeycodePolicy, apply_keycode_policy, policy_of
from keystroke_assets.resources import resources_from_env
from keystroke_assets.resources.object_store import ObjectStore
from keystroke_assets.resources.parquet_io_manager import read_version_table

PLATFORM_NAMES = {1: "facebook", 2: "instagram", 3: "twitter"}  # platform_id (docs/data.md §1)


def _read(key: dg.AssetKey, version: str, storage: ObjectStore | None) -> pa.Table:
    store = storage if storage is not None else resources_from_env()["storage"]
    return read_version_table(store, key, version)


def load(
    asset: str | dg.AssetKey,
    version: str,
    storage: ObjectStore | None = None,
    *,
    fill_from: np.ndarray | pd.Series | Callable[[pd.DataFrame], np.ndarray] | None = None,
    filled: bool = True,
) -> pd.DataFrame:
    """An asset's table for `version` ("keypairs", "features/kvc", ...), however it is stored (one
    object, or a list of participant segments): one call for any reader outside Dagster.

    typenet_ml's stored fill (docs/features.md §3) uses every row of a user, so it carries the
    user's identity from one session into another. To train and test (or enrol and verify) across a
    split, give `fill_from`: the rows the fill is fitted on (a boolean per row of the table, or a
    function of the table returning one, e.g. `lambda df: df["session_id"] == 1`); a row outside
    them is filled without anything of its own user (typenet_ml_fill.fill_fitted_on). Or `filled=False`:
    the statistics as observed, missing where not (the `observed` column is the mask)."""
    key = asset if isinstance(asset, dg.AssetKey) else dg.AssetKey.from_user_string(asset)
    table = _read(key, version, storage).to_pandas()
    if fill_from is None and filled:
        return table
    if OBSERVED not in table:
        raise ValueError(f"{key.to_user_string()} has no fill to refit: fill_from and filled apply to typenet_ml")
    if not filled:
        if fill_from is not None:
            raise ValueError("filled=False gives the statistics unfilled: there is no fill to fit, leave fill_from out")
        return unfilled_statistics(table).assign(**{OBSERVED: table[OBSERVED]})
    fit = fill_from(table) if callable(fill_from) else fill_from
    return fill_fitted_on(table, np.asarray(fit, dtype=bool))[0]


def _keycodes_as(codes: np.ndarray, stored: KeycodePolicy, wanted: KeycodePolicy) -> np.ndarray:
    """Stored keycodes as the `wanted` policy allows: the stored policy's are reused as they are
    (classes of classes would all read 0 'other')."""
    if KEYCODE_POLICIES.index(wanted) < KEYCODE_POLICIES.index(stored):
        raise ValueError(
            f"the asset was materialized with keycodes={stored}: it cannot give keycodes={wanted}; "
            f"materialize it again with keycodes={wanted} or export with keycodes={stored}"
        )
    return codes if wanted == stored else apply_keycode_policy(codes, wanted)


def _column_policy(table: pa.Table, column: str) -> KeycodePolicy:
    metadata = table.schema.field(column).metadata or {}
    return policy_of(metadata.get(b"description", b"").decode())


def load_typenet_sequences(
    version: str, storage: ObjectStore | None = None, keycodes: KeycodePolicy = "full"
) -> tuple[np.ndarray, pd.DataFrame]:
    """(x, ids): x is (n, M, 5) float32, step = [HL, IL, PL, RL in s, keycode / 255], zero-padded,
    the keycodes as `keycodes` allows; ids has one row per task (user_id, device_type, platform_id,
    video_id, session_id, task_id, length) in the order of x."""
    table = _read(dg.AssetKey(TYPENET_SEQUENCES.key_path), version, storage)
    stored = _column_policy(table, "steps")
    table = table.to_pandas()
    x = np.ascontiguousarray(sequence_array(table), dtype=np.float32)
    if keycodes != stored:
        x = x.copy()  # the array read is read-only
        # keycode / 255 in float32 rounds back to the integer code exactly
        codes = np.rint(x[:, :, 4] * 255).astype(np.int32)
        x[:, :, 4] = _keycodes_as(codes, stored, keycodes) / 255.0
    return x, table.drop(columns="steps")


def kvc_dict(keystrokes: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """user -> task -> (n, 3) int64 [press_ms, release_ms, keycode], from rows of features/kvc."""
    if keystrokes.empty:  # e.g. a split of a platform nobody typed on
        return {}
    rows = keystrokes.sort_values(["user_id", "task", "sequence_id"], kind="stable")
    values = rows[VALUES].to_numpy(np.int64)
    users, tasks = rows["user_id"].to_numpy(), rows["task"].to_numpy()
    starts = np.flatnonzero(np.r_[True, (users[1:] != users[:-1]) | (tasks[1:] != tasks[:-1])])
    out: dict[str, dict[str, np.ndarray]] = {}
    # the layout is a dict of arrays: one entry per task is built here, nothing is computed
    for user, task, array in zip(users[starts], tasks[starts], np.split(values, starts[1:])):
        out.setdefault(str(user), {})[str(task)] = array
    return out


def export_kvc(
    version: str, out_path: str | Path, storage: ObjectStore | None = None, keycodes: KeycodePolicy = "full"
) -> dict[str, Path]:
    """Write features/kvc of `version` in the KVC layout under the folder `out_path`, the keycodes
    as `keycodes` allows:

    - `kvc.npy`: every user and task;
    - `leave_out_<platform>/train.npy` and `test.npy` for facebook, instagram and twitter: test holds
      the tasks typed on that platform, train those typed on the other two (web-app users only:
      Aalto sections have no platform and are only in kvc.npy).

    Each file is a dict user -> task -> (n, 3) int64 [press_ms, release_ms, keycode] saved with
    numpy: `np.load(path, allow_pickle=True).item()`. Returns {name: path}.
    """
    table = _read(dg.AssetKey(KVC.key_path), version, storage)
    stored = _column_policy(table, "keycode")
    keystrokes = table.to_pandas()
    keystrokes["keycode"] = _keycodes_as(keystrokes["keycode"].to_numpy(), stored, keycodes)
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
