"""The web app's JSON records (consent, demographics, start time, task metadata), parsed within
bounds: an upload is untrusted, so no record can exhaust the parser (docs/reliability.md).

A record is an object a few levels deep with short values. Deeper nesting would make Python's
parser recurse until it fails, and a number of thousands of digits makes `int` refuse it: each is
a reason the record is unusable, never an error of the step. Reasons name the kind of problem and
where it is, never the record's content (it is personal).
"""

import json

import numpy as np

MAX_DEPTH = 32  # real records are 2 levels deep
MAX_NUMBER_CHARS = 32  # real records' longest number is a 13-digit time in ms
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


class _NumberTooLong(ValueError):
    pass


def _number(parse):
    def bounded(text: str):
        if len(text) > MAX_NUMBER_CHARS:
            raise _NumberTooLong(f"a number of {len(text)} characters, over the limit of {MAX_NUMBER_CHARS}")
        return parse(text)

    return bounded


def nesting_depth(data: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest, brackets inside strings left out:
    counted over all bytes at once (these characters are ASCII, never inside a UTF-8 sequence)."""
    b = np.frombuffer(data, np.uint8)
    at = np.arange(len(b))
    # a quote is escaped when an odd number of backslashes comes right before it
    last_other = np.maximum.accumulate(np.where(b != _BACKSLASH, at, -1))
    backslashes = at - 1 - np.r_[-1, last_other[:-1]]
    quote = (b == _QUOTE) & (backslashes % 2 == 0)
    outside = np.cumsum(quote) % 2 == 0  # a quote opens or closes a string; brackets count outside
    steps = (np.isin(b, _OPEN) & outside).astype(np.int32) - (np.isin(b, _CLOSE) & outside)
    return int(np.cumsum(steps).max(initial=0))


def load_record(data: bytes | None) -> tuple[dict | None, str | None]:
    """(the record, None), or (None, why it is unusable): missing, not UTF-8, nested too deep, a
    number too long, not valid JSON, not an object."""
    if data is None:
        return None, "missing"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text (invalid byte at offset {e.start})"
    depth = nesting_depth(data)
    if depth > MAX_DEPTH:
        return None, f"nested {depth} levels deep, over the limit of {MAX_DEPTH}"
    try:
        value = json.loads(text, parse_int=_number(int), parse_float=_number(float))
    except json.JSONDecodeError as e:
        return None, f"not valid JSON (at line {e.lineno}, column {e.colno})"
    except _NumberTooLong as e:
        return None, f"holds {e}"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    return value, None


def json_type(value) -> str:
    """The JSON type of a value, to say what a field holds without its content."""
    for kind, name in [(bool, "a boolean"), (str, "a string"), (int | float, "a number"), (list, "a list")]:
        if isinstance(value, kind):
            return name
    return "null" if value is None else "an object"
