"""The verification benchmark's protocol, scores and every metric on samples written by hand, each
expected value computed here by hand."""

import numpy as np
import pandas as pd
import pytest

from keystroke_assets.evaluation.metrics import (
    bootstrap_interval,
    chance_band,
    det_from_cuts,
    equal_error_rates,
    fnmr_at_fmr,
    pooled_det,
)
from keystroke_assets.evaluation.protocol import fit, verification_tally
from keystroke_assets.evaluation.results import device_labels, evaluate_device
from keystroke_assets.evaluation.samples import enrolment_curve, pooled_steps, session_split, typenet_split


def samples(rows: list[tuple], device: str = "desktop") -> tuple[pd.DataFrame, np.ndarray]:
    """(ids, values) of samples [(user, session, platform, [values...]), ...]; platform None: Aalto."""
    ids = pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "device_type": device,
            "session_id": pd.array([r[1] for r in rows], dtype="Int64"),
            "platform_id": pd.array([r[2] for r in rows], dtype="Int64"),
        }
    )
    return ids, np.array([r[3] for r in rows], dtype=np.float32)


def tally(ids, values, split=None, **kwargs):
    labels = device_labels(ids, ids["device_type"].iloc[0], None)
    split = split if split is not None else session_split(ids)
    return verification_tally(
        values, ids["user_id"], labels.codes, labels.names, split, keep_comparisons=True, **kwargs
    )


def pooled(ids, values, **kwargs) -> dict:
    """The session protocol's first row (pooled) of the device type."""
    return evaluate_device(ids, values, ids["device_type"].iloc[0], curves=False, **kwargs)[0]


def impostor_scores(t) -> list:
    made = t.comparisons
    return sorted(made["score"][~made["genuine"] & made["score"].notna()])


# three users, one column; enrolment (session 1) a 0, b 4, c 8: mean 4, mean absolute deviation
# (4 + 0 + 4) / 3 = 8/3. Probes (session 2): a 1, b 7, c 5. Raw |probe - template|:
#   a's probe 1: a 1, b 3, c 7;  b's probe 7: a 7, b 3, c 1;  c's probe 5: a 5, b 1, c 3
# genuine 1, 3, 3; impostor 3, 7, 7, 1, 5, 1; scores are these / (8/3)
THREE = [("a", 1, 1, [0]), ("b", 1, 1, [4]), ("c", 1, 1, [8]), ("a", 2, 1, [1]), ("b", 2, 1, [7]), ("c", 2, 1, [5])]


def test_three_users_by_hand():
    ids, values = samples(THREE)
    t = tally(ids, values)
    assert sorted(t.genuine) == pytest.approx([3 / 8, 9 / 8, 9 / 8])
    assert impostor_scores(t) == pytest.approx([3 / 8, 3 / 8, 9 / 8, 15 / 8, 21 / 8, 21 / 8])
    # DET points (FMR, FNMR) accepting raw distance <= t, at -inf, both cuts of each genuine score
    # and +inf: t < 1: (0, 1); t = 1: genuine a, impostors 1, 1 (2/6, 2/3); t < 3: (2/6, 2/3);
    # t = 3: every genuine, impostors 1, 1, 3 (3/6, 0); +inf (1, 0). FMR - FNMR turns positive
    # between t = 1 (-1/3) and t = 3 (+1/2), at 1/3 of (1/2 + 1/3) = 2/5 of the segment: EER
    # 1/3 + 2/5 * (1/2 - 1/3) = 2/5
    row = pooled(ids, values)
    assert (row["users"], row["genuine"], row["impostor"], row["not_comparable"]) == (3, 3, 6, 0)
    fmr, fnmr = row["det"]
    assert fmr == pytest.approx([0, 0, 1 / 3, 1 / 3, 1 / 2, 1]) and fnmr == pytest.approx([1, 1, 2 / 3, 2 / 3, 0, 0])
    assert row["eer"] == pytest.approx(0.4)
    # AUC: genuine 1 has 4 impostors farther (3, 7, 7, 5) and 2 equal (1, 1): (4 + 1) / 6; each
    # genuine 3 has 3 farther (7, 7, 5) and 1 equal: 3.5 / 6. Mean (5 + 3.5 + 3.5) / 18 = 2/3
    assert row["auc"] == pytest.approx(2 / 3)
    # per subject, by template: a: genuine 1, impostors 7 (b), 5 (c): EER 0. b: genuine 3,
    # impostors 3 (a), 1 (c): points (0, 1), (1/2, 1) below 3, (1, 0) at 3: crossing at 1/3 of the
    # way from (1/2, 1): EER 2/3. c: genuine 3, impostors 7 (a), 1 (b): (1/2, 1) below 3, (1/2, 0)
    # at 3: EER 1/2. Mean (0 + 2/3 + 1/2) / 3 = 7/18
    assert row["mean_subject_eer"] == pytest.approx(7 / 18) and row["subjects"] == 3
    # 6 impostor comparisons: fewer than 3 / 10 %: no FNMR is estimable
    assert np.isnan([row["fnmr_at_fmr_10pct"], row["fnmr_at_fmr_1pct"], row["fnmr_at_fmr_0.1pct"]]).all()
    # every comparison shares the one column
    assert row["shared_columns_median"] == 1


def test_fnmr_at_fmr_needs_three_impostors_per_fmr():
    # 30 impostor comparisons make FNMR at FMR 10 % estimable, 29 do not. The points of
    # test_three_users_by_hand: the lowest FNMR with FMR <= 40 % is 2/3 (t = 1), <= 50 % is 0
    fmr, fnmr = np.array([0, 0, 1 / 3, 1 / 3, 1 / 2, 1]), np.array([1, 1, 2 / 3, 2 / 3, 0, 0])
    assert fnmr_at_fmr(fmr, fnmr, 0.1, 30) == 1 and np.isnan(fnmr_at_fmr(fmr, fnmr, 0.1, 29))
    assert fnmr_at_fmr(fmr, fnmr, 0.4, 8) == pytest.approx(2 / 3) and fnmr_at_fmr(fmr, fnmr, 0.5, 6) == 0
    assert np.isnan(fnmr_at_fmr(fmr, fnmr, 0.001, 2999)) and fnmr_at_fmr(fmr, fnmr, 0.001, 3000) == 1


def test_users_far_apart_eer_0():
    # each user's sessions differ by 1 in each column, users by 100: every genuine score is below
    # every impostor score
    ids, values = samples([(u, s, 1, [100 * i + s, 100 * i + s]) for i, u in enumerate("abc") for s in (1, 2)])
    row = pooled(ids, values)
    assert (row["users"], row["genuine"], row["impostor"]) == (3, 3, 6)
    assert row["eer"] == 0 and row["auc"] == 1 and row["mean_subject_eer"] == 0


def test_copies_of_one_user_eer_one_half():
    # three ids with the same samples (two enrol, two probe): each probe scores the same against
    # every template, d1 for the first probe and d2 for the second, so the genuine scores are
    # d1, d2 three times and the impostor scores d1, d2 six times. Accepting ties together, the
    # DET points are (0, 1), (1/2, 1/2) at d1, (1, 0) at d2: EER 0.5. AUC: a genuine d1 has 6 of
    # 12 impostors farther and 6 equal (0.75), a genuine d2 none farther and 6 equal (0.25): 0.5
    rows = [(1, [3, 5, 9]), (1, [4, 1, 8]), (2, [6, 2, 7]), (2, [5, 5, 5])]
    ids, values = samples([(u, s, 1, v) for u in ["x", "y", "z"] for s, v in rows])
    t = tally(ids, values)
    d1, d2 = np.unique(t.genuine)
    assert sorted(t.genuine) == [d1] * 3 + [d2] * 3 and impostor_scores(t) == [d1] * 6 + [d2] * 6
    row = pooled(ids, values)
    assert (row["genuine"], row["impostor"]) == (6, 12)
    assert row["eer"] == 0.5 and row["auc"] == 0.5 and row["mean_subject_eer"] == 0.5


def test_missing_values_and_not_comparable_pairs():
    # columns x, y, a constant c (no spread: dropped) and n, null everywhere (dropped).
    # enrolment x 0, 2, 4: mean 2, MAD 4/3; y 0, 4, 8: MAD 8/3. Scaled templates a (0, 0),
    # b (1.5, 1.5), c (3, 3); probes a (0.75, -), b (1.5, 1.5), c (-, -).
    # a's probe has x only: vs a 0.75, b 0.75, c 2.25 (1 shared column). b's probe: vs a
    # (1.5 + 1.5) / 2 = 1.5, b 0, c 1.5 (2 shared). c's probe shares no column: 3 comparisons not
    # comparable, never scored (1 genuine, 2 impostor)
    nan = np.nan
    ids, values = samples(
        [
            ("a", 1, 1, [0, 0, 5, nan]),
            ("b", 1, 1, [2, 4, 5, nan]),
            ("c", 1, 1, [4, 8, 5, nan]),
            ("a", 2, 1, [1, nan, 5, nan]),
            ("b", 2, 1, [2, 4, 5, nan]),
            ("c", 2, 1, [nan, nan, 5, nan]),
        ]
    )
    t = tally(ids, values)
    assert t.columns == 2
    made = t.comparisons.sort_values(["probe", "template_user"])
    assert made["shared"].tolist() == [1, 1, 1, 2, 2, 2, 0, 0, 0]
    assert made["score"].tolist()[:6] == pytest.approx([0.75, 0.75, 2.25, 1.5, 0, 1.5])
    row = pooled(ids, values)
    assert (row["genuine"], row["impostor"], row["not_comparable"]) == (2, 4, 3)
    # scored comparisons: 3 share 1 column, 3 share 2: the lower median, 1
    assert row["shared_columns_median"] == 1


def test_mostly_not_comparable_is_reported_not_rated():
    # two phones with no column in common: every impostor comparison is not comparable, 2 of 4
    # comparisons... and with three such users 6 of 9: more than half, no EER
    nan = np.nan
    ids, values = samples(
        [
            ("p", 1, 1, [1, nan, nan]),
            ("p", 1, 2, [3, nan, nan]),
            ("p", 2, 1, [2, nan, nan]),
            ("q", 1, 1, [nan, 1, nan]),
            ("q", 1, 2, [nan, 3, nan]),
            ("q", 2, 1, [nan, 2, nan]),
            ("r", 1, 1, [nan, nan, 1]),
            ("r", 1, 2, [nan, nan, 3]),
            ("r", 2, 1, [nan, nan, 2]),
        ]
    )
    row = pooled(ids, values)
    assert (row["genuine"], row["impostor"], row["not_comparable"]) == (3, 0, 6)
    assert row["status"] == "not comparable: 6 of 9 comparisons share no observed column"
    assert "eer" not in row


def test_session_split_and_typenet_split():
    # web app: session 1 enrols; Aalto (no platform): the first 5 sections by id enrol, out of order
    aalto = [30, 2, 40, 9, 5, 31, 11]  # by id: 2, 5, 9, 11, 30 enrol; 31, 40 probe
    ids, _ = samples([("w", s, p, [0]) for s in (1, 2) for p in (1, 2)] + [("a", s, None, [0]) for s in aalto])
    split = session_split(ids)
    assert split.enrol.tolist() == [True, True, False, False, True, True, False, True, True, False, True]
    assert (split.probe == ~split.enrol).all() and (split.impostor == split.probe).all()
    # TypeNet: of 7 sections, n = 2 enrol (2, 5), the last 5 (9, 11, 30, 31, 40) probe, the first
    # of them (9) is the impostor sample; n = 3 needs 8 sections: the user is left out
    aalto_ids = ids[ids["user_id"] == "a"].reset_index(drop=True)
    two = typenet_split(aalto_ids, 2)
    section = aalto_ids["session_id"].to_numpy()
    assert sorted(section[two.enrol]) == [2, 5] and sorted(section[two.probe]) == [9, 11, 30, 31, 40]
    assert section[two.impostor].tolist() == [9]
    assert not typenet_split(aalto_ids, 3).enrol.any()
    # the enrolment curve: the first n enrolment samples in typing order (session, task, video,
    # platform): of w's session 1, platform 1 then 2
    one = enrolment_curve(ids, range(1, 2))[1]
    assert ids.loc[one.enrol, ["user_id", "session_id"]].values.tolist() == [["w", 1], ["a", 2]]
    assert ids.loc[one.enrol, "platform_id"].tolist()[0] == 1


def test_enrolment_and_probe_never_share_a_session():
    rng = np.random.default_rng(0)
    rows = [(u, s, p, rng.normal(size=3)) for u in ["w1", "w2"] for s in (1, 2) for p in (1, 2, 3)]
    aalto = {"a1": [30, 2, 40, 9, 5, 31, 11], "a2": [12, 10, 8, 6, 4, 3, 1]}
    rows += [(u, s, None, rng.normal(size=3)) for u, sections in aalto.items() for s in sections]
    ids, values = samples(rows)
    split = session_split(ids)
    enrol_sessions = {"w1": {1}, "w2": {1}, "a1": {2, 5, 9, 11, 30}, "a2": {1, 3, 4, 6, 8}}
    session, user = ids["session_id"].to_numpy(), ids["user_id"].to_numpy()
    assert {u: set(session[split.enrol & (user == u)]) for u in enrol_sessions} == enrol_sessions
    made = tally(ids, values, split).comparisons
    genuine = made[made["genuine"]]
    for u, template in enrol_sessions.items():
        probed = set(session[genuine["probe"][user[genuine["probe"]] == u]])
        assert probed and not probed & template, u
    # every probe against every template: web app 3 probes per user, Aalto 2; 4 templates
    assert len(made) == (3 + 3 + 2 + 2) * 4 and len(genuine) == 3 + 3 + 2 + 2


def test_a_probe_changes_nothing_fitted_and_no_other_score():
    # the three-user case with b's probe moved from 7 to 100 (and a second column, observed on a's
    # probe only): the enrolment-side fit (columns, scale, templates) and every comparison of the
    # other probes stay exactly as they were; only b's probe's own comparisons move
    ids, values = samples([(*r[:3], [r[3][0], 1.0 if r[0] == "a" and r[1] == 2 else np.nan]) for r in THREE])
    moved = values.copy()
    moved[4] = [100, 5]
    codes = pd.factorize(ids["user_id"])[0]
    split = session_split(ids)
    before, after = (fit(v, codes, split.enrol, np.array([0, 1, 2])) for v in (values, moved))
    assert before.columns.tolist() == after.columns.tolist() == [0]
    assert before.scale == after.scale and np.array_equal(before.templates, after.templates, equal_nan=True)
    made = [tally(ids, v).comparisons.set_index(["probe", "template_user"])["score"] for v in (values, moved)]
    others = made[0].index.get_level_values("probe") != 4
    assert made[0][others].equals(made[1][others]) and not made[0][~others].equals(made[1][~others])


def test_strata_by_source_and_same_source_impostors():
    # two web-app users w, v and two Aalto users a, b, one column; session 1 / first 5 sections
    # enrol. Enrolment: w 0, v 10, a 100 (x5), b 110 (x5); probes: w 1, v 11, a 101, b 111.
    # Every user's probe is 1 from its template and 9+ from any other template of its source:
    # EER 0 in every stratum. Counts: same source 4 genuine, 4 impostor (w<->v, a<->b); web app
    # 2 and 2; Aalto 2 and 2; all 4 and 12
    rows = [("w", 1, 1, [0]), ("w", 2, 1, [1]), ("v", 1, 1, [10]), ("v", 2, 1, [11])]
    rows += [(u, s, None, [base + (1 if s == 6 else 0)]) for u, base in (("a", 100), ("b", 110)) for s in range(1, 7)]
    ids, values = samples(rows)
    got = {r["stratum"]: r for r in evaluate_device(ids, values, "desktop", curves=False)}
    assert list(got) == ["same source", "web app", "Aalto", "all"]
    counts = {name: (r["users"], r["genuine"], r["impostor"]) for name, r in got.items()}
    assert counts == {"same source": (4, 4, 4), "web app": (2, 2, 2), "Aalto": (2, 2, 2), "all": (4, 4, 12)}
    assert all(r["eer"] == 0 for r in got.values())


def test_same_source_weighs_each_source_by_its_genuine_comparisons():
    # per source, identical genuine and impostor distributions (EER 0.5 each) on different
    # scales: web app scores {1, 3}, Aalto {10, 30}, Aalto with twice the impostors per genuine.
    # Pooled unweighted, impostors are mostly Aalto's (far) while genuine are half web app's
    # (near): EER far from 0.5. Weighted by genuine shares (1/2 each) the FMR is the mean of the
    # sources' FMRs: the pooled curve crosses at 0.5 as each source's does
    # cuts of thresholds 1, 3, 10, 30 (below, upto each); web app: genuine 1, 3; impostors 1, 3
    web = (np.array([0, 1, 1, 2, 2, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 2, 2, 2]), 2, 2)
    # Aalto: genuine 10, 30; impostors 10, 10, 30, 30
    aalto = (np.array([0, 0, 0, 0, 0, 1, 1, 2]), np.array([0, 0, 0, 0, 0, 2, 2, 4]), 2, 4)
    unweighted = det_from_cuts(web[0] + aalto[0], web[1] + aalto[1], 4, 6)
    assert equal_error_rates(*unweighted)[0] != pytest.approx(0.5)
    weighted = pooled_det([web, aalto])
    assert equal_error_rates(*weighted)[0] == pytest.approx(0.5)
    # FMR at t = 1 (upto): web 1/2, Aalto 0: 1/4; FNMR: 3 of 4 genuine above 1
    assert weighted[0][0, 2] == 0.25 and weighted[1][0, 2] == 0.75


def test_phones_compared_within_their_keyboard_for_key_dependent_features():
    # four phones: n1, n2 name keys, u1, u2 report Unidentified. Key-dependent: no row across
    # keyboards, the `same keyboard` row has n1<->n2 and u1<->u2 impostors only (2 + 2)
    rows = [(u, s, 1, [i * 10 + s]) for i, u in enumerate(["n1", "n2", "u1", "u2"]) for s in (1, 2)]
    ids, values = samples(rows, device="mobile")
    keyboards = pd.Series({"n1": "key names", "n2": "key names", "u1": "Unidentified", "u2": "Unidentified"})
    dependent = evaluate_device(ids, values, "mobile", key_dependent=True, keyboards=keyboards, curves=False)
    assert [(r["stratum"], r["genuine"], r["impostor"]) for r in dependent] == [
        ("same keyboard", 4, 4),
        ("key names", 2, 2),
        ("Unidentified", 2, 2),
    ]
    independent = evaluate_device(ids, values, "mobile", keyboards=keyboards, curves=False)
    assert [(r["stratum"], r["impostor"]) for r in independent] == [
        ("same keyboard", 4),
        ("key names", 2),
        ("Unidentified", 2),
        ("all", 12),
    ]


def test_pooled_sequence_baseline():
    # task 0, length 2: channel 0 steps 1, 3 -> mean 2, std sqrt((1 + 1) / 1) = sqrt 2; channel 1
    # 10, 30 -> mean 20, std sqrt(200); its third step is padding. Task 1, length 1: mean 5 and 7,
    # no std. Task 2: channel 1 all 0 over its recorded steps: absent (missing), channel 0 kept
    steps = np.array([[[1, 10], [3, 30], [0, 0]], [[5, 7], [0, 0], [0, 0]], [[2, 0], [4, 0], [0, 9]]], dtype=np.float32)
    tasks = pd.DataFrame({"user_id": ["a", "b", "c"], "length": [2, 1, 2]})
    out = pooled_steps(tasks, steps, ["x", "y"], absent_when_zero=("y",))
    assert list(out.columns) == ["user_id", "length", "x_mean", "x_std", "y_mean", "y_std"]
    assert out[["x_mean", "y_mean"]].to_numpy()[:2].tolist() == [[2, 20], [5, 7]]
    assert out.loc[0, "x_std"] == pytest.approx(2**0.5) and out.loc[0, "y_std"] == pytest.approx(200**0.5)
    assert out.loc[1, ["x_std", "y_std"]].isna().all()
    assert out.loc[2, "x_mean"] == 3 and out.loc[2, ["y_mean", "y_std"]].isna().all()


def test_blocks_and_draws_give_the_hand_computed_scores():
    ids, values = samples(THREE)
    blocks = tally(ids, values, block_cells=1)
    assert impostor_scores(blocks) == pytest.approx([3 / 8, 3 / 8, 9 / 8, 15 / 8, 21 / 8, 21 / 8])
    # a draw of one template per block of one probe: each probe meets one template, an impostor
    # unless it is its own; each impostor score is the hand-computed one
    drawn = tally(ids, values, block_cells=1, max_impostor_templates=1)
    made = drawn.comparisons[~drawn.comparisons["genuine"]]
    assert len(made) == drawn.impostor_cuts.sum() <= 3
    by_hand = {("a", "b"): 3, ("a", "c"): 7, ("b", "a"): 7, ("b", "c"): 1, ("c", "a"): 5, ("c", "b"): 1}
    prober = {3: "a", 4: "b", 5: "c"}  # probe rows
    for probe, user, score in made[["probe", "template_user", "score"]].itertuples(index=False):
        assert user != prober[probe] and score == pytest.approx(by_hand[prober[probe], user] * 3 / 8)


def test_fewer_than_two_users_not_evaluable():
    ids, values = samples([("a", 1, 1, [0]), ("a", 2, 1, [1]), ("b", 1, 1, [3])])  # b has no probe
    row = pooled(ids, values)
    assert row["users"] == 1 and row["status"].startswith("not evaluable") and "eer" not in row
    assert evaluate_device(ids, values, "mobile", curves=False)[0]["status"].startswith("not evaluable")


def test_equal_error_rates_row_by_row():
    # the points of test_three_users_by_hand (EER 2/5) and of a curve crossing at a point (1/2)
    fmr = np.array([[0, 0, 1 / 3, 1 / 3, 1 / 2, 1], [0, 0.5, 0.5, 0.5, 1, 1]])
    fnmr = np.array([[1, 1, 2 / 3, 2 / 3, 0, 0], [1, 1, 0.5, 0, 0, 0]])
    assert equal_error_rates(fmr, fnmr) == pytest.approx([0.4, 0.5])


def test_bootstrap_interval_over_users():
    # two users over one threshold t (cuts below / up to t): user a's genuine score is below t and
    # its impostor above (alone: EER 0); user b's the other way (alone: EER 1). Drawn twice with
    # replacement, a replicate is {a, a} (EER 0, probability 1/4), {a, b} (1/2) or {b, b} (1):
    # the 2.5 % and 97.5 % quantiles of 1000 replicates are 0 and 1
    genuine = np.array([[1, 1], [0, 0]])
    impostor = np.array([[0, 0], [1, 1]])
    totals = np.array([1, 1])
    eer = float(equal_error_rates(*det_from_cuts(genuine.sum(axis=0), impostor.sum(axis=0), 2, 2))[0])
    assert eer == 0.5
    assert bootstrap_interval([(genuine, impostor, totals, totals)], eer) == (0.0, 1.0)
    # the same user twice: every replicate is the same curve, the interval is the point
    assert bootstrap_interval([(genuine[[0, 0]], impostor[[0, 0]], totals, totals)], 0.0) == (0.0, 0.0)


def test_chance_band():
    # 0.25 * sqrt(1/50 + 1/50) = 0.05 standard errors at 50 users; at 3 of them, 0.15
    assert chance_band(50, 3) == pytest.approx(0.15)
    assert chance_band(8, 1) == pytest.approx(0.125)
