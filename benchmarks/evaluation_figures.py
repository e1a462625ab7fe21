"""The evaluation's figures on a version made of upload folders (docs/evaluation.md "Figures"):
per feature type and device type, the rows read as before issue 23 (typenet_ml's stored fill,
every impostor pooled across sources and keyboards: main's protocol, its EERs to 4 decimals) and
as now (the pooled row and the strata), each with its EER, 95 % interval, mean per-subject EER and
AUC; then the enrolment curve and TypeNet's protocol.

    python -m benchmarks.evaluation_figures --workdir /tmp/figures --min-events 2 \\
        --uploads ../shared/data/real/fpd_webapp_2025/web_app_data \\
        ../shared/data/real/fpd_webapp_2025_iphone/web_app_data ../shared/data/real/aalto136m_desktop
    ... --no-identity   # the same uploads, every task handed to a random participant of its kind

typenet_ml/platform was evaluated before by leaving one platform out; it is not evaluable now and
has no "before" row here (main's own evaluation table gives it).
"""

import argparse
import dataclasses
import shutil
import warnings
from pathlib import Path

import dagster as dg
import pandas as pd

from keystroke_assets import features
from keystroke_assets.evaluation.assets import evaluation_samples
from keystroke_assets.evaluation.declaration import declarations
from keystroke_assets.evaluation.results import evaluate_device
from keystroke_assets.evaluation.samples import pooled_steps
from keystroke_assets.export import load
from keystroke_assets.features.typenet_sequences import STEP, sequence_array
from keystroke_assets.resources import object_store
from keystroke_assets.synthetic import no_identity_uploads, write_uploads

VERSION = "2025-09-07_00-27-43_figures"
METRICS = ["users", "genuine", "impostor", "not_comparable", "eer", "eer_low", "eer_high", "mean_subject_eer", "auc"]
SHOWN = ["feature", "device_type", "stratum", "status", *METRICS]


def build(workdir: Path, folders: list[Path], min_events: int, no_identity: bool, seed: int) -> Path:
    """Every asset of a version of the folders' uploads; returns the data store's folder."""
    from keystroke_assets.definitions import defs
    from keystroke_assets.partitions import dataset_versions
    from keystroke_assets.resources import resources_from_env

    shutil.rmtree(workdir, ignore_errors=True)
    uploads = [(f.name, f.read_bytes()) for folder in folders for f in sorted(folder.iterdir()) if f.is_file()]
    write_uploads(workdir / "uploads", no_identity_uploads(uploads, seed) if no_identity else uploads)
    env = {"KEYSTROKE_UPLOADS": str(workdir / "uploads"), "KEYSTROKE_STORAGE": str(workdir / "storage")}
    (workdir / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(workdir / "home")) as instance:
        instance.add_dynamic_partitions(dataset_versions.name, [VERSION])
        dg.materialize(
            list(defs.assets),
            partition_key=VERSION,
            instance=instance,
            resources=resources_from_env(env),
            run_config={
                "ops": {"cleaned_data": {"config": {"min_events_per_task": min_events}}},
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            },
        )
    return workdir / "storage"


def before(storage: Path) -> pd.DataFrame:
    """The rows of main's protocol: the stored tables as stored (typenet_ml filled, the sequence
    baseline's keycodes of zeros kept), every impostor of the device type."""
    store, rows = object_store(str(storage)), []
    for declaration in declarations(features):
        if declaration.not_evaluable:
            continue
        old = dataclasses.replace(declaration, key_dependent=False)
        if declaration.feature.startswith("typenet_ml"):
            old = dataclasses.replace(old, vectors=None)
        elif declaration.feature == "typenet_sequences":
            old = dataclasses.replace(old, vectors=lambda t: pooled_steps(t, sequence_array(t), STEP))
        ids, values = evaluation_samples(old, load(f"features/{declaration.feature}", VERSION, store))
        for device in ("desktop", "mobile"):
            # without keyboards and key dependence the last row pools every impostor
            every = evaluate_device(ids, values, device, curves=False)[-1]
            rows.append({"feature": declaration.feature, **every, "stratum": "before: every impostor"})
    return pd.DataFrame(rows).reindex(columns=SHOWN)


def show(table: pd.DataFrame) -> str:
    shown = table[SHOWN].copy()
    for c in ["eer", "eer_low", "eer_high", "mean_subject_eer"]:
        shown[c] = (100 * shown[c]).round(1)
    shown["auc"] = shown["auc"].round(3)
    shown["status"] = shown["status"].str.slice(0, 40)
    return shown.to_string(index=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=Path, nargs="+", required=True, help="upload folders, made one")
    parser.add_argument("--workdir", type=Path, required=True, help="emptied, then holds the version")
    parser.add_argument("--min-events", type=int, default=290, help="cleaned_data's min_events_per_task")
    parser.add_argument("--no-identity", action="store_true", help="hand every task to a random participant")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    storage = build(args.workdir, args.uploads, args.min_events, args.no_identity, args.seed)
    summary = load("evaluation/summary", VERSION, object_store(str(storage)))
    now = summary[summary["protocol"] == "sessions"]
    print("Before and now, per feature type and device type (rates in %)\n")
    print(
        show(
            pd.concat([before(storage), now], ignore_index=True).sort_values(["feature", "device_type"], kind="stable")
        )
    )
    curves = summary[summary["protocol"] != "sessions"]
    print("\nEnrolment curve (web app: EER) and TypeNet's protocol (Aalto: mean per-subject EER), in %\n")
    print(
        curves.assign(
            figure=curves["eer"].where(curves["protocol"] != "TypeNet", curves["mean_subject_eer"]).mul(100).round(1)
        )
        .pivot_table(index=["protocol", "device_type", "feature"], columns="enrolment", values="figure")
        .to_string()
    )


if __name__ == "__main__":
    main()
