"""The Aalto "136M Keystrokes" TSV: one keystroke a row with both times (docs/data.md §1).

Files are parsed in batches, each in one vectorized numpy pass over the batch's concatenated bytes,
as the web-app parser does. Each file is first checked on its own (empty, NUL bytes, header) and
made UTF-8 (Latin-1 if it is not UTF-8); its rows, header cut off, are appended to the batch's
buffer. The positions of newlines and tabs then give every row's fields. Times, section and
keycode written as plain digits (nearly all of them) are read one digit position at a time over
all rows at once; only the few others (floats such as 1.473278e+12, garbage) go through pandas'
to_numeric. Python loops over files and broken sections only, never over rows. A row whose LETTER
is longer than MAX_KEY_CHARS is dropped and counted, as a bad line of the web-app format. Problems
name their kind and where they are, never the text of a row (SENTENCE and USER_INPUT are typed
text).
"""

import numpy as np
import pandas as pd

from keystroke_assets.lib.ingest.web_app import (
    MAX_KEY_CHARS,
    ParsedFiles,
    longer_than,
    parse_in_batches,
    parsed_files,
    split_lines,
    string_array,
)

COLUMNS = [
    "PARTICIPANT_ID",
    "TEST_SECTION_ID",
    "SENTENCE",
    "USER_INPUT",
    "KEYSTROKE_ID",
    "PRESS_TIME",
    "RELEASE_TIME",
    "LETTER",
    "KEYCODE",
]
_USER, _SECTION, _PRESS, _RELEASE, _LETTER, _KEYCODE = (
    COLUMNS.index(c) for c in ["PARTICIPANT_ID", "TEST_SECTION_ID", "PRESS_TIME", "RELEASE_TIME", "LETTER", "KEYCODE"]
)
_MAX_MS = 10**13 - 1  # 13 digits of epoch ms, as in the web-app format
_MAX_SECTION = 2**53  # int64 casts of larger float sections would not be exact
_MAX_KEYCODE = 2**31 - 1
# Files parsed in one pass: an Aalto file is ~130 KB, so ~6 MB a pass. 25 or 50 files a pass parsed
# equally fast; 100 files ~1.2x and 300 files ~1.6x slower (the arrays outgrow the CPU cache).
BATCH_FILES = 50
_TAB, _ZERO = b"\t0"


def parse_aalto_files(contents: list[bytes]) -> ParsedFiles:
    """Keystroke rows and problems of every file; `file` is the index into contents.

    Rows: file, user_id, session_id, line, key, time_ms (press), release_ms, keycode, in file and
    line order. A section with a row of the wrong number of fields is dropped whole and reported.
    """
    return parse_in_batches(contents, BATCH_FILES, _parse_batch)


def _rows(data: bytes) -> tuple[bytes, str | None]:
    """A file's rows after the header as UTF-8, ending with a newline, or why it is quarantined."""
    if not data:
        return b"", "empty file"
    if b"\x00" in data:
        return b"", "binary content (NUL bytes)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # some files of the public set are Latin-1
        data = text.encode("utf-8")
    header, newline, _ = text.partition("\n")
    if newline:
        header = header.removesuffix("\r")
    if header.split("\t") != COLUMNS:
        fields = header.count("\t") + 1
        return b"", f"first line is not the header ({fields} tab-separated fields): expected {' TAB '.join(COLUMNS)}"
    rows = data[data.index(b"\n") + 1 :] if newline else b""
    return rows if rows.endswith(b"\n") or not rows else rows + b"\n", None


def _section(text: str) -> str:
    """A section as a report names it: its id if it is one (digits), else only that it is not."""
    return f"section {text}" if text.isdigit() and len(text) <= 15 else "a section with an id that is no number"


def _distinct(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[pd.Index, np.ndarray]:
    """The byte ranges as (distinct strings, code of each range): one Python string per value, not per row."""
    codes = string_array(buf, starts, ends).dictionary_encode()
    return pd.Index(codes.dictionary.to_pandas(), dtype=object), codes.indices.to_numpy()


def _numbers(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_digits: int) -> np.ndarray:
    """The byte ranges as float64, NaN where not a number; what to_numeric would read."""
    length = ends - starts
    value = np.zeros(len(starts), dtype=np.int64)
    plain = (length > 0) & (length <= max_digits)
    for j in range(max_digits, 0, -1):  # right-aligned: positions before a field read as leading zeros
        inside = length >= j
        digit = buf[np.maximum(ends - j, 0)] - _ZERO  # uint8: bytes below '0' wrap above 9
        plain &= ~inside | (digit <= 9)
        value = value * 10 + digit * inside
    numbers = value.astype(np.float64)  # exact: at most 15 digits
    other = np.flatnonzero(~plain)
    if len(other):
        strings, codes = _distinct(buf, starts[other], ends[other])
        numbers[other] = pd.to_numeric(pd.Series(strings), errors="coerce").to_numpy(dtype=np.float64)[codes]
    return numbers


def _parse_batch(contents: list[bytes]) -> ParsedFiles:
    problems: list[tuple[int, bool, str]] = []
    texts, file_ids = [], []
    for i, data in enumerate(contents):
        rows, quarantine = _rows(data)
        if quarantine:
            problems.append((i, True, quarantine))
        else:
            texts.append(rows)
            file_ids.append(i)

    buf, line_start, end, owner, line_index = split_lines(texts)
    file_ids = np.asarray(file_ids, dtype=np.int64)
    line_no = line_index + 2  # the header is line 1
    file = file_ids[owner]
    tabs = np.flatnonzero(buf == _TAB)
    first_tab = np.searchsorted(tabs, line_start)
    n_tabs = np.searchsorted(tabs, end) - first_tab

    def field(k: int, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Byte range of field k of lines `at`, which have at least k tabs."""
        starts = line_start[at] if k == 0 else tabs[first_tab[at] + k - 1] + 1
        later = n_tabs[at] > k
        return starts, np.where(later, tabs[np.where(later, first_tab[at] + k, 0)], end[at])

    blank = end == line_start
    broken = ~blank & (n_tabs != len(COLUMNS) - 1)
    good = ~blank & ~broken
    # sections are told apart by their text, as written (`1` and `01` are two sections)
    in_broken_file = np.isin(file, file[broken])
    at = np.flatnonzero(in_broken_file & ~blank & (n_tabs > 0))
    strings, codes = _distinct(buf, *field(_SECTION, at))
    sections = pd.DataFrame({"file": file[at], "section": strings[codes], "broken": broken[at]})
    broken_sections = sections[sections["broken"]].groupby(["file", "section"]).size()  # sorted by file, section
    problems += [
        (f, False, f"{_section(s)}: {n} rows with a wrong number of fields; section dropped")
        for (f, s), n in broken_sections.items()
    ]
    good[at] &= ~pd.MultiIndex.from_frame(sections[["file", "section"]]).isin(broken_sections.index)
    no_section = np.bincount(file[broken & (n_tabs == 0)], minlength=len(contents))
    problems += [
        (f, False, f"{no_section[f]} rows without a section id dropped") for f in np.flatnonzero(no_section).tolist()
    ]

    at = np.flatnonzero(good)
    press = _numbers(buf, *field(_PRESS, at), 13)
    release = _numbers(buf, *field(_RELEASE, at), 13)
    section = _numbers(buf, *field(_SECTION, at), 15)

    def between(x: np.ndarray, high: int) -> np.ndarray:
        return (x >= 0) & (x <= high)  # False for NaN too; bounds keep the int casts below exact

    numeric = between(press, _MAX_MS) & between(release, _MAX_MS) & between(section, _MAX_SECTION)
    dropped = np.bincount(file[at][~numeric], minlength=len(contents))
    problems += [
        (f, False, f"{dropped[f]} rows with a non-numeric or out-of-range time (0 to {_MAX_MS} ms) or section dropped")
        for f in np.flatnonzero(dropped).tolist()
    ]
    at, press, release, section = at[numeric], press[numeric], release[numeric], section[numeric]
    long_key = longer_than(buf, *field(_LETTER, at), MAX_KEY_CHARS)
    too_long = np.bincount(file[at][long_key], minlength=len(contents))
    problems += [
        (f, False, f"{too_long[f]} rows with a key name over {MAX_KEY_CHARS} characters dropped")
        for f in np.flatnonzero(too_long).tolist()
    ]
    at, press, release, section = at[~long_key], press[~long_key], release[~long_key], section[~long_key]
    kept = np.bincount(file[at], minlength=len(contents))
    problems += [(f, True, "no valid keystroke row") for f in file_ids.tolist() if kept[f] == 0]

    users, user_codes = _distinct(buf, *field(_USER, at))
    keys, key_codes = _distinct(buf, *field(_LETTER, at))
    keycode = _numbers(buf, *field(_KEYCODE, at), 9)
    events = pd.DataFrame(
        {
            "file": file[at],
            "user_id": users.str.strip().to_numpy()[user_codes],
            "session_id": section.astype(np.int64),
            "line": line_no[at].astype(np.int32),
            "key": keys.to_numpy()[key_codes],
            # epoch ms, sometimes written as floats such as 1.473278e+12
            "time_ms": np.round(press).astype(np.int64),
            "release_ms": np.round(release).astype(np.int64),
            "keycode": np.where(between(keycode, _MAX_KEYCODE), keycode, 0).astype(np.int32),
        }
    )
    # one file's problems in the order they were found: broken sections, rows, numbers, quarantine
    return parsed_files(events, problems)
