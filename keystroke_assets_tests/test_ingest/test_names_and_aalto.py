import numpy as np
import pandas as pd

from keystroke_assets.ingest import aalto
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
        [
            f"f_{U}_0.csv",
            f"i_{U}_13_metadata.json",
            f"t_{U}_17_raw.txt",
            f"{U}_consent.json",
            "100001_keystrokes.txt",
            f"f_{U}_3.csv.gstmp",
            f"2025-01-01T10:00:00_{U}_f_0.csv",
            f"f_{U}_1.csv",  # seq 1 belongs to i, not f
            f"t_{U}_18.csv",
        ]  # seq 18 does not exist
    )
    c = classify(names)
    assert c["kind"].tolist() == [
        "keystrokes",
        "task_metadata",
        "raw_text",
        "record",
        "aalto",
        "partial",
        "unrecognised",
        "unrecognised",
        "unrecognised",
    ]
    # seq 13 → video 2, session 2; seq 17 → video 3, session 2 (docs/data.md §1)
    assert c.loc[1, ["platform_id", "video_id", "session_id", "task_id"]].tolist() == [2, 2, 2, 13]
    assert c.loc[2, ["platform_id", "video_id", "session_id"]].tolist() == [3, 3, 2]
    assert c.loc[0, ["platform_id", "video_id", "session_id"]].tolist() == [1, 1, 1]
    assert c.loc[4, "user_id"] == "100001"


def test_aalto_real_file(real_data):
    rows, problems, quarantine = parse_aalto_file(
        (real_data / "aalto136m_desktop" / "100001_keystrokes.txt").read_bytes()
    )
    assert quarantine is None and problems == []
    assert rows["session_id"].nunique() == 15
    first = rows.iloc[0]
    # first data row: 100001 1090979 ... 1473275372512 1473275372663 SHIFT 16
    assert (
        first["user_id"],
        first["session_id"],
        first["key"],
        first["time_ms"],
        first["release_ms"],
        first["keycode"],
    ) == ("100001", 1090979, "SHIFT", 1473275372512, 1473275372663, 16)


def test_aalto_latin1_file_is_read(real_data):
    rows, problems, quarantine = parse_aalto_file(
        (real_data / "aalto136m_desktop" / "100122_keystrokes.txt").read_bytes()
    )
    assert quarantine is None and rows["session_id"].nunique() == 15


HEADER = (
    "PARTICIPANT_ID\tTEST_SECTION_ID\tSENTENCE\tUSER_INPUT\tKEYSTROKE_ID\tPRESS_TIME\tRELEASE_TIME\tLETTER\tKEYCODE\n"
)


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
    assert rows.empty and quarantine.startswith("first line is not the header (2 tab-separated fields): expected")


def aalto_row(user="7", section="1", press="1473278000000", release="1473278000100", letter="a", keycode="65") -> str:
    return "\t".join([user, section, "ab", "ab", "1", press, release, letter, keycode]) + "\n"


def batch_of_files() -> list[bytes]:
    return [
        # 0: two good rows, a blank line between them still counts as a line
        (HEADER + aalto_row(press="1473278000000") + "\n" + aalto_row(section="2", press="1473278000500")).encode(),
        # 1: Latin-1 with Windows newlines; user id padded with spaces
        (HEADER + aalto_row(user=" 8 ", letter="é", keycode="233")).replace("\n", "\r\n").encode("latin-1"),
        # 2: not this format
        b"id,section\n1,2\n",
        # 3: empty
        b"",
        # 4: a broken row in section 01 drops section 01 but not section 1; a row with no tab at all
        (
            HEADER
            + aalto_row(section="01")
            + "7\t01\tab\n"
            + aalto_row(section="1", press="1473278000900")
            + "garbage\n"
            + aalto_row(section="3", press="soon")
        ).encode(),
        # 5: every row dropped
        (HEADER + "7\t5\tab\n").encode(),
        # 6: NUL bytes
        b"\x00\x01",
        # 7: one good row, no newline at the end
        (HEADER + aalto_row(user="9", section="4", keycode="-3")).rstrip("\n").encode(),
    ]


EXPECTED_PROBLEMS = [
    (2, True, "first line is not the header (1 tab-separated fields): expected " + " TAB ".join(aalto.COLUMNS)),
    (3, True, "empty file"),
    (4, False, "section 01: 1 rows with a wrong number of fields; section dropped"),
    (4, False, "1 rows without a section id dropped"),
    (4, False, "1 rows with a non-numeric or out-of-range time (0 to 9999999999999 ms) or section dropped"),
    (5, False, "section 5: 1 rows with a wrong number of fields; section dropped"),
    (5, True, "no valid keystroke row"),
    (6, True, "binary content (NUL bytes)"),
]


def test_aalto_batch_keeps_each_files_rows_and_problems_apart():
    parsed = parse_aalto_files(batch_of_files())
    events = parsed.events
    assert events["file"].tolist() == [0, 0, 1, 4, 7]
    assert events["user_id"].tolist() == ["7", "7", "8", "7", "9"]
    assert events["session_id"].tolist() == [1, 2, 1, 1, 4]
    assert events["line"].tolist() == [2, 4, 2, 4, 2]  # the header is line 1, blank lines count
    assert events["key"].tolist() == ["a", "a", "é", "a", "a"]
    assert events["time_ms"].tolist() == [1473278000000, 1473278000500, 1473278000000, 1473278000900, 1473278000000]
    assert events["keycode"].tolist() == [65, 65, 233, 65, 0]  # -3 is no keycode
    assert list(parsed.problems.itertuples(index=False, name=None)) == EXPECTED_PROBLEMS


def test_aalto_batches_number_files_globally(monkeypatch):
    monkeypatch.setattr(aalto, "BATCH_FILES", 3)  # files 0-2, 3-5 and 6-7 in separate passes
    parsed = parse_aalto_files(batch_of_files())
    assert parsed.events["file"].tolist() == [0, 0, 1, 4, 7]
    assert parsed.events["line"].tolist() == [2, 4, 2, 4, 2]
    assert list(parsed.problems.itertuples(index=False, name=None)) == EXPECTED_PROBLEMS


def test_aalto_numbers_as_pandas_reads_them():
    text = HEADER + "".join(
        [
            aalto_row(press="1473278000000.5", release="1473278000101.5"),  # halves round to even
            aalto_row(press="1.4732780001e+12", keycode="65.9"),  # keycode truncated like an int cast
            aalto_row(press="0001473278000200", keycode="2147483648"),  # leading zeros; keycode too large
            aalto_row(section="2.0", keycode=""),
            aalto_row(press="1e300"),
            aalto_row(release="nan"),
            aalto_row(press="-1"),
            aalto_row(press="10000000000000"),
            aalto_row(section="x"),
            aalto_row(section=""),
        ]
    )
    rows, problems, quarantine = parse_aalto_file(text.encode())
    assert quarantine is None
    assert rows["time_ms"].tolist() == [1473278000000, 1473278000100, 1473278000200, 1473278000000]
    assert rows["release_ms"].tolist() == [1473278000102, 1473278000100, 1473278000100, 1473278000100]
    assert rows["keycode"].tolist() == [65, 65, 0, 0]
    assert rows["session_id"].tolist() == [1, 1, 1, 2]
    assert rows.dtypes.to_dict() == {
        "user_id": np.dtype(object),
        "session_id": np.int64,
        "line": np.int32,
        "key": np.dtype(object),
        "time_ms": np.int64,
        "release_ms": np.int64,
        "keycode": np.int32,
    }
    assert problems == ["6 rows with a non-numeric or out-of-range time (0 to 9999999999999 ms) or section dropped"]


def test_aalto_no_files():
    parsed = parse_aalto_files([])
    assert parsed.events.empty and "time_ms" in parsed.events and parsed.problems.empty


def test_aalto_row_with_a_key_name_over_32_characters_is_dropped_and_counted():
    text = HEADER + aalto_row(letter="q" * 32) + aalto_row(letter="q" * 33, press="1473278000200") + aalto_row()
    rows, problems, quarantine = parse_aalto_file(text.encode())
    assert quarantine is None and rows["key"].tolist() == ["q" * 32, "a"]
    assert problems == ["1 rows with a key name over 32 characters dropped"]


def test_aalto_reports_name_no_text_of_a_row():
    # a file without its header: the first line is a row, with the typed sentence in it
    rows, _, quarantine = parse_aalto_file(aalto_row(letter="x").replace("ab", "my secret sentence").encode())
    assert rows.empty and "secret" not in quarantine
    broken = HEADER + "7\tsecret words\tab\n" + aalto_row()
    _, problems, _ = parse_aalto_file(broken.encode())
    assert problems == ["a section with an id that is no number: 1 rows with a wrong number of fields; section dropped"]
