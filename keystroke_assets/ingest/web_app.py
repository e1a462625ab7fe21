"""The web app's keystroke CSV: `<P|R>,<key>,<time>`, nothing escaped (spec/data.md §1).

All files of a version are parsed in one vectorized pass: their lines are concatenated, each
line is split on its first and its last comma by one regular expression, and problems are
counted per file. Python only loops over files, never over lines.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

HEADER = "Press or Release,Key,Time"
# `[PR]` then the first comma; greedy `.+` runs to the last comma; 13-digit integer ms.
_EVENT_RE = r"^(?P<event>[PR]),(?P<key>.+),(?P<time>[0-9]{13})$"


@dataclass
class ParsedFiles:
    events: pd.DataFrame  # file (index into the input), line, event, key, time_ms
    problems: pd.DataFrame  # file, quarantined, problem


def explain_line(line: str) -> str:
    """Why one line is not an event (called once per file with problems, never per line)."""
    if line.count(",") < 2:
        return "fewer than 3 comma-separated fields"
    kind, rest = line.split(",", 1)
    key, time = rest.rsplit(",", 1)
    if kind not in ("P", "R"):
        return f"first field must be P or R, not {kind[:20]!r}"
    if not key:
        return "empty key"
    if not time.isdigit() or not time.isascii():
        return f"time {time[:20]!r} is not a non-negative integer of ms"
    return f"time {time[:20]!r} is not 13 digits of ms"


def _decode(data: bytes) -> tuple[str | None, str | None]:
    if not data:
        return None, "empty file"
    if b"\x00" in data:
        return None, "binary content (NUL bytes)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text (invalid byte 0x{data[e.start]:02x} at offset {e.start})"
    return text.removeprefix("\ufeff"), None


def parse_web_app_csvs(contents: list[bytes]) -> ParsedFiles:
    problems: list[tuple[int, bool, str]] = []
    texts, file_ids = [], []
    for i, data in enumerate(contents):
        text, error = _decode(data)
        if error:
            problems.append((i, True, error))
        else:
            texts.append(text)
            file_ids.append(i)

    line_lists = [t.split("\n") for t in texts]
    counts = np.fromiter((len(x) for x in line_lists), dtype=np.int64, count=len(line_lists))
    lines = pa.array([ln for x in line_lists for ln in x], type=pa.large_string())
    lines = pc.replace_substring_regex(lines, r"\r$", "")  # Windows line ends
    file_of_line = np.repeat(np.asarray(file_ids, dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    line_no = np.arange(len(lines)) - np.repeat(starts, counts) + 1

    parts = pc.extract_regex(lines, _EVENT_RE)
    valid = np.asarray(parts.is_valid().to_numpy(zero_copy_only=False))
    blank = np.asarray(pc.equal(lines, "").to_numpy(zero_copy_only=False))
    header = (line_no == 1) & np.asarray(pc.equal(lines, HEADER).to_numpy(zero_copy_only=False))
    bad = ~valid & ~blank & ~header

    n_files = len(contents)
    n_valid = np.bincount(file_of_line[valid], minlength=n_files)
    n_bad = np.bincount(file_of_line[bad], minlength=n_files)
    n_header = np.bincount(file_of_line[header], minlength=n_files)
    bad_idx = np.flatnonzero(bad)
    # first bad line of each file: bad_idx is sorted, so take the first per file
    first_bad = pd.Series(bad_idx).groupby(file_of_line[bad_idx]).first() if len(bad_idx) else pd.Series(dtype=int)
    for file_id in file_ids:
        if n_bad[file_id]:
            j = int(first_bad[file_id])
            line = lines[j].as_py()
            detail = f"line {line_no[j]} {line[:60]!r}: {explain_line(line)}"
            if n_valid[file_id] == 0:
                problems.append((file_id, True, f"no valid event line; {n_bad[file_id]} bad lines, first {detail}"))
            else:
                problems.append((file_id, False, f"{n_bad[file_id]} bad lines dropped, first {detail}"))
        elif n_valid[file_id] == 0:
            problems.append((file_id, True, "header only" if n_header[file_id] else "no event lines"))

    quarantined = {f for f, q, _ in problems if q}
    keep = valid & ~np.isin(file_of_line, list(quarantined))
    ev = parts.filter(pa.array(keep))
    events = pd.DataFrame(
        {
            "file": file_of_line[keep].astype(np.int32),
            "line": line_no[keep].astype(np.int32),
            "event": pc.struct_field(ev, "event").to_pandas(),
            "key": pc.struct_field(ev, "key").to_pandas(),
            "time_ms": pc.cast(pc.struct_field(ev, "time"), pa.int64()).to_numpy(),
        }
    )
    problem_df = pd.DataFrame(problems, columns=["file", "quarantined", "problem"]).astype(
        {"file": np.int64, "quarantined": bool, "problem": object}
    ).sort_values("file", kind="stable")
    return ParsedFiles(events=events, problems=problem_df.reset_index(drop=True))
