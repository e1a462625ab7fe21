"""Deterministic synthetic uploads in the web-app and the Aalto "136M Keystrokes" formats.

Used for the demo (`dagster dev` with demo data), for tests and for benchmarks. Everything is
derived from `(seed, participant index)`: participant `i` gets the same id and the same bytes
whatever the number of participants generated, so generating 0..599 and then 600..605 gives the
same objects as generating 0..605 at once.

Web-app participants (docs/data.md §1) get 18 task CSVs with their `_metadata.json` and `_raw.txt`,
and consent, demographics, start-time and completion records. The CSVs carry the quirks of the
real app: nothing escaped (the comma key is `Key.comma`, or a raw `,` in some tasks as older app
versions wrote it; the double quote is a raw `"`), Shift released before its letter and a capital
released in lower case, auto-repeat presses, key rollover, long pauses, and rare exact duplicate
events, unreleased presses and orphan releases. Every 8th participant from index 5 (not on an
Android phone) types some words the browser could not name: their keys are written empty,
`P,,<t>` / `R,,<t>`. About 15 % of participants type on a phone, half of them (see `phone_kind`)
like the real Android participant, whose virtual keyboard reports every key as `Unidentified`
(except an occasional `Key.enter`) with holds of ~5 ms, half like the real iPhone, with real key
names, holds of ~11 ms (most under 30 ms) and capitals without Shift (the keyboard capitalizes).

`demo_uploads` mixes Aalto participants into a web-app upload set, so one version runs every path:
desktop, both kinds of phone, empty keys and the Aalto format.

Every `broken_every`-th participant (index % broken_every == broken_every - 1) is incomplete in
one of the ways of `BROKEN_KINDS`, in rotation: see `broken_kind`.

Generation is vectorized with numpy per participant (all 18 tasks, or all 15 Aalto sections, at
once), including the formatting of the CSV lines; Python only loops over words and files.

`no_identity_uploads` hands every participant's tasks to participants at random: a cohort in
which nothing ties two tasks of a "participant" together, the verification benchmark's guard
(docs/evaluation.md).

Command line:
    python -m keystroke_assets.synthetic --out DIR -n N [--seed S] [--format web_app|aalto|mixed]
        [--first-index I] [--broken-every B] [--aalto-share A] [--no-identity]
    python -m keystroke_assets.synthetic --out DIR --from UPLOADS --no-identity [--seed S]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import string
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from keystroke_assets.lib.ingest.aalto import COLUMNS as AALTO_COLUMNS

__all__ = [
    "BROKEN_KINDS",
    "CSV_HEADER",
    "MIN_EVENTS",
    "aalto_uploads",
    "broken_kind",
    "demo_uploads",
    "has_empty_keys",
    "is_aalto_participant",
    "is_mobile_participant",
    "main",
    "no_identity_uploads",
    "participant_id",
    "phone_kind",
    "task_prefix",
    "web_app_uploads",
    "write_uploads",
]

CSV_HEADER = "Press or Release,Key,Time"
MIN_EVENTS = 290  # the completeness bar of docs/data.md §2: every complete task has more events
N_TASKS = 18
N_AALTO_SECTIONS = 15
PLATFORMS = ("facebook", "instagram", "twitter")  # seq % 3 -> platform

# Broken web-app participants, in rotation: what makes a generated participant incomplete.
BROKEN_KINDS = ("consent_no", "missing_task_csv", "short_task", "no_demographics")

WEB_APP_CLOCK = 1_735_660_000_000  # the capture's fixed offset: CSV times start near this
AALTO_CLOCK = 1_473_275_000_000  # epoch ms of the Aalto study (September 2016)
STUDY_START = datetime(2025, 6, 1, tzinfo=UTC)  # wall clock of the JSON records

# ---------------------------------------------------------------------------------------------
# Keys. A key id indexes KEY_NAMES; ids 0..94 are the printable ASCII characters (code - 32).
_PRINTABLE = [chr(c) for c in range(32, 127)]
KEY_NAMES = [{" ": "Key.space", ",": "Key.comma"}.get(c, c) for c in _PRINTABLE] + [
    "Key.shift",
    "Key.backspace",
    "Key.enter",
    "Unidentified",
    ",",
    "",
]
SHIFT, BKSP, ENTER, UNIDENTIFIED, RAW_COMMA, EMPTY = range(95, 101)  # EMPTY: a key the browser did not name
COMMA, SPACE = ord(",") - 32, ord(" ") - 32
_N_KEYS = len(KEY_NAMES)
_SHIFTED_CHARS = set(string.ascii_uppercase) | set('"!?:_()&%$#@*+<>{}|~^')

_KEY_OF_CODE = np.zeros(128, np.int16)  # ASCII code -> key id
_KEY_OF_CODE[32:127] = np.arange(95)
_NEEDS_SHIFT = np.zeros(128, bool)
_NEEDS_SHIFT[[ord(c) for c in _SHIFTED_CHARS]] = True
_IS_LOWER = np.zeros(128, bool)
_IS_LOWER[[ord(c) for c in string.ascii_lowercase]] = True
_LOWER_KEY = np.arange(_N_KEYS, dtype=np.int16)  # key id -> key id of the lower-case letter
_LOWER_KEY[[ord(c) - 32 for c in string.ascii_uppercase]] = [ord(c) - 32 for c in string.ascii_lowercase]
_IDENTITY = _LOWER_KEY.astype(np.int64)  # keystroke identity (docs/features.md §1): case-folded
_IDENTITY[RAW_COMMA] = COMMA
_IS_UPPER_KEY = np.zeros(_N_KEYS, bool)
_IS_UPPER_KEY[[ord(c) - 32 for c in string.ascii_uppercase]] = True
_IS_LETTER_KEY = _IS_UPPER_KEY.copy()
_IS_LETTER_KEY[[ord(c) - 32 for c in string.ascii_lowercase]] = True
_LETTER_KEYS = np.array([ord(c) - 32 for c in string.ascii_lowercase], np.int16)
_PAUSE_AFTER = np.zeros(_N_KEYS, bool)  # thinking happens after a word or a sentence
_PAUSE_AFTER[[SPACE, ord(".") - 32, COMMA, ord("!") - 32, ord("?") - 32]] = True

# CSV lines are built as rows of a (n, 36) byte matrix: the prefix "P,<key>," right-aligned to
# column 19, the 13 digits of the time in columns 19..31 (4-digit groups at 20, 24, 28 written as
# uint32), "\n" in column 32; a mask per prefix keeps the used bytes.
_LINE_WIDTH, _PREFIX_END = 36, 19
_LINE_BYTES = np.zeros((2 * _N_KEYS, _LINE_WIDTH), np.uint8)
_LINE_MASK = np.zeros((2 * _N_KEYS, _LINE_WIDTH), bool)
for _i, (_t, _k) in enumerate((t, k) for t in "PR" for k in KEY_NAMES):
    _b = f"{_t},{_k},".encode()
    assert len(_b) <= _PREFIX_END
    _LINE_BYTES[_i, _PREFIX_END - len(_b) : _PREFIX_END] = np.frombuffer(_b, np.uint8)
    _LINE_MASK[_i, _PREFIX_END - len(_b) : _PREFIX_END + 14] = True
_LINE_BYTES[:, _PREFIX_END + 13] = ord("\n")
_LINE_LEN = _LINE_MASK.sum(axis=1)
_DIGITS4 = np.array([list(f"{i:04d}".encode()) for i in range(10_000)], np.uint8).view("<u4").ravel()


def _format_lines(kinds: np.ndarray, key_ids: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All `<P|R>,<key>,<time>\\n` lines as one byte array, and the end offset of each line."""
    code = kinds.astype(np.intp) * _N_KEYS + key_ids
    rows = _LINE_BYTES[code]
    if (times < 10**12).any() or (times >= 10**13).any():
        raise ValueError("times must have 13 digits")
    rows[:, _PREFIX_END] = times // 10**12 + 48
    words = rows.view("<u4")
    words[:, 5] = _DIGITS4[times // 10**8 % 10**4]
    words[:, 6] = _DIGITS4[times // 10**4 % 10**4]
    words[:, 7] = _DIGITS4[times % 10**4]
    return rows[_LINE_MASK[code]], np.cumsum(_LINE_LEN[code])


def _aalto_letter_keycode(key_id: int) -> tuple[str, int]:
    special = {SHIFT: ("SHIFT", 16), BKSP: ("BKSP", 8), ENTER: ("ENTER", 13), UNIDENTIFIED: ("", 0), EMPTY: ("", 0)}
    if key_id in special:
        return special[key_id]
    c = "," if key_id == RAW_COMMA else _PRINTABLE[key_id]
    if c.isalpha() or c.isdigit():
        return c, ord(c.upper())
    codes = {
        " ": 32,
        ".": 190,
        ",": 188,
        "'": 222,
        '"': 222,
        "?": 191,
        "/": 191,
        "!": 49,
        "-": 189,
        "_": 189,
        ";": 186,
        ":": 186,
        "=": 187,
        "(": 57,
        ")": 48,
    }
    return c, codes.get(c, 0)


_AALTO_SUFFIX = np.array(["\t".join(map(str, _aalto_letter_keycode(k))) for k in range(_N_KEYS)], dtype=object)

# ---------------------------------------------------------------------------------------------
# Text: what participants write about the videos they watched.
_WORDS = tuple(
    """the a an and or but so because of to in on at for with about from this that these those it
    is was are were be been being have has had do does did not no yes very really so too just
    also still even only never always again more most much many some any every all both
    i you he she we they me him her us them my your his our their its
    i'm i've i'd you're it's that's don't can't won't didn't isn't doesn't wasn't let's there's
    video movie scene clip show story song music voice sound picture people man woman kid kids
    family friend friends mother father team coach player game life world time day night year
    moment part end idea message point way reason feeling heart mind words face eyes tears smile
    love like liked enjoy enjoyed watch watched see saw think thought feel felt know knew want
    make made take took give gave say said tell told look looked seem seemed remind reminded
    believe hope wish need show showed share shared learn learned laugh cried help helped
    good great nice funny sad happy beautiful amazing awesome powerful real true strong important
    interesting boring honest simple hard easy different whole little big old new best better
    worst favorite deep warm kind brave wonderful terrible perfect emotional inspiring touching
    how what why when where who which if than then now here there today really maybe probably
    definitely actually totally literally pretty quite almost enough together everyone someone
    something nothing everything anyone people's lot lots bit kind of sort out up down over
    again back first last next same own other such""".split()
)
_WORD_LOWER = np.array(_WORDS, dtype=object)
_WORD_CAPITAL = np.array([w[0].upper() + w[1:] for w in _WORDS], dtype=object)
_WORD_LEN = np.array([len(w) for w in _WORDS])
_IS_I_WORD = np.array([w == "i" or w.startswith("i'") for w in _WORDS])
_PUNCT = np.array(["", ".", "!", "?", ","], dtype=object)
_QUOTE = np.array(["", '"'], dtype=object)


def _compose(
    rng: np.random.Generator, targets: np.ndarray, *, p_end: float, p_comma: float, p_quote: float, shift: bool = True
) -> list[str]:
    """One text per target: random words with capitals, punctuation and quotes, long enough to need
    at least `target` keystrokes (with a Shift keystroke per shifted character if `shift`)."""
    n_texts = len(targets)
    width = int(targets.max()) // 2 + 1  # a word is at least 2 keystrokes (a letter and a space)
    word = rng.integers(0, len(_WORDS), (n_texts, width))
    u = rng.random((5, n_texts, width))
    end = u[0] < p_end
    comma = ~end & (u[1] < p_comma)
    punct = np.where(end, 1 + (u[1] > 0.75) + (u[1] > 0.88), np.where(comma, 4, 0))
    start = np.ones_like(end)
    start[:, 1:] = end[:, :-1]
    cap = start | (_IS_I_WORD[word] & (u[3] < 0.7))
    # a quote of 1-3 words may open on every 4th word, so quotes never nest
    quote_open = (u[2] < p_quote) & (np.arange(width) % 4 == 0)
    quote_close = np.zeros_like(quote_open)
    rows, cols = np.nonzero(quote_open)
    cols = cols + (u[4][rows, cols] * 3).astype(int)
    quote_close[rows[cols < width], cols[cols < width]] = True
    opened, closed = quote_open.astype(np.int64), quote_close.astype(np.int64)
    keystrokes = _WORD_LEN[word] + 1 + opened + closed + (punct > 0)  # characters and a space
    if shift:
        keystrokes += cap + opened + closed + ((punct == 2) | (punct == 3))
    cut = (np.cumsum(keystrokes, axis=1) < targets[:, None]).sum(axis=1)  # index of the last word
    tokens = _QUOTE[opened] + np.where(cap, _WORD_CAPITAL[word], _WORD_LOWER[word]) + _QUOTE[closed] + _PUNCT[punct]
    texts = []
    for row, last in zip(tokens, cut.tolist()):
        text = " ".join(row[: last + 1].tolist())
        texts.append(text + '"' if text.count('"') % 2 else text)
    return texts


def _keystrokes(rng: np.random.Generator, texts: list[str], *, typo_p: float, shift: bool):
    """The keystrokes that type each text: Shift before shifted characters (if `shift`), typos
    corrected with Backspace. Returns (key ids, text index of each keystroke, Shift positions)."""
    codes = np.frombuffer("".join(texts).encode("ascii"), np.uint8)
    text_of_char = np.repeat(np.arange(len(texts)), [len(t) for t in texts])
    needs_shift = _NEEDS_SHIFT[codes] if shift else np.zeros(len(codes), bool)
    typo = (rng.random(len(codes)) < typo_p) & _IS_LOWER[codes]
    count = 1 + needs_shift + 2 * typo
    ends = np.cumsum(count)
    starts = ends - count
    keys = np.empty(int(ends[-1]), np.int16)
    keys[ends - 1] = _KEY_OF_CODE[codes]
    shift_pos = starts[needs_shift]
    keys[shift_pos] = SHIFT
    wrong = starts[typo]
    keys[wrong] = _LETTER_KEYS[rng.integers(0, 26, len(wrong))]
    keys[wrong + 1] = BKSP
    return keys, np.repeat(text_of_char, count), shift_pos


def _timing(
    rng: np.random.Generator, keys: np.ndarray, task: np.ndarray, shift_pos: np.ndarray, p: dict, t0: np.ndarray
):
    """Press and release times (int64 ms) of keystrokes; `task` (sorted) says which sequence each
    keystroke belongs to, sequence k starts at t0[k]. Returns (press, release, release key ids,
    auto-repeat press times, their key ids, their keystroke index)."""
    n = len(keys)
    hold = rng.lognormal(np.log(p["hold"]), p["hold_sigma"], n)
    hold[keys == SPACE] *= 1.1
    hold = np.clip(hold, p["hold_min"], 1500.0)

    # auto-repeat: a key held past the repeat delay (500 ms) sends 2-4 more presses, one per 33 ms
    repeat = (rng.random(n) < np.where(keys == BKSP, p["repeat_bksp"], p["repeat"])) & (keys != SHIFT)
    n_rep = np.where(repeat, rng.integers(2, 5, n), 0)
    hold[repeat] = 500.0 + 33.0 * (n_rep[repeat] - 1) + rng.uniform(15, 40, int(repeat.sum()))

    gap = rng.lognormal(np.log(p["gap"]), p["gap_sigma"], n - 1)  # release -> next press
    gap[_PAUSE_AFTER[keys[:-1]]] *= 1.3
    pause = rng.random(n - 1) < p["pause"]
    gap[pause] += rng.lognormal(np.log(3200.0), 0.5, int(pause.sum()))
    # rollover: the next key goes down before this one is up (never for the same key, which would
    # read as auto-repeat; a phone reports every key as the same `Unidentified`)
    ident = _IDENTITY[keys] + task.astype(np.int64) * _N_KEYS
    roll = (rng.random(n - 1) < p["rollover"]) & (ident[:-1] != ident[1:]) & ~repeat[:-1] & ~pause
    gap[roll] = -hold[:-1][roll] * rng.uniform(0.1, 0.75, int(roll.sum()))
    step = np.maximum(hold[:-1] + gap, 8.0)
    shift_pos = shift_pos[shift_pos < n - 1]
    step[shift_pos] = rng.uniform(60, 250, len(shift_pos))  # Shift goes down before its letter

    cum = np.concatenate([[0.0], np.cumsum(step)])
    first = np.searchsorted(task, task, side="left")  # first keystroke of the same sequence
    press = np.round(t0[task] + cum - cum[first]).astype(np.int64)
    release = press + np.maximum(np.round(hold).astype(np.int64), 1)
    release_keys = keys.copy()
    if len(shift_pos):
        letter = shift_pos + 1
        case = rng.random(len(letter))
        during_letter = press[letter] + np.round(hold[letter] * rng.uniform(0.1, 0.9, len(letter))).astype(np.int64)
        after_letter = release[letter] + rng.integers(5, 60, len(letter))
        before_letter = press[letter] - rng.integers(3, 40, len(letter))
        release[shift_pos] = np.where(case < 0.75, during_letter, np.where(case < 0.9, after_letter, before_letter))
        # Shift up first: the browser then reports the letter's release in lower case
        lower = (release[shift_pos] < release[letter]) & _IS_UPPER_KEY[keys[letter]] & (rng.random(len(letter)) < 0.1)
        release_keys[letter[lower]] = _LOWER_KEY[keys[letter[lower]]]

    # a key is up before it goes down again (else its next press would read as auto-repeat)
    order = np.lexsort((press, ident))
    same = ident[order[1:]] == ident[order[:-1]]
    cur = order[:-1][same]
    release[cur] = np.minimum(release[cur], press[order[1:]][same] - 1)

    rep_of = np.repeat(np.arange(n), n_rep)
    rep_j = np.arange(len(rep_of)) - np.repeat(np.cumsum(n_rep) - n_rep, n_rep)
    rep_times = press[rep_of] + 500 + 33 * rep_j
    ok = rep_times < release[rep_of]
    return press, release, release_keys, rep_times[ok], keys[rep_of[ok]], rep_of[ok]


# ---------------------------------------------------------------------------------------------
# Web-app participants


def participant_id(index: int, seed: int = 0) -> str:
    """32 lower-case hex characters, deterministic: md5 of f"{seed}:{index}"."""
    return hashlib.md5(f"{seed}:{index}".encode()).hexdigest()


def task_prefix(seq: int) -> str:
    """f, i or t: the platform letter of task `seq` (f: 0,3,..,15; i: 1,4,..,16; t: 2,5,..,17)."""
    return "fit"[seq % 3]


def broken_kind(index: int, broken_every: int = 25) -> str | None:
    """How web-app participant `index` is broken (one of BROKEN_KINDS), or None when complete.

    consent_no: consent record says "No"; missing_task_csv: one task CSV absent (its metadata and
    raw text are there); short_task: one task CSV with fewer than MIN_EVENTS events;
    no_demographics: no demographics record.
    """
    if broken_every <= 0 or index % broken_every != broken_every - 1:
        return None
    return BROKEN_KINDS[(index // broken_every) % len(BROKEN_KINDS)]


def _rng(seed: int, index: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, *more])


def is_mobile_participant(index: int, seed: int = 0) -> bool:
    """Whether web-app participant `index` types on a phone (about 15 % do)."""
    return bool(_rng(seed, index).random() < 0.15)


def phone_kind(index: int, seed: int = 0) -> str | None:
    """The phone web-app participant `index` types on: `android` (every key `Unidentified`, holds of
    ~5 ms), `iphone` (real key names, holds of ~11 ms), half each; None on a desktop."""
    if not is_mobile_participant(index, seed):
        return None
    return "android" if _rng(seed, index, 2).random() < 0.5 else "iphone"


def has_empty_keys(index: int, seed: int = 0) -> bool:
    """Whether web-app participant `index` types some words whose keys the browser did not name
    (`P,,<t>` / `R,,<t>`): every 8th from index 5, except on an Android phone (all `Unidentified`)."""
    return index % 8 == 5 and phone_kind(index, seed) != "android"


def is_aalto_participant(index: int, aalto_share: float) -> bool:
    """Whether `demo_uploads` makes participant `index` an Aalto one: spread evenly, a share
    `aalto_share` of every run of indices (0.1: indices 9, 19, 29, ...)."""
    return int((index + 1) * aalto_share) > int(index * aalto_share)


_DESKTOP_DEVICES = (
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36",
        "Win32",
        "1920x1080",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/139.0.0.0 Safari/537.36 Edg/139.0.0.0",
        "Win32",
        "1536x864",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Safari/605.1.15",
        "MacIntel",
        "1440x900",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36",
        "MacIntel",
        "1280x800",
    ),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:141.0) Gecko/20100101 Firefox/141.0", "Linux x86_64", "1920x1200"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:142.0) Gecko/20100101 Firefox/142.0", "Win32", "1366x768"),
)
_PHONES = {  # device_type as the real task metadata writes it: user agent, platform, screen
    "android": (
        (
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/139.0.0.0 Mobile Safari/537.36",
            "Linux armv81",
            "393x873",
        ),
        (
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Mobile Safari/537.36",
            "Linux aarch64",
            "412x915",
        ),
    ),
    "iphone": (
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Mobile/15E148 Safari/604.1",
            "iPhone",
            "390x844",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/138.0.7204.119 Mobile/15E148 Safari/604.1",
            "iPhone",
            "390x844",
        ),
    ),
}
_TIMEZONES = (
    "America/Los_Angeles",
    "America/New_York",
    "America/Chicago",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Calcutta",
    "Asia/Tokyo",
    "Australia/Sydney",
)
_GENDERS = ("Female", "Male", "Non-binary", "Prefer not to say")
_HANDEDNESS = ("Right", "Right", "Right", "Right", "Left", "Ambidextrous")
_EDUCATION = ("High school", "Some college", "Bachelor's degree", "Master's degree", "Doctorate", "Other")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _json(obj: dict) -> bytes:
    return json.dumps(obj, indent=2).encode()


def _task_metadata_template(user: str, mobile: bool, device_type: str, agent: str, screen: str) -> str:
    """The `_metadata.json` of a task as a %-template of (platform_id, task_id, start_time,
    end_time, duration_ms, platform): json.dumps(indent=2) of the same dict, 20x faster."""
    fields = {
        "user_id": user,
        "platform_id": "%d",
        "task_id": "%d",
        "start_time": -1,
        "end_time": -2,
        "duration_ms": -3,
        "platform": "%s",
        "is_mobile": mobile,
        "device_type": device_type,
        "user_agent": agent,
        "screen_size": screen,
    }
    text = json.dumps(fields, indent=2).replace("%", "%%").replace('"%%d"', '"%d"').replace('"%%s"', '"%s"')
    return text.replace(": -1,", ": %d,").replace(": -2,", ": %d,").replace(": -3,", ": %d,")


def _typing_params(rng: np.random.Generator, phone: str | None) -> dict:
    """A participant's typing style (ms). A phone's virtual keyboard fires press and release
    together: holds of a few ms, as the real participants (Android: median 5 ms, 5-95 % 2-9 ms;
    iPhone: median 11 ms, 87 % under 30 ms), no auto-repeat and next to no rollover."""
    if phone == "android":
        return {
            "hold": rng.uniform(4, 6),
            "hold_sigma": rng.uniform(0.35, 0.45),
            "hold_min": 1.0,
            "gap": rng.uniform(130, 200),
            "gap_sigma": rng.uniform(0.7, 0.9),
            "pause": rng.uniform(0.01, 0.035),
            "rollover": 0.0,
            "repeat": 0.0,
            "repeat_bksp": 0.0,
            "typo": rng.uniform(0.005, 0.02),
            "quote": 0.0,
            "raw_comma": 0.0,
        }
    if phone == "iphone":
        return {
            "hold": rng.uniform(9, 12),
            "hold_sigma": rng.uniform(0.75, 0.9),
            "hold_min": 1.0,
            "gap": rng.uniform(90, 140),
            "gap_sigma": rng.uniform(0.5, 0.65),
            "pause": rng.uniform(0.005, 0.02),
            "rollover": rng.uniform(0.003, 0.01),
            "repeat": 0.0,
            "repeat_bksp": 0.0,
            "typo": rng.uniform(0.02, 0.04),
            "quote": 0.0,
            "raw_comma": 0.0,
        }
    return {
        "hold": rng.uniform(80, 125),
        "hold_sigma": rng.uniform(0.2, 0.35),
        "hold_min": 15.0,
        "gap": rng.uniform(120, 220),
        "gap_sigma": rng.uniform(0.45, 0.65),
        "pause": rng.uniform(0.015, 0.05),
        "rollover": rng.uniform(0.07, 0.2),
        "repeat": 0.001,
        "repeat_bksp": 0.08,
        "typo": rng.uniform(0.01, 0.03),
        "quote": 0.04,
        "raw_comma": 0.2,  # share of tasks written by an older app version (raw comma key)
    }


def _task_csvs(
    rng: np.random.Generator, p: dict, phone: str | None, clock: int, short_task: int | None, empty_keys: bool
):
    """The 18 task CSVs of one participant: [(csv bytes, typed text, typing duration ms)]."""
    n_tasks = N_TASKS
    targets = rng.integers(150, 201, n_tasks)  # keystrokes: >= 300 events a task
    short_target = int(rng.integers(30, 110))  # < 290 events (drawn always: same stream)
    if short_task is not None:
        targets[short_task] = short_target
    # a phone capitalizes by itself: no Shift keystrokes
    texts = _compose(rng, targets, p_end=0.11, p_comma=0.07, p_quote=p["quote"], shift=phone is None)
    keys, task, shift_pos = _keystrokes(rng, texts, typo_p=p["typo"], shift=phone is None)
    if empty_keys:  # 2-5 % of the words typed with keys the browser does not name
        word = np.cumsum(keys == SPACE)
        unnamed = rng.random(int(word[-1]) + 1) < rng.uniform(0.02, 0.05)
        keys[unnamed[word] & _IS_LETTER_KEY[keys]] = EMPTY
    enter = rng.random(n_tasks) < 0.2
    if phone == "android":
        keys[:] = UNIDENTIFIED  # its virtual keyboard names no key but Enter, at the end of some tasks
        ends = np.searchsorted(task, np.flatnonzero(enter), side="right")
        keys = np.insert(keys, ends, ENTER)
        task = np.insert(task, ends, np.flatnonzero(enter))
    t0 = clock + rng.uniform(1500, 15000, n_tasks)
    press, release, release_keys, rep_t, rep_k, rep_of = _timing(rng, keys, task, shift_pos, p, t0)
    n, n_rep = len(keys), len(rep_t)
    k_start = np.searchsorted(task, np.arange(n_tasks))
    k_end = np.searchsorted(task, np.arange(n_tasks), side="right")

    times = np.concatenate([press, rep_t, release])
    kinds = np.concatenate([np.zeros(n + n_rep, np.int8), np.ones(n, np.int8)])
    key_ids = np.concatenate([keys, rep_k, release_keys])
    tasks = np.concatenate([task, task[rep_of], task])
    # a press never released (often the last key, as the page moves on)
    unreleased = rng.random(n_tasks) < 0.08
    which = np.where(
        rng.random(n_tasks) < 0.5, k_end - 1, k_start + (rng.random(n_tasks) * (k_end - k_start)).astype(np.int64)
    )
    keep = np.ones(len(times), bool)
    keep[n + n_rep + which[unreleased]] = False
    times, kinds, key_ids, tasks = times[keep], kinds[keep], key_ids[keep], tasks[keep]
    order = np.argsort((tasks.astype(np.int64) << 42) + (times - times.min()), kind="stable")
    times, kinds, key_ids, tasks = times[order], kinds[order], key_ids[order], tasks[order]

    e_start = np.searchsorted(tasks, np.arange(n_tasks))
    e_end = np.searchsorted(tasks, np.arange(n_tasks), side="right")
    orphan = np.flatnonzero(rng.random(n_tasks) < 0.01)  # a release of the previous page's Enter
    orphan_at = e_start[orphan]
    orphan_dt = rng.integers(30, 400, n_tasks)[orphan]
    duplicate = rng.random(n_tasks) < 0.03  # the same event logged twice
    dup_at = (e_start + rng.random(n_tasks) * (e_end - e_start)).astype(np.int64)[duplicate]
    at = np.concatenate([orphan_at, dup_at])
    times = np.insert(times, at, np.concatenate([times[orphan_at] - orphan_dt, times[dup_at]]))
    kinds = np.insert(kinds, at, np.concatenate([np.ones(len(orphan), np.int8), kinds[dup_at]]))
    key_ids = np.insert(key_ids, at, np.concatenate([np.full(len(orphan), ENTER, np.int16), key_ids[dup_at]]))
    tasks = np.insert(tasks, at, np.concatenate([tasks[orphan_at], tasks[dup_at]]))
    raw_comma = (rng.random(n_tasks) < p["raw_comma"])[tasks] & (key_ids == COMMA)
    key_ids[raw_comma] = RAW_COMMA

    data, line_end = _format_lines(kinds, key_ids, times)
    e_end = np.searchsorted(tasks, np.arange(n_tasks), side="right")
    e_start = np.searchsorted(tasks, np.arange(n_tasks))
    byte_end = line_end[e_end - 1]
    byte_start = np.concatenate([[0], byte_end[:-1]])
    header = (CSV_HEADER + "\n").encode()
    return [
        (header + data[a:b].tobytes(), text, int(times[z - 1] - times[s]))
        for a, b, s, z, text in zip(byte_start.tolist(), byte_end.tolist(), e_start.tolist(), e_end.tolist(), texts)
    ]


def _web_app_participant(index: int, seed: int, broken_every: int) -> Iterator[tuple[str, bytes]]:
    rng = _rng(seed, index)
    mobile = bool(rng.random() < 0.15)  # the same draw as is_mobile_participant
    phone = phone_kind(index, seed)
    p = _typing_params(rng, phone)
    u = participant_id(index, seed)
    kind = broken_kind(index, broken_every)
    odd_task = int(rng.integers(0, N_TASKS))  # the task a broken participant misses or cuts short
    devices = _PHONES[phone] if phone else _DESKTOP_DEVICES
    agent, platform, screen = devices[int(rng.integers(0, len(devices)))]
    device_type = phone or "desktop"
    start_ms = int((STUDY_START + timedelta(minutes=47 * index)).timestamp() * 1000) + int(rng.integers(0, 40 * 60_000))
    clock = WEB_APP_CLOCK + int(rng.integers(0, 60_000))  # this participant's capture offset

    yield (
        f"{u}_consent.json",
        _json(
            {
                "consented": "No" if kind == "consent_no" else "Yes",
                "userId": u,
                "timestamp": _iso(start_ms - int(rng.integers(20_000, 120_000))),
                "userAgent": agent,
                "url": "https://typing-study.example.invalid/consent",
            }
        ),
    )
    yield (
        f"{u}_start_time.json",
        _json(
            {
                "start_timestamp": _iso(start_ms),
                "timezone": _TIMEZONES[int(rng.integers(0, len(_TIMEZONES)))],
                "session_id": u,
            }
        ),
    )
    demographics = _json(
        {
            "email": f"participant{index:04d}@example.invalid",
            "gender": _GENDERS[int(rng.integers(0, len(_GENDERS)))],
            "age": str(int(rng.integers(18, 70))),
            "handedness": _HANDEDNESS[int(rng.integers(0, len(_HANDEDNESS)))],
            "education": _EDUCATION[int(rng.integers(0, len(_EDUCATION)))],
            "consent_email_for_future": bool(rng.random() < 0.4),
            "submission_timestamp": _iso(start_ms + int(rng.integers(30_000, 180_000))),
            "device_info": {"userAgent": agent, "platform": platform, "screen": screen, "language": "en-US"},
            "is_mobile": mobile,
            "device_type": device_type,
        }
    )
    if kind != "no_demographics":
        yield f"{u}_demographics.json", demographics

    t = start_ms + int(rng.integers(200_000, 400_000))  # the first task starts after the forms
    waits = rng.integers(20_000, 240_000, N_TASKS)  # watching the next video
    extra = rng.integers(5_000, 40_000, N_TASKS)  # reading, thinking, submitting
    tasks = _task_csvs(
        _rng(seed, index, 1), p, phone, clock, odd_task if kind == "short_task" else None, has_empty_keys(index, seed)
    )
    meta = _task_metadata_template(u, mobile, device_type, agent, screen)
    for seq, (csv, text, typing_ms) in enumerate(tasks):
        stem = f"{task_prefix(seq)}_{u}_{seq}"
        duration = typing_ms + int(extra[seq])
        yield f"{stem}_metadata.json", (meta % (seq % 3, seq, t, t + duration, duration, PLATFORMS[seq % 3])).encode()
        if not (kind == "missing_task_csv" and seq == odd_task):
            yield f"{stem}.csv", csv
        yield f"{stem}_raw.txt", text.encode()
        t += duration + int(waits[seq])

    yield (
        f"{u}_completion.json",
        _json(
            {
                "completion_timestamp": _iso(t),
                "user_id": u,
                "study_version": "1.0",
                "last_task_index": N_TASKS,
                "completion_status": "success",
                "survey_code_generated": "pending",
                "redirect_to_survey_code": True,
                "mturk_worker_id": None,
                "mturk_assignment_id": None,
                "mturk_hit_id": None,
                "is_mturk_session": False,
            }
        ),
    )


def web_app_uploads(
    n_participants: int, seed: int = 0, *, first_index: int = 0, broken_every: int = 25
) -> Iterator[tuple[str, bytes]]:
    """Yield (object_name, bytes) for every upload object of n participants in the web-app format.

    Participants are `first_index .. first_index + n_participants - 1`; the objects of each depend
    only on (seed, index) and on `broken_kind(index, broken_every)`.
    """
    for index in range(first_index, first_index + n_participants):
        yield from _web_app_participant(index, seed, broken_every)


# ---------------------------------------------------------------------------------------------
# Aalto "136M Keystrokes"


def _aalto_participant(index: int, seed: int) -> tuple[str, bytes]:
    rng = _rng(seed, index, 136)
    pid = 100_000 + index
    p = {
        "hold": rng.uniform(70, 130),
        "hold_sigma": rng.uniform(0.2, 0.35),
        "hold_min": 20.0,
        "gap": rng.uniform(60, 160),
        "gap_sigma": rng.uniform(0.4, 0.6),
        "pause": rng.uniform(0.003, 0.015),
        "rollover": rng.uniform(0.15, 0.45),
        "repeat": 0.0,
        "repeat_bksp": 0.0,
    }
    typo_p = rng.uniform(0.01, 0.04)
    n = N_AALTO_SECTIONS
    sentences = _compose(rng, rng.integers(40, 58, n), p_end=0.0, p_comma=0.02, p_quote=0.0)
    mark = np.where(rng.random(n) < 0.85, ".", "?")
    sentences = [s.rstrip(",") + m for s, m in zip(sentences, mark.tolist())]
    inputs = [s + " " if r < 0.3 else s for s, r in zip(sentences, rng.random(n).tolist())]
    keys, section, shift_pos = _keystrokes(rng, inputs, typo_p=typo_p, shift=True)
    press, release, *_ = _timing(rng, keys, section, shift_pos, p, np.zeros(n))
    # sections one after the other, 3-25 s apart
    k_start = np.searchsorted(section, np.arange(n))
    span = np.maximum.reduceat(release, k_start) - press[k_start]
    offset = AALTO_CLOCK + 600_000 * index + int(rng.integers(0, 3_600_000))
    offset += np.concatenate([[0], np.cumsum(span + rng.integers(3_000, 25_000, n))[:-1]])
    press, release = press + offset[section], release + offset[section]

    ids = 50_000_000 + 10_000 * index + np.cumsum(rng.integers(1, 8, len(keys)))
    order = np.arange(len(keys))
    swap = np.flatnonzero((rng.random(len(keys) - 1) < 0.01) & (section[:-1] == section[1:]))
    swap = swap[np.diff(swap, prepend=-2) > 1]  # rows written slightly out of order
    order[swap], order[swap + 1] = order[swap + 1], order[swap]
    section_ids = 1_000_000 + 100 * index + np.cumsum(rng.integers(1, 7, n))
    heads = [f"{pid}\t{sid}\t{s}\t{i}\t" for sid, s, i in zip(section_ids.tolist(), sentences, inputs)]
    rows = [
        f"{heads[s]}{i}\t{a}\t{b}\t{lk}"
        for s, i, a, b, lk in zip(
            section[order].tolist(),
            ids[order].tolist(),
            press[order].tolist(),
            release[order].tolist(),
            _AALTO_SUFFIX[keys[order]].tolist(),
        )
    ]
    return f"{pid}_keystrokes.txt", ("\t".join(AALTO_COLUMNS) + "\n" + "\n".join(rows) + "\n").encode()


def aalto_uploads(n_participants: int, seed: int = 0, *, first_index: int = 0) -> Iterator[tuple[str, bytes]]:
    """Yield (object_name, bytes) of `<PARTICIPANT_ID>_keystrokes.txt` files in the Aalto 136M format.

    PARTICIPANT_ID is 100000 + index; 15 sections of one sentence each, one row per keystroke.
    """
    for index in range(first_index, first_index + n_participants):
        yield _aalto_participant(index, seed)


def demo_uploads(
    n_participants: int, seed: int = 0, *, first_index: int = 0, broken_every: int = 25, aalto_share: float = 0.1
) -> Iterator[tuple[str, bytes]]:
    """Yield (object_name, bytes) of n participants of both formats in one upload set: participant
    `index` is an Aalto one (`<100000 + index>_keystrokes.txt`) when `is_aalto_participant(index,
    aalto_share)`, else the web-app participant `index` of `web_app_uploads` (desktop or phone,
    with empty keys or not, broken or not, exactly as there). Depends only on (seed, index), as
    the other generators."""
    if not 0 <= aalto_share <= 1:
        raise ValueError(f"aalto_share is a share of participants, in [0, 1], not {aalto_share}")
    for index in range(first_index, first_index + n_participants):
        if is_aalto_participant(index, aalto_share):
            yield _aalto_participant(index, seed)
        else:
            yield from _web_app_participant(index, seed, broken_every)


# ---------------------------------------------------------------------------------------------
# A cohort without identity: the verification benchmark's guard (docs/evaluation.md)

_TASK_OBJECT = re.compile(r"^[fit]_([0-9a-f]{32})_(1[0-7]|[0-9])(\.csv|_raw\.txt|_metadata\.json)$")
_AALTO_OBJECT = re.compile(r"^([0-9]+)_keystrokes\.txt$")


def _web_app_kinds(objects: dict[str, bytes]) -> dict[str, str]:
    """Web-app participants with all 18 task CSVs -> their kind of device: the demographics
    record's is_mobile and device_type (desktop, android, iphone, ...; a phone's keyboard goes
    with it); participants without is_mobile are left out."""
    csvs: dict[str, int] = {}
    for name in objects:
        if (m := _TASK_OBJECT.match(name)) and m.group(3) == ".csv":
            csvs[m.group(1)] = csvs.get(m.group(1), 0) + 1
    kinds = {}
    for user, count in csvs.items():
        record = objects.get(f"{user}_demographics.json")
        if count == N_TASKS and record is not None:
            demographics = json.loads(record)
            if isinstance(demographics.get("is_mobile"), bool):
                kinds[user] = f"{demographics['is_mobile']}/{demographics.get('device_type')}"
    return kinds


def _aalto_sections(data: bytes) -> tuple[str, list[str], dict[str, list[str]]]:
    """(header, section ids in order, rows per section) of an Aalto file, decoded as its parser
    decodes it (UTF-8, else Latin-1): rows moved between files are written back as UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    header, *rows = text.rstrip("\n").split("\n")
    sections: dict[str, list[str]] = {}
    for row in rows:
        if row.count("\t") >= 2:  # a row without a section id has no section to travel with
            sections.setdefault(row.split("\t", 2)[1], []).append(row)
    return header, sorted(sections, key=lambda s: (len(s), s)), sections


def no_identity_uploads(uploads: Iterable[tuple[str, bytes]], seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """The upload objects with every participant's typing handed to participants at random, so that
    no identity ties any two of a participant's tasks together: for each task slot (web app: task
    number 0-17; Aalto: a section's rank by id), an independent seeded random permutation of the
    participants of one kind (web-app desktops, each kind of phone its demographics record names,
    Aalto participants; web-app ones with all 18 task CSVs) says whose task each participant's slot
    holds: its CSV, metadata (user id rewritten) and typed text; an Aalto section's rows
    (participant and section ids rewritten; every Aalto file written as UTF-8, since a Latin-1 one
    may give rows to a UTF-8 one). Records and every other object stay as they are, so
    each participant keeps its source and its kind of device and keyboard, as a real one would:
    only who typed is gone.

    A participant's 18 tasks come from up to 18 people, chosen independently of who anyone is:
    each slot holds its own participant's task with probability 1/n, as likely as anyone else's, so
    a genuine comparison is distributed like an impostor one and any verification measured on the
    cohort must give EER 0.5 within its sampling error. (Forbidding a participant's own task would
    make genuine pairs a little less alike than impostor pairs, who may share a typist.)"""
    objects = dict(uploads)
    rng = np.random.default_rng([seed, 23])
    out = dict(objects)
    kinds = _web_app_kinds(objects)
    for kind in sorted(set(kinds.values())):
        users = sorted(u for u, k in kinds.items() if k == kind)
        for seq in range(N_TASKS):
            donors = rng.permutation(len(users))
            for user, donor in zip(users, (users[d] for d in donors)):
                stem, donor_stem = f"{task_prefix(seq)}_{user}_{seq}", f"{task_prefix(seq)}_{donor}_{seq}"
                for suffix in (".csv", "_raw.txt", "_metadata.json"):
                    if donor_stem + suffix in objects:
                        data = objects[donor_stem + suffix]
                        out[stem + suffix] = (
                            data.replace(donor.encode(), user.encode()) if suffix == "_metadata.json" else data
                        )
                    else:
                        out.pop(stem + suffix, None)
    aalto = {m.group(1): name for name in objects if (m := _AALTO_OBJECT.match(name))}
    parsed = {pid: _aalto_sections(objects[name]) for pid, name in sorted(aalto.items())}
    rebuilt = {pid: [header] for pid, (header, _, _) in parsed.items()}
    for rank in range(max((len(order) for _, order, _ in parsed.values()), default=0)):
        users = [pid for pid, (_, order, _) in parsed.items() if len(order) > rank]
        donors = rng.permutation(len(users))
        for user, donor in zip(users, (users[d] for d in donors)):
            _, donor_order, donor_rows = parsed[donor]
            section = parsed[user][1][rank]
            for row in donor_rows[donor_order[rank]]:
                _, _, rest = row.split("\t", 2)
                rebuilt[user].append("\t".join([user, section, rest]))
    for pid, lines in rebuilt.items():
        out[aalto[pid]] = ("\n".join(lines) + "\n").encode()
    yield from sorted(out.items())


# ---------------------------------------------------------------------------------------------


def write_uploads(dest: str | os.PathLike, uploads: Iterable[tuple[str, bytes]]) -> int:
    """Write objects as files into a local folder (created if missing); return the count."""
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    count = 0
    for name, data in uploads:
        path = root / name
        if "/" in name:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m keystroke_assets.synthetic",
        description="Write deterministic synthetic keystroke uploads into a local folder.",
    )
    parser.add_argument("--out", required=True, help="destination folder (created if missing)")
    parser.add_argument("-n", "--participants", type=int, help="number of participants (not with --from)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--format",
        choices=("web_app", "aalto", "mixed"),
        default="web_app",
        help="mixed: web-app participants with a share of Aalto ones (demo_uploads)",
    )
    parser.add_argument("--first-index", type=int, default=0, help="index of the first participant")
    parser.add_argument(
        "--broken-every", type=int, default=25, help="web_app: every B-th participant is broken (0: none); default 25"
    )
    parser.add_argument(
        "--aalto-share",
        type=float,
        default=0.1,
        help="mixed: share of the participants in the Aalto format; default 0.1",
    )
    parser.add_argument(
        "--no-identity",
        action="store_true",
        help="hand every participant's tasks to participants at random (no_identity_uploads): the guard cohort",
    )
    parser.add_argument(
        "--from", dest="source", help="with --no-identity: the upload folder to shuffle (e.g. real samples)"
    )
    args = parser.parse_args(argv)
    if (args.source is None) == (args.participants is None):
        parser.error("give -n to generate participants, or --from DIR (with --no-identity) to shuffle a folder")
    if args.source is not None and not args.no_identity:
        parser.error("--from shuffles a folder: it needs --no-identity")
    if (args.participants or 0) < 0 or args.first_index < 0 or args.broken_every < 0:
        parser.error("-n, --first-index and --broken-every must not be negative")

    if args.source is not None:
        uploads = ((f.name, f.read_bytes()) for f in sorted(Path(args.source).iterdir()) if f.is_file())
    elif args.format == "web_app":
        uploads = web_app_uploads(
            args.participants, args.seed, first_index=args.first_index, broken_every=args.broken_every
        )
    elif args.format == "mixed":
        uploads = demo_uploads(
            args.participants,
            args.seed,
            first_index=args.first_index,
            broken_every=args.broken_every,
            aalto_share=args.aalto_share,
        )
    else:
        uploads = aalto_uploads(args.participants, args.seed, first_index=args.first_index)
    if args.no_identity:
        uploads = no_identity_uploads(uploads, args.seed)
    total = 0

    def counted() -> Iterator[tuple[str, bytes]]:
        nonlocal total
        for name, data in uploads:
            total += len(data)
            yield name, data

    began = time.perf_counter()
    count = write_uploads(args.out, counted())
    if args.source is not None:
        what = f"the uploads of {args.source}"
    else:
        last = args.first_index + args.participants - 1
        indices = f"indices {args.first_index}..{last}" if args.participants else "no indices"
        what = f"{args.participants} {args.format} participants ({indices}, seed {args.seed})"
    print(
        f"wrote {count} files ({total / 1e6:.1f} MB) for {what}{', without identity' if args.no_identity else ''} "
        f"to {args.out} in {time.perf_counter() - began:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
