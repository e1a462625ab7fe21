"""The verification benchmark's protocol, scores and error rates on samples written by hand, every
expected value computed here by hand."""

import numpy as np
import pandas as pd
import pytest

from keystroke_assets.evaluation.protocol import (
    det_points,
    equal_error_rate,
    evaluate_device,
    fnmr_at_fmr,
    pooled_steps,
    verification_scores,
)


def web_app(samples: list[tuple]) -> tuple[pd.DataFrame, np.ndarray]:
    """(ids, values) of desktop web-app samples [(user, session, platform, [values...]), ...]."""
    ids = pd.DataFrame(
        {
            "user_id": [s[0] for s in samples],
            "device_type": "desktop",
            "session_id": pd.array([s[1] for s in samples], dtype="Int64"),
            "platform_id": pd.array([s[2] for s in samples], dtype="Int64"),
        }
    )
    return ids, np.array([s[3] for s in samples], dtype=np.float32)


def rates(scores):
    _, fmr, fnmr = det_points(scores)
    return fmr, fnmr


def impostor_scores(scores) -> list:
    """The impostor scores of the comparisons made (kept when asked for: Scores only counts them)."""
    made = scores.comparisons
    return sorted(made["score"][~made["genuine"]])


def test_users_far_apart_eer_0():
    # each user's sessions differ by 1 in each column, users by 100: every genuine score is below
    # every impostor score
    ids, values = web_app([(u, s, 1, [100 * i + s, 100 * i + s]) for i, u in enumerate("abc") for s in (1, 2)])
    row, _ = evaluate_device(ids, values, "session", "desktop")
    assert (row["users"], row["genuine"], row["impostor"]) == (3, 3, 6)
    assert row["eer"] == 0 and row["fnmr_at_fmr_1pct"] == 0 and row["fnmr_at_fmr_0.1pct"] == 0


def test_copies_of_one_user_eer_one_half():
    # three ids with the same samples (two enrol, two probe): each probe scores the same against
    # every template, d1 for the first probe and d2 for the second, so the genuine scores are
    # d1, d2 three times and the impostor scores d1, d2 six times. Accepting ties together, the
    # DET points are (FMR 0, FNMR 1), (1/2, 1/2) at d1, (1, 0) at d2: EER 0.5; FMR stays <= 1 %
    # only at the threshold that accepts nothing, so FNMR there is 1
    samples = [(1, [3, 5, 9]), (1, [4, 1, 8]), (2, [6, 2, 7]), (2, [5, 5, 5])]
    ids, values = web_app([(u, s, 1, v) for u in ["x", "y", "z"] for s, v in samples])
    scores = verification_scores(ids, values, "session", keep_comparisons=True)
    d1, d2 = np.unique(scores.genuine)
    assert list(scores.genuine) == [d1] * 3 + [d2] * 3 and impostor_scores(scores) == [d1] * 6 + [d2] * 6
    row, _ = evaluate_device(ids, values, "session", "desktop")
    assert (row["genuine"], row["impostor"]) == (3 * 2, 3 * 2 * 2)  # 2 probes per user, vs 1 own and 2 other templates
    assert row["eer"] == 0.5 and row["fnmr_at_fmr_1pct"] == 1


def test_three_users_by_hand():
    # one column; enrolment (session 1) a 0, b 4, c 8: mean 4, mean absolute deviation
    # (4 + 0 + 4) / 3 = 8/3. Probes (session 2): a 1, b 7, c 5. Raw |probe - template|:
    #   a's probe 1: a 1, b 3, c 7;  b's probe 7: a 7, b 3, c 1;  c's probe 5: a 5, b 1, c 3
    # genuine 1, 3, 3; impostor 3, 7, 7, 1, 5, 1; scores are these / (8/3)
    ids, values = web_app(
        [("a", 1, 1, [0]), ("b", 1, 1, [4]), ("c", 1, 1, [8]), ("a", 2, 1, [1]), ("b", 2, 1, [7]), ("c", 2, 1, [5])]
    )
    scores = verification_scores(ids, values, "session", keep_comparisons=True)
    assert list(scores.genuine) == pytest.approx([3 / 8, 9 / 8, 9 / 8])
    assert impostor_scores(scores) == pytest.approx([3 / 8, 3 / 8, 9 / 8, 15 / 8, 21 / 8, 21 / 8])
    # what the rates need of the impostors, counted: at the distinct genuine scores 3/8 and 9/8,
    # impostors below (0; 3/8, 3/8) and up to (3/8, 3/8; and 9/8)
    assert list(scores.thresholds) == pytest.approx([3 / 8, 9 / 8]) and scores.impostors == 6
    assert list(scores.impostor_below) == [0, 2] and list(scores.impostor_upto) == [2, 3]
    # DET points (FMR, FNMR), accepting raw distance <= t, at -inf, just below and at each genuine
    # score, and +inf: t = -inf (0, 1); t < 1: no impostor below 1 (0, 1); t = 1: genuine a and
    # impostors 1, 1 (2/6, 2/3); t < 3: (2/6, 2/3); t = 3: every genuine, impostors 1, 1, 3 (3/6, 0);
    # t = +inf (1, 0)
    fmr, fnmr = rates(scores)
    assert fmr == pytest.approx([0, 0, 1 / 3, 1 / 3, 1 / 2, 1]) and fnmr == pytest.approx([1, 1, 2 / 3, 2 / 3, 0, 0])
    # FMR - FNMR turns positive between t = 1 (-1/3) and t = 3 (+1/2): the segment crosses at
    # 1/3 of (1/2 + 1/3) = 2/5 of its length: FMR = 1/3 + 2/5 * (1/2 - 1/3) = 2/5,
    # FNMR = 2/3 - 2/5 * 2/3 = 2/5
    assert equal_error_rate(fmr, fnmr) == pytest.approx(0.4)
    # FNMR at FMR <= a: the lowest FNMR among thresholds with FMR <= a
    assert fnmr_at_fmr(fmr, fnmr, 0.01) == 1  # only t = -inf
    assert fnmr_at_fmr(fmr, fnmr, 0.4) == pytest.approx(2 / 3)  # t = 1
    assert fnmr_at_fmr(fmr, fnmr, 0.5) == 0  # t = 3
    row, _ = evaluate_device(ids, values, "session", "desktop")
    assert (row["eer"], row["fnmr_at_fmr_1pct"], row["fnmr_at_fmr_0.1pct"]) == (pytest.approx(0.4), 1, 1)


def test_null_and_constant_columns():
    # columns x, y, a constant c (no spread: dropped) and n, null everywhere (dropped).
    # enrolment x 0, 2, 4: mean 2, MAD 4/3; y 0, 4, 8: MAD 8/3. Scaled templates a (0, 0),
    # b (1.5, 1.5), c (3, 3); probes a (0.75, -), b (1.5, 1.5), c (-, -).
    # a's probe has x only: vs a 0.75, b 0.75, c 2.25. b's probe: vs a (1.5 + 1.5) / 2 = 1.5,
    # b 0, c 1.5. c's probe shares no column: no score, 3 comparisons counted.
    nan = np.nan
    ids, values = web_app(
        [
            ("a", 1, 1, [0, 0, 5, nan]),
            ("b", 1, 1, [2, 4, 5, nan]),
            ("c", 1, 1, [4, 8, 5, nan]),
            ("a", 2, 1, [1, nan, 5, nan]),
            ("b", 2, 1, [2, 4, 5, nan]),
            ("c", 2, 1, [nan, nan, 5, nan]),
        ]
    )
    scores = verification_scores(ids, values, "session", keep_comparisons=True)
    assert (scores.columns, scores.without_score, scores.users) == (2, 3, 3)
    assert list(scores.genuine) == pytest.approx([0, 0.75])
    assert impostor_scores(scores) == pytest.approx([0.75, 1.5, 1.5, 2.25]) and scores.impostors == 4


def test_enrolment_and_probe_never_share_a_session():
    # web app: two users, each 2 sessions x 3 platforms; Aalto: two users with 7 sections, ids
    # out of order: the first 5 by id (2, 5, 9, 11, 30 and 1, 3, 4, 6, 8) enrol, 31 and 40 / 10 and 12 probe
    rng = np.random.default_rng(0)
    rows = [(u, s, p, rng.normal(size=3)) for u in ["w1", "w2"] for s in (1, 2) for p in (1, 2, 3)]
    aalto = {"a1": [30, 2, 40, 9, 5, 31, 11], "a2": [12, 10, 8, 6, 4, 3, 1]}
    rows += [(u, s, None, rng.normal(size=3)) for u, sections in aalto.items() for s in sections]
    ids, values = web_app(rows)
    enrol_sessions = {"w1": {1}, "w2": {1}, "a1": {2, 5, 9, 11, 30}, "a2": {1, 3, 4, 6, 8}}
    scores = verification_scores(ids, values, "session", keep_comparisons=True)
    made, enrolment = scores.comparisons, scores.enrolment
    session = ids["session_id"].to_numpy()
    # the templates are made of exactly those sessions
    assert {u: set(session[enrolment["sample"][enrolment["user"] == u]]) for u in enrol_sessions} == enrol_sessions
    genuine = made[made["genuine"]]
    probe_user = ids["user_id"].to_numpy()[genuine["probe"]]
    assert (probe_user == genuine["template_user"].to_numpy()).all()
    for user, template in enrol_sessions.items():
        probed = set(session[genuine["probe"][probe_user == user]])
        assert probed and not probed & template, user
    # every probe against every template: web app 3 probes per user, Aalto 2; 4 templates
    assert len(made) == (3 + 3 + 2 + 2) * 4 and len(genuine) == 3 + 3 + 2 + 2


def test_leave_one_platform_out():
    # the platform grain: a row per (user, platform); each fold enrols on two platforms and probes
    # the third; Aalto rows (no platform) take no part
    rng = np.random.default_rng(1)
    ids, values = web_app(
        [(u, None, p, rng.normal(size=2)) for u in ["u", "v", "w"] for p in (1, 2, 3)]
        + [("aalto", None, None, [0.0, 0.0])]
    )
    ids = ids.drop(columns="session_id")
    scores = verification_scores(ids, values, "platform", keep_comparisons=True)
    made, enrolment = scores.comparisons, scores.enrolment
    platform = ids["platform_id"].to_numpy(dtype=float, na_value=np.nan)
    assert scores.users == 3 and "aalto" not in set(made["template_user"]) | set(enrolment["user"])
    for p in (1, 2, 3):
        fold = f"platform {p} probes"
        assert set(platform[made["probe"][made["fold"] == fold]]) == {p}
        assert set(platform[enrolment["sample"][enrolment["fold"] == fold]]) == {1, 2, 3} - {p}
    # per fold 3 probes x 3 templates, 3 of them genuine; three folds pooled
    assert (len(scores.genuine), scores.impostors) == (9, 18)


def test_fewer_than_two_users_not_evaluable():
    ids, values = web_app([("a", 1, 1, [0]), ("a", 2, 1, [1]), ("b", 1, 1, [3])])  # b has no probe
    row, scores = evaluate_device(ids, values, "session", "desktop")
    assert scores is None and row["users"] == 1 and row["status"].startswith("not evaluable") and np.isnan(row["eer"])
    row, _ = evaluate_device(ids, values, "session", "mobile")
    assert row["users"] == 0 and row["status"].startswith("not evaluable")


def test_pooled_sequence_baseline():
    # task 0, length 2: channel 0 steps 1, 3 -> mean 2, std sqrt((1 + 1) / 1) = sqrt 2; channel 1
    # 10, 30 -> mean 20, std sqrt(200); its third step is padding. Task 1, length 1: mean 5 and 7,
    # no std
    steps = np.array([[[1, 10], [3, 30], [0, 0]], [[5, 7], [0, 0], [0, 0]]], dtype=np.float32)
    tasks = pd.DataFrame({"user_id": ["a", "b"], "length": [2, 1]})
    out = pooled_steps(tasks, steps, ["x", "y"])
    assert list(out.columns) == ["user_id", "length", "x_mean", "x_std", "y_mean", "y_std"]
    assert out[["x_mean", "y_mean"]].to_numpy().tolist() == [[2, 20], [5, 7]]
    assert out.loc[0, "x_std"] == pytest.approx(2**0.5) and out.loc[0, "y_std"] == pytest.approx(200**0.5)
    assert out.loc[1, ["x_std", "y_std"]].isna().all()


def test_blocks_give_the_same_scores():
    # the three-user case again, one (probe, template) pair per block: one probe per block
    ids, values = web_app(
        [("a", 1, 1, [0]), ("b", 1, 1, [4]), ("c", 1, 1, [8]), ("a", 2, 1, [1]), ("b", 2, 1, [7]), ("c", 2, 1, [5])]
    )
    whole, blocks = (
        verification_scores(ids, values, "session", keep_comparisons=True, block_cells=n) for n in (2**22, 1)
    )
    assert (
        impostor_scores(blocks)
        == impostor_scores(whole)
        == pytest.approx([3 / 8, 3 / 8, 9 / 8, 15 / 8, 21 / 8, 21 / 8])
    )
    assert list(blocks.impostor_upto) == list(whole.impostor_upto) == [2, 3]


def test_a_probe_meets_a_draw_of_impostors_beyond_the_limit():
    # the three-user case with a draw of one template per block of one probe: each probe meets
    # one template, an impostor unless it is the probe's own; the genuine scores stay 3/8, 9/8,
    # 9/8 and each impostor score is the hand-computed one of test_three_users_by_hand
    ids, values = web_app(
        [("a", 1, 1, [0]), ("b", 1, 1, [4]), ("c", 1, 1, [8]), ("a", 2, 1, [1]), ("b", 2, 1, [7]), ("c", 2, 1, [5])]
    )
    scores = verification_scores(ids, values, "session", keep_comparisons=True, block_cells=1, max_impostor_templates=1)
    assert list(scores.genuine) == pytest.approx([3 / 8, 9 / 8, 9 / 8])
    made = scores.comparisons
    assert made.groupby("probe").size().tolist() == [1, 1, 1]  # one template met per probe
    impostors = made[~made["genuine"]]
    assert scores.impostors == len(impostors)
    by_hand = {("a", "b"): 3, ("a", "c"): 7, ("b", "a"): 7, ("b", "c"): 1, ("c", "a"): 5, ("c", "b"): 1}
    prober = {3: "a", 4: "b", 5: "c"}  # probe rows
    for probe, user, score, genuine in made[["probe", "template_user", "score", "genuine"]].itertuples(index=False):
        assert genuine == (user == prober[probe])
        if not genuine:
            assert score == pytest.approx(by_hand[prober[probe], user] * 3 / 8)
    # counted as the rates need them: impostors up to each genuine score 3/8 and 9/8
    listed = np.sort(impostors["score"].to_numpy())
    assert list(scores.impostor_upto) == [int((listed <= 3 / 8 + 1e-6).sum()), int((listed <= 9 / 8 + 1e-6).sum())]
