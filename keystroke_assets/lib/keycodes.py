"""Key names and keycodes shared by every source (docs/features.md §1, §3).

One table maps each source's spelling of a key onto one canonical name (the web app's names), so a
version mixing the web app and Aalto shares its space and backspace digraphs. Keypairs keep the key
as recorded; whatever groups or codes keys goes through `key_identity` / `keycodes` here.
"""

from typing import Literal

import numpy as np
import pandas as pd

UNIDENTIFIED = "Unidentified"

# Other spellings of a key → the web app's name. Aalto writes ' ', BKSP, SHIFT, ...; older web-app
# files wrote the comma key raw; an empty key name is a keystroke the browser could not name.
CANONICAL_NAMES = {
    " ": "Key.space",
    "BKSP": "Key.backspace",
    "SHIFT": "Key.shift",
    "CTRL": "Key.ctrl",
    "ALT": "Key.alt",
    "ENTER": "Key.enter",
    "TAB": "Key.tab",
    "CAPS_LOCK": "Key.caps_lock",
    "ESC": "Key.esc",
    "ARW_LEFT": "Key.left",
    "ARW_RIGHT": "Key.right",
    "ARW_UP": "Key.up",
    "ARW_DOWN": "Key.down",
    ",": "Key.comma",
    "": UNIDENTIFIED,
}

# Browser keyCode of the keys with a name (canonical names only).
_SPECIAL = {
    "Key.space": 32,
    "Key.shift": 16,
    "Key.ctrl": 17,
    "Key.alt": 18,
    "Key.cmd": 91,
    "Key.enter": 13,
    "Key.backspace": 8,
    "Key.tab": 9,
    "Key.esc": 27,
    "Key.caps_lock": 20,
    "Key.left": 37,
    "Key.up": 38,
    "Key.right": 39,
    "Key.down": 40,
    "Key.comma": 188,
}
_SYMBOLS = {
    ".": 190,
    "/": 191,
    ";": 186,
    "'": 222,
    "[": 219,
    "]": 221,
    "\\": 220,
    "-": 189,
    "=": 187,
    "`": 192,
    # a shifted symbol takes its base key's code
    "<": 188,
    ">": 190,
    "?": 191,
    ":": 186,
    '"': 222,
    "{": 219,
    "}": 221,
    "|": 220,
    "_": 189,
    "+": 187,
    "~": 192,
    "!": 49,
    "@": 50,
    "#": 51,
    "$": 52,
    "%": 53,
    "^": 54,
    "&": 55,
    "*": 56,
    "(": 57,
    ")": 48,
}


def canonical_key(key: str) -> str:
    """The key's identity: its canonical name, a single character lower-cased."""
    key = CANONICAL_NAMES.get(key, key)
    return key.lower() if len(key) == 1 else key


def keycode(key: str) -> int:
    key = canonical_key(key)
    if key in _SPECIAL:
        return _SPECIAL[key]
    if key in _SYMBOLS:
        return _SYMBOLS[key]
    if len(key) == 1 and key.isascii() and key.isalpha():
        return ord(key.upper())
    if len(key) == 1 and key.isascii() and key.isdigit():
        return ord(key)
    return 0  # Unidentified, Dead and anything else unknown


def _per_distinct(keys: pd.Series, fn, dtype) -> np.ndarray:
    """fn applied to the distinct keys only (a version has a few hundred), spread back to every row."""
    codes, uniques = pd.factorize(keys, use_na_sentinel=False)
    table = np.array([fn(k) if isinstance(k, str) else fn(UNIDENTIFIED) for k in uniques], dtype=dtype)
    return table[codes] if len(table) else np.zeros(len(keys), dtype)


def keycodes(keys: pd.Series) -> np.ndarray:
    return _per_distinct(keys, keycode, np.int32)


def key_identity(keys: pd.Series) -> pd.Series:
    """Canonical identity of every key (see canonical_key)."""
    return pd.Series(_per_distinct(keys, canonical_key, object), index=keys.index)


# `keycodes` run config of the assets whose ordered keycodes could spell out typed text (kvc,
# typenet_sequences, the KVC export): `full` keeps them; `classes` keeps only the kind of key;
# `none` writes 0 everywhere.
KeycodePolicy = Literal["full", "classes", "none"]
KEY_CLASSES = {0: "other", 1: "letter", 2: "digit", 3: "space", 4: "punctuation", 5: "modifier", 6: "navigation"}
_CLASS_OF_CODE = np.zeros(256, np.int32)  # 0 = other (Unidentified, Dead, unknown)
_CLASS_OF_CODE[65:91] = 1
_CLASS_OF_CODE[48:58] = 2
_CLASS_OF_CODE[96:106] = 2  # numpad digits (Aalto records them)
_CLASS_OF_CODE[32] = 3
_CLASS_OF_CODE[[106, 107, 108, 109, 110, 111, 186, 187, 188, 189, 190, 191, 192, 219, 220, 221, 222]] = 4
_CLASS_OF_CODE[[16, 17, 18, 20, 91, 92, 93, 224]] = 5
# editing and moving: backspace, tab, enter, esc, page up/down, end, home, arrows, insert, delete
_CLASS_OF_CODE[[8, 9, 13, 27, 33, 34, 35, 36, 37, 38, 39, 40, 45, 46]] = 6
RECONSTRUCTABLE_LABEL = {"contains": "reconstructable typed text"}


def apply_keycode_policy(codes: np.ndarray, policy: KeycodePolicy) -> np.ndarray:
    """Keycodes (0..255) as the policy allows: unchanged, their class (KEY_CLASSES) or 0."""
    if policy == "full":
        return codes
    if policy == "classes":
        return _CLASS_OF_CODE[np.clip(codes, 0, 255)].astype(codes.dtype, copy=False)
    if policy == "none":
        return np.zeros_like(codes)
    raise ValueError(f"unknown keycodes policy {policy!r}: full, classes or none")


KEYCODE_POLICIES: tuple[KeycodePolicy, ...] = ("full", "classes", "none")  # each keeps less than the one before


def policy_note(policy: KeycodePolicy) -> str:
    """Start of the stored description of a keycode column: says the policy it was written under
    (`policy_of` reads it back), so an export never applies `classes` to classes."""
    meaning = {
        "full": "browser keyCode (Aalto: its KEYCODE column), 0 for an unknown key",
        "classes": "class of the key: " + ", ".join(f"{code} {name}" for code, name in KEY_CLASSES.items()),
        "none": "0 everywhere, left out",
    }[policy]
    return f"keycodes={policy}: {meaning}"


def policy_of(description: str | None) -> KeycodePolicy:
    """The policy a stored keycode column was written under; `full` for files written before the policy."""
    for policy in KEYCODE_POLICIES:
        if (description or "").startswith(f"keycodes={policy}:"):
            return policy
    return "full"
