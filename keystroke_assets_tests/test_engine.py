"""The segment engine (keystroke_assets/engine.py): a segment's address holds everything its rows
and summary depend on, so a setting changed by any route a stage can receive it recomputes the
segments it affects, never reuses a stale one; what cannot be addressed is refused."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from functools import partial

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from keystroke_assets import engine, features
from keystroke_assets.assets.features import declared_features, feature_asset
from keystroke_assets.definitions import defs
from keystroke_assets.engine import Output, Stage
from keystroke_assets.features.common import Feature, OutputCheck
from keystroke_assets.features.statistical import STATISTICAL, statistical_of_segment, user_median_values
from keystroke_assets.lib.rules import non_empty, source_hash
from keystroke_assets.lib.segments import NotJSON, address, as_passed
from keystroke_assets.resources import object_store
from keystroke_assets.resources.outlier_rules import OutlierRules
from keystroke_assets.synthetic import participant_id

from . import segment_builds
from .conftest import SEGMENTED, VERSION, stored
from .segment_builds import (
    ALL,
    KEYPAIRS_AND_AFTER,
    SEED,
    SEGMENTS,
    TYPENET_ML,
    V2,
    assert_same_tables,
    computed_all,
    copy_of,
    counts,
    materialize,
    metadata,
)

STATISTICAL_KEY = "features/statistical"


@pytest.fixture(scope="module")
def base_build(tmp_path_factory):
    return segment_builds.base_build(tmp_path_factory)


@pytest.fixture(scope="module")
def base(base_build):
    return base_build[0]


def test_nothing_changed_everything_is_reused(base, tmp_path):
    storage = copy_of(base, tmp_path)
    result = materialize(storage, VERSION, ALL)
    assert counts(result) == {
        **dict.fromkeys(SEGMENTED, (0, SEGMENTS, 0)),
        **{f"{k} {p}": (0, SEGMENTS, 0) for k in TYPENET_ML for p in ["digraphs", "statistics"]},
    }
    assert_same_tables(storage, base, ALL)


def test_run_config_kvc_keycodes(base, tmp_path):
    storage = copy_of(base, tmp_path)
    classes = {"features__kvc": {"keycodes": "classes"}}
    assert counts(materialize(storage, VERSION, ["features/kvc"], classes)) == computed_all("features/kvc")
    clean = copy_of(base, tmp_path, without=("features",))
    materialize(clean, VERSION, ["features/kvc"], classes)
    assert_same_tables(storage, clean, ["features/kvc"])
    # the same rows, each key as its class: a letter (keycode 65-90) is 1, the space bar (32) 3
    full, classes = stored(base, "features/kvc")["keycode"], stored(storage, "features/kvc")["keycode"]
    letters, spaces = full.between(65, 90), full == 32
    assert letters.any() and spaces.any() and (classes[letters] == 1).all() and (classes[spaces] == 3).all()
    # back to full: the first segments, still stored, are the ones addressed again
    assert counts(materialize(storage, VERSION, ["features/kvc"])) == {"features/kvc": (0, SEGMENTS, 0)}
    assert_same_tables(storage, base, ["features/kvc"])


def test_run_config_cleaned_data_min_events_per_task(base, tmp_path):
    storage = copy_of(base, tmp_path)
    stricter = {"cleaned_data": {"min_events_per_task": 400}}
    result = materialize(storage, VERSION, ["cleaned_data"], stricter)
    assert counts(result) == computed_all("cleaned_data")
    assert metadata(result, "cleaned_data")["participants_complete"] < 6  # 4 web-app + 2 Aalto complete before
    clean = copy_of(base, tmp_path, without=("cleaned_data", "keystrokes", "keypairs", "features"))
    materialize(clean, VERSION, ["cleaned_data"], stricter)
    assert_same_tables(storage, clean, ["cleaned_data"])


def test_a_resource_outlier_thresholds(base, tmp_path):
    storage = copy_of(base, tmp_path)
    stricter = {"outlier_rules": OutlierRules(desktop_hl_max_ms=150, mobile_hl_max_ms=150, mobile_il_abs_max_ms=300)}
    selection = [*KEYPAIRS_AND_AFTER, *TYPENET_ML]
    result = materialize(storage, VERSION, selection, resources=stricter)
    # keypairs' outlier flags, and everything made from the step's segments: its keystrokes too
    assert counts(result) == computed_all(
        *KEYPAIRS_AND_AFTER, *(f"{k} {p}" for k in TYPENET_ML for p in ["digraphs", "statistics"])
    )
    assert metadata(result, "keypairs")["outliers"] > int(stored(base, "keypairs")["outlier"].sum())
    clean = copy_of(base, tmp_path, without=("keystrokes", "keypairs", "features"))
    materialize(clean, VERSION, selection, resources=stricter)
    assert_same_tables(storage, clean, selection)


def test_a_changed_upload_recomputes_only_its_participants_segment(base_build, tmp_path):
    base, base_result = base_build
    storage = copy_of(base, tmp_path)
    (storage.parent / "uploads").unlink()
    shutil.copytree(base.parent / "uploads", storage.parent / "uploads")
    changed = storage.parent / "uploads" / f"f_{participant_id(1, SEED)}_3.csv"  # a desktop's task 3
    changed.write_bytes(changed.read_bytes().rsplit(b"\n", 2)[0] + b"\n")  # uploaded again without its last line
    result = materialize(storage, V2, ALL)
    got = counts(result)
    typenet_statistics = {k: got.pop(f"{k} statistics") for k in TYPENET_ML}
    assert got == {
        **dict.fromkeys(SEGMENTED, (1, SEGMENTS - 1, 0)),
        **{f"{k} digraphs": (1, SEGMENTS - 1, 0) for k in TYPENET_ML},
    }
    # typenet_ml's statistics: that segment's, or every one where the version's top-k digraphs changed
    same_top = (
        metadata(result, TYPENET_ML[0])["digraphs"].records == metadata(base_result, TYPENET_ML[0])["digraphs"].records
    )
    assert set(typenet_statistics.values()) == {(1, SEGMENTS - 1, 0) if same_top else (SEGMENTS, 0, 0)}
    # and every table is that of a build of V2 from scratch
    clean = tmp_path / "scratch" / "storage"
    (clean.parent).mkdir(parents=True)
    (clean.parent / "uploads").symlink_to(storage.parent / "uploads")
    materialize(clean, V2, ALL)
    assert_same_tables(storage, clean, ALL, V2, V2)
    assert (stored(storage, "raw_data", V2)["file"] == changed.name).sum() == (
        stored(base, "raw_data")["file"] == changed.name
    ).sum() - 1


# A rule and a facts function of statistical's replaced, the code_version left as it was.
def _rows_checked(df: pd.DataFrame) -> tuple[bool, dict]:
    return True, {"rows_checked": len(df)}


def _facts_with_rows(df: pd.DataFrame) -> dict:
    return {**user_median_values(df), "rows_seen": len(df)}


def _rows_seen(facts: list[dict], config: dict) -> dict:
    return {"rows_seen": sum(f["rows_seen"] for f in facts)}


def with_statistical(feature: Feature) -> list[dg.AssetsDefinition]:
    key = dg.AssetKey(STATISTICAL.key_path)
    return [feature_asset(feature) if a.keys == {key} else a for a in defs.assets]


def test_a_rule_changed_without_a_code_version_bump(base, tmp_path):
    storage = copy_of(base, tmp_path)
    # the same rule name, another function: the rule is evaluated again on every segment
    checks = tuple(
        OutputCheck(c.name, c.description, _rows_checked) if c.name == "user_counts_add_up" else c
        for c in STATISTICAL.checks
    )
    assets = with_statistical(dataclasses.replace(STATISTICAL, checks=checks))
    rows = len(stored(base, STATISTICAL_KEY))
    for run in range(2):  # then, nothing changed, its segments and their outcomes are reused
        result = materialize(storage, VERSION, [STATISTICAL_KEY], assets=assets)
        assert counts(result) == {STATISTICAL_KEY: (SEGMENTS, 0, 0) if run == 0 else (0, SEGMENTS, 0)}
        [check] = result.get_asset_check_evaluations()
        assert check.passed and check.metadata["user_counts_add_up/rows_checked"].value == rows
    assert_same_tables(storage, base, [STATISTICAL_KEY])


def test_a_facts_function_changed(base, tmp_path):
    storage = copy_of(base, tmp_path)
    changed = dataclasses.replace(STATISTICAL, facts=_facts_with_rows, metadata=_rows_seen)
    result = materialize(storage, VERSION, [STATISTICAL_KEY], assets=with_statistical(changed))
    assert counts(result) == computed_all(STATISTICAL_KEY)
    assert metadata(result, STATISTICAL_KEY)["rows_seen"] == len(stored(base, STATISTICAL_KEY))
    assert_same_tables(storage, base, [STATISTICAL_KEY])


# What a stage cannot address is refused when it is declared, with what to do instead.
def _segment(table: pd.DataFrame, scale: float) -> pd.DataFrame:
    return table.assign(x=table["x"] * scale)


def _facts(table: pd.DataFrame) -> dict:
    return {"rows": len(table)}


def _at_least(column: str, least: float, df: pd.DataFrame) -> tuple[bool, dict]:
    return bool((df[column] >= least).all()), {}


def _closure(least: float):
    def check(df: pd.DataFrame) -> tuple[bool, dict]:
        return bool((df["x"] >= least).all()), {}

    return check


KEY = dg.AssetKey("t")


def test_a_function_no_worker_could_import_is_refused():
    module_level = "must be a module-level function"
    for function in [lambda table, scale: table, _closure(0.0), partial(_segment, scale=2.0)]:
        with pytest.raises(TypeError, match=module_level):
            Stage(function, (Output(KEY),), "1")
    with pytest.raises(TypeError, match="'s facts: its function must be module-level"):
        Stage(_segment, (Output(KEY, facts=lambda table: {}),), "1")
    for check in [lambda df: (True, {}), _closure(0.0), partial(_closure(0.0))]:
        with pytest.raises(TypeError, match="must be module-level"):
            Stage(_segment, (Output(KEY, (OutputCheck("positive", "", check),)),), "1")
    # a feature's rule too, in every run of its asset
    feature = Feature("checked_by_a_lambda", ["user_id"], compute=statistical_of_segment)
    lambda_rule = OutputCheck("any", "", lambda df: (True, {}))
    with pytest.raises(TypeError, match="must be module-level"):
        feature_asset(dataclasses.replace(feature, checks=(lambda_rule,)))


def test_a_rules_partial_arguments_are_in_the_address():
    def address_of(least: float) -> str:
        stage = Stage(_segment, (Output(KEY, (OutputCheck("x", "", partial(_at_least, "x", least)),)),), "1")
        return address(stage.made_of({"scale": 1.0}, ("u1",), {}, None))

    assert address_of(0.0) == address_of(0.0) != address_of(1.0)


# every segmented stage's addressing, made in a new process
STAGES_OF_A_NEW_PROCESS = """
import json
from keystroke_assets import features
from keystroke_assets.assets import cleaned_data, keypairs, raw_data
from keystroke_assets.assets.features import declared_features, stage_of
per_participant = [stage_of(f) for f in declared_features(features) if f.compute is not None]
stages = [raw_data.STAGE, cleaned_data.STAGE, keypairs.STAGE, *per_participant]
print(json.dumps([stage.made_of({}, ("u1",), {}, None) for stage in stages]))
"""


def test_every_stage_addresses_a_segment_alike_in_every_process():
    """The next run, a worker, the daemon are other processes: a segment stored by one must have the
    same address in the others, or it is never reused (a function's memory address in a partial's
    arguments once gave every per-participant feature new addresses in every run)."""
    made = [
        subprocess.run(
            [sys.executable, "-c", STAGES_OF_A_NEW_PROCESS],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    ]
    assert made[0] == made[1]
    assert len(json.loads(made[0])) == 3 + sum(f.compute is not None for f in declared_features(features))
    with pytest.raises(TypeError, match="is not the same in another process"):
        source_hash(partial(_at_least, "x", object()), "rule 'x'")


def test_a_parameter_that_is_not_json_is_refused(tmp_path):
    stage = Stage(_segment, (Output(KEY, (non_empty(),), _facts),), "1")
    for value in [np.float32(2.0), {2.0}, pd.Timestamp("2025-01-01"), np.array([2.0])]:
        with pytest.raises(NotJSON, match="is not JSON: a segment's parameters must be"):
            engine.run(stage, {"scale": value}, [], object_store(str(tmp_path)), map)
    # what the function receives is what the address hashes: the parameters as JSON gives them back
    assert as_passed({"scale": 2, "limits": {"desktop": (30, 2000)}}) == {"scale": 2, "limits": {"desktop": [30, 2000]}}
