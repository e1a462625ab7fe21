"""JSON records parsed within bounds: deep nesting and huge numbers are reasons, never errors,
and a reason never quotes the record."""

import json

import pytest

from keystroke_assets.ingest.records import MAX_DEPTH, json_type, load_record, nesting_depth


def test_a_real_record_loads():
    data = json.dumps({"consented": "Yes", "time": 1735660013225, "screen": {"w": 1920, "h": 1080}}).encode()
    assert load_record(b"\xef\xbb\xbf" + data) == (json.loads(data), None)


@pytest.mark.parametrize(
    "text, depth",
    [
        (b"{}", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a": "[[[{{{"}', 1),  # brackets in a string do not nest
        (b'{"a": "\\\\", "b": [[]]}', 3),  # an escaped backslash does not escape the quote after it
        (b'{"a": "\\"[[[", "b": 1}', 1),  # an escaped quote does not end the string
        (b"[" * 1000 + b"]" * 1000, 1000),
    ],
)
def test_nesting_depth_by_hand(text, depth):
    assert nesting_depth(text) == depth


@pytest.mark.parametrize(
    "data, reason",
    [
        (None, "missing"),
        (b"[" * 100_000 + b"]" * 100_000, f"nested 100000 levels deep, over the limit of {MAX_DEPTH}"),
        (b'{"n": ' + b"9" * 5000 + b"}", "holds a number of 5000 characters, over the limit of 32"),
        (b'{"n": 1.' + b"5" * 40 + b"}", "holds a number of 42 characters, over the limit of 32"),
        (b'{"consented": "Yes"', "not valid JSON (at line 1, column 20)"),
        (b'["Yes"]', "not a JSON object"),
        ('{"name": "Jos\xe9"}'.encode("latin-1"), "not UTF-8 text (invalid byte at offset 13)"),
    ],
)
def test_unusable_records_give_a_reason_without_their_content(data, reason):
    assert load_record(data) == (None, reason)


def test_the_deepest_allowed_record_loads():
    deep = b'{"a": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert load_record(deep)[1] is None
    assert load_record(b'{"a": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}")[1].startswith("nested 33 levels")


def test_json_types_name_no_value():
    assert [json_type(v) for v in [False, "No", 0, 1.5, None, [], {}]] == [
        "a boolean",
        "a string",
        "a number",
        "a number",
        "null",
        "a list",
        "an object",
    ]
