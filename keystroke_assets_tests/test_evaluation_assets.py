"""The evaluation assets on the real samples (every folder, the Android user's 2-event tasks let
through), materialized in a temporary instance, with a feature module dropped into features/ that
declares itself evaluable (test_definitions); counts and one score computed here by hand."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from keystroke_assets import features
from keystroke_assets.definitions import defs
from keystroke_assets.evaluation.assets import evaluation_assets, evaluation_samples, pooled_rows
from keystroke_assets.evaluation.declaration import Evaluable, declarations, evaluations
from keystroke_assets.evaluation.protocol import verification_tally
from keystroke_assets.evaluation.results import device_labels
from keystroke_assets.evaluation.samples import session_split
from keystroke_assets.partitions import dataset_versions
from keystroke_assets.resources import resources_from_env
from keystroke_assets.resources.parquet_io_manager import asset_object_name, from_parquet_bytes, to_parquet_bytes

from .conftest import VERSION, failed_rules_of, stored, upload_folder
from .extra_feature_defs import hold_by_key_class
from .hold_by_key_class import HOLD_BY_KEY_CLASS

# The real samples' complete users: desktop, 2 from the web app (18 tasks: 2 sessions x 3
# platforms x 3 videos) and the 6 Aalto participants (15 sections each); two phones, the Android
# one (keys `Unidentified`) and the iPhone (key names).
WEB_APP_USERS, AALTO_USERS, AALTO_SECTIONS = 2, 6, 15
DESKTOP_USERS = WEB_APP_USERS + AALTO_USERS
LET_THROUGH = {"ops": {"cleaned_data": {"config": {"min_events_per_task": 2}}}}


@pytest.fixture(scope="module")
def real(real_data, tmp_path_factory):
    """Every asset of the project, plus hold_by_key_class and its evaluation, on the real samples."""
    root = tmp_path_factory.mktemp("evaluation")
    uploads = upload_folder(
        root / "uploads",
        real_data / "fpd_webapp_2025" / "web_app_data",
        real_data / "fpd_webapp_2025_iphone" / "web_app_data",
        real_data / "aalto136m_desktop",
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
        result = dg.materialize(
            assets, partition_key=VERSION, instance=instance, resources=resources_from_env(env), run_config=LET_THROUGH
        )
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

    return read, metadata, failed, root / "storage"


def rows_of(table: pd.DataFrame, device: str, protocol: str = "sessions") -> pd.DataFrame:
    return table[(table["device_type"] == device) & (table["protocol"] == protocol)].set_index("stratum")


def test_real_desktop_counts_by_hand(real):
    read, metadata, failed, _ = real
    assert failed == []
    # task rows (statistical, behavioral, typenet_sequences) and typenet_ml's video grain: web app
    # 9 probes per user (session 2), Aalto 15 - 5 = 10 sections; same-source impostors: a web-app
    # probe meets the other web-app template, an Aalto probe the 5 other Aalto ones
    probes = WEB_APP_USERS * 9 + AALTO_USERS * (AALTO_SECTIONS - 5)
    same_source = WEB_APP_USERS * 9 * 1 + AALTO_USERS * 10 * 5
    for feature in ["statistical", "behavioral", "typenet_sequences", "typenet_ml/video"]:
        desktop = rows_of(read(feature), "desktop")
        assert list(desktop.index) == ["same source", "web app", "Aalto", "all"], feature
        assert desktop.loc["same source", ["users", "genuine", "impostor"]].tolist() == [8, probes, same_source]
        assert desktop.loc["web app", ["users", "genuine", "impostor"]].tolist() == [2, 18, 18]
        assert desktop.loc["Aalto", ["users", "genuine", "impostor"]].tolist() == [6, 60, 300]
        assert desktop.loc["all", ["genuine", "impostor"]].tolist() == [probes, probes * (DESKTOP_USERS - 1)]
        assert (desktop["status"] == "evaluated").all() and (desktop["not_comparable"] == 0).all()
    # typenet_ml's session grain: 3 (platform, session 2) groups per web-app user
    session = rows_of(read("typenet_ml/session"), "desktop")
    assert session.loc["same source", ["genuine", "impostor"]].tolist() == [6 + 60, 6 + 300]
    # TypeNet's Aalto protocol: 6 users, 5 genuine each, one impostor sample from each of the 5 others
    typenet = rows_of(read("statistical"), "desktop", "TypeNet")
    assert typenet["enrolment"].tolist() == [1, 2, 5, 7, 10]
    assert (typenet[["users", "genuine", "impostor"]] == [6, 30, 30]).all(axis=None)
    # the enrolment curve: each web-app user's first 1..9 session-1 tasks, against its 9 probes
    curve = rows_of(read("statistical"), "desktop", "enrolment curve")
    assert curve["enrolment"].tolist() == list(range(1, 10)) and (curve["genuine"] == 18).all()
    assert rows_of(read("typenet_ml/session"), "desktop", "enrolment curve")["enrolment"].tolist() == [1, 2, 3]
    # the pooled row is the one Dagster plots across versions
    same = rows_of(read("typenet_ml/video"), "desktop").loc["same source"]
    assert metadata["evaluation/typenet_ml/video"]["eer/desktop"].value == pytest.approx(same["eer"])
    assert same["eer_low"] <= same["eer"] <= same["eer_high"]
    plots = metadata["evaluation/typenet_ml/session"]
    for name in ["det_curve", "score_histograms"]:
        assert plots[name].value.startswith("!["), name


def test_the_platform_grain_is_not_evaluable(real):
    read, *_ = real
    platform = read("typenet_ml/platform")
    assert platform["status"].str.startswith("not evaluable: its rows pool sessions 1 and 2").all()
    assert platform["eer"].isna().all()


def test_real_phones_are_not_compared_across_keyboards(real):
    # the Android phone reports Unidentified, the iPhone key names: a keyboard each, so no
    # same-keyboard pair, and typenet_ml (per-key columns) never compares them; a feature of
    # timings alone has only its cross-keyboard `all` row, which is never the pooled row
    read, metadata, *_ = real
    for feature in ["typenet_ml/session", "typenet_ml/video"]:
        mobile = rows_of(read(feature), "mobile")
        assert list(mobile.index) == ["same keyboard", "key names", "Unidentified"]
        assert mobile["eer"].isna().all() and mobile["status"].str.startswith("not evaluable").all()
        assert "eer/mobile" not in metadata[f"evaluation/{feature}"]
    statistical = rows_of(read("statistical"), "mobile")
    assert statistical.loc["same keyboard", "status"].startswith("not evaluable")
    assert statistical.loc["all", ["status", "genuine", "impostor"]].tolist() == ["evaluated", 18, 18]


def test_the_real_samples_still_separate(real):
    # desktop: at least one feature type's pooled EER is below 0.5 with its whole 95 % interval
    read, *_ = real
    pooled = pd.concat([read(d.feature) for d in declarations(features)], ignore_index=True)
    desktop = pooled[pooled_rows(pooled) & (pooled["device_type"] == "desktop") & (pooled["status"] == "evaluated")]
    assert (desktop["eer_high"] < 0.5).any()


def test_a_real_score_by_hand(real):
    # statistical, Aalto users 100001 (template) and 100003 (a probe), recomputed here with pandas:
    # each column's scale is its mean absolute deviation over the desktop enrolment tasks; the
    # template the mean of 100001's first 5 sections; the score the mean of |probe - template| /
    # scale over the columns with a scale and a value on both sides
    *_, storage = real
    table = stored(storage, "features/statistical")
    declaration = next(d for d in declarations(features) if d.feature == "statistical")
    ids, values = evaluation_samples(declaration, table)
    desktop = (ids["device_type"] == "desktop").to_numpy()
    ids, values = ids[desktop].reset_index(drop=True), values[desktop]
    split = session_split(ids)
    labels = device_labels(ids, "desktop", None)
    made = verification_tally(values, ids["user_id"], labels.codes, labels.names, split, keep_comparisons=True)
    x = pd.DataFrame(values.astype(np.float64))
    enrol = x[split.enrol]
    scale = (enrol - enrol.mean()).abs().mean()
    scale = scale[scale > 0]
    template = x[split.enrol & (ids["user_id"] == "100001").to_numpy()][scale.index].mean()
    probe_row = int(np.flatnonzero(split.probe & (ids["user_id"] == "100003").to_numpy())[0])
    probe = x.loc[probe_row, scale.index]
    by_hand = ((probe - template).abs() / scale).dropna().mean()
    comparisons = made.comparisons
    score = comparisons[(comparisons["probe"] == probe_row) & (comparisons["template_user"] == "100001")]["score"]
    assert score.item() == pytest.approx(by_hand, rel=1e-5)


def test_summary_has_every_evaluated_feature_by_pooled_eer(real):
    read, metadata, *_ = real
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
    assert summary.loc[summary["feature"] == "typenet_sequences", "label"].unique().tolist() == ["baseline"]
    pooled = summary[pooled_rows(summary)]
    assert len(pooled) == len(evaluated) * 2  # desktop and mobile
    desktop = pooled[pooled["device_type"] == "desktop"].dropna(subset=["eer"])
    assert len(desktop) == len(evaluated) - 1 and desktop["eer"].between(0, 0.5).all()  # not the platform grain
    # best pooled EER first, each followed by its strata, curve and TypeNet rows
    order = summary.groupby(["feature", "device_type"], sort=False).ngroup()
    assert order.is_monotonic_increasing
    assert pooled["eer"].dropna().is_monotonic_increasing
    # the dropped-in feature's rows are its own evaluation's
    own = rows_of(read("hold_by_key_class"), "desktop").loc["same source", "eer"]
    assert metadata["evaluation/summary"]["eer/hold_by_key_class/desktop"].value == pytest.approx(own)
    assert not any(k.endswith("/mobile") for k in metadata["evaluation/summary"] if k.startswith("eer/"))
    assert metadata["evaluation/summary"]["eer_chart"].value.startswith("![EER per feature type](data:image/png")
    assert metadata["evaluation/summary"]["enrolment_curves"].value.startswith("![enrolment curves](data:image/png")
    assert len(metadata["evaluation/summary"]["summary"].value.records) == len(pooled)


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
        return summary.loc[
            pooled_rows(summary) & (summary["status"] == "evaluated"), ["feature", "eer"]
        ].values.tolist()

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
    desktop = toy[pooled_rows(toy)].set_index("device_type").loc["desktop"]
    assert desktop[["stratum", "users", "genuine", "impostor", "eer"]].tolist() == ["web app", 2, 2, 2, 0.0]

    # planted evaluations: the summary alone shows them as stored (toy's is not made again)
    desktop_rows = (toy["device_type"] == "desktop") & pooled_rows(toy)
    write(["evaluation", "toy"], toy.assign(eer=toy["eer"].mask(desktop_rows, 0.3)))
    write(["evaluation", "absent"], toy.assign(eer=toy["eer"].mask(desktop_rows, 0.2)))
    assert materialize("evaluation/summary") == ["evaluation/summary"]
    assert evaluated_in_summary() == [["absent", 0.2], ["toy", 0.3]]

    # made with toy's evaluation, the summary has the new one: EER 0 again, best first
    assert materialize("evaluation/toy", "evaluation/summary") == ["evaluation/summary", "evaluation/toy"]
    assert evaluated_in_summary() == [["toy", 0.0], ["absent", 0.2]]
