"""The web app's keystroke CSV: `<P|R>,<key>,<time>`, nothing escaped (docs/data.md §1).

Files are parsed in batches, each in one vectorized pass over the batch's concatenated bytes. A valid
line is `P` or `R`, a comma, a key, a comma and 13 digits of ms, so its first comma is at byte 1
and its last comma 14 bytes before its end: the key is whatever lies between, quotes included. The
key may be empty (`P,,<t>`: the browser reported no key name; a keystroke all the same, made
`Unidentified` downstream, docs/features.md §1). A key holds no comma unless it is the comma itself
(`P,,,<t>`): any other comma in a line is an extra field. A key name longer than MAX_KEY_CHARS is
no key (the longest either source writes, `Key.caps_lock`, has 13 characters): its line is a bad
line, so a huge "key" never travels into the stages. Python loops over files only, never over
lines.

A problem is reported by its kind and its line number, never by the line's text: a bad line may
hold anything the participant typed.
"""

import codecs
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

HEADER = b"Press or Release,Key,Time"
TIME_DIGITS = 13
MAX_KEY_CHARS = 32
# Files parsed in one pass: enough for numpy to pay, few enough for the CPU cache. One pass over a
# whole version of 600 participants was ~2x slower and held ~50x the memory (~1 GB more).
BATCH_FILES = 500
_NL, _CR, _COMMA, _P, _R, _ZERO = (ord(c) for c in "\n\r,PR0")


@dataclass
class ParsedFiles:
    events: pd.DataFrame  # file (index into the input), line, then the format's columns (web app: event, key, time_ms)
    problems: pd.DataFrame  # file, quarantined, problem


def parsed_files(events: pd.DataFrame, problems: list[tuple[int, bool, str]]) -> ParsedFiles:
    """A parse's events, and its (file, quarantined, problem) list as a table by file, each file's
    problems in the order they were found."""
    problem_df = (
        pd.DataFrame(problems, columns=["file", "quarantined", "problem"])
        .astype({"file": np.int64, "quarantined": bool, "problem": object})
        .sort_values("file", kind="stable")
    )
    return ParsedFiles(events=events, problems=problem_df.reset_index(drop=True))


def explain_line(line: str) -> str:
    """Why one line is not an event, by the kind of problem, without quoting it (called once per
    file with problems, never per line)."""
    if line.count(",") < 2:
        return "fewer than 3 comma-separated fields"
    kind, rest = line.split(",", 1)
    key, time = rest.rsplit(",", 1)
    if kind not in ("P", "R"):
        return "first field is not P or R"
    if "," in key and key != ",":
        return f"{line.count(',') + 1} comma-separated fields, expected 3"
    if not time.isdigit() or not time.isascii():
        return "time is not a non-negative integer of ms"
    if len(time) != TIME_DIGITS:
        return f"time has {len(time)} digits, not {TIME_DIGITS} digits of ms"
    if len(key) > MAX_KEY_CHARS:
        return f"key name of {len(key)} characters, over the limit of {MAX_KEY_CHARS}"
    return "not an event line"


def longer_than(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, chars: int) -> np.ndarray:
    """Whether each UTF-8 byte range [starts, ends) of buf holds more than `chars` characters.
    Only ranges of `chars` to 4 * `chars` bytes are counted (fewer bytes: fewer characters; more:
    more), so a huge range is never copied."""
    n = ends - starts
    over = n > 4 * chars
    count = np.flatnonzero((n > chars) & ~over)
    if len(count):
        over[count] = pc.utf8_length(string_array(buf, starts[count], ends[count])).to_numpy() > chars
    return over


def _from_utf16(data: bytes) -> tuple[bytes, str | None]:
    """UTF-16 text with a byte-order mark (a file re-saved by an editor) as UTF-8, with a note."""
    if not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data, None
    try:
        return data.decode("utf-16").encode("utf-8"), "UTF-16 text read as such (the web app writes UTF-8)"
    except UnicodeDecodeError:
        return data, None  # not text after all: the checks below say why


def _decode_problem(data: bytes) -> str | None:
    if not data:
        return "empty file"
    if b"\x00" in data:
        return f"binary content (NUL byte at offset {data.index(0)})"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not UTF-8 text (invalid byte 0x{data[e.start]:02x} at offset {e.start})"
    return None


class Lines(NamedTuple):
    buf: np.ndarray  # the texts' bytes, one after the other
    start: np.ndarray  # every line's first byte
    end: np.ndarray  # every line's end, "\n" or "\r\n" left out
    text: np.ndarray  # the text each line is in (index into texts)
    index: np.ndarray  # the line's number within its text, from 0


def split_lines(texts: list[bytes]) -> Lines:
    """Every line of texts that each end with a newline, located in their concatenated bytes."""
    buf = np.frombuffer(b"".join(texts), dtype=np.uint8)
    sizes = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    text_start = np.cumsum(sizes) - sizes
    line_end = np.flatnonzero(buf == _NL)
    start = np.r_[0, line_end[:-1] + 1].astype(np.int64)[: len(line_end)]
    end = line_end - (buf[np.maximum(line_end - 1, 0)] == _CR)  # drop Windows' \r
    text = np.searchsorted(text_start, start, side="right") - 1
    index = np.arange(len(start)) - np.searchsorted(start, text_start)[text]
    return Lines(buf, start, end, text, index)


def string_array(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """The byte ranges [starts, ends) of buf as one Arrow string array, without Python strings."""
    lengths = ends - starts
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    data = buf[gather]
    return pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(data))


def parse_web_app_csvs(contents: list[bytes]) -> ParsedFiles:
    """Events and problems of every file; `file` is the index into contents."""
    return parse_in_batches(contents, BATCH_FILES, _parse_batch)


def parse_in_batches(
    contents: list[bytes], batch_files: int, parse_batch: Callable[[list[bytes]], ParsedFiles]
) -> ParsedFiles:
    """`parse_batch` over batches of `batch_files` files, joined: `file` made the index into
    contents, categorical columns given the union of the batches' categories."""
    batches = [(i, parse_batch(contents[i : i + batch_files])) for i in range(0, max(len(contents), 1), batch_files)]

    def joined(table: str) -> pd.DataFrame:  # empty parts left out: concat warns on them
        parts = [t.assign(file=t["file"] + i) for i, b in batches for t in [getattr(b, table)]]
        return pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)

    events = joined("events")
    filled = [b.events for _, b in batches if len(b.events)]
    for column in events.columns:
        if filled and isinstance(filled[0][column].dtype, pd.CategoricalDtype):
            events[column] = pd.api.types.union_categoricals([part[column] for part in filled])
    return ParsedFiles(events=events, problems=joined("problems"))


def _parse_batch(contents: list[bytes]) -> ParsedFiles:
    problems: list[tuple[int, bool, str]] = []
    texts, file_ids, had_header = [], [], []
    for i, data in enumerate(contents):
        data, note = _from_utf16(data)
        if note:
            problems.append((i, False, note))
        error = _decode_problem(data)
        if error:
            problems.append((i, True, error))
            continue
        data = data.removeprefix(b"\xef\xbb\xbf")
        rest = data[len(HEADER) :]
        header = data.startswith(HEADER) and (not rest or rest.startswith((b"\n", b"\r\n")))
        if header:
            data = rest.removeprefix(b"\r").removeprefix(b"\n")
        texts.append(data if data.endswith(b"\n") or not data else data + b"\n")
        file_ids.append(i)
        had_header.append(header)

    buf, line_start, end, owner, line_index = split_lines(texts)
    file_ids = np.asarray(file_ids, dtype=np.int64)
    line_no = line_index + 1 + np.asarray(had_header, dtype=np.int64)[owner]
    length = end - line_start

    valid = length >= 2 + 1 + TIME_DIGITS  # "P," key (maybe empty) "," digits
    safe = np.where(valid, line_start, 0)
    kind = buf[safe]
    valid &= ((kind == _P) | (kind == _R)) & (buf[safe + 1] == _COMMA)
    comma = np.where(valid, end - TIME_DIGITS - 1, 0)
    valid &= buf[comma] == _COMMA
    time_ms = np.zeros(len(comma), dtype=np.int64)
    for j in range(1, TIME_DIGITS + 1):  # one pass per digit, over all lines at once
        digit = buf[comma + j] - _ZERO  # uint8: bytes below '0' wrap above 9
        valid &= digit <= 9
        time_ms = time_ms * 10 + digit
    commas = np.flatnonzero(buf == _COMMA)
    n_commas = np.searchsorted(commas, end) - np.searchsorted(commas, line_start)
    valid &= (n_commas == 2) | ((n_commas == 3) & (length == 3 + 1 + TIME_DIGITS))  # only `P,,,<t>` has 3
    at = np.flatnonzero(valid)
    valid[at] &= ~longer_than(buf, line_start[at] + 2, end[at] - TIME_DIGITS - 1, MAX_KEY_CHARS)
    blank = length == 0
    bad = ~valid & ~blank

    n_files = len(contents)
    owner_file = file_ids[owner] if len(owner) else owner
    n_valid = np.bincount(owner_file[valid], minlength=n_files)
    n_bad = np.bincount(owner_file[bad], minlength=n_files)
    n_release = np.bincount(owner_file[valid & (kind == _R)], minlength=n_files)
    # events earlier than the event before them in the same file (the app writes them in time order)
    at = np.flatnonzero(valid)
    time_of = time_ms[at]
    earlier = (np.diff(time_of) < 0) & (owner_file[at][1:] == owner_file[at][:-1])
    n_earlier = np.bincount(owner_file[at][1:][earlier], minlength=n_files)
    bad_idx = np.flatnonzero(bad)
    first_bad = dict(zip(owner_file[bad_idx][::-1].tolist(), bad_idx[::-1].tolist()))  # first per file wins
    for file_id, header in zip(file_ids.tolist(), had_header):
        if n_bad[file_id]:
            j = first_bad[file_id]
            detail = f"line {line_no[j]}: {explain_line(bytes(buf[line_start[j] : end[j]]).decode('utf-8'))}"
            if n_valid[file_id] == 0:
                problems.append((file_id, True, f"no valid event line; {n_bad[file_id]} bad lines, first {detail}"))
            else:
                problems.append((file_id, False, f"{n_bad[file_id]} bad lines dropped, first {detail}"))
        elif n_valid[file_id] == 0:
            problems.append((file_id, True, "header only" if header else "no event lines"))
        if n_valid[file_id] and n_release[file_id] in (0, n_valid[file_id]):
            only, other = ("press", "release") if n_release[file_id] == 0 else ("release", "press")
            problems.append(
                (file_id, True, f"only {only} events ({n_valid[file_id]}), no {other}: no keystroke can be formed")
            )
        if n_earlier[file_id]:
            problems.append(
                (
                    file_id,
                    False,
                    f"{n_earlier[file_id]} events earlier than the line before: not in time order (sorted downstream)",
                )
            )

    quarantined = [f for f, q, _ in problems if q]
    keep = valid & ~np.isin(owner_file, quarantined)
    starts, ends = line_start[keep], end[keep]
    keys = string_array(buf, starts + 2, ends - TIME_DIGITS - 1).dictionary_encode()
    events = pd.DataFrame(
        {
            "file": owner_file[keep].astype(np.int32),
            "line": line_no[keep].astype(np.int32),
            "event": pd.Categorical.from_codes((buf[starts] == _R).astype(np.int8), categories=["P", "R"]),
            "key": keys.to_pandas(),
            "time_ms": time_of[keep[at]],
        }
    )
    return parsed_files(events, problems)
