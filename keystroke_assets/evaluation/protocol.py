"""The verification protocol, scores and error rates (TypeNet's protocol without a network).

Samples are the rows of a feature table (one vector per task, session, platform, ...), each with
user_id and device_type. Everything is computed per device type: impostors type on the same kind
of device.

- **Enrolment and probe** never share a session. `session` split: a user's first sessions by id
  enrol, the rest probe: web app session 1 enrols, session 2 probes; Aalto (no platform) the first
  5 sections enrol. `platform` split (a grain that pools a user's sessions): leave one platform out,
  three folds (enrol on two platforms, probe the third), comparisons of the folds pooled; Aalto
  rows have no platform and take no part. A user needs an enrolment and a probe sample in a fold.
- **Template**: the mean of the user's enrolment samples (column by column, over present values).
- **Scale**: each column's mean absolute deviation from its mean over every enrolment sample of
  the device type (of the fold; users with enrolment and probe samples). Columns null on every row
  of the device type (another device type's columns), with no enrolment value, or constant over
  the enrolment samples (deviation 0: nothing to tell apart, and no scale) are dropped.
- **Score**: scaled Manhattan distance, the mean over the columns present in both the probe and
  the template of |probe - template| / scale (a mean, not a sum, so that a missing value does not
  make a pair look closer). A comparison with no column in common has no score and is counted.
- **Genuine**: each probe against its own user's template; **impostor**: each probe against every
  other user's template of the same device type, or, where a fold has more than
  `MAX_IMPOSTOR_TEMPLATES` other users, against a seeded random draw of that many templates (a new
  draw per block of probes; a probe's own template, when drawn, is no impostor comparison): every
  probe still meets hundreds of impostors, and the work grows with the users, not their square.
- **Rates** at a threshold t (accept when score <= t): FMR = impostor scores <= t / impostors,
  FNMR = genuine scores > t / genuines, at every distinct score. **EER**: where the DET curve
  through these points, joined by straight lines, crosses FMR = FNMR. Ties rule: genuine and
  impostor scores that are equal are accepted together, so the curve joins those points by a
  diagonal, and equal distributions give EER 0.5. **FNMR at FMR a**: the lowest FNMR of a
  threshold whose FMR is at most a (no interpolation: a threshold one could set).
- **Cost**: up to `MAX_IMPOSTOR_TEMPLATES` users every probe meets every template, beyond it a draw
  of them; it runs column by column over blocks of (probe, template) pairs, and the impostor
  scores are counted against the genuine ones block by block, never held whole.
"""

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from keystroke_assets.lib.columns import GRAIN_IDS

SESSION_ENROLMENT = {"web_app": 1, "aalto": 5}  # sessions (Aalto: sections) that enrol, per source
PLATFORMS = (1, 2, 3)
ID_COLUMNS = [*GRAIN_IDS, "length"]  # never a feature
FMR_TARGETS = (0.01, 0.001)
BLOCK_CELLS = 2**22  # (probe, template) pairs scored at once: a few float32 buffers of 16 MB
IMPOSTOR_SAMPLE = 10**6  # impostor scores kept for the histograms
# Other users' templates a probe meets at most (a random draw beyond): 10,000 users would otherwise
# make 10,000 x 10,000 x samples comparisons per feature.
MAX_IMPOSTOR_TEMPLATES = 250


def feature_matrix(samples: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """(ids, values): the id columns present, and every other numeric (not boolean) column as a
    float32 matrix, null as NaN."""
    ids = [c for c in samples.columns if c in ID_COLUMNS]
    numeric = [
        c
        for c in samples.columns
        if c not in ID_COLUMNS
        and pd.api.types.is_numeric_dtype(samples[c])
        and not pd.api.types.is_bool_dtype(samples[c])
    ]
    values = (
        samples[numeric].to_numpy(dtype=np.float32, na_value=np.nan)
        if numeric
        else np.zeros((len(samples), 0), np.float32)
    )
    return samples[ids].reset_index(drop=True), values


def pooled_steps(tasks: pd.DataFrame, steps: np.ndarray, channels: list[str]) -> pd.DataFrame:
    """A sequence table's baseline vectors: per task, each channel's mean and standard deviation
    (ddof = 1; missing for one step) over the task's first `length` steps, the recorded ones.
    `steps` is the (n, M, channels) array of the table."""
    recorded = np.arange(steps.shape[1])[None, :] < tasks["length"].to_numpy()[:, None]
    n = recorded.sum(axis=1)[:, None].astype(np.float64)
    x = np.where(recorded[:, :, None], steps, 0.0).astype(np.float64)
    mean = x.sum(axis=1) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (np.where(recorded[:, :, None], (steps - mean[:, None, :]) ** 2, 0.0)).sum(axis=1) / (n - 1)
    out = tasks[[c for c in tasks.columns if c in ID_COLUMNS]].reset_index(drop=True)
    for i, channel in enumerate(channels):
        out[f"{channel}_mean"] = mean[:, i]
        out[f"{channel}_std"] = np.where(n[:, 0] >= 2, np.sqrt(var[:, i]), np.nan)
    return out


def folds(ids: pd.DataFrame, split: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, enrol, probe) boolean masks over the samples, per fold of the split."""
    platform = ids["platform_id"].to_numpy(dtype=np.float64, na_value=np.nan) if "platform_id" in ids else None
    if split == "platform":
        if platform is None:
            raise ValueError("the platform split needs a platform_id column")
        return [(f"platform {p} probes", ~np.isnan(platform) & (platform != p), platform == p) for p in PLATFORMS]
    if "session_id" not in ids:
        raise ValueError("the session split needs a session_id column")
    rank = ids.groupby("user_id", observed=True)["session_id"].rank(method="dense").to_numpy()
    aalto = np.isnan(platform) if platform is not None else np.zeros(len(ids), bool)
    enrol = rank <= np.where(aalto, SESSION_ENROLMENT["aalto"], SESSION_ENROLMENT["web_app"])
    return [("sessions", enrol, ~enrol)]


@dataclass
class Scores:
    """The scores of one device type and what was compared. Impostor scores (all but one comparison
    of every probe) are not kept: what the error rates need of them is counted block by block,
    the impostors below and up to each distinct genuine score; a sample is kept for the plots."""

    genuine: np.ndarray  # sorted
    thresholds: np.ndarray  # the distinct genuine scores
    impostor_below: np.ndarray  # impostor scores < each threshold
    impostor_upto: np.ndarray  # impostor scores <= each threshold
    impostors: int
    impostor_sample: np.ndarray  # at most IMPOSTOR_SAMPLE of them, drawn evenly at random
    users: int  # users with an enrolment and a probe sample (in some fold)
    columns: int  # columns compared (the most of any fold)
    without_score: int  # comparisons with no column in common
    # when asked for: every comparison (fold, probe sample, template user, genuine, score) and
    # the enrolment samples of every template (fold, sample, user); samples by position
    comparisons: pd.DataFrame | None = None
    enrolment: pd.DataFrame | None = None


def scaled_manhattan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean |a - b| over the columns present in both (NaN where none is) of scaled values given
    column-major, (columns, ...) arrays whose other axes broadcast: (d, n) with (d, n) pairs them
    up, (d, n, 1) with (d, 1, m) compares every a with every b. Summed column by column (one array
    operation per column over every pair: ~15x faster than reducing a (pairs, columns) cube over
    its short last axis, and no cube in memory), in the same order and precision whichever the
    shape, so equal inputs score exactly equal."""
    d = len(a)
    present_a, present_b = ~np.isnan(a), ~np.isnan(b)
    complete = present_a.all(axis=tuple(range(1, a.ndim))) & present_b.all(axis=tuple(range(1, b.ndim)))
    shape = np.broadcast_shapes(a.shape[1:], b.shape[1:])
    total, diff = np.zeros(shape, np.float32), np.empty(shape, np.float32)
    shared = np.full(shape, np.float32(complete.sum()))
    for k in range(d):
        np.subtract(a[k], b[k], out=diff)
        np.abs(diff, out=diff)
        if not complete[k]:
            both = present_a[k] & present_b[k]
            diff[~both] = 0  # a difference counts where both are present
            shared += both
        total += diff
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(shared > 0, total / shared, np.float32(np.nan))


def _fold(values: np.ndarray, user_codes: np.ndarray, enrol: np.ndarray, probe: np.ndarray):
    """(users with both, enrol, probe, scaled probes, templates) of one fold, or None without users."""
    with_both = np.intersect1d(user_codes[enrol], user_codes[probe])
    if len(with_both) == 0:
        return None
    enrol, probe = enrol & np.isin(user_codes, with_both), probe & np.isin(user_codes, with_both)
    e = values[enrol].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column with no enrolment value: NaN, dropped below
        spread = np.nanmean(np.abs(e - np.nanmean(e, axis=0)), axis=0)
    use = np.isfinite(spread) & (spread > 0)
    scale = spread[use]
    # templates: the mean of each user's enrolment samples, over present values
    x = e[:, use] / scale
    present = ~np.isnan(x)
    sums = np.zeros((len(with_both), x.shape[1]))
    counts = np.zeros_like(sums)
    rank = np.searchsorted(with_both, user_codes[enrol])
    np.add.at(sums, rank, np.where(present, x, 0))
    np.add.at(counts, rank, present)
    with np.errstate(invalid="ignore", divide="ignore"):
        templates = (sums / counts).astype(np.float32)
    return with_both, enrol, probe, (values[probe][:, use] / scale).astype(np.float32), templates


def verification_scores(
    ids: pd.DataFrame,
    values: np.ndarray,
    split: str,
    keep_comparisons: bool = False,
    block_cells: int = BLOCK_CELLS,
    max_impostor_templates: int = MAX_IMPOSTOR_TEMPLATES,
) -> Scores:
    """The Scores of samples of ONE device type (ids with user_id and the split's ids, values as
    from feature_matrix), by the protocol of this module's docstring. Two passes: the genuine
    scores (one per probe), then every probe against every template (or a draw of at most
    `max_impostor_templates` other users' templates per block) in blocks of at most `block_cells`
    pairs, counting the impostor scores against the genuine ones."""
    values = values[:, ~np.isnan(values).all(axis=0)] if len(values) else values
    user_codes, user_names = pd.factorize(ids["user_id"])
    prepared = []
    for name, enrol, probe in folds(ids, split):
        if fold := _fold(values, user_codes, enrol, probe):
            with_both, _, probe, probes, templates = fold
            own = np.searchsorted(with_both, user_codes[probe])  # each probe's own template
            prepared.append((name, fold, own, scaled_manhattan(probes.T, np.ascontiguousarray(templates[own].T))))
    genuine = np.concatenate([g for *_, g in prepared]) if prepared else np.zeros(0, np.float32)
    without = int(np.isnan(genuine).sum())
    genuine = np.sort(genuine[~np.isnan(genuine)])
    thresholds = np.unique(genuine)
    below = np.zeros(len(thresholds) + 1, np.int64)
    upto = np.zeros_like(below)
    # for the sample's rate (a drawn block meets a probe's own template by chance: a few fewer)
    impostors = sum(len(f[3]) * min(len(f[0]) - 1, max_impostor_templates) for _, f, *_ in prepared)
    rng, draws = np.random.default_rng(0), np.random.default_rng(1)
    sample, kept, enrolled = [], [], []
    for name, (with_both, enrol, probe, probes, templates), own_template, _ in prepared:
        probe_rows = np.flatnonzero(probe)
        columns_t = np.ascontiguousarray(templates.T)  # a column's values over templates, contiguous
        drawn = len(with_both) - 1 > max_impostor_templates
        step = max(1, block_cells // min(len(with_both), max_impostor_templates + 1))
        for start in range(0, len(probes), step):
            block_own = own_template[start : start + step]
            # a draw of templates for the block (its own users' only by chance: the genuine scores
            # are computed above), sorted so that blocks read the templates in order
            met = (
                np.sort(draws.choice(len(with_both), max_impostor_templates, replace=False))
                if drawn
                else np.arange(len(with_both))
            )
            block = np.ascontiguousarray(probes[start : start + step].T)[:, :, None]
            met_t = np.ascontiguousarray(columns_t[:, met]) if drawn else columns_t
            scores = scaled_manhattan(block, met_t[:, None, :])
            own = block_own[:, None] == met[None, :]
            scored = ~np.isnan(scores)
            others = scores[~own & scored]
            without += int((~own & ~scored).sum())
            # a score x is <= every threshold from the first one >= x on (searchsorted left), and
            # < every threshold from the first one > x on (left, one further where x is a threshold)
            at = np.searchsorted(thresholds, others, side="left")
            upto += np.bincount(at, minlength=len(below))
            equal = thresholds[np.minimum(at, len(thresholds) - 1)] == others if len(thresholds) else False
            below += np.bincount(at + equal, minlength=len(below))
            sample.append(others[rng.random(len(others)) < IMPOSTOR_SAMPLE / max(impostors, 1)])
            if keep_comparisons:
                p, t = np.nonzero(scored)
                kept.append(
                    pd.DataFrame(
                        {
                            "fold": name,
                            "probe": probe_rows[start + p],
                            "template_user": user_names[with_both[met[t]]],
                            "genuine": own[p, t],
                            "score": scores[p, t],
                        }
                    )
                )
        if keep_comparisons:
            enrol_rows = np.flatnonzero(enrol)
            enrolled.append(
                pd.DataFrame({"fold": name, "sample": enrol_rows, "user": user_names[user_codes[enrol_rows]]})
            )
    return Scores(
        genuine=genuine,
        thresholds=thresholds,
        impostor_below=np.cumsum(below)[:-1],
        impostor_upto=np.cumsum(upto)[:-1],
        impostors=int(np.sum(upto)),
        impostor_sample=np.sort(np.concatenate(sample)) if sample else np.zeros(0, np.float32),
        users=len(set().union(*(f[0].tolist() for _, f, *_ in prepared))),
        columns=max((f[3].shape[1] for _, f, *_ in prepared), default=0),
        without_score=without,
        comparisons=pd.concat(kept, ignore_index=True) if kept else None,
        enrolment=pd.concat(enrolled, ignore_index=True) if enrolled else None,
    )


def det_points(scores: Scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FMR, FNMR) of the DET curve, accepting score <= threshold. FNMR changes only
    at a genuine score, so the curve is drawn exactly by the points at -inf, just below and at
    each distinct genuine score, and at +inf: between them FMR alone moves (a straight line)."""
    at, genuine = scores.thresholds, scores.genuine
    genuine_upto = np.searchsorted(genuine, at, side="right")
    genuine_below = np.r_[0, genuine_upto[:-1]]
    n_g, n_i = max(len(genuine), 1), max(scores.impostors, 1)
    thresholds = np.r_[-np.inf, np.column_stack([np.nextafter(at, -np.inf), at]).ravel(), np.inf]
    fmr = np.r_[0.0, np.column_stack([scores.impostor_below, scores.impostor_upto]).ravel() / n_i, 1.0]
    fnmr = np.r_[1.0, 1.0 - np.column_stack([genuine_below, genuine_upto]).ravel() / n_g, 0.0]
    return thresholds, fmr, fnmr


def equal_error_rate(fmr: np.ndarray, fnmr: np.ndarray) -> float:
    """Where the DET points (of det_points), joined by straight lines, cross FMR = FNMR."""
    gap = fmr - fnmr  # from -1 at -inf up to +1 at the largest score, never decreasing
    k = int(np.argmax(gap >= 0))
    if k == 0:
        return float(fmr[0])
    share = -gap[k - 1] / (gap[k] - gap[k - 1])
    return float(fmr[k - 1] + share * (fmr[k] - fmr[k - 1]))


def fnmr_at_fmr(fmr: np.ndarray, fnmr: np.ndarray, target: float) -> float:
    """The lowest FNMR of a threshold with FMR <= target (the -inf threshold always qualifies)."""
    return float(fnmr[fmr <= target + 1e-12].min())


def evaluate_device(ids: pd.DataFrame, values: np.ndarray, split: str, device_type: str) -> tuple[dict, Scores | None]:
    """The results row of one device type, and its scores (None when not evaluable)."""
    mine = (ids["device_type"].astype(str) == device_type).to_numpy()
    scores = verification_scores(ids[mine], values[mine], split)
    row = {
        "device_type": device_type,
        "users": scores.users,
        "columns": scores.columns,
        "genuine": len(scores.genuine),
        "impostor": scores.impostors,
        "without_score": scores.without_score,
    }
    nan = {"eer": np.nan, **{_fnmr_name(a): np.nan for a in FMR_TARGETS}}
    if scores.users < 2:
        return {**row, "status": f"not evaluable: {scores.users} user(s) with enrolment and probe samples", **nan}, None
    if not len(scores.genuine) or not scores.impostors:
        return {**row, "status": "not evaluable: no comparison has a column in common", **nan}, None
    _, fmr, fnmr = det_points(scores)
    return {
        **row,
        "status": "evaluated",
        "eer": equal_error_rate(fmr, fnmr),
        **{_fnmr_name(a): fnmr_at_fmr(fmr, fnmr, a) for a in FMR_TARGETS},
    }, scores


def _fnmr_name(target: float) -> str:
    return f"fnmr_at_fmr_{target * 100:g}pct"


RESULT_DESCRIPTIONS = {
    "device_type": "desktop or mobile",
    "status": "'evaluated', or why not (fewer than two users with enrolment and probe samples)",
    "users": "users with enrolment and probe samples",
    "columns": "feature columns compared (after dropping all-null and constant ones; the most of any fold)",
    "genuine": "genuine comparisons (probe vs own template)",
    "impostor": "impostor comparisons (probe vs another user's template)",
    "without_score": "comparisons without a column present in both (no score)",
    "eer": "equal error rate (DET points joined by straight lines; ties accepted together)",
    **{_fnmr_name(a): f"lowest FNMR of a threshold with FMR <= {a:.1%}" for a in FMR_TARGETS},
}
RESULT_COLUMNS = list(RESULT_DESCRIPTIONS)
