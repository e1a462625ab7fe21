"""A clean build to compare a version against: the same versions made one after the other, each
from exactly the upload objects its snapshot lists (copied from the upload folder, their MD5
checked against the manifest), in a new store, with no race, kill or fault on the way."""

import hashlib
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd

from .conftest import materialize_version, stored

STAGES = ["web_app_data", "raw_data", "cleaned_data", "keystrokes", "keypairs"]
# where the bytes are kept and how the store stamps an object differ from store to store, by design
STORE_COLUMNS = ["kept_as", "generation", "crc32c"]


def tables(storage, version: str, keys=STAGES) -> dict[str, pd.DataFrame]:
    """The version's stored tables, the snapshot's without the columns that name the store."""
    out = {key: stored(storage, key, version) for key in keys}
    out["web_app_data"] = out["web_app_data"].drop(columns=STORE_COLUMNS)
    return out


def clean_build(manifests: dict[str, pd.DataFrame], uploads: Path, folder: Path, keys=STAGES, run_config=None) -> Path:
    """Make the versions of `manifests` (version -> its manifest, in the order they were made) in a
    new store under `folder`, each from the objects its manifest lists; returns the store."""
    clean_uploads, storage = folder / "uploads", folder / "storage"
    clean_uploads.mkdir(parents=True)
    with dg.instance_for_test() as instance:
        for version, manifest in manifests.items():
            for path in clean_uploads.iterdir():
                path.unlink()
            for name, md5 in zip(manifest["name"], manifest["md5"]):
                shutil.copy2(uploads / name, clean_uploads / name)  # mtime too: the same generation
                if isinstance(md5, str):
                    assert hashlib.md5((clean_uploads / name).read_bytes()).hexdigest() == md5, name
            env = {"KEYSTROKE_UPLOADS": str(clean_uploads), "KEYSTROKE_STORAGE": str(storage)}
            assert materialize_version(instance, env, version, selection=keys, run_config=run_config).success
    return storage


def assert_same_tables(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        pd.testing.assert_frame_equal(got[key], want[key], obj=key)
