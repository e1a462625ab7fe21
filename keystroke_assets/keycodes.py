"""Browser keyCode of a web-app key (spec/features.md §3, typenet_sequences)."""

import numpy as np
import pandas as pd

_SPECIAL = {
    "Key.space": 32, " ": 32, "Key.shift": 16, "Key.ctrl": 17, "Key.alt": 18, "Key.cmd": 91,
    "Key.enter": 13, "Key.backspace": 8, "Key.tab": 9, "Key.esc": 27, "Key.caps_lock": 20,
    "Key.left": 37, "Key.up": 38, "Key.right": 39, "Key.down": 40, "Key.comma": 188,
}
_SYMBOLS = {
    ",": 188, ".": 190, "/": 191, ";": 186, "'": 222, "[": 219, "]": 221, "\\": 220, "-": 189,
    "=": 187, "`": 192,
    # a shifted symbol takes its base key's code
    "<": 188, ">": 190, "?": 191, ":": 186, '"': 222, "{": 219, "}": 221, "|": 220, "_": 189,
    "+": 187, "~": 192, "!": 49, "@": 50, "#": 51, "$": 52, "%": 53, "^": 54, "&": 55, "*": 56,
    "(": 57, ")": 48,
}


def keycode(key: str) -> int:
    if key in _SPECIAL:
        return _SPECIAL[key]
    if key in _SYMBOLS:
        return _SYMBOLS[key]
    if len(key) == 1 and key.isascii() and key.isalpha():
        return ord(key.upper())
    if len(key) == 1 and key.isascii() and key.isdigit():
        return ord(key)
    return 0  # Unidentified, Dead and anything else unknown


def keycodes(keys: pd.Series) -> np.ndarray:
    """Vectorized over the distinct keys only."""
    codes, uniques = pd.factorize(keys, use_na_sentinel=False)
    table = np.fromiter((keycode(k) if isinstance(k, str) else 0 for k in uniques), np.int32, len(uniques))
    return table[codes]


def key_identity(keys: pd.Series) -> pd.Series:
    """A single character compares case-insensitively; longer names as they are."""
    codes, uniques = pd.factorize(keys, use_na_sentinel=False)
    ident = np.array([k.lower() if isinstance(k, str) and len(k) == 1 else k for k in uniques], dtype=object)
    return pd.Series(ident[codes], index=keys.index)
