"""The verification protocol's fitting, scores and their counting: TypeNet's protocol without a
network (docs/evaluation.md). Which samples enrol and probe: samples.py.

Samples are the rows of a feature table (one vector per task, session, ...), each with user_id and
device_type; everything is per device type (impostors type on the same kind of device).

- **Fitted on enrolment samples only** (`fit`), of the users with an enrolment and a probe sample:
  the columns compared (those with an enrolment value and a spread), each column's scale (its mean
  absolute deviation over the enrolment samples), and each user's template (the mean of its
  enrolment samples over their observed values). Nothing of a probe reaches a fitted value.
- **Score**: scaled Manhattan distance, the mean of |probe - template| / scale over the columns
  observed in both (a mean, not a sum: a missing value neither adds nor makes a pair look
  closer). A pair with no such column is *not comparable*: counted, never scored.
- **Genuine**: each probe against its own template; **impostor**: each impostor sample against
  every other user's template, or, beyond `MAX_IMPOSTOR_TEMPLATES` other users, a seeded random
  draw of that many templates per block of probes (a probe's own template, when drawn, is no
  impostor comparison): the work grows with the users, not their square.
- **Counted by pair class**: every user has a label (its source, or its phone's keyboard); a pair
  belongs to the class (probe's label, template's label), so that any stratum (a label alone,
  same-label pairs) is a sum of classes. Impostor scores are never held whole: per class they
  are counted at the cuts of the distinct genuine scores (metrics.py), at each user's own
  genuine scores (its per-subject EER) and on a grid of thresholds per template user (the
  bootstrap), block by block.
"""

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from keystroke_assets.evaluation.metrics import GRID_THRESHOLDS, cut_position
from keystroke_assets.evaluation.samples import Split

BLOCK_CELLS = 2**22  # (probe, template) pairs scored at once: a few float32 buffers of 16 MB
IMPOSTOR_SAMPLE = 10**6  # impostor scores kept for the histograms
# Other users' templates a probe meets at most (a random draw beyond): 10,000 users would otherwise
# make 10,000 x 10,000 x samples comparisons per feature. Each template still meets ~50 x probes
# per user impostor probes (~450 at the task grain), far more than its per-subject EER needs.
MAX_IMPOSTOR_TEMPLATES = 50


@dataclass
class Fitted:
    """What the enrolment samples give: the columns compared (indices), their scales, and the
    users' scaled templates (rows as `users`, NaN where a user has no enrolment value)."""

    users: np.ndarray  # user codes, sorted
    columns: np.ndarray
    scale: np.ndarray
    templates: np.ndarray


def fit(values: np.ndarray, user_codes: np.ndarray, enrol: np.ndarray, users: np.ndarray) -> Fitted:
    """Fitted of the enrolment samples of `users` (sorted codes)."""
    rows = np.flatnonzero(enrol & among(user_codes, users))
    rows = rows[np.argsort(user_codes[rows], kind="stable")]
    enrolled = values[rows]
    observed = np.flatnonzero((~np.isnan(enrolled)).any(axis=0))  # (another device type's columns are not)
    e = enrolled[:, observed].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column with one enrolment value: no spread
        spread = np.nanmean(np.abs(e - np.nanmean(e, axis=0)), axis=0)
    kept = np.isfinite(spread) & (spread > 0)
    use, spread = observed[kept], spread[kept]
    x = e[:, kept] / spread
    present = ~np.isnan(x)
    starts = np.searchsorted(user_codes[rows], users)
    sums = np.add.reduceat(np.where(present, x, 0), starts, axis=0) if len(rows) else np.zeros((0, len(use)))
    counts = np.add.reduceat(present, starts, axis=0) if len(rows) else np.zeros((0, len(use)))
    with np.errstate(invalid="ignore", divide="ignore"):
        templates = (sums / counts).astype(np.float32)
    return Fitted(users, use, spread, templates)


def among(codes: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """np.isin for small non-negative integer codes, by a lookup table."""
    table = np.zeros(max(int(codes.max(initial=-1)), int(chosen.max(initial=-1))) + 1, bool)
    table[chosen] = True
    return table[codes]


def _sum_of_distances(a: np.ndarray, b: np.ndarray, complete: np.ndarray, shape) -> np.ndarray:
    """Sum over columns of |a - b|, a missing value on either side adding nothing; column by
    column (one array operation per column over every pair, no (pairs, columns) cube in memory),
    in the same order and precision whatever the shape, so equal inputs score exactly equal."""
    total, diff = np.zeros(shape, np.float32), np.empty(shape, np.float32)
    for k in range(len(a)):
        np.subtract(a[k], b[k], out=diff)
        np.abs(diff, out=diff)
        if not complete[k]:
            np.fmax(diff, 0, out=diff)  # NaN (either side missing) -> 0
        total += diff
    return total


def _mean_over_shared(total: np.ndarray, shared: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(shared > 0, total / shared, np.float32(np.nan))


def paired_distances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scaled Manhattan distance, columns observed in both) of a[:, i] with b[:, i]: (columns, n)
    arrays of scaled values; NaN distance where no column is shared."""
    present_a, present_b = ~np.isnan(a), ~np.isnan(b)
    complete = present_a.all(axis=1) & present_b.all(axis=1)
    shared = (present_a[~complete] & present_b[~complete]).sum(axis=0).astype(np.float32) + complete.sum()
    return _mean_over_shared(_sum_of_distances(a, b, complete, a.shape[1:]), shared), shared


def cross_distances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """paired_distances of every column of a (columns, P) with every column of b (columns, T):
    (P, T) arrays."""
    present_a, present_b = ~np.isnan(a), ~np.isnan(b)
    complete = present_a.all(axis=1) & present_b.all(axis=1)
    # columns present in both, counted as a product of presence matrices
    shared = present_a[~complete].T.astype(np.float32) @ present_b[~complete].astype(np.float32) + complete.sum()
    total = _sum_of_distances(a[:, :, None], b[:, None, :], complete, (a.shape[1], b.shape[1]))
    return _mean_over_shared(total, shared), shared


@dataclass
class Tally:
    """What the error rates of any stratum need, of one device type's comparisons (module docstring).
    Users are the codes of `users` (those with an enrolment and a probe sample), each with a label
    (`label_names[user_label]`); a pair's class is probe label * L + template label."""

    users: pd.Index  # user ids, by user code
    user_label: np.ndarray
    label_names: list[str]
    columns: int
    genuine_user: np.ndarray  # per genuine comparison: its user
    genuine: np.ndarray  # its score, NaN when not comparable
    genuine_shared: np.ndarray  # columns observed in both
    genuine_position: np.ndarray  # its cut position among the thresholds (comparable ones)
    genuine_user_cut: np.ndarray  # its cut's index in user_cuts
    genuine_grid: np.ndarray  # the first grid cut at or after it
    thresholds: np.ndarray  # the distinct comparable genuine scores, sorted
    impostor_cuts: np.ndarray  # (classes, 2G + 1): impostors per cut position (the last: beyond)
    user_cuts: np.ndarray  # flat: every user's cut positions (its genuine scores'), then 2G (beyond)
    user_cut_start: np.ndarray  # where each user's cuts begin in user_cuts (len users + 1)
    impostor_user_cuts: np.ndarray  # (classes, len user_cuts): impostors per user cut, not cumulated
    grid_cuts: np.ndarray  # the cut positions the bootstrap counts at
    impostor_grid: np.ndarray  # (classes, users, len grid_cuts + 1): impostors against each template
    not_comparable: np.ndarray  # (classes,): impostor pairs without a shared column
    shared: np.ndarray  # (classes, columns + 1): scored impostor pairs by shared columns
    sample: np.ndarray  # impostor scores kept for the plots
    sample_class: np.ndarray
    comparisons: pd.DataFrame | None = None  # every comparison, when asked for

    @property
    def classes(self) -> int:
        return len(self.label_names) ** 2


def _user_cut_layout(users: int, genuine_user: np.ndarray, positions: np.ndarray, beyond: int):
    """(cuts, start) of every user's distinct genuine cut positions (both cuts of each: 2i, 2i + 1)
    followed by `beyond`, users one after the other."""
    pairs = np.unique(genuine_user.astype(np.int64) * (beyond + 1) + positions)
    user, position = pairs // (beyond + 1), pairs % (beyond + 1)
    cuts = np.column_stack([user, position - 1, user, position]).reshape(-1, 2)  # below, upto cut
    cuts = np.vstack([cuts, np.column_stack([np.arange(users), np.full(users, beyond)])])
    cuts = cuts[np.lexsort((cuts[:, 1], cuts[:, 0]))]
    return cuts[:, 1].copy(), np.searchsorted(cuts[:, 0], np.arange(users + 1))


def _grid(thresholds: np.ndarray, size: int) -> np.ndarray:
    """Cut positions of the bootstrap's thresholds: all of them up to `size`, else `size` of them
    evenly spread over their ranks (quantiles of the distinct genuine scores)."""
    picked = np.arange(len(thresholds))
    if len(thresholds) > size:
        picked = np.unique(np.round(np.linspace(0, len(thresholds) - 1, size)).astype(np.int64))
    return np.sort(np.r_[2 * picked, 2 * picked + 1])


def verification_tally(
    values: np.ndarray,
    user_ids: pd.Series,
    labels: np.ndarray,
    label_names: list[str],
    split: Split,
    keep_comparisons: bool = False,
    block_cells: int = BLOCK_CELLS,
    max_impostor_templates: int = MAX_IMPOSTOR_TEMPLATES,
    grid: int = GRID_THRESHOLDS,
    seed: int = 0,
) -> Tally | None:
    """The Tally of samples of ONE device type (values as from feature_matrix; per sample its user's
    label, a code into `label_names`), or None without a user with an enrolment and a probe sample. Two passes:
    the genuine scores (one per probe), then the impostor samples against the templates in blocks
    of at most `block_cells` pairs."""
    user_codes, user_names = pd.factorize(user_ids)
    users = np.intersect1d(user_codes[split.enrol], user_codes[split.probe])
    if not len(users):
        return None
    fitted = fit(values, user_codes, split.enrol, users)
    rank = np.searchsorted(users, user_codes)  # a user's row among the templates
    label_of_user = np.zeros(len(users), np.int64)
    ours = among(user_codes, users)
    label_of_user[rank[ours]] = labels[ours]
    n_labels = len(label_names)
    templates_t = np.ascontiguousarray(fitted.templates.T)  # a column's values over templates, contiguous

    def scaled(rows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((values[rows][:, fitted.columns] / fitted.scale).astype(np.float32).T)

    probe_rows = np.flatnonzero(split.probe & ours)
    own = rank[probe_rows]
    genuine, genuine_shared = paired_distances(scaled(probe_rows), np.ascontiguousarray(templates_t[:, own]))
    comparable = ~np.isnan(genuine)
    thresholds = np.unique(genuine[comparable])
    beyond = 2 * len(thresholds)
    genuine_position = np.full(len(genuine), beyond)
    genuine_position[comparable] = cut_position(thresholds, genuine[comparable])
    user_cuts, user_start = _user_cut_layout(len(users), own[comparable], genuine_position[comparable], beyond)
    user_keys = np.repeat(np.arange(len(users)), np.diff(user_start)) * (beyond + 1) + user_cuts
    grid_cuts = _grid(thresholds, grid)
    to_grid = np.searchsorted(grid_cuts, np.arange(beyond + 1))  # cut position -> first grid cut at or after it
    classes = n_labels**2
    impostor_cuts = np.zeros((classes, beyond + 1), np.int64)
    impostor_user_cuts = np.zeros((classes, len(user_cuts)), np.int64)
    impostor_grid = np.zeros((classes, len(users), len(grid_cuts) + 1), np.int64)
    not_comparable = np.zeros(classes, np.int64)
    shared_hist = np.zeros((classes, len(fitted.columns) + 1), np.int64)

    impostor_rows = np.flatnonzero(split.impostor & ours)
    impostor_probes, impostor_own = scaled(impostor_rows), rank[impostor_rows]
    drawn = len(users) - 1 > max_impostor_templates
    meets = min(len(users), max_impostor_templates + 1)
    expected = len(impostor_rows) * (meets - 1)
    step = max(1, block_cells // meets)
    rng, draws = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    sample, sample_class, kept = [], [], []
    for start in range(0, len(impostor_rows), step):
        block_own = impostor_own[start : start + step]
        # a draw of templates per block (its own users' only by chance: the genuine scores come
        # from the first pass), sorted so that blocks read the templates in order
        met = (
            np.sort(draws.choice(len(users), max_impostor_templates, replace=False)) if drawn else np.arange(len(users))
        )
        block = np.ascontiguousarray(impostor_probes[:, start : start + step])
        scores, shared = cross_distances(block, np.ascontiguousarray(templates_t[:, met]) if drawn else templates_t)
        impostor = block_own[:, None] != met[None, :]
        pair_class = label_of_user[block_own][:, None] * n_labels + label_of_user[met][None, :]
        missing = np.isnan(scores)
        not_comparable += np.bincount(pair_class[impostor & missing], minlength=classes)
        cells = np.flatnonzero(impostor & ~missing)
        score, cls = scores.ravel()[cells], pair_class.ravel()[cells]
        template = met[cells % len(met)]
        position = cut_position(thresholds, score)
        impostor_cuts += np.bincount(cls * (beyond + 1) + position, minlength=classes * (beyond + 1)).reshape(
            classes, -1
        )
        at = np.searchsorted(user_keys, template * (beyond + 1) + position)
        impostor_user_cuts += np.bincount(cls * len(user_cuts) + at, minlength=impostor_user_cuts.size).reshape(
            classes, -1
        )
        grid_key = (cls * len(users) + template) * (len(grid_cuts) + 1) + to_grid[position]
        impostor_grid += np.bincount(grid_key, minlength=impostor_grid.size).reshape(impostor_grid.shape)
        shared_hist += np.bincount(
            cls * shared_hist.shape[1] + shared.ravel()[cells].astype(np.int64), minlength=shared_hist.size
        ).reshape(classes, -1)
        keep = rng.random(len(score)) < IMPOSTOR_SAMPLE / max(expected, 1)
        sample.append(score[keep])
        sample_class.append(cls[keep])
        if keep_comparisons:
            p, t = np.nonzero(np.broadcast_to(impostor, scores.shape))
            kept.append(
                pd.DataFrame(
                    {
                        "probe": impostor_rows[start + p],
                        "template_user": user_names[users[met[t]]],
                        "genuine": False,
                        "score": scores[p, t],
                        "shared": shared[p, t].astype(np.int64),
                    }
                )
            )
    comparisons = None
    if keep_comparisons:
        genuine_made = pd.DataFrame(
            {
                "probe": probe_rows,
                "template_user": user_names[users[own]],
                "genuine": True,
                "score": genuine,
                "shared": genuine_shared.astype(np.int64),
            }
        )
        comparisons = pd.concat([genuine_made, *kept], ignore_index=True)
    return Tally(
        users=pd.Index(user_names[users]),
        user_label=label_of_user,
        label_names=list(label_names),
        columns=len(fitted.columns),
        genuine_user=own,
        genuine=genuine,
        genuine_shared=genuine_shared.astype(np.int64),
        genuine_position=genuine_position,
        genuine_user_cut=np.searchsorted(user_keys, own * (beyond + 1) + genuine_position),
        genuine_grid=to_grid[genuine_position],
        thresholds=thresholds,
        impostor_cuts=impostor_cuts,
        user_cuts=user_cuts,
        user_cut_start=user_start,
        impostor_user_cuts=impostor_user_cuts,
        grid_cuts=grid_cuts,
        impostor_grid=impostor_grid,
        not_comparable=not_comparable,
        shared=shared_hist,
        sample=np.concatenate(sample) if sample else np.zeros(0, np.float32),
        sample_class=np.concatenate(sample_class) if sample_class else np.zeros(0, np.int64),
        comparisons=comparisons,
    )
