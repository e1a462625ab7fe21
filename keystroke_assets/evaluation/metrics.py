"""Error rates from counted scores: DET points, EER, FNMR at a fixed FMR, ROC AUC, per-subject EERs
and a bootstrap interval over users. Pure functions of arrays (docs/evaluation.md "Metrics").

A score is a distance: a comparison is accepted when its score <= the threshold t, so
FMR(t) = impostor scores <= t / impostors and FNMR(t) = genuine scores > t / genuines. Impostor
scores are never held whole: what the rates need of them is counted at *cuts*. Thresholds are
sorted distinct scores; threshold i has two cuts, 2i ("below": scores < t_i) and 2i + 1 ("up to":
scores <= t_i). A score x gets the position `cut_position(thresholds, x)`: 2i + 1 when x equals
t_i, else 2i for the first t_i > x (2 len(thresholds) beyond them all); it counts at every cut
>= its position. The DET curve is drawn exactly through the points at both cuts of every distinct
genuine score (FNMR only changes there; between them FMR alone moves, a straight line), plus
(FMR 0, FNMR 1) at -inf and (1, 0) at +inf. Equal genuine and impostor scores are accepted
together: identical distributions give EER 0.5.
"""

import functools

import numpy as np

FMR_TARGETS = (0.1, 0.01, 0.001)
# FNMR at FMR a is estimable from at least 3 / a impostor comparisons: with fewer, a threshold with
# FMR <= a accepts (nearly) no impostor, and the FNMR read there says nothing about that FMR.
IMPOSTORS_PER_FMR = 3
BOOTSTRAP_REPLICATES = 1000
BOOTSTRAP_SEED = 23
GRID_THRESHOLDS = 64  # thresholds the bootstrap counts at, beyond which they are genuine quantiles


def cut_position(thresholds: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each score's cut position (module docstring) among sorted distinct `thresholds`; NaN lands
    beyond them all (numpy sorts NaN last)."""
    at = np.searchsorted(thresholds, scores, side="left")
    if not len(thresholds):
        return 2 * at
    equal = thresholds[np.minimum(at, len(thresholds) - 1)] == scores
    return 2 * at + equal


def counts_at_cuts(positions: np.ndarray, n_cuts: int) -> np.ndarray:
    """Scores at or below each of n_cuts cuts, from their positions (cumulated: a score counts at
    every cut >= its position; positions >= n_cuts count nowhere)."""
    counted = np.bincount(positions[positions < n_cuts], minlength=n_cuts)
    return np.cumsum(counted[:n_cuts])


def det_from_cuts(genuine_cuts: np.ndarray, impostor_cuts: np.ndarray, genuines, impostors) -> tuple:
    """(FMR, FNMR) DET points from counts at cuts (rows of 2-D arrays are separate curves: users,
    replicates): genuine and impostor scores <= each cut, and their totals (scalars or one per row).
    Adds the points at -inf and +inf."""
    return pooled_det([(genuine_cuts, impostor_cuts, genuines, impostors)])


def pooled_det(parts: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """det_from_cuts of parts pooled (each part as det_from_cuts' arguments, e.g. one per source):
    FNMR over every part's genuine comparisons, FMR the mean of the parts' FMRs weighted by their
    shares of the genuine comparisons. With identical genuine and impostor distributions within
    each part the pooled curve then crosses at 0.5, whatever the parts' sizes and score scales (an
    unweighted pool of parts whose scores differ in scale, and whose genuine and impostor counts
    differ in proportion, does not)."""

    def column(totals) -> np.ndarray:  # scalars or one per row, as a column
        return np.reshape(np.asarray(totals, np.float64), (-1, 1))

    n_g = np.maximum(sum(column(n) for _, _, n, _ in parts), 1)
    fnmr = 1 - sum(np.atleast_2d(g).astype(np.float64) for g, _, _, _ in parts) / n_g
    fmr = sum(column(n) / n_g * np.atleast_2d(i) / np.maximum(column(m), 1) for _, i, n, m in parts)
    fmr = np.broadcast_to(fmr, fnmr.shape)
    ones, zeros = np.ones((len(fnmr), 1)), np.zeros((len(fnmr), 1))
    return np.hstack([zeros, fmr, ones]), np.hstack([ones, fnmr, zeros])


def effective_impostors(genuines: np.ndarray, impostors: np.ndarray) -> float:
    """The impostor comparisons a pooled FMR (pooled_det) is as precise as: 1 / sum(share^2 / n)
    over the parts (their genuine shares, their impostor counts); the count itself for one part."""
    shares = np.asarray(genuines, np.float64) / max(float(np.sum(genuines)), 1)
    return float(1 / np.sum(shares**2 / np.maximum(impostors, 1)))


def equal_error_rates(fmr: np.ndarray, fnmr: np.ndarray) -> np.ndarray:
    """Per row of DET points (FMR rising, FNMR falling, ending at (1, 0)): where the points, joined
    by straight lines, cross FMR = FNMR."""
    fmr, fnmr = np.atleast_2d(fmr), np.atleast_2d(fnmr)
    gap = fmr - fnmr  # from -1 at -inf up to +1 at +inf, never decreasing
    k = np.argmax(gap >= 0, axis=1)
    rows, before = np.arange(len(gap)), np.maximum(k - 1, 0)
    g0, g1 = gap[rows, before], gap[rows, k]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(k == 0, 0.0, -g0 / np.where(k == 0, 1, g1 - g0))
    return fmr[rows, before] + share * (fmr[rows, k] - fmr[rows, before])


def fnmr_at_fmr(fmr: np.ndarray, fnmr: np.ndarray, target: float, impostors: int) -> float:
    """The lowest FNMR of a threshold with FMR <= target (the -inf threshold always qualifies), or
    NaN, not estimable, from fewer than IMPOSTORS_PER_FMR / target impostor comparisons."""
    if impostors < IMPOSTORS_PER_FMR / target:
        return float("nan")
    return float(fnmr[fmr <= target + 1e-12].min())


def roc_auc(genuine_positions: np.ndarray, parts: list[tuple[np.ndarray, int, int]]) -> float:
    """Area under the ROC curve: the probability that an impostor scores farther than a genuine
    comparison, ties counted half (Mann-Whitney). `genuine_positions`: each genuine score's cut
    position (an upto cut: every genuine score is a threshold); `parts`: per part (pooled_det),
    its impostors at or below every cut, its impostor total and its genuine count (its weight)."""
    n_g = sum(n for _, _, n in parts)
    if not len(genuine_positions) or not n_g:
        return float("nan")
    farther = 0.0
    for cuts, impostors, genuines in parts:
        upto, below = cuts[genuine_positions], cuts[genuine_positions - 1]
        farther += genuines / n_g * np.mean((impostors - upto) + 0.5 * (upto - below)) / max(impostors, 1)
    return float(farther)


def bootstrap_interval(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    eer: float,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
    window: int = 16,
) -> tuple[float, float]:
    """The 95 % percentile interval of the EER over users drawn with replacement. Per part
    (pooled_det), a row per user: its genuine and impostor comparisons (its probes against its
    template, other users' probes against it) at or below each cut, and their totals; a replicate
    draws from every part's users at once and counts a drawn user's comparisons as many times as
    it was drawn. The cuts may be a grid of the thresholds: the interval is then moved by `eer`
    (the exact EER) minus the grid's EER of every user once, so that what the grid misses of the
    curve does not move the interval away from its estimate. Replicates are first read on the
    `window` cuts either side of the whole sample's crossing; one that does not cross there is read
    on every cut (the same EER, at more cost)."""
    sizes = [len(part[2]) for part in parts]
    users = sum(sizes)
    if users < 2:
        return float("nan"), float("nan")
    weights = np.split(_draws(replicates, users, seed), np.cumsum(sizes)[:-1], axis=1)
    fmr, fnmr = pooled_det([(g.sum(axis=0), i.sum(axis=0), n.sum(), m.sum()) for g, i, n, m in parts])
    whole = float(equal_error_rates(fmr, fnmr)[0])
    crossing = int(np.argmax(fmr[0] - fnmr[0] >= 0)) - 1  # the cut at or after the crossing
    width = parts[0][0].shape[1]
    columns = slice(max(crossing - window, 0), min(crossing + window + 1, width))
    eers, inside = _replicate_eers(weights, parts, columns)
    if (columns.start, columns.stop) != (0, width) and not inside.all():
        eers[~inside], _ = _replicate_eers([w[~inside] for w in weights], parts, slice(0, width))
    low, high = np.quantile(eers, [0.025, 0.975]) + (eer - whole)
    return float(np.clip(low, 0, 1)), float(np.clip(high, 0, 1))


@functools.lru_cache(maxsize=8)
def _draws(replicates: int, users: int, seed: int) -> np.ndarray:
    """How many times each of `users` is drawn in each replicate (float32, read-only): the same
    for every row with as many users (one seed), so made once."""
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, users, (replicates, users)) + users * np.arange(replicates)[:, None]
    weights = np.bincount(drawn.ravel(), minlength=replicates * users).reshape(replicates, users).astype(np.float32)
    weights.flags.writeable = False
    return weights


def _replicate_eers(weights: list[np.ndarray], parts: list, columns: slice) -> tuple[np.ndarray, np.ndarray]:
    """(EER of each replicate on these cuts, whether its curve crosses between the first and last
    of them). One float32 product per part: exact for counts up to 2**24 per replicate and cut,
    ~1e-7 relative beyond."""
    weighted = []
    for w, (g, i, n, m) in zip(weights, parts):
        width = g[:, columns].shape[1]
        counts = np.hstack([g[:, columns], i[:, columns], n[:, None], m[:, None]]).astype(np.float32)
        product = w @ counts
        weighted.append((product[:, :width], product[:, width:-2], product[:, -2], product[:, -1]))
    fmr, fnmr = pooled_det(weighted)
    gap = fmr - fnmr
    return equal_error_rates(fmr, fnmr), (gap[:, 1] < 0) & (gap[:, -2] >= 0)


def per_subject_eers(
    genuine_cuts: np.ndarray, impostor_cuts: np.ndarray, genuines: np.ndarray, impostors: np.ndarray
) -> np.ndarray:
    """Each user's EER from its own DET points (rows as in bootstrap_interval, each at cuts of its
    own genuine scores, padded past them with the user's totals); NaN for a user without genuine or
    impostor comparisons."""
    eers = equal_error_rates(*det_from_cuts(genuine_cuts, impostor_cuts, genuines, impostors))
    return np.where((genuines > 0) & (impostors > 0), eers, np.nan)


def chance_band(users: int, z: float) -> float:
    """Half-width of the band around 0.5 an EER stays in, at z standard errors, when genuine and
    impostor scores are exchangeable (no identity): 0.25 * sqrt(1/n_g + 1/n_i), the standard error
    of the crossing of two empirical distribution functions at their median, with the users as the
    independent units on either side (a user's comparisons share its template), n_g = n_i = users."""
    return z * 0.25 * np.sqrt(2.0 / max(users, 1))
