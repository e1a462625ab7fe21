"""Small versions built segment by segment for the engine's tests: a store every test copies
(base_build), and what they read of a run (segment counts, metadata) and compare (tables)."""

import shutil

import dagster as dg
import pandas as pd

from keystroke_assets.definitions import defs
from keystroke_assets.partitions import dataset_versions
from keystroke_assets.resources import resources_from_env
from keystroke_assets.synthetic import aalto_uploads, web_app_uploads, write_uploads

from .conftest import SEGMENTED, VERSION, stored

V2 = "2025-09-08_09-00-00_lab-mac"
SEED = 11  # web-app participants 0 (Android), 1, 2 (desktops), 3 (broken: consent "No"), 4 (iPhone)
SEGMENTS = 4  # 5 web-app + 2 Aalto participants, 2 a segment
KEYPAIRS_AND_AFTER = ["keystrokes", "keypairs", *[k for k in SEGMENTED if k.startswith("features/")]]
TYPENET_ML = [f"features/typenet_ml/{g}" for g in ["platform", "session", "video"]]
# every asset but the evaluations (tables of one object, made from the features' tables)
ALL = [*SEGMENTED, *TYPENET_ML, "web_app_data"]


def materialize(storage, version: str, selection: list[str], config=None, resources=None, assets=None):
    """The selected assets of `version` on the store `storage` (its uploads beside it), in a new
    instance; `config` {op: config}; raw_data cuts 2 participants a segment."""
    env = {"KEYSTROKE_UPLOADS": str(storage.parent / "uploads"), "KEYSTROKE_STORAGE": str(storage)}
    ops = {**({"raw_data": {"participants_per_segment": 2}} if "raw_data" in selection else {}), **(config or {})}
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(dataset_versions.name, [version])
        result = dg.materialize(
            assets or list(defs.assets),
            selection=selection,
            partition_key=version,
            instance=instance,
            resources={**resources_from_env(env), **(resources or {})},
            run_config={"ops": {op: {"config": c} for op, c in ops.items()}},
        )
    assert result.success
    return result


def counts(result) -> dict[str, tuple[int, int, int]]:
    """(computed, reused, damaged and recomputed) segments of every segmented asset of a run, and
    of typenet_ml's partial results (`<asset> digraphs`, `<asset> statistics`)."""
    out = {}
    for event in result.get_asset_materialization_events():
        md, key = event.materialization.metadata, event.asset_key.to_user_string()
        for part in ["", "digraphs/", "statistics/"]:
            if f"{part}segments/computed" in md:
                name = f"{key} {part.rstrip('/')}".strip()
                out[name] = tuple(md[f"{part}segments/{n}"].value for n in ["computed", "reused", "damaged_recomputed"])
    return out


def computed_all(*keys: str) -> dict:
    return dict.fromkeys(keys, (SEGMENTS, 0, 0))


def metadata(result, key: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def assert_same_tables(storage, other, keys, version=VERSION, other_version=VERSION) -> None:
    for key in keys:
        got, want = stored(storage, key, version), stored(other, key, other_version)
        if key == "web_app_data":  # where the bytes are kept and which version first had them: by history
            got, want = got.drop(columns=["kept_as", "first_seen"]), want.drop(columns=["kept_as", "first_seen"])
        pd.testing.assert_frame_equal(got, want, obj=key)


_BUILT: dict = {}


def base_build(tmp_path_factory) -> tuple:
    """A store with VERSION's every asset but the evaluations: desktops, both kinds of phone, a
    broken participant and Aalto, in 4 segments; and the run's result. Built once a session:
    tests copy it (copy_of) before they change anything."""
    if "base" not in _BUILT:
        folder = tmp_path_factory.mktemp("base")
        write_uploads(folder / "uploads", web_app_uploads(5, seed=SEED, broken_every=4))
        write_uploads(folder / "uploads", aalto_uploads(2, seed=SEED))
        _BUILT["base"] = folder / "storage", materialize(folder / "storage", VERSION, ALL)
    return _BUILT["base"]


def copy_of(base, tmp_path, without: tuple[str, ...] = ()):
    """A copy of the base store in tmp_path/<name>/storage, without the asset folders `without`
    (what a clean build of those computes from scratch)."""
    folder = tmp_path / ("clean" if without else "copy")
    shutil.copytree(
        base, folder / "storage", ignore=lambda where, names: [n for n in names if where == str(base) and n in without]
    )
    (folder / "uploads").symlink_to(base.parent / "uploads")
    return folder / "storage"
