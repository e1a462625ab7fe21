"""A feature table's results: per device type, the protocol's rows for every stratum, the
enrolment-size curve and TypeNet's Aalto protocol, with every metric (docs/evaluation.md).

Strata (which comparisons a row counts) come from one label per user: its source on a desktop
(`web app`, `Aalto`), its keyboard on a phone (`key names`, or `Unidentified` when more than
half of its keystrokes have keycode 0). With several labels a device type's rows are the pooled
one (`same source`, `same keyboard`: impostors of the template's label, each label's DET weighted
by its share of genuine comparisons), each label alone, and `all` (impostors across labels: not
identity-free, never the pooled row). A key-dependent feature (its columns are keys) is never
compared across keyboards: it has no `all` phone row.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from keystroke_assets.evaluation.metrics import (
    FMR_TARGETS,
    bootstrap_interval,
    counts_at_cuts,
    effective_impostors,
    equal_error_rates,
    fnmr_at_fmr,
    per_subject_eers,
    pooled_det,
    roc_auc,
)
from keystroke_assets.evaluation.protocol import Tally, among, verification_tally
from keystroke_assets.evaluation.samples import Split, enrolment_curve, is_aalto, session_split, typenet_split
from keystroke_assets.features.behavioral import UNIDENTIFIED_MAX_SHARE

SOURCES = ["web app", "Aalto"]
KEYBOARDS = ["key names", "Unidentified", "unknown"]
TYPENET_ENROLMENT = (1, 2, 5, 7, 10)  # Aalto sections enrolled (TypeNet's, Acien et al. 2021)
CURVE_USERS = 100  # users drawn (seeded) for each enrolment-size curve
CURVE_IMPOSTOR_TEMPLATES = 20  # impostor templates a probe meets there: 180 impostor probes per template
MOSTLY_NOT_COMPARABLE = 0.5  # share of comparisons without a shared column beyond which no rate is given
PROTOCOLS = {
    "sessions": "web app session 1 enrols, session 2 probes; Aalto's first 5 sections enrol, the rest probe",
    "enrolment curve": "the first n samples of session 1 enrol, session 2 probes (web-app users drawn)",
    "TypeNet": "TypeNet's Aalto protocol: the first n sections enrol, the last 5 probe, one impostor sample "
    "from each other user (Aalto users drawn)",
}


def _fnmr_name(target: float) -> str:
    return f"fnmr_at_fmr_{target * 100:g}pct"


RESULT_DESCRIPTIONS = {
    "device_type": "desktop or mobile",
    "protocol": "; ".join(f"{k}: {v}" for k, v in PROTOCOLS.items()),
    "stratum": "which comparisons: one source (web app, Aalto) or phone keyboard (key names, Unidentified) alone; "
    "same source / same keyboard: impostors of the template's own source or keyboard, each weighted by its share "
    "of genuine comparisons (the pooled row); all: every impostor across sources or keyboards (not identity-free: "
    "a source or keyboard tells impostors apart by itself)",
    "enrolment": "samples per user enrolled (curve and TypeNet rows); null: every enrolment sample",
    "status": "'evaluated', or why not (fewer than two users; most comparisons not comparable; ...)",
    "users": "users with enrolment and probe samples",
    "columns": "feature columns compared (with an enrolment value and a spread)",
    "genuine": "genuine comparisons scored (probe vs own template)",
    "impostor": "impostor comparisons scored (probe vs another user's template)",
    "not_comparable": "comparisons without a column observed in both: counted, never scored",
    "shared_columns_median": "median of the columns observed in both, over the scored comparisons",
    "eer": "global equal error rate (DET points joined by straight lines; ties accepted together)",
    "eer_low": "95 % bootstrap interval of the EER over users (1000 draws, seeded): low end",
    "eer_high": "95 % bootstrap interval of the EER over users: high end",
    "mean_subject_eer": "mean over users of each user's EER (its genuine vs the impostors against its template)",
    "subjects": "users with a per-subject EER (genuine and impostor comparisons)",
    "auc": "ROC AUC: probability that an impostor scores farther than a genuine comparison (ties half)",
    **{
        _fnmr_name(a): f"lowest FNMR of a threshold with FMR <= {a:.1%}; null: not estimable "
        f"(fewer than {3 / a:,.0f} impostor comparisons)"
        for a in FMR_TARGETS
    },
}
RESULT_COLUMNS = list(RESULT_DESCRIPTIONS)


@dataclass(frozen=True)
class Stratum:
    name: str
    labels: tuple[int, ...]  # label codes whose users are in
    same_label: bool  # impostors of the template's label only, each label a part (metrics.pooled_det)


def strata(label_names: list[str], present: list[int], key_dependent: bool, kind: str) -> list[Stratum]:
    """The rows of one device type, the pooled one first: with one label, that label's; with
    several, same-label impostors with each label weighted by its genuine comparisons (`same
    source`, `same keyboard`), each label alone, and every impostor across labels (`all`: not for
    a key-dependent feature, never compared across keyboards)."""
    every = tuple(present)
    if len(present) == 1:
        return [Stratum(label_names[present[0]], every, False)]
    rows = [Stratum(f"same {kind}", every, True), *(Stratum(label_names[c], (c,), False) for c in present)]
    return rows if key_dependent else [*rows, Stratum("all", every, False)]


def _cumulated_within(raw: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Cumulative sums of `raw` restarted at each segment start."""
    total = np.cumsum(raw)
    before = np.r_[0, total][start[:-1]]
    return total - np.repeat(before, np.diff(start))


def _per_user_rows(cumulated: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(users x cuts matrix of each user's cumulated counts at its own cuts, padded with its last
    one; each user's total, at its last cut, `beyond`)."""
    length = np.diff(start) - 1  # the user's cuts but `beyond`
    width = max(int(length.max()) if len(length) else 0, 1)
    column = np.minimum(np.arange(width)[None, :], np.maximum(length[:, None] - 1, 0))
    rows = cumulated[start[:-1, None] + column]
    return np.where(length[:, None] > 0, rows, 0), cumulated[start[1:] - 1]


@dataclass
class _Part:
    """One part of a stratum (pooled_det): its users, pair classes, genuine comparisons (indices
    into the Tally's) and impostor counts."""

    users: np.ndarray  # boolean over the Tally's users
    classes: np.ndarray  # boolean over pair classes
    genuine: np.ndarray  # indices of its scored genuine comparisons
    impostor_raw: np.ndarray  # impostors per cut position


def _parts(tally: Tally, stratum: Stratum) -> list[_Part]:
    """The stratum's parts: one per label for same-label impostors, else one; a part without
    impostor comparisons (a label with one user) has no FMR and is left out."""
    n_labels = len(tally.label_names)
    groups = [(c,) for c in stratum.labels] if stratum.same_label else [stratum.labels]
    scored = ~np.isnan(tally.genuine)
    parts = []
    for labels in groups:
        classes = np.array([a in labels and b in labels for a in range(n_labels) for b in range(n_labels)])
        users = among(tally.user_label, np.array(labels))
        impostor_raw = tally.impostor_cuts[classes].sum(axis=0)
        if impostor_raw.sum():
            parts.append(_Part(users, classes, np.flatnonzero(users[tally.genuine_user] & scored), impostor_raw))
    return parts


def stratum_row(tally: Tally, stratum: Stratum, interval: bool = True) -> dict:
    """Every metric of one stratum of a Tally (the EER's bootstrap interval if `interval`)."""
    in_stratum = among(tally.user_label, np.array(stratum.labels))
    mine = in_stratum[tally.genuine_user]
    classes = np.array(
        [
            a in stratum.labels and b in stratum.labels and (a == b or not stratum.same_label)
            for a in range(len(tally.label_names))
            for b in range(len(tally.label_names))
        ]
    )
    parts = _parts(tally, stratum)
    genuine = np.concatenate([p.genuine for p in parts]) if parts else np.zeros(0, np.int64)
    impostors = [int(p.impostor_raw.sum()) for p in parts]
    not_comparable = int(tally.not_comparable[classes].sum() + np.isnan(tally.genuine[mine]).sum())
    shared = tally.shared[classes].sum(axis=0) + np.bincount(
        tally.genuine_shared[genuine], minlength=tally.shared.shape[1]
    )
    row = {
        "users": int(len(np.unique(tally.genuine_user[mine]))),
        "columns": tally.columns,
        "genuine": len(genuine) if parts else int((~np.isnan(tally.genuine[mine])).sum()),
        "impostor": sum(impostors),
        "not_comparable": not_comparable,
        "shared_columns_median": float(np.searchsorted(np.cumsum(shared), shared.sum() / 2))
        if shared.sum()
        else np.nan,
    }
    comparisons = row["genuine"] + row["impostor"] + not_comparable
    if row["users"] < 2:
        return {**row, "status": f"not evaluable: {row['users']} user(s) with enrolment and probe samples"}
    if not_comparable > MOSTLY_NOT_COMPARABLE * comparisons or (not_comparable and not (len(genuine) and parts)):
        return {
            **row,
            "status": f"not comparable: {not_comparable:,} of {comparisons:,} comparisons share no observed column",
        }
    if not parts or not len(genuine):
        return {**row, "status": "not evaluable: no impostor comparison (no two users of the stratum share a label)"}
    beyond = tally.impostor_cuts.shape[1] - 1
    cumulated = [np.cumsum(p.impostor_raw)[:beyond] for p in parts]
    counted = [
        (counts_at_cuts(tally.genuine_position[p.genuine], beyond), c, len(p.genuine), n)
        for p, c, n in zip(parts, cumulated, impostors)
    ]
    fmr, fnmr = pooled_det(counted)
    eer = float(equal_error_rates(fmr, fnmr)[0])
    precise_as = effective_impostors(np.array([len(p.genuine) for p in parts]), np.array(impostors))

    # per user: its own cuts (per-subject EER: its template's impostors are of its part) and the grid (bootstrap)
    genuine_at = np.bincount(tally.genuine_user_cut[genuine], minlength=len(tally.user_cuts))
    own_genuine, genuines = _per_user_rows(_cumulated_within(genuine_at, tally.user_cut_start), tally.user_cut_start)
    impostor_at = tally.impostor_user_cuts[classes].sum(axis=0)
    own_impostor, impostors_of = _per_user_rows(
        _cumulated_within(impostor_at, tally.user_cut_start), tally.user_cut_start
    )
    subject_eers = per_subject_eers(own_genuine, own_impostor, genuines, impostors_of)[in_stratum]
    grid = len(tally.grid_cuts)
    user = tally.genuine_user[genuine]
    genuine_grid = np.bincount(user * (grid + 1) + tally.genuine_grid[genuine], minlength=len(tally.users) * (grid + 1))
    genuine_grid = np.cumsum(genuine_grid.reshape(len(tally.users), grid + 1), axis=1)
    rows = []
    for p in parts:
        impostor_grid = np.cumsum(tally.impostor_grid[p.classes].sum(axis=0)[p.users], axis=1)
        g = genuine_grid[p.users]
        rows.append((g[:, :grid], impostor_grid[:, :grid], g[:, grid], impostor_grid[:, grid]))
    low, high = bootstrap_interval(rows, eer) if interval else (np.nan, np.nan)
    return {
        **row,
        "status": "evaluated",
        "eer": eer,
        "eer_low": low,
        "eer_high": high,
        "mean_subject_eer": float(np.nanmean(subject_eers)) if (~np.isnan(subject_eers)).any() else np.nan,
        "subjects": int((~np.isnan(subject_eers)).sum()),
        "auc": roc_auc(
            tally.genuine_position[genuine],
            [(c, n, len(p.genuine)) for p, c, n in zip(parts, cumulated, impostors)],
        ),
        **{_fnmr_name(a): fnmr_at_fmr(fmr[0], fnmr[0], a, precise_as) for a in FMR_TARGETS},
        "det": (fmr[0], fnmr[0]),
        "scores": (tally.genuine[genuine], tally.sample[classes[tally.sample_class]], sum(impostors)),
    }


@dataclass
class Labels:
    """Per sample of one device type: its user's label code, the names, and the kind ('source' or
    'keyboard')."""

    codes: np.ndarray
    names: list[str]
    kind: str


def device_labels(ids: pd.DataFrame, device_type: str, keyboards: pd.Series | None) -> Labels:
    """Desktop: the source. Phones: the keyboard, from `keyboards` (user -> KEYBOARDS name; None
    when unknown: every phone 'unknown')."""
    if device_type == "desktop":
        return Labels(is_aalto(ids).astype(np.int64), SOURCES, "source")
    named = ids["user_id"].map(keyboards) if keyboards is not None else pd.Series(index=ids.index, dtype=object)
    codes = pd.Categorical(named.fillna("unknown"), categories=KEYBOARDS).codes.astype(np.int64)
    return Labels(codes, KEYBOARDS, "keyboard")


def _rows(
    tally: Tally | None, labels: Labels, key_dependent: bool, common: dict, only: str | None = None, interval=True
):
    """Result rows (with their DET and scores for the plots) of each stratum of a Tally; `only`:
    the pooled row alone, named so."""
    if tally is None:
        yield {**common, "stratum": only or "all", "status": "not evaluable: no user with enrolment and probe samples"}
        return
    present = sorted(set(tally.user_label.tolist()))
    chosen = strata(labels.names, present, key_dependent and labels.kind == "keyboard", labels.kind)
    for stratum in chosen[:1] if only is not None else chosen:
        row = stratum_row(tally, stratum, interval)
        yield {**common, **row, "stratum": only if only is not None else stratum.name}


def _drawn(ids: pd.DataFrame, subset: np.ndarray, seed: int) -> np.ndarray:
    """`subset` limited to a seeded draw of at most CURVE_USERS of its users."""
    users = pd.unique(ids.loc[subset, "user_id"])
    if len(users) > CURVE_USERS:
        users = np.random.default_rng(seed).choice(users, CURVE_USERS, replace=False)
    return subset & ids["user_id"].isin(users).to_numpy()


def evaluate_device(
    ids: pd.DataFrame,
    values: np.ndarray,
    device_type: str,
    key_dependent: bool = False,
    keyboards: pd.Series | None = None,
    curves: bool = True,
) -> list[dict]:
    """Every result row of one device type: the session protocol per stratum, then the enrolment
    curve of its web-app users (no interval: a point per enrolment size) and TypeNet's protocol on
    its Aalto users."""
    mine = (ids["device_type"].astype(str) == device_type).to_numpy()
    ids, values = ids[mine].reset_index(drop=True), values[mine]
    values = values[:, ~np.isnan(values).all(axis=0)]  # another device type's columns: nothing to fit
    labels = device_labels(ids, device_type, keyboards)

    def tally(rows: np.ndarray, split: Split, **kwargs) -> Tally | None:
        return verification_tally(values[rows], ids["user_id"][rows], labels.codes[rows], labels.names, split, **kwargs)

    rows = list(
        _rows(tally(np.ones(len(ids), bool), session_split(ids)), labels, key_dependent, {"protocol": "sessions"})
    )
    if not curves:
        return [{"device_type": device_type, **r} for r in rows]
    aalto = is_aalto(ids)
    web = _drawn(ids, ~aalto, 0)
    if web.any():
        sub = ids[web].reset_index(drop=True)
        per_user = sub[session_split(sub).enrol].groupby("user_id", observed=True).size()
        for n, split in enrolment_curve(sub, range(1, int(per_user.median()) + 1)).items():
            common = {"protocol": "enrolment curve", "enrolment": n}
            curve = tally(web, split, max_impostor_templates=CURVE_IMPOSTOR_TEMPLATES)
            rows += _rows(curve, labels, key_dependent, common, only="web app", interval=False)
    drawn_aalto = _drawn(ids, aalto, 1)
    if drawn_aalto.any():
        sub = ids[drawn_aalto].reset_index(drop=True)
        for n in TYPENET_ENROLMENT:
            common = {"protocol": "TypeNet", "enrolment": n}
            # one impostor sample from each other user: no draw of templates (CURVE_USERS at most)
            split = typenet_split(sub, n)
            typenet = tally(drawn_aalto, split, max_impostor_templates=CURVE_USERS)
            rows += _rows(typenet, labels, key_dependent, common, only="Aalto")
    return [{"device_type": device_type, **r} for r in rows]


def keyboards(behavioral: pd.DataFrame) -> pd.Series:
    """user -> keyboard (KEYBOARDS) from the behavioral feature's user rows: `Unidentified` when
    more than half of the user's keystrokes have keycode 0 (docs/features.md §3), else `key names`."""
    users = behavioral[behavioral["grain"] == "user"]
    unidentified = users["unidentified_share"].to_numpy(np.float64) > UNIDENTIFIED_MAX_SHARE
    return pd.Series(np.where(unidentified, KEYBOARDS[1], KEYBOARDS[0]), index=users["user_id"].astype(str).to_numpy())
