"""Which rows of a feature table are samples, as vectors, and which of them enrol and probe
(docs/evaluation.md "The protocol").

- **Enrolment and probe never share a session.** `session_split`: a user's first sessions by id
  enrol, the later ones probe (web app: session 1 enrols, session 2 probes; Aalto, no platform:
  the first 5 sections). `enrolment_curve`: only each user's first n enrolment samples enrol.
  `typenet_split`: TypeNet's Aalto protocol, the first n sections enrol, the last 5 probe, and each
  user's first of those is its one impostor sample against every other user.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from keystroke_assets.lib.columns import GRAIN_IDS

SESSION_ENROLMENT = {"web_app": 1, "aalto": 5}  # sessions (Aalto: sections) that enrol, per source
TYPENET_PROBES = 5  # TypeNet's Aalto protocol: each user's last 5 sections probe
ID_COLUMNS = [*GRAIN_IDS, "length"]  # never a feature
ORDER = ["session_id", "task_id", "video_id", "platform_id"]  # a user's samples in typing order


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


def pooled_steps(
    tasks: pd.DataFrame, steps: np.ndarray, channels: list[str], absent_when_zero: tuple[str, ...] = ()
) -> pd.DataFrame:
    """A sequence table's baseline vectors: per task, each channel's mean and standard deviation
    (ddof = 1; missing for one step) over the task's first `length` steps, the recorded ones.
    `steps` is the (n, M, channels) array of the table. A channel of `absent_when_zero` whose
    recorded steps are all 0 carries nothing (a phone's keycodes when it names no key): missing."""
    recorded = np.arange(steps.shape[1])[None, :] < tasks["length"].to_numpy()[:, None]
    n = recorded.sum(axis=1)[:, None].astype(np.float64)
    x = np.where(recorded[:, :, None], steps, 0.0).astype(np.float64)
    mean = x.sum(axis=1) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (np.where(recorded[:, :, None], (steps - mean[:, None, :]) ** 2, 0.0)).sum(axis=1) / (n - 1)
    out = tasks[[c for c in tasks.columns if c in ID_COLUMNS]].reset_index(drop=True)
    for i, channel in enumerate(channels):
        absent = (x[:, :, i] == 0).all(axis=1) if channel in absent_when_zero else np.zeros(len(x), bool)
        out[f"{channel}_mean"] = np.where(absent, np.nan, mean[:, i])
        out[f"{channel}_std"] = np.where((n[:, 0] >= 2) & ~absent, np.sqrt(var[:, i]), np.nan)
    return out


@dataclass(frozen=True)
class Split:
    """Boolean masks over the samples: enrolment, genuine probes, and impostor samples (the probes
    that meet other users' templates)."""

    enrol: np.ndarray
    probe: np.ndarray
    impostor: np.ndarray


def is_aalto(ids: pd.DataFrame) -> np.ndarray:
    """Aalto samples: no platform (docs/data.md §1)."""
    if "platform_id" not in ids:
        return np.zeros(len(ids), bool)
    return ids["platform_id"].isna().to_numpy()


def typing_order(ids: pd.DataFrame) -> np.ndarray:
    """Each sample's rank (from 1) among its user's samples in typing order: by session, task,
    video, platform (those of ORDER the table has)."""
    keys = [ids[c].to_numpy(dtype=np.float64, na_value=np.inf) for c in reversed(ORDER) if c in ids]
    users = pd.factorize(ids["user_id"])[0]
    order = np.lexsort([*keys, users])
    first = np.r_[True, users[order][1:] != users[order][:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - start + 1
    return rank


def session_split(ids: pd.DataFrame) -> Split:
    """Web app session 1 enrols, later sessions probe; Aalto's first 5 sections (by id) enrol."""
    if "session_id" not in ids:
        raise ValueError("the session split needs a session_id column")
    rank = ids.groupby("user_id", observed=True)["session_id"].rank(method="dense").to_numpy()
    enrol = rank <= np.where(is_aalto(ids), SESSION_ENROLMENT["aalto"], SESSION_ENROLMENT["web_app"])
    probe = ~enrol & ~np.isnan(rank)
    return Split(enrol, probe, probe)


def _rank_among(ids: pd.DataFrame, mask: np.ndarray) -> np.ndarray:
    """Rank (from 1) of each masked sample among its user's masked samples in typing order; 0 elsewhere."""
    rank = np.zeros(len(ids), np.int64)
    if mask.any():
        rank[mask] = typing_order(ids[mask].reset_index(drop=True))
    return rank


def enrolment_curve(ids: pd.DataFrame, sizes: range) -> dict[int, Split]:
    """Per n of `sizes`, session_split with only each user's first n enrolment samples (typing
    order) enrolling, and only users with at least n of them."""
    split = session_split(ids)
    rank = _rank_among(ids, split.enrol)
    users = pd.factorize(ids["user_id"])[0]
    samples = np.bincount(users[split.enrol], minlength=users.max(initial=-1) + 1)  # enrolment samples per user
    curve = {}
    for n in sizes:
        enough = samples[users] >= n
        curve[n] = Split(split.enrol & (rank <= n) & enough, split.probe & enough, split.impostor & enough)
    return curve


def typenet_split(ids: pd.DataFrame, n: int) -> Split:
    """TypeNet's Aalto protocol: of each user with at least n + 5 samples, the first n enrol (typing
    order), the last 5 probe, and the first of those 5 is the user's impostor sample."""
    rank = typing_order(ids)
    count = ids.groupby("user_id", observed=True)["user_id"].transform("size").to_numpy()
    enough = count >= n + TYPENET_PROBES
    probe = enough & (rank > count - TYPENET_PROBES)
    return Split(enough & (rank <= n), probe, probe & (rank == count - TYPENET_PROBES + 1))
