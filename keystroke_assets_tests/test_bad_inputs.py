"""The bad-input corpus: one version per storage mode holds every bad object next to good
participants. For each case the version materializes, the bad object is in a quality report with
its exact reason (parse_problems of raw_data, ignored_objects_report of web_app_data,
broken_participants of cleaned_data, quality_per_participant of keypairs), and the good rows of
every other object are all present, counted against the files themselves. Local mode adds what
only a folder can hold: symbolic links, a FIFO, a socket, a subfolder, a name that is not UTF-8, a
sparse 2 GB file (docs/reliability.md).

Victims are hand-made participants (`participant`): 18 tasks of 150 keystrokes of the keys a..j,
200 ms apart and held 80 ms (300 events, 149 pairs a task, nothing for keypairs to drop), so every
count below follows from the case alone. Three generated participants stand for real uploads.
"""

import json
import os
import re
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from keystroke_assets.synthetic import web_app_uploads

from .conftest import failed_rules_of, materialize_version, stored

T0 = 1_735_660_000_000
KEYS = "abcdefghij"
SELECTION = [dg.AssetKey(k) for k in ["web_app_data", "raw_data", "cleaned_data", "keypairs"]]
QUALITY = ["duplicates", "auto_repeats", "orphans", "unreleased", "release_before_press", "empty_keys"]
BIG_SIZE = 2 * 10**9  # a sparse file: 2 GB listed, no disk used, and reading it would take seconds


def user(n: int) -> str:
    return f"{0xBAD00000 + n:032x}"


def task(u: str, seq: int, suffix: str = ".csv") -> str:
    return f"{'fit'[seq % 3]}_{u}_{seq}{suffix}"


def clean_lines(t0: int = T0) -> list[str]:
    """150 keystrokes: event lines 2k (P) and 2k+1 (R) of keystroke k, key KEYS[k % 10]."""
    return [f"{e},{KEYS[k % 10]},{t0 + 200 * k + (80 if e == 'R' else 0)}" for k in range(150) for e in "PR"]


def csv(lines: list[str], header: bool = True) -> bytes:
    return ("\n".join((["Press or Release,Key,Time"] if header else []) + lines) + "\n").encode()


def with_line(extra: str, after: int = 10) -> bytes:
    """A clean task with one more line after event `after`: it is file line after + 3."""
    lines = clean_lines()
    return csv(lines[: after + 1] + [extra] + lines[after + 1 :])


def record(**fields) -> bytes:
    return json.dumps(fields).encode()


def participant(u: str, csvs: dict | None = None, **records) -> dict[str, bytes]:
    """The objects of a complete desktop participant; `csvs` replaces (bytes) or drops (None) task
    CSVs, keyword records replace (bytes) or drop (None) consent / demographics / start_time."""
    objects = {
        f"{u}_consent.json": record(consented="Yes", userId=u, userAgent="Mozilla/5.0 (X11; Linux x86_64)"),
        f"{u}_demographics.json": record(
            email=f"p{u[-4:]}@example.invalid", age="31", gender="x", is_mobile=False, device_type="desktop"
        ),
        f"{u}_start_time.json": record(start_timestamp="2025-06-01T10:00:00.000Z", timezone="Europe/Helsinki"),
    }
    for seq in range(18):  # task metadata and typed text are left out: cleaning needs neither
        objects[task(u, seq)] = csv(clean_lines(T0 + 100_000 * seq))
    for seq, data in (csvs or {}).items():
        objects[task(u, seq)] = data
    for kind, data in records.items():
        objects[f"{u}_{kind}.json"] = data
    return {name: data for name, data in objects.items() if data is not None}


AALTO_HEADER = (
    "PARTICIPANT_ID\tTEST_SECTION_ID\tSENTENCE\tUSER_INPUT\tKEYSTROKE_ID\tPRESS_TIME\tRELEASE_TIME\tLETTER\tKEYCODE"
)


def aalto_rows(pid: int, sections: int = 15) -> list[list[str]]:
    """20 keystrokes a section: press 1473275000000 + 10000 s + 150 k, held 90 ms."""
    return [
        [
            str(pid),
            str(1000 + s),
            "the quick brown fox",
            "the quick brown fox",
            str(20 * s + k),
            str(1_473_275_000_000 + 10_000 * s + 150 * k),
            str(1_473_275_000_000 + 10_000 * s + 150 * k + 90),
            "q",
            "81",
        ]
        for s in range(sections)
        for k in range(20)
    ]


def aalto(rows: list[list[str]], header: str = AALTO_HEADER) -> bytes:
    return ("\n".join([header] + ["\t".join(r) for r in rows]) + "\n").encode()


@dataclass
class Case:
    objects: dict[str, bytes]
    problems: dict[str, tuple[bool, str]] = field(default_factory=dict)  # raw_data: file -> (quarantined, problem)
    ignored: dict[str, str] = field(default_factory=dict)  # web_app_data: name -> reason
    broken: dict[str, str] = field(default_factory=dict)  # cleaned_data: user -> reasons
    complete: dict[str, str] = field(default_factory=dict)  # cleaned_data: user -> device_type
    rows: dict[str, int] = field(default_factory=dict)  # raw_data rows of files with some bad lines
    quality: dict[str, dict[str, int]] = field(default_factory=dict)  # keypairs: user -> non-zero counts
    pairs: dict[str, int] = field(default_factory=dict)  # keypairs of one task file
    modes: tuple[str, ...] = ("local", "gcs")
    entries: dict[str, Callable[[Path], None]] = field(default_factory=dict)  # local: made in the folder


CASES: dict[str, Case] = {}


def case(fn):
    CASES[fn.__name__] = fn(user(len(CASES)))
    return fn


def one_bad_line(u: str, line: str, reason: str) -> Case:
    """A task with one bad line among its 300 events: the line is dropped, the rest kept; the
    report says where and why, never what the line holds."""
    name = task(u, 0)
    return Case(
        participant(u, {0: with_line(line)}),
        problems={name: (False, f"1 bad lines dropped, first line 13: {reason}")},
        rows={name: 300},
        complete={u: "desktop"},
    )


def quarantined_task(u: str, data: bytes, problem: str) -> Case:
    """A task CSV quarantined whole: its participant is broken, everything else stays."""
    name = task(u, 0)
    return Case(
        participant(u, {0: data}),
        problems={name: (True, problem)},
        broken={u: f"task CSVs quarantined in raw_data: {name}"},
        rows={name: 0},
    )


# --- whole files ----------------------------------------------------------------------------
@case
def empty_file(u):
    return quarantined_task(u, b"", "empty file")


@case
def header_only(u):
    return quarantined_task(u, b"Press or Release,Key,Time\n\n\n", "header only")


@case
def binary_garbage(u):
    data = np.random.default_rng(6).bytes(4096)
    return quarantined_task(u, data, f"binary content (NUL byte at offset {data.index(0)})")


@case
def nul_bytes(u):
    data = with_line("P,\x00,1735660002000")
    return quarantined_task(u, data, f"binary content (NUL byte at offset {data.index(0)})")


@case
def wrong_delimiter(u):
    data = csv([line.replace(",", ";") for line in clean_lines()])
    return quarantined_task(
        u,
        data,
        "no valid event line; 300 bad lines, first line 2: fewer than 3 comma-separated fields",
    )


@case
def tab_separated(u):
    data = csv([line.replace(",", "\t") for line in clean_lines()], header=False)
    return quarantined_task(
        u,
        data,
        "no valid event line; 300 bad lines, first line 1: fewer than 3 comma-separated fields",
    )


@case
def only_presses(u):
    data = csv([line for line in clean_lines() if line[0] == "P"])
    return quarantined_task(u, data, "only press events (150), no release: no keystroke can be formed")


@case
def only_releases(u):
    data = csv([line for line in clean_lines() if line[0] == "R"])
    return quarantined_task(u, data, "only release events (150), no press: no keystroke can be formed")


@case
def not_utf8(u):
    data = with_line("P,é,1735660002000").replace("é".encode(), b"\xe9")  # Latin-1
    return quarantined_task(u, data, f"not UTF-8 text (invalid byte 0xe9 at offset {data.index(0xE9)})")


@case
def utf16_without_bom(u):
    data = csv(clean_lines()).decode().encode("utf-16-le")  # 'P' is 50 00: the first NUL is byte 1
    return quarantined_task(u, data, "binary content (NUL byte at offset 1)")


@case
def utf16_with_bom(u):
    name = task(u, 0)
    return Case(
        participant(u, {0: csv(clean_lines()).decode().encode("utf-16")}),
        problems={name: (False, "UTF-16 text read as such (the web app writes UTF-8)")},
        rows={name: 300},
        complete={u: "desktop"},
    )


@case
def windows_line_ends(u):
    name = task(u, 0)
    return Case(
        participant(u, {0: csv(clean_lines()).replace(b"\n", b"\r\n")}),
        rows={name: 300},
        complete={u: "desktop"},
        pairs={name: 149},
    )


@case
def utf8_bom_and_blank_lines(u):
    name = task(u, 0)
    data = b"\xef\xbb\xbf" + csv(clean_lines()).replace(b"\nP,f", b"\n\nP,f")  # 15 blank lines
    return Case(participant(u, {0: data}), rows={name: 300}, complete={u: "desktop"})


@case
def truncated_last_line(u):
    name = task(u, 0)
    return Case(
        participant(u, {0: csv(clean_lines()).rstrip(b"\n") + b"\nP,a,173566"}),
        problems={name: (False, "1 bad lines dropped, first line 302: time has 6 digits, not 13 digits of ms")},
        rows={name: 300},
        complete={u: "desktop"},
    )


@case
def big_file(u):
    """2 GB under a task's name (a sparse file): refused from its listed size, never read, never kept."""
    name = task(u, 0)
    return Case(
        participant(u, {0: None}),
        entries={name: lambda path: os.truncate(_touch(path), BIG_SIZE)},
        problems={
            name: (True, "not kept by the snapshot: 2000.0 MB, over the 32 MB limit for a keystroke file: never read")
        },
        ignored={name: "2000.0 MB, over the 32 MB limit for a keystroke file: never read"},
        broken={u: f"task CSVs quarantined in raw_data: {name}"},
        rows={name: 0},
        modes=("local",),  # GCS has no sparse objects: 2 GB through the emulator's memory
    )


def _touch(path: Path) -> Path:
    path.touch()
    return path


@case
def key_of_30_million_characters(u):
    """A 30 MB "key": the line is a bad line, so the key never reaches a stage."""
    name = task(u, 0)
    return Case(
        participant(u, {0: with_line("P," + "a" * 30_000_000 + ",1735660002010")}),
        problems={
            name: (False, "1 bad lines dropped, first line 13: key name of 30000000 characters, over the limit of 32")
        },
        rows={name: 300},
        complete={u: "desktop"},
        pairs={name: 149},
        modes=("local",),  # the same path in GCS mode, at 30 MB more through the emulator
    )


# --- single bad lines -------------------------------------------------------------------------
NOT_INTEGER = "time is not a non-negative integer of ms"
for _name, _line, _reason in [
    ("missing_field", "P,1735660002000", "fewer than 3 comma-separated fields"),
    ("extra_field_at_end", "P,a,1735660002000,x", "4 comma-separated fields, expected 3"),
    ("extra_field_in_middle", "P,a,b,1735660002000", "4 comma-separated fields, expected 3"),
    ("wrong_event_type", "X,a,1735660002000", "first field is not P or R"),
    ("non_numeric_time", "P,a,soon", NOT_INTEGER),
    ("negative_time", "P,a,-1735660002000", NOT_INTEGER),
    ("float_time", "P,a,1735660002000.5", NOT_INTEGER),
    ("scientific_time", "P,a,1.735660002e+12", NOT_INTEGER),
    ("huge_time", "P,a,99999999999999999999", "time has 20 digits, not 13 digits of ms"),
    ("tiny_time", "P,a,5", "time has 1 digits, not 13 digits of ms"),
    ("key_of_33_characters", "P," + "k" * 33 + ",1735660002010", "key name of 33 characters, over the limit of 32"),
    # what the participant typed (here an e-mail address) never appears in a report
    ("personal_text_in_a_bad_line", "P,jane.doe@example.invalid,soon", NOT_INTEGER),
]:
    CASES[_name] = one_bad_line(user(len(CASES)), _line, _reason)


# --- events keypairs has to untangle ----------------------------------------------------------
@case
def times_out_of_order(u):
    name = task(u, 0)
    return Case(
        participant(u, {0: csv(clean_lines()[::-1])}),  # reversed: every event after the first is earlier
        problems={name: (False, "299 events earlier than the line before: not in time order (sorted downstream)")},
        rows={name: 300},
        complete={u: "desktop"},
        quality={u: {}},  # sorted by time, the task is clean again
        pairs={name: 149},
    )


@case
def duplicate_events(u):
    name = task(u, 0)
    lines = clean_lines()
    for i in (100, 80, 60, 40, 20):  # from the end, so the indices stay right
        lines.insert(i + 1, lines[i])
    return Case(
        participant(u, {0: csv(lines)}),
        rows={name: 305},
        complete={u: "desktop"},
        quality={u: {"duplicates": 5}},
        pairs={name: 149},
    )


@case
def empty_key(u):
    """`P,,<t>` (no key name) is a keystroke, `Unidentified`: no bad line, no pair lost, counted."""
    name = task(u, 0)
    lines = clean_lines()
    lines[20:22] = [line.replace(f",{KEYS[0]},", ",,") for line in lines[20:22]]  # keystroke 10 (key a)
    return Case(
        participant(u, {0: csv(lines)}),
        rows={name: 300},
        complete={u: "desktop"},
        quality={u: {"empty_keys": 1}},
        pairs={name: 149},
    )


@case
def release_before_press(u):
    name = task(u, 0)
    lines = clean_lines()
    # keystroke 10 becomes key z released at 1735660002000, pressed 80 ms later and never released
    lines[20:22] = ["R,z,1735660002000", "P,z,1735660002080"]
    return Case(
        participant(u, {0: csv(lines)}),
        rows={name: 300},
        complete={u: "desktop"},
        quality={u: {"orphans": 1, "unreleased": 1}},
        pairs={name: 148},
    )


# --- names --------------------------------------------------------------------------------
PATH = "a path, not a name (contains '/'): the upload prefix is flat; never processed"
UNRECOGNISED = "unrecognised name: never processed"
NOT_A_TASK = "not a task of the study (f: 0, 3, .., 15; i: 1, 4, .., 16; t: 2, 5, .., 17); never processed"


@case
def name_with_spaces(u):
    return Case(
        {**participant(u), task(u, 0, " (1).csv"): csv(clean_lines()[:4])},
        ignored={task(u, 0, " (1).csv"): UNRECOGNISED},
        complete={u: "desktop"},
    )


@case
def name_with_unicode(u):
    names = [task(u, 0).replace("f_", "ƒ_"), "١٢٣_keystrokes.txt"]  # Arabic-Indic digits are no participant id
    return Case(
        {**participant(u), **{n: csv(clean_lines()[:4]) for n in names}},
        ignored={n: UNRECOGNISED for n in names},
        complete={u: "desktop"},
    )


@case
def name_in_a_folder(u):
    # GCS names are free text: a second copy of task 0 "inside a folder" must not be merged into
    # the participant's task 0
    return Case(
        {**participant(u), f"old/{task(u, 0)}": csv(clean_lines()[:4])},
        ignored={f"old/{task(u, 0)}": PATH},
        complete={u: "desktop"},
        pairs={task(u, 0): 149},
        modes=("gcs",),
    )


NOT_AN_OBJECT = {
    "symlink": "a symbolic link: never followed (only regular files directly in the upload store are read)",
    "folder": "a folder: the upload store is flat; never entered",
    "fifo": "a FIFO (named pipe), not a regular file: never opened",
    "socket": "a socket, not a regular file: never opened",
    "undecodable_name": "a name that is not valid UTF-8 (shown with its bytes escaped): never read",
}
OUTSIDE = b"P,outside,1735660000000\nR,outside,1735660000080\n" * 200  # 400 events outside the store


def _symlink(target: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        outside = path.parent.parent / "outside"
        outside.mkdir(exist_ok=True)
        (outside / "task.csv").write_bytes(OUTSIDE)
        path.symlink_to(outside / "task.csv" if target == "outside" else target)

    return make


def _in_folder(name: str, target: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.mkdir()
        (path / name).symlink_to(target)

    return make


@case
def symlink_out_of_the_store(u):
    """`t_<u>_2.csv -> a file outside`: never followed; task 2 is missing, not read from elsewhere."""
    name = task(u, 2)
    return Case(
        participant(u, {2: None}),
        entries={name: _symlink("outside"), f"f_{u}_3_metadata.json": _symlink("/dev/zero")},
        ignored={name: NOT_AN_OBJECT["symlink"], f"f_{u}_3_metadata.json": NOT_AN_OBJECT["symlink"]},
        broken={u: "1 task CSVs missing: 2"},
        rows={name: 0},
        modes=("local",),
    )


@case
def fifo_under_a_task_name(u):
    """A FIFO blocks whoever opens it for reading: it is never opened."""
    name = task(u, 3)
    return Case(
        participant(u, {3: None}),
        entries={name: lambda path: os.mkfifo(path)},
        ignored={name: NOT_AN_OBJECT["fifo"]},
        broken={u: "1 task CSVs missing: 3"},
        rows={name: 0},
        modes=("local",),
    )


@case
def subfolder_with_a_link_to_dev_zero(u):
    """The folder is listed by its name, never entered (reading /dev/zero would fill memory)."""
    return Case(
        participant(u),
        entries={"old": _in_folder(task(u, 0), "/dev/zero")},
        ignored={"old": NOT_AN_OBJECT["folder"]},
        complete={u: "desktop"},
        modes=("local",),
    )


def _socket(path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the socket file stays


def _undecodable(raw: bytes) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with open(os.fsencode(path.parent) + b"/" + raw, "wb") as f:
            f.write(csv(clean_lines()))

    return make


@case
def socket_and_name_not_utf8(u):
    raw = task(u, 0).encode().replace(b"f_", b"f\xff_")  # Latin-1 bytes in the name
    escaped = raw.decode("utf-8", "backslashreplace")
    return Case(
        participant(u),
        entries={"upload.sock": _socket, escaped: _undecodable(raw)},
        ignored={"upload.sock": NOT_AN_OBJECT["socket"], escaped: NOT_AN_OBJECT["undecodable_name"]},
        complete={u: "desktop"},
        modes=("local",),
    )


@case
def name_with_dotdot(u):
    # GCS names are free text: `uploads/../x` and `uploads//x` are objects under the prefix
    names = [f"../{task(u, 3)}", f"/{task(u, 6)}", f"./{task(u, 9)}", f"..\\{task(u, 12)}", f"{task(u, 0)}.."]
    return Case(
        {**participant(u), **{n: b"P,a,1\n" for n in names}},
        ignored={n: (UNRECOGNISED if "/" not in n else PATH) for n in names},
        complete={u: "desktop"},
        modes=("gcs",),
    )


@case
def partial_upload(u):
    name = task(u, 0) + ".gstmp"
    return Case(
        {**participant(u), name: b"P,a,17356"},
        ignored={name: "partial upload (.gstmp): ignored"},
        complete={u: "desktop"},
    )


# --- participants ---------------------------------------------------------------------------
@case
def seventeen_tasks(u):
    return Case(participant(u, {5: None}), broken={u: "1 task CSVs missing: 5"})


@case
def nineteen_tasks(u):
    extra = {task(u, 0).replace("_0.", "_18."): csv(clean_lines()), task(u, 0).replace("f_", "i_"): csv(clean_lines())}
    return Case({**participant(u), **extra}, ignored={n: NOT_A_TASK for n in extra}, complete={u: "desktop"})


@case
def consent_false(u):
    return Case(participant(u, consent=record(consented=False)), broken={u: 'consent is not "Yes" (a boolean)'})


@case
def consent_personal_answer(u):
    # the report says what kind of answer it was, never the answer
    answer = "No thanks, write to jane.doe@example.invalid"
    return Case(participant(u, consent=record(consented=answer)), broken={u: 'consent is not "Yes" (a string)'})


@case
def consent_not_json(u):
    return Case(
        participant(u, consent=b"{consented: Yes"), broken={u: "consent record not valid JSON (at line 1, column 2)"}
    )


@case
def consent_nested_200_kb_deep(u):
    data = b'{"consented": "Yes", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return Case(
        participant(u, consent=data), broken={u: "consent record nested 100001 levels deep, over the limit of 32"}
    )


@case
def consent_with_a_number_of_5000_digits(u):
    data = b'{"consented": "Yes", "n": ' + b"7" * 5000 + b"}"
    return Case(
        participant(u, consent=data),
        broken={u: "consent record holds a number of 5000 characters, over the limit of 32"},
    )


@case
def consent_over_the_size_limit(u):
    data = record(consented="Yes", padding="x" * 2_000_000)
    return Case(
        participant(u, consent=data),
        ignored={f"{u}_consent.json": "2.0 MB, over the 1024 KB limit for a JSON record: never read"},
        broken={
            u: "consent record not kept by the snapshot (2.0 MB, over the 1024 KB limit for a JSON record: never read)"
        },
    )


@case
def task_metadata_nested_deep(u):
    # the device type cannot come from metadata that is unusable: the participant is broken, the version goes on
    objects = participant(u, demographics=record(email="x@example.invalid"))
    objects[task(u, 0, "_metadata.json")] = b"[" * 50_000 + b"]" * 50_000
    return Case(objects, broken={u: "no is_mobile in the demographics record or the task metadata"})


@case
def consent_without_field(u):
    return Case(participant(u, consent=record(userId=u)), broken={u: "consent record has no 'consented' field"})


@case
def consent_not_an_object(u):
    return Case(participant(u, consent=b'["Yes"]'), broken={u: "consent record not a JSON object"})


@case
def consent_not_utf8(u):
    return Case(
        participant(u, consent='{"consented": "Yes", "name": "Jos\xe9"}'.encode("latin-1")),
        broken={u: "consent record not UTF-8 text (invalid byte at offset 33)"},
    )


@case
def demographics_not_json(u):
    # the device type could still come from the task metadata, but the record itself is required
    objects = participant(u, demographics=b"<html>502 Bad Gateway</html>")
    objects[task(u, 0, "_metadata.json")] = record(is_mobile=False)
    return Case(objects, broken={u: "demographics record not valid JSON (at line 1, column 1)"})


@case
def demographics_without_is_mobile(u):
    objects = participant(u, demographics=record(email="x@example.invalid"))
    objects[task(u, 0, "_metadata.json")] = record(is_mobile=True)
    return Case(objects, complete={u: "mobile"})  # taken from the task metadata


@case
def no_is_mobile_anywhere(u):
    objects = participant(u, demographics=record(email="x@example.invalid"))
    objects[task(u, 0, "_metadata.json")] = b"not json"
    return Case(objects, broken={u: "no is_mobile in the demographics record or the task metadata"})


@case
def start_time_missing(u):
    return Case(participant(u, start_time=None), broken={u: "start_time record missing"})


# --- Aalto files ----------------------------------------------------------------------------
@case
def aalto_float_and_scientific_times(u):
    rows = aalto_rows(910001)
    rows[0][5], rows[0][6] = "1.473275e+12", "1473275000090.0"  # exact as floats
    return Case(
        {"910001_keystrokes.txt": aalto(rows)}, rows={"910001_keystrokes.txt": 300}, complete={"910001": "desktop"}
    )


@case
def aalto_row_with_missing_field(u):
    rows = aalto_rows(910002, sections=16)
    del rows[25][8]  # section 1001 loses its KEYCODE in one row: that section is dropped
    return Case(
        {"910002_keystrokes.txt": aalto(rows)},
        problems={
            "910002_keystrokes.txt": (False, "section 1001: 1 rows with a wrong number of fields; section dropped")
        },
        rows={"910002_keystrokes.txt": 300},
        complete={"910002": "desktop"},
    )


@case
def aalto_huge_and_not_finite_times(u):
    rows = aalto_rows(910003)
    rows[3][5], rows[4][6], rows[5][5] = "1e300", "inf", "nan"
    return Case(
        {"910003_keystrokes.txt": aalto(rows)},
        problems={
            "910003_keystrokes.txt": (
                False,
                "3 rows with a non-numeric or out-of-range time (0 to 9999999999999 ms) or section dropped",
            )
        },
        rows={"910003_keystrokes.txt": 297},
        complete={"910003": "desktop"},
    )


@case
def aalto_release_before_press(u):
    rows = aalto_rows(910004)
    rows[7][6] = str(int(rows[7][5]) - 5)
    return Case(
        {"910004_keystrokes.txt": aalto(rows)},
        rows={"910004_keystrokes.txt": 300},
        complete={"910004": "desktop"},
        quality={"910004": {"release_before_press": 1}},
    )


@case
def aalto_latin1_and_crlf(u):
    rows = aalto_rows(910005)
    rows[0][2] = "déjà vu"
    data = aalto(rows).decode().encode("latin-1").replace(b"\n", b"\r\n")
    return Case({"910005_keystrokes.txt": data}, rows={"910005_keystrokes.txt": 300}, complete={"910005": "desktop"})


@case
def aalto_wrong_header(u):
    data = aalto(aalto_rows(910006), header="id,section,sentence")
    return Case(
        {"910006_keystrokes.txt": data},
        problems={
            "910006_keystrokes.txt": (
                True,
                "first line is not the header (1 tab-separated fields): expected "
                + " TAB ".join(AALTO_HEADER.split("\t")),
            )
        },
        rows={"910006_keystrokes.txt": 0},
    )


assert len(CASES) >= 25
GOOD = dict(web_app_uploads(3, seed=11, broken_every=0))
GOOD_USERS = sorted({n.split("_")[1] for n in GOOD if n.endswith(".csv")})


def objects_for(mode: str) -> dict[str, bytes]:
    objects = dict(GOOD)
    for c in CASES.values():
        if mode in c.modes:
            objects.update(c.objects)
    return objects


def is_event_file(name: str) -> bool:
    """A task CSV of the study or an Aalto file (docs/data.md §1), written out independently of ingest.names."""
    m = re.fullmatch(r"([fit])_[0-9a-f]{32}_([0-9]|1[0-7])\.csv", name)
    return bool(m and int(m[2]) % 3 == "fit".index(m[1])) or bool(re.fullmatch(r"[0-9]+_keystrokes\.txt", name))


@dataclass
class Run:
    mode: str
    storage: str
    result: dg.ExecuteInProcessResult
    objects: dict[str, bytes]
    problems: dict
    ignored: dict
    broken: dict
    devices: dict
    quality: dict
    manifest: pd.DataFrame
    raw: pd.DataFrame
    cleaned: pd.DataFrame
    pairs_per_file: pd.Series


def _records(instance, key: str, label: str) -> list[dict]:
    md = instance.get_latest_materialization_event(dg.AssetKey(key)).asset_materialization.metadata
    return [r.data for r in md[label].value.records]


@pytest.fixture(scope="module", params=["local", pytest.param("gcs", marks=pytest.mark.servers)])
def corpus(request, tmp_path_factory) -> Run:
    mode = request.param
    objects = objects_for(mode)
    tmp = tmp_path_factory.mktemp(f"corpus-{mode}")
    if mode == "local":
        uploads = tmp / "uploads"
        for name, data in objects.items():
            (uploads / name).parent.mkdir(parents=True, exist_ok=True)
            (uploads / name).write_bytes(data)
        for c in CASES.values():
            for name, make in c.entries.items():
                make(uploads / name)
        env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(tmp / "storage")}
    else:
        request.getfixturevalue("fake_gcs")
        from google.cloud import storage

        bucket = storage.Client(project="test").create_bucket("ks-bad-inputs-corpus")
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda item: bucket.blob(f"uploads/{item[0]}").upload_from_string(item[1]), objects.items()))
        env = {
            "KEYSTROKE_UPLOADS": "gs://ks-bad-inputs-corpus/uploads",
            "KEYSTROKE_STORAGE": "gs://ks-bad-inputs-corpus/datasets",
        }

    def read(key: str) -> pd.DataFrame:
        return stored(env["KEYSTROKE_STORAGE"], key)

    (tmp / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp / "home")) as instance:
        result = materialize_version(instance, env, selection=SELECTION, raise_on_error=False)
        raw, cleaned, pairs = read("raw_data"), read("cleaned_data"), read("keypairs")
        manifest = read("web_app_data")
        first = cleaned.drop_duplicates("user_id")
        run = Run(
            mode=mode,
            storage=env["KEYSTROKE_STORAGE"],
            result=result,
            objects=objects,
            problems={
                (r["file"], r["problem"]): r["quarantined"] for r in _records(instance, "raw_data", "parse_problems")
            },
            ignored={r["name"]: r["reason"] for r in _records(instance, "web_app_data", "ignored_objects_report")},
            broken={r["user_id"]: r["reasons"] for r in _records(instance, "cleaned_data", "broken_participants")},
            devices=dict(zip(first["user_id"].astype(str), first["device_type"].astype(str))),
            quality={r["user_id"]: r for r in _records(instance, "keypairs", "quality_per_participant")},
            manifest=manifest,
            raw=raw,
            cleaned=cleaned,
            pairs_per_file=pairs.groupby(["user_id", "task_id"], observed=True).size(),
        )
    if mode == "gcs":
        for blob in bucket.list_blobs():  # fake-gcs-server keeps objects in memory for the session
            blob.delete()
    yield run


def rows_per_file(df: pd.DataFrame) -> dict[str, int]:
    return df["file"].astype(str).value_counts().to_dict()


def test_the_version_materializes_with_every_check_passing(corpus):
    assert corpus.result.success
    failed = failed_rules_of(corpus.result)
    assert failed == []


@pytest.mark.parametrize("name", CASES)
def test_case(corpus, name):
    c = CASES[name]
    if corpus.mode not in c.modes:
        pytest.skip(f"{name} cannot be written in {corpus.mode} mode")
    for file, (quarantined, problem) in c.problems.items():
        assert corpus.problems.get((file, problem)) == quarantined, [p for p in corpus.problems if p[0] == file]
    # a file with no listed problem is in no report at all
    files = {n for n in [*c.objects, *c.entries] if is_event_file(n)}
    assert {f for f, _ in corpus.problems if f in files} == set(c.problems)
    for n, reason in c.ignored.items():
        assert corpus.ignored[n] == reason
    for u, reasons in c.broken.items():
        assert corpus.broken[u] == reasons
        assert u not in corpus.devices
    for u, device in c.complete.items():
        assert u not in corpus.broken
        assert corpus.devices[u] == device
    raw = rows_per_file(corpus.raw)
    for file, n in c.rows.items():
        assert raw.get(file, 0) == n
    for u, counts in c.quality.items():
        assert {k: corpus.quality[u][k] for k in QUALITY} == {k: counts.get(k, 0) for k in QUALITY}
    for file, n in c.pairs.items():
        u, seq = file.split("_")[1], int(file.split("_")[2].split(".")[0])
        assert corpus.pairs_per_file[(u, seq)] == n


def test_every_good_row_of_every_other_object_is_present(corpus):
    """Count the event lines of every file no case lists a problem for, against raw_data and
    (for complete participants) cleaned_data."""
    listed = {f for c in CASES.values() for f in c.problems}
    declared = {f for c in CASES.values() for f in c.rows}
    raw, cleaned = rows_per_file(corpus.raw), rows_per_file(corpus.cleaned)
    counted = 0
    for name, data in corpus.objects.items():
        if not is_event_file(name) or name in listed or name in declared:
            continue
        assert not [p for f, p in corpus.problems if f == name]
        text = data.decode("utf-8-sig") if not name.endswith(".txt") else data.decode("latin-1")
        lines = [line for line in text.splitlines()[1:] if line.strip()]
        assert raw.get(name, 0) == len(lines), name
        owner = name.split("_")[1] if name.endswith(".csv") else name.split("_")[0]
        assert cleaned.get(name, 0) == (len(lines) if owner in corpus.devices else 0), name
        counted += len(lines)
    assert counted > 100_000
    assert set(GOOD_USERS) <= set(corpus.devices)


def test_what_is_refused_or_no_object_is_listed_but_never_read_or_kept(corpus):
    if corpus.mode != "local":
        pytest.skip("links, FIFOs, folders and sparse files exist in local mode only")
    manifest = corpus.manifest.set_index("name")
    (big,) = CASES["big_file"].problems
    assert manifest.at[big, "size"] == BIG_SIZE
    assert manifest.at[big, "refused"].startswith("2000.0 MB, over the 32 MB limit")
    not_kept = [big, *(n for c in CASES.values() for n in c.entries if n != big)]
    assert manifest.loc[not_kept, "kept_as"].isna().all() and manifest.loc[not_kept, "md5"].isna().all()
    # the packs hold only what was kept: not the 2 GB, not what a link points to
    packs = Path(corpus.storage) / "web_app_data" / "packs"
    assert (
        sum(p.stat().st_size for p in packs.rglob("*.pack"))
        == manifest.drop_duplicates("md5")["size"][manifest["kept_as"].notna()].sum()
        < 50_000_000
    )
    # nothing of the file outside the store reached a stage (its key is in no other file)
    assert "outside" not in set(corpus.raw["key"].astype(str))
    assert big not in set(corpus.raw["file"].astype(str))
