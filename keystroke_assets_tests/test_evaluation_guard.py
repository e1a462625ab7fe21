"""The guard that no identity leaks into features or scores (docs/evaluation.md "The guard"). On a
cohort without identity (every participant's tasks handed to participants at random,
synthetic.no_identity_uploads) a verification figure must be chance: every evaluated row's EER
(and mean per-subject EER) lies within a band around 0.5 derived from its users. With typenet_ml's
stored fill (a user's mean over all its rows) put back into the evaluation, the guard fails."""

import dataclasses
import json
from statistics import NormalDist

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from keystroke_assets import features
from keystroke_assets.definitions import defs
from keystroke_assets.evaluation.assets import evaluate, pooled_rows, stored_keyboards
from keystroke_assets.evaluation.declaration import declarations
from keystroke_assets.evaluation.metrics import chance_band
from keystroke_assets.export import load
from keystroke_assets.partitions import dataset_versions
from keystroke_assets.resources import object_store, resources_from_env
from keystroke_assets.synthetic import demo_uploads, no_identity_uploads, write_uploads

from .conftest import VERSION, failed_rules_of

# 120 generated participants, a quarter Aalto: 74 complete web-app desktops, 10 Android and 3
# iPhone phones, 30 Aalto participants; whole chain ~15 s
PARTICIPANTS, AALTO_SHARE, SEED = 120, 0.25, 0
FAMILY_ALPHA = 0.05  # chance that any checked row of a cohort without identity falls outside its band


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """(storage, evaluations {feature: table}) of a version of the cohort without identity."""
    root = tmp_path_factory.mktemp("no_identity")
    write_uploads(
        root / "uploads", no_identity_uploads(demo_uploads(PARTICIPANTS, SEED, aalto_share=AALTO_SHARE), SEED)
    )
    env = {"KEYSTROKE_UPLOADS": str(root / "uploads"), "KEYSTROKE_STORAGE": str(root / "storage")}
    (root / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
        instance.add_dynamic_partitions(dataset_versions.name, [VERSION])
        result = dg.materialize(
            list(defs.assets), partition_key=VERSION, instance=instance, resources=resources_from_env(env)
        )
        assert result.success and failed_rules_of(result) == []
    storage = object_store(str(root / "storage"))
    evaluated = {d.feature: load(f"evaluation/{d.feature}", VERSION, storage) for d in declarations(features)}
    return storage, evaluated


def checked_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The verification rows: evaluated, impostors of the probe's own source or keyboard (every row
    but `all`, which pools sources or keyboards), and the pooled row whatever it is."""
    return table[(table["status"] == "evaluated") & ((table["stratum"] != "all") | pooled_rows(table))]


def z_for(rows: int) -> float:
    """Standard errors of a two-sided band that every one of `rows` chance rows stays in with
    probability 1 - FAMILY_ALPHA (Bonferroni)."""
    return NormalDist().inv_cdf(1 - FAMILY_ALPHA / (2 * rows))


def outside_band(rows: pd.DataFrame, z: float, column: str = "eer") -> list[str]:
    band = rows["users"].map(lambda users: chance_band(users, z))
    outside = (rows[column] - 0.5).abs() > band
    return [
        f"{r.feature} {r.device_type} {r.protocol} {r.stratum} {r.enrolment}: {column} {getattr(r, column):.3f} "
        f"with {r.users} users (band 0.5 +- {b:.3f})"
        for r, b in zip(rows[outside].itertuples(), band[outside])
    ]


def test_the_cohort_has_no_identity_but_keeps_sources_and_devices():
    # 3 desktops and 2 phones of each kind: each slot's task comes from a random participant of the
    # same kind; records stay. Every participant's 18 tasks, and no task lost or duplicated
    objects = dict(demo_uploads(40, SEED, aalto_share=0.25))
    shuffled = dict(no_identity_uploads(objects.items(), SEED))
    assert shuffled.keys() == objects.keys()
    csvs = sorted(v for k, v in objects.items() if k.endswith(".csv"))
    assert sorted(v for k, v in shuffled.items() if k.endswith(".csv")) == csvs
    kinds = {}
    for name, data in objects.items():
        if name.endswith("_demographics.json"):
            record = json.loads(data)
            kinds[name[:32]] = (record["is_mobile"], record["device_type"])
    donors = {}
    for name, data in shuffled.items():
        if name.endswith(".csv"):
            donor = next(k for k, v in objects.items() if v == data)
            assert kinds[donor[2:34]] == kinds[name[2:34]], name  # the same kind of device
            donors.setdefault(name[2:34], set()).add(donor[2:34])
    # nobody keeps all of its own tasks: typed by several people
    assert all(len(d) > 1 for d in donors.values())
    # Aalto: every section moved with its rows, the recipient's ids written into them
    aalto = [k for k in objects if k.endswith("_keystrokes.txt")]
    rows_before = sorted(line.split(b"\t", 2)[2] for k in aalto for line in objects[k].splitlines()[1:])
    rows_after = sorted(line.split(b"\t", 2)[2] for k in aalto for line in shuffled[k].splitlines()[1:])
    assert rows_before == rows_after
    for k in aalto:
        assert {line.split(b"\t")[0] for line in shuffled[k].splitlines()[1:]} == {k.split("_")[0].encode()}


def test_aalto_sections_keep_their_letters_across_encodings():
    # a Latin-1 file (as 100122 of the real samples) and a UTF-8 one: sections move between them,
    # and every file comes out UTF-8 with each row's text intact
    header = "PARTICIPANT_ID\tTEST_SECTION_ID\tSENTENCE\n"
    files = {
        "1_keystrokes.txt": (header + "1\t10\tcaf\u00e9\n1\t11\tth\u00e9\n").encode("latin-1"),
        "2_keystrokes.txt": (header + "2\t20\tna\u00efve\n2\t21\tplain\n").encode("utf-8"),
    }
    for seed in range(4):
        shuffled = dict(no_identity_uploads(files.items(), seed))
        texts = [shuffled[name].decode("utf-8") for name in files]
        rows = sorted(line.split("\t")[2] for text in texts for line in text.splitlines()[1:])
        assert rows == sorted(["caf\u00e9", "th\u00e9", "na\u00efve", "plain"])
        # each file keeps its participant and its own section ids, in order
        assert [line.split("\t")[:2] for line in texts[0].splitlines()[1:]] == [["1", "10"], ["1", "11"]]


def test_every_verification_figure_of_a_cohort_without_identity_is_chance(cohort):
    _, evaluated = cohort
    rows = pd.concat([checked_rows(t).assign(feature=f) for f, t in evaluated.items()], ignore_index=True)
    # every evaluated feature type and grain, both device types, both sources, both keyboards
    assert set(rows["feature"]) == {d.feature for d in declarations(features)} - {"typenet_ml/platform"}
    assert {"same source", "web app", "Aalto", "same keyboard", "key names", "Unidentified"} <= set(rows["stratum"])
    z = z_for(2 * len(rows))  # EER and mean per-subject EER of every row
    assert outside_band(rows, z) == []
    assert outside_band(rows.dropna(subset=["mean_subject_eer"]), z, "mean_subject_eer") == []


def test_the_guard_fails_with_the_stored_fill_put_back(cohort):
    # the mutation the guard exists for: typenet_ml evaluated on its stored table, whose fill is
    # each user's mean over all its rows, probe rows included
    storage, evaluated = cohort
    keyboards = stored_keyboards(storage, VERSION)
    for declaration in declarations(features):
        if declaration.feature in ("typenet_ml/session", "typenet_ml/video"):
            leaky = dataclasses.replace(declaration, vectors=None)
            table, _ = evaluate(leaky, load(f"features/{declaration.feature}", VERSION, storage), keyboards)
            rows = checked_rows(table).assign(feature=declaration.feature)
            desktop = rows[pooled_rows(rows) & (rows["device_type"] == "desktop")]
            assert outside_band(desktop, z_for(1)), declaration.feature
            # the same rows without the leak are chance
            honest = checked_rows(evaluated[declaration.feature]).assign(feature=declaration.feature)
            assert not outside_band(honest[pooled_rows(honest) & (honest["device_type"] == "desktop")], z_for(1))


def test_pooling_sources_is_not_identity_free(cohort):
    # impostors across sources: a web-app probe against an Aalto template differs by source, not
    # by typist. On the cohort without identity the `all` rows are well below 0.5: never the pooled row
    _, evaluated = cohort
    for feature, table in evaluated.items():
        mixed = table[
            (table["stratum"] == "all") & (table["device_type"] == "desktop") & (table["status"] == "evaluated")
        ]
        if len(mixed):
            assert (mixed["eer"] < 0.5).all() and not pooled_rows(table)[mixed.index].any(), feature
    assert np.isfinite(evaluated["statistical"]["eer"]).any()
