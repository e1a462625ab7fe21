"""The web-app keystroke CSV parser: real quirks and broken uploads."""

import pandas as pd
import pytest

from keystroke_assets.ingest.web_app import BATCH_FILES, parse_web_app_csvs

WEB = ("fpd_webapp_2025", "web_app_data")


def _one(data: bytes):
    parsed = parse_web_app_csvs([data])
    return parsed.events, parsed.problems


def test_real_file_first_lines(real_data):
    data = (real_data.joinpath(*WEB) / "f_090e14f795db6d9fad9fc4ddd6ff5094_0.csv").read_bytes()
    events, problems = _one(data)
    assert problems.empty
    # the file has a header and 304 event lines (wc -l: 305 lines, newline-terminated)
    assert len(events) == 304
    first = events.head(4)
    assert first["line"].tolist() == [2, 3, 4, 5]
    assert first["event"].tolist() == ["P", "R", "P", "R"]
    assert first["key"].tolist() == ["s", "s", "t", "t"]
    assert first["time_ms"].tolist() == [1735660013225, 1735660013324, 1735660013866, 1735660013922]


def test_raw_comma_key_is_split_on_first_and_last_comma(real_data):
    data = (real_data.joinpath(*WEB) / "f_a74d19a94ce2519e5dac099da4fb4830_0.csv").read_bytes()
    events, problems = _one(data)
    assert problems.empty
    # line 108 is `P,,,1751143978266`, line 110 `R,,,1751143978380`
    row = events.set_index("line").loc[[108, 110]]
    assert row["key"].tolist() == [",", ","]
    assert row["time_ms"].tolist() == [1751143978266, 1751143978380]


def test_empty_key_is_an_event_with_its_key_as_recorded():
    # `P,,<t>`: the browser reported no key name; the raw comma `P,,,<t>` next to it keeps its key
    events, problems = _one(b"P,,1735660013225\nR,,1735660013301\nP,,,1735660013400\nR,,,1735660013480\n")
    assert problems.empty
    assert events["key"].tolist() == ["", "", ",", ","]  # named `Unidentified` when keystrokes are made
    assert events["time_ms"].tolist() == [1735660013225, 1735660013301, 1735660013400, 1735660013480]
    # a time alone is still no event
    _, problems = _one(b"P,,1735660013225\nP,1735660013301\n")
    assert "line 2: fewer than 3 comma-separated fields" in problems["problem"].iloc[0]


def test_unescaped_quote_key_does_not_merge_rows(real_data):
    data = (real_data.joinpath(*WEB) / "f_1a8939f78d8fd33068520f598b6bb6b8_3.csv").read_bytes()
    events, problems = _one(data)
    assert problems.empty
    # every non-header line is one event: nothing merged by a quoting CSV dialect
    assert len(events) == data.count(b"\n") - 1
    # line 311 is `P,",1735660120381`
    row = events.set_index("line").loc[311]
    assert (row["event"], row["key"], row["time_ms"]) == ("P", '"', 1735660120381)


GOOD = b"P,a,1735660013225\nR,a,1735660013300\n"


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"Press or Release,Key,Time\n", "header only"),
        (b"\x00\x9f\x12binary\x00garbage", "binary content"),
        (bytes(range(128, 256)) * 4, "not UTF-8"),
        (b"user,key\nabc,a\nabd,b\n", "no valid event line"),
        (b"P;a;1735660013225\nR;a;1735660013300\n", "fewer than 3 comma-separated fields"),
        (b"P,a,soon\nR,a,later\n", "not a non-negative integer"),
        (b"X,a,1735660013225\n", "first field is not P or R"),
    ],
)
def test_unparseable_files_are_quarantined_with_a_reason(data, reason):
    parsed = parse_web_app_csvs([GOOD, data])
    # the good file is untouched
    assert parsed.events["file"].eq(0).sum() == 2
    assert not parsed.events["file"].eq(1).any()
    (row,) = parsed.problems.itertuples()
    assert row.file == 1 and row.quarantined
    assert reason in row.problem


def test_truncated_last_line_drops_only_that_line():
    data = b"Press or Release,Key,Time\nP,a,1735660013225\nR,a,1735660013300\nP,b,17356600"
    events, problems = _one(data)
    assert events["key"].tolist() == ["a", "a"]
    (row,) = problems.itertuples()
    assert not row.quarantined
    assert "line 4" in row.problem and "13 digits" in row.problem


def test_windows_line_ends_and_bom():
    events, problems = _one(b"\xef\xbb\xbfPress or Release,Key,Time\r\nP,a,1735660013225\r\nR,a,1735660013300\r\n")
    assert problems.empty
    assert events["time_ms"].tolist() == [1735660013225, 1735660013300]


def test_non_utf8_file_does_not_affect_others():
    parsed = parse_web_app_csvs([GOOD, "P,é,1735660013225\n".encode("latin-1"), GOOD])
    assert parsed.events.groupby("file").size().to_dict() == {0: 2, 2: 2}
    assert parsed.problems["problem"].str.contains("not UTF-8").tolist() == [True]


def test_files_parsed_in_batches_keep_their_numbers_keys_and_problems():
    # 1,203 files: three batches; a key names its file number mod 7 and its batch (1,003: 1,003 = 7 * 143 + 2, batch 2)
    n = 2 * BATCH_FILES + 203
    files = [
        f"P,k{i % 7}{i // BATCH_FILES},1735660013225\nR,k{i % 7}{i // BATCH_FILES},1735660013301\n".encode()
        for i in range(n)
    ]
    files[3], files[BATCH_FILES + 1], files[-1] = b"", b"P,a,1735660013225\nnot a line\nR,a,1735660013300\n", b"\x00"
    parsed = parse_web_app_csvs(files)

    events = parsed.events
    good = [i for i in range(n) if i not in (3, BATCH_FILES + 1, n - 1)]
    assert events.loc[events["line"] == 1, "file"].tolist() == sorted([*good, BATCH_FILES + 1])
    assert events.loc[events["file"] == BATCH_FILES * 2 + 3, "key"].astype(str).tolist() == ["k22"] * 2
    assert events.loc[events["file"] == BATCH_FILES + 1, "key"].astype(str).tolist() == ["a", "a"]
    assert isinstance(events["key"].dtype, pd.CategoricalDtype)
    assert len(events["key"].cat.categories) == 7 * 3 + 1
    assert parsed.problems[["file", "quarantined"]].values.tolist() == [
        [3, True],
        [BATCH_FILES + 1, False],
        [n - 1, True],
    ]
    assert "line 2: fewer than 3 comma-separated fields" in parsed.problems["problem"].iloc[1]


def test_a_key_name_over_32_characters_makes_a_bad_line():
    # 32 characters are a key, in ASCII or not ("é" is 2 bytes in UTF-8); 33 are not, nor 30 MB
    keys = ["k" * 32, "é" * 32, "é" * 33, "k" * 33]
    lines = [f"P,{key},17356600132{i}0\nR,{key},17356600132{i}5\n" for i, key in enumerate(keys)]
    huge = b"P," + b"a" * 30_000_000 + b",1735660013400\n"
    events, problems = _one("".join(lines).encode() + huge)
    assert events["key"].tolist() == ["k" * 32] * 2 + ["é" * 32] * 2
    (row,) = problems.itertuples()
    assert not row.quarantined
    assert row.problem == "5 bad lines dropped, first line 5: key name of 33 characters, over the limit of 32"


def test_a_bad_line_is_reported_by_its_kind_and_number_never_its_text():
    typed = "jane.doe@example.invalid"
    for line in [
        f"P,{typed},17356600",
        f"P,{typed},soon",
        f"X,{typed},1735660013225",
        f"P,{typed},a,1735660013225",
    ]:
        _, problems = _one(f"{GOOD.decode()}{line}\n".encode())
        (problem,) = problems["problem"]
        assert problem.startswith("1 bad lines dropped, first line 3: ") and typed[:3] not in problem, problem
