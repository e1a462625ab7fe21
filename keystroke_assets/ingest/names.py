"""What an upload object is, from its base name (spec/data.md §1)."""

import pandas as pd

PLATFORMS = {"f": 1, "i": 2, "t": 3}

_TASK = r"(?P<prefix>[fit])_(?P<user>[0-9a-f]{32})_(?P<seq>1[0-7]|[0-9])(?P<suffix>\.csv|_raw\.txt|_metadata\.json)"
_RECORD = r"(?P<ruser>[0-9a-f]{32})_(?P<record>consent|demographics|start_time|completion|start_study|survey_code)\.json"
_AALTO = r"(?P<participant>\d+)_keystrokes\.txt"
_NAME_RE = rf"^(?:{_TASK}|{_RECORD}|{_AALTO})$"

_SUFFIX_KIND = {".csv": "keystrokes", "_raw.txt": "raw_text", "_metadata.json": "task_metadata"}


def classify(names: pd.Series) -> pd.DataFrame:
    """One row per name: kind, user_id, platform_id, video_id, session_id, task_id, record.

    kind is keystrokes / raw_text / task_metadata / record / aalto / partial / unrecognised.
    """
    base = names.str.rsplit("/", n=1).str[-1]
    m = base.str.extract(_NAME_RE)
    seq = pd.to_numeric(m["seq"]).astype("Int64")
    platform = m["prefix"].map(PLATFORMS).astype("Int64")
    # f holds tasks 0,3,..; i 1,4,..; t 2,5,..: any other combination is not a task of the study.
    consistent = (seq % 3) == (platform - 1)
    kind = pd.Series("unrecognised", index=names.index, dtype=object)
    kind[m["suffix"].notna() & consistent.fillna(False)] = m["suffix"].map(_SUFFIX_KIND)
    kind[m["record"].notna()] = "record"
    kind[m["participant"].notna()] = "aalto"
    kind[base.str.endswith(".gstmp")] = "partial"
    is_task = kind.isin(["keystrokes", "raw_text", "task_metadata"])
    seq = seq.where(is_task)
    return pd.DataFrame(
        {
            "kind": kind,
            "user_id": m["user"].where(is_task).fillna(m["ruser"]).fillna(m["participant"]),
            "platform_id": platform.where(is_task),
            "video_id": (seq % 9 // 3 + 1).astype("Int64"),
            "session_id": (seq // 9 + 1).astype("Int64"),
            "task_id": seq,
            "record": m["record"],
        },
        index=names.index,
    )
