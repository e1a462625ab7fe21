import pandas as pd

from keystroke_assets.ingest.aalto import parse_aalto_files
from keystroke_assets.ingest.names import classify

U = "090e14f795db6d9fad9fc4ddd6ff5094"


def parse_aalto_file(data: bytes) -> tuple[pd.DataFrame, list[str], str | None]:
    """One file's rows, its problems and its quarantine reason (None if kept)."""
    parsed = parse_aalto_files([data])
    quarantine = parsed.problems.loc[parsed.problems["quarantined"], "problem"].tolist()
    notes = parsed.problems.loc[~parsed.problems["quarantined"], "problem"].tolist()
    return parsed.events.drop(columns="file"), notes, (quarantine or [None])[0]


def test_classify_names():
    names = pd.Series(
        [f"f_{U}_0.csv", f"i_{U}_13_metadata.json", f"t_{U}_17_raw.txt", f"{U}_consent.json",
         "100001_keystrokes.txt", f"f_{U}_3.csv.gstmp", f"2025-01-01T10:00:00_{U}_f_0.csv",
         f"f_{U}_1.csv",  # seq 1 belongs to i, not f
         f"t_{U}_18.csv"]  # seq 18 does not exist
    )
    c = classify(names)
    assert c["kind"].tolist() == [
        "keystrokes", "task_metadata", "raw_text", "record", "aalto", "partial", "unrecognised",
        "unrecognised", "unrecognised",
    ]
    # seq 13 → video 2, session 2; seq 17 → video 3, session 2 (spec/data.md §1)
    assert c.loc[1, ["platform_id", "video_id", "session_id", "task_id"]].tolist() == [2, 2, 2, 13]
    assert c.loc[2, ["platform_id", "video_id", "session_id"]].tolist() == [3, 3, 2]
    assert c.loc[0, ["platform_id", "video_id", "session_id"]].tolist() == [1, 1, 1]
    assert c.loc[4, "user_id"] == "100001"


def test_aalto_real_file(real_data):
    rows, problems, quarantine = parse_aalto_file((real_data / "aalto136m_desktop" / "100001_keystrokes.txt").read_bytes())
    assert quarantine is None and problems == []
    assert rows["session_id"].nunique() == 15
    first = rows.iloc[0]
    # first data row: 100001 1090979 ... 1473275372512 1473275372663 SHIFT 16
    assert (first["user_id"], first["session_id"], first["key"], first["time_ms"], first["release_ms"], first["keycode"]) == (
        "100001", 1090979, "SHIFT", 1473275372512, 1473275372663, 16
    )


def test_aalto_latin1_file_is_read(real_data):
    rows, problems, quarantine = parse_aalto_file((real_data / "aalto136m_desktop" / "100122_keystrokes.txt").read_bytes())
    assert quarantine is None and rows["session_id"].nunique() == 15


HEADER = "PARTICIPANT_ID\tTEST_SECTION_ID\tSENTENCE\tUSER_INPUT\tKEYSTROKE_ID\tPRESS_TIME\tRELEASE_TIME\tLETTER\tKEYCODE\n"


def test_aalto_broken_row_drops_its_section_and_float_times_parse():
    text = HEADER + (
        "7\t1\tab\tab\t1\t1.473278e+12\t1473278000100\ta\t65\n"
        "7\t1\tab\tab\t2\t1473278000200\t1473278000300\tb\t66\n"
        "7\t2\tcd\tcd\t3\t1473278001000\t1473278001100\n"  # 7 fields: broken row
        "7\t2\tcd\tcd\t4\t1473278001200\t1473278001300\td\t68\n"
    )
    rows, problems, quarantine = parse_aalto_file(text.encode())
    assert quarantine is None
    assert rows["session_id"].tolist() == [1, 1]
    assert rows["time_ms"].tolist() == [1473278000000, 1473278000200]  # 1.473278e+12 ms
    assert problems == ["section 2: 1 rows with a wrong number of fields; section dropped"]


def test_aalto_wrong_header_quarantined():
    rows, problems, quarantine = parse_aalto_file(b"a\tb\n1\t2\n")
    assert rows.empty and "unexpected header" in quarantine

