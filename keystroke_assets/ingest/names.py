"""What an upload object is, from its name in the upload prefix (docs/data.md §1)."""

import numpy as np
import pandas as pd

PLATFORMS = {"f": 1, "i": 2, "t": 3}

_TASK = r"(?P<prefix>[fit])_(?P<user>[0-9a-f]{32})_(?P<seq>1[0-7]|[0-9])(?P<suffix>\.csv|_raw\.txt|_metadata\.json)"
_RECORD = (
    r"(?P<ruser>[0-9a-f]{32})_(?P<record>consent|demographics|start_time|completion|start_study|survey_code)\.json"
)
_AALTO = r"(?P<participant>[0-9]+)_keystrokes\.txt"
_NAME_RE = rf"^(?:{_TASK}|{_RECORD}|{_AALTO})\Z"
# The shape of a task object whatever its number: tells "not a task of the study" from noise.
_TASK_LIKE = r"[fit]_[0-9a-f]{32}_[0-9]+(?:\.csv|_raw\.txt|_metadata\.json)\Z"

_SUFFIX_KIND = {".csv": "keystrokes", "_raw.txt": "raw_text", "_metadata.json": "task_metadata"}


def classify(names: pd.Series) -> pd.DataFrame:
    """One row per name: kind, user_id, platform_id, video_id, session_id, task_id, record.

    kind is keystrokes / raw_text / task_metadata / record / aalto / partial / unrecognised.
    Names are relative to the upload prefix, which is flat: a name inside a folder (or with `..`)
    is unrecognised, so it can neither shadow a participant's object nor escape the prefix.
    """
    m = names.str.extract(_NAME_RE)
    seq = pd.to_numeric(m["seq"]).astype("Int64")
    platform = m["prefix"].map(PLATFORMS).astype("Int64")
    # f holds tasks 0,3,..; i 1,4,..; t 2,5,..: any other combination is not a task of the study.
    consistent = (seq % 3) == (platform - 1)
    kind = pd.Series("unrecognised", index=names.index, dtype=object)
    kind[m["suffix"].notna() & consistent.fillna(False)] = m["suffix"].map(_SUFFIX_KIND)
    kind[m["record"].notna()] = "record"
    kind[m["participant"].notna()] = "aalto"
    kind[names.str.endswith(".gstmp")] = "partial"
    is_task = kind.isin(["keystrokes", "raw_text", "task_metadata"])
    seq = seq.where(is_task)
    return pd.DataFrame(
        {
            "kind": kind,
            # combine_first keeps object dtype where every part is missing (fillna would downcast)
            "user_id": m["user"].where(is_task).combine_first(m["ruser"]).combine_first(m["participant"]),
            "platform_id": platform.where(is_task),
            "video_id": (seq % 9 // 3 + 1).astype("Int64"),
            "session_id": (seq // 9 + 1).astype("Int64"),
            "task_id": seq,
            "record": m["record"],
        },
        index=names.index,
    )


# Entries of a local upload folder that are no object (object_store.SPECIAL_ENTRIES): never opened.
NOT_AN_OBJECT = {
    "symlink": "a symbolic link: never followed (only regular files directly in the upload store are read)",
    "folder": "a folder: the upload store is flat; never entered",
    "fifo": "a FIFO (named pipe), not a regular file: never opened",
    "socket": "a socket, not a regular file: never opened",
    "device": "a device, not a regular file: never opened",
    "special_file": "not a regular file: never opened",
    "undecodable_name": "a name that is not valid UTF-8 (shown with its bytes escaped): never read",
}


def ignored_reason(names: pd.Series, kind: pd.Series) -> pd.Series:
    """Why an object is never processed (partial or unrecognised kind, or no object at all); None
    for the others."""
    reasons = np.select(
        [
            kind.isin(list(NOT_AN_OBJECT)),
            kind == "partial",
            kind != "unrecognised",
            names.str.contains("/", regex=False),
            names.str.match(_TASK_LIKE),
        ],
        [
            kind.map(NOT_AN_OBJECT),
            "partial upload (.gstmp): ignored",
            None,
            "a path, not a name (contains '/'): the upload prefix is flat; never processed",
            "not a task of the study (f: 0, 3, .., 15; i: 1, 4, .., 16; t: 2, 5, .., 17); never processed",
        ],
        default="unrecognised name: never processed",
    )
    return pd.Series(reasons, index=names.index, dtype=object)
