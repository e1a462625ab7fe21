"""The evaluation assets on the real samples, materialized in a temporary instance, and a feature
module dropped into features/ that declares itself evaluable (test_definitions)."""

import dagster as dg
import pandas as pd
import pytest

from keystroke_assets import features
from keystroke_assets.definitions import defs
from keystroke_assets.evaluation.assets import evaluation_assets
from keystroke_assets.evaluation.declaration import Evaluable, declarations, evaluations
from keystroke_assets.partitions import dataset_versions
from keystroke_assets.resources import resources_from_env
from keystroke_assets.resources.parquet_io_manager import asset_object_name, from_parquet_bytes, to_parquet_bytes

from .conftest import VERSION, failed_rules_of, upload_folder
from .extra_feature_defs import hold_by_key_class
from .hold_by_key_class import HOLD_BY_KEY_CLASS

# The real samples' complete desktop users: 2 from the web app (18 tasks: 2 sessions x 3 platforms
# x 3 videos) and the 6 Aalto participants (15 sections each). The Android user is broken by the
# 290-event rule: no mobile user.
WEB_APP_USERS, AALTO_USERS, AALTO_SECTIONS = 2, 6, 15
DESKTOP_USERS = WEB_APP_USERS + AALTO_USERS


@pytest.fixture(scope="module")
def real(real_data, tmp_path_factory):
    """Every asset of the project, plus hold_by_key_class and its evaluation, on the real samples."""
    root = tmp_path_factory.mktemp("evaluation")
    uploads = upload_folder(
        root / "uploads", real_data / "fpd_webapp_2025" / "web_app_data", real_data / "aalto136m_desktop"
    )
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(root / "storage")}
    project = [a for a in defs.assets if not any(k.path[0] == "evaluation" for k in a.keys)]
    assets = [
        *project,
        hold_by_key_class,
        *evaluation_assets([*declarations(features), *evaluations([HOLD_BY_KEY_CLASS])]),
    ]
    (root / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
        instance.add_dynamic_partitions(dataset_versions.name, [VERSION])
        result = dg.materialize(assets, partition_key=VERSION, instance=instance, resources=resources_from_env(env))
        assert result.success
        failed = failed_rules_of(result)
        metadata = {
            key.to_user_string(): instance.get_latest_materialization_event(key).asset_materialization.metadata
            for a in assets
            for key in a.keys
            if key.path[0] == "evaluation"
        }

    def read(name):
        return pd.read_parquet(root / "storage" / "evaluation" / name / f"{VERSION}.parquet")

    return read, metadata, failed


def test_real_desktop_sample_typenet_ml(real):
    read, metadata, failed = real
    assert failed == []
    for grain in ["session", "video"]:
        table = read(f"typenet_ml/{grain}").set_index("device_type")
        desktop = table.loc["desktop"]
        # the EER the UI plots across versions is the table's
        assert metadata[f"evaluation/typenet_ml/{grain}"]["eer/desktop"].value == pytest.approx(desktop["eer"])
        assert 0 < desktop["eer"] < 0.5, grain
        assert desktop["users"] == DESKTOP_USERS
        assert table.loc["mobile", "status"].startswith("not evaluable") and pd.isna(table.loc["mobile", "eer"])
        assert "eer/mobile" not in metadata[f"evaluation/typenet_ml/{grain}"]
    session = read("typenet_ml/session").set_index("device_type").loc["desktop"]
    # probes: each web-app user's 3 (platform, session 2) groups, each Aalto user's 15 - 5 sections;
    # each probe meets its own template once and the 7 other users' once each
    probes = WEB_APP_USERS * 3 + AALTO_USERS * (AALTO_SECTIONS - 5)
    assert (session["genuine"], session["impostor"]) == (probes, probes * (DESKTOP_USERS - 1))
    video = read("typenet_ml/video").set_index("device_type").loc["desktop"]
    probes = WEB_APP_USERS * 3 * 3 + AALTO_USERS * (AALTO_SECTIONS - 5)  # Aalto: a section is its own video group
    assert (video["genuine"], video["impostor"]) == (probes, probes * (DESKTOP_USERS - 1))
    # the platform grain: only the web-app users have platforms; 3 folds x 2 probes, 2 genuine, 2 impostor
    platform = read("typenet_ml/platform").set_index("device_type").loc["desktop"]
    assert (platform["users"], platform["genuine"], platform["impostor"]) == (WEB_APP_USERS, 6, 6)
    plots = metadata["evaluation/typenet_ml/session"]
    assert plots["det_curve"].value.startswith("![DET curves](data:image/png;base64,")
    assert plots["score_histograms"].value.startswith("![score histograms](data:image/png;base64,")


def test_summary_has_every_evaluated_feature_sorted(real):
    read, metadata, _ = real
    summary = read("summary")
    evaluated = [
        "behavioral",
        "hold_by_key_class",
        "statistical",
        "typenet_ml/platform",
        "typenet_ml/session",
        "typenet_ml/video",
        "typenet_sequences",
    ]
    assert sorted(set(summary["feature"])) == evaluated
    assert len(summary) == len(evaluated) * 2  # desktop and mobile
    assert summary.loc[summary["feature"] == "typenet_sequences", "label"].unique().tolist() == ["baseline"]
    desktop = summary[summary["device_type"] == "desktop"]
    assert (desktop["status"] == "evaluated").all() and desktop["eer"].between(0, 0.5).all()
    # best first, the not evaluable (every mobile row) last
    assert summary["eer"].iloc[: len(evaluated)].is_monotonic_increasing
    assert summary["eer"].iloc[len(evaluated) :].isna().all()
    # the dropped-in feature's row is its own evaluation's
    own = read("hold_by_key_class").set_index("device_type").loc["desktop", "eer"]
    assert summary.set_index(["feature", "device_type"]).loc[("hold_by_key_class", "desktop"), "eer"] == own
    assert metadata["evaluation/summary"]["eer/hold_by_key_class/desktop"].value == pytest.approx(own)
    assert not any(k.endswith("/mobile") for k in metadata["evaluation/summary"])  # no mobile user: no number
    assert metadata["evaluation/summary"]["eer_chart"].value.startswith("![EER per feature type](data:image/png")


def test_one_step_makes_the_selected_evaluations_and_the_summary_from_them_or_as_stored(instance, tmp_path):
    """Every evaluation and the summary are one step. An evaluation alone reads its own feature table
    only (`absent` has none stored: no failure); the summary alone reads the evaluations as stored;
    with an evaluation it takes that one as just made."""
    [step] = evaluation_assets([Evaluable(feature="toy"), Evaluable(feature="absent")])
    resources = resources_from_env({"KEYSTROKE_UPLOADS": str(tmp_path), "KEYSTROKE_STORAGE": str(tmp_path / "storage")})
    store = resources["storage"]
    instance.add_dynamic_partitions(dataset_versions.name, [VERSION])

    def write(path, df):
        store.write_bytes(asset_object_name(dg.AssetKey(path), VERSION), to_parquet_bytes(df))

    def read(path):
        return from_parquet_bytes(store.read_bytes(asset_object_name(dg.AssetKey(path), VERSION)))

    def materialize(*selection) -> list[str]:
        result = dg.materialize(
            [step], selection=list(selection), partition_key=VERSION, instance=instance, resources=resources
        )
        assert result.success
        return sorted(e.asset_key.to_user_string() for e in result.get_asset_materialization_events())

    def evaluated_in_summary() -> list[list]:
        summary = read(["evaluation", "summary"])
        return summary.loc[summary["status"] == "evaluated", ["feature", "eer"]].values.tolist()

    # two desktop users, each the same in both sessions: u1 x = 0, u2 x = 10
    write(
        ["features", "toy"],
        pd.DataFrame(
            {
                "user_id": ["u1", "u1", "u2", "u2"],
                "platform_id": 1,
                "session_id": [1, 2, 1, 2],
                "device_type": "desktop",
                "x": [0.0, 0.0, 10.0, 10.0],
            }
        ),
    )
    assert materialize("evaluation/toy") == ["evaluation/toy"]
    # session 1 enrols x = 0 and 10: scale (mean absolute deviation) 5; genuine distances 0 and 0,
    # impostor |0 - 10| / 5 = 2 twice: fully apart, EER 0
    toy = read(["evaluation", "toy"])
    desktop = toy.set_index("device_type").loc["desktop"]
    assert desktop[["users", "genuine", "impostor", "eer"]].tolist() == [2, 2, 2, 0.0]

    # planted evaluations: the summary alone shows them as stored (toy's is not made again)
    write(["evaluation", "toy"], toy.assign(eer=toy["eer"].where(toy["device_type"] != "desktop", 0.3)))
    write(["evaluation", "absent"], toy.assign(eer=toy["eer"].where(toy["device_type"] != "desktop", 0.2)))
    assert materialize("evaluation/summary") == ["evaluation/summary"]
    assert evaluated_in_summary() == [["absent", 0.2], ["toy", 0.3]]

    # made with toy's evaluation, the summary has the new one: EER 0 again, best first
    assert materialize("evaluation/toy", "evaluation/summary") == ["evaluation/summary", "evaluation/toy"]
    assert evaluated_in_summary() == [["toy", 0.0], ["absent", 0.2]]
