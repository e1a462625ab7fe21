"""The Aalto "136M Keystrokes" TSV: one keystroke a row with both times (spec/data.md §1)."""

import numpy as np
import pandas as pd

COLUMNS = [
    "PARTICIPANT_ID", "TEST_SECTION_ID", "SENTENCE", "USER_INPUT", "KEYSTROKE_ID",
    "PRESS_TIME", "RELEASE_TIME", "LETTER", "KEYCODE",
]
_MAX_MS = 10**13 - 1  # 13 digits of epoch ms, as in the web-app format


def parse_aalto_file(data: bytes) -> tuple[pd.DataFrame, list[str], str | None]:
    """(keystroke rows, problems, quarantine reason or None).

    Rows: user_id, session_id, line, key, time_ms (press), release_ms, keycode. A section with a
    row of the wrong number of fields is dropped whole and reported.
    """
    if not data:
        return pd.DataFrame(), [], "empty file"
    if b"\x00" in data:
        return pd.DataFrame(), [], "binary content (NUL bytes)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # some files of the public set are Latin-1
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[0].split("\t") != COLUMNS:
        return pd.DataFrame(), [], f"unexpected header {lines[0][:80]!r}: expected {' TAB '.join(COLUMNS)}"
    rows = pd.Series(lines[1:])
    rows = rows[rows != ""]
    fields = rows.str.split("\t")
    width = fields.str.len()
    broken = width != len(COLUMNS)
    broken_sections = sorted(set(fields[broken].str[1].dropna()))
    problems = [
        f"section {s}: {int((broken & (fields.str[1] == s)).sum())} rows with a wrong number of fields; section dropped"
        for s in broken_sections
    ]
    if broken.any() and fields[broken].str[1].isna().any():
        problems.append(f"{int(fields[broken].str[1].isna().sum())} rows without a section id dropped")
    good = fields[~broken]
    table = pd.DataFrame(good.tolist(), columns=COLUMNS, index=good.index)
    table = table[~table["TEST_SECTION_ID"].isin(broken_sections)]
    press = pd.to_numeric(table["PRESS_TIME"], errors="coerce")
    release = pd.to_numeric(table["RELEASE_TIME"], errors="coerce")
    section = pd.to_numeric(table["TEST_SECTION_ID"], errors="coerce")
    # between() is False for NaN and inf too; bounds keep the int64 casts below exact
    numeric = press.between(0, _MAX_MS) & release.between(0, _MAX_MS) & section.between(0, 2**53)
    if (~numeric).any():
        problems.append(
            f"{int((~numeric).sum())} rows with a non-numeric or out-of-range time (0 to {_MAX_MS} ms) or section dropped"
        )
    table, press, release, section = table[numeric], press[numeric], release[numeric], section[numeric]
    if table.empty:
        return pd.DataFrame(), problems, "no valid keystroke row"
    rows_out = pd.DataFrame(
        {
            "user_id": table["PARTICIPANT_ID"].str.strip(),
            "session_id": section.astype("int64"),
            "line": (table.index.to_numpy() + 2).astype(np.int32),  # header is line 1
            "key": table["LETTER"],
            # epoch ms, sometimes written as floats such as 1.473278e+12
            "time_ms": np.round(press.to_numpy(dtype=float)).astype(np.int64),
            "release_ms": np.round(release.to_numpy(dtype=float)).astype(np.int64),
            "keycode": pd.to_numeric(table["KEYCODE"], errors="coerce").where(lambda k: k.between(0, 2**31 - 1), 0).astype(np.int32),
        }
    )
    return rows_out.reset_index(drop=True), problems, None
