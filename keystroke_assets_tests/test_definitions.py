"""The code location loads, names its assets as the team does, and passes Dagster's validation."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from keystroke_assets.definitions import defs

from .conftest import REPO

FOUNDATION = {
    "web_app_data",
    "raw_data",
    "cleaned_data",
    "keystrokes",
    "keypairs",
    "features/typenet_ml/platform",
    "features/typenet_ml/session",
    "features/typenet_ml/video",
}


def test_asset_keys_and_lineage():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert FOUNDATION <= keys
    assert all(k in FOUNDATION or k.startswith(("features/", "evaluation/")) for k in keys)

    def parents(k):
        return {p.to_user_string() for p in graph.get(dg.AssetKey.from_user_string(k)).parent_keys}

    assert parents("raw_data") == {"web_app_data"}
    assert parents("cleaned_data") == {"web_app_data", "raw_data"}
    assert parents("keypairs") == parents("keystrokes") == {"cleaned_data"}
    assert {"keystrokes", "keypairs"} <= parents("features/typenet_ml/video")
    # features defined on single keystrokes read the keystrokes, not the pairs
    for feature in ["features/kvc", "features/typenet_sequences", "features/behavioral"]:
        assert "keystrokes" in parents(feature) and "keypairs" not in parents(feature), feature


def test_every_asset_explains_itself():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.partitions_def is not None and node.partitions_def.name == "dataset_versions", key
        assert node.description and len(node.description) > 40, key
        assert node.code_version, key
        assert node.group_name in {"ingest", "keystrokes", "features", "evaluation"}, key
        assert node.owners == ["team:keystroke-research"], key
        assert node.check_keys, f"{key} has no asset check"


def test_dg_check_defs_at_the_root_of_a_fresh_clone():
    """As a newcomer runs it: at the repository root, no DAGSTER_HOME (dg then makes a temporary
    instance configured by any dagster.yaml in the folder: there is none to fail on)."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parents[1])  # as after `source .venv/bin/activate`
    done = subprocess.run(
        [Path(sys.executable).with_name("dg"), "check", "defs"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_feature_module_dropped_into_features_becomes_an_asset_with_its_evaluation(tmp_path):
    """docs/adding-a-feature.md: a copy of the package plus the worked example's module in features/,
    and nothing else edited, defines features/hold_by_key_class fed by keystrokes, its evaluation
    (the module's Feature declares one) and a row of the evaluation summary."""
    import shutil

    package = tmp_path / "keystroke_assets"
    shutil.copytree(REPO / "keystroke_assets", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "keystroke_assets_tests" / "hold_by_key_class.py", package / "features")
    probe = (
        "import dagster as dg, keystroke_assets\n"
        f"assert keystroke_assets.__file__.startswith({str(tmp_path)!r})\n"
        "from keystroke_assets.definitions import defs\n"
        "graph = defs.resolve_asset_graph()\n"
        "parents = lambda *path: sorted(p.to_user_string() for p in graph.get(dg.AssetKey(list(path))).parent_keys)\n"
        "node = graph.get(dg.AssetKey(['features', 'hold_by_key_class']))\n"
        "print(parents('features', 'hold_by_key_class'), node.code_version)\n"
        "print(parents('evaluation', 'hold_by_key_class'))\n"
        "print('evaluation/hold_by_key_class' in parents('evaluation', 'summary'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    # an evaluation also reads the phones' keyboards from behavioral's user rows (docs/evaluation.md)
    assert out.stdout.split("\n")[:3] == [
        "['keystrokes'] 1",
        "['features/behavioral', 'features/hold_by_key_class']",
        "True",
    ]
