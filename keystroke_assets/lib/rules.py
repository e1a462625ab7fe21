"""The rules an asset's table must hold (its one blocking check, `rules`), as plain functions of a
DataFrame, and how a table stored in segments gets the outcome of its whole."""

import hashlib
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import pandas as pd

from keystroke_assets.lib.frames import without_attrs


@dataclass(frozen=True)
class OutputCheck:
    """A rule an asset's output must hold, computed on the DataFrame by a plain function.

    fn returns (passed, metadata); a module-level function or a functools.partial of one, so that a
    worker process can run it. Every rule of a table stored in segments holds row by row or on the
    columns: it passes on the whole when it passes on every non-empty segment, its counts add up
    and its lists of names unite (merge_outcomes).
    """

    name: str
    description: str
    fn: Callable[[pd.DataFrame], tuple[bool, dict]]

    def identity(self) -> list[str]:
        """Name and a hash of what decides the rule's outcome: its description, its function's
        source and a partial's arguments. Part of a segment's address, so that a rule changed
        without a code version bump is evaluated again, never taken from a stored outcome. (What
        the function calls is code of the stage, covered by its code_version.)"""
        return [self.name, source_hash(self.fn, f"rule {self.name!r}", self.description)]


def source_hash(fn: Callable, what: str, *more: str) -> str:
    """A hash of a module-level function's name and source, a partial's arguments and `more`: what
    decides the result of a rule or a facts function, in a segment's address. `what` names it in
    the error that refuses a lambda or a closure (no worker process could import it)."""
    fn, args = (fn.func, (fn.args, sorted(fn.keywords.items()))) if isinstance(fn, partial) else (fn, ((), []))
    if fn.__name__ == "<lambda>" or "<locals>" in fn.__qualname__:
        raise TypeError(f"{what}: its function must be module-level, not {fn.__qualname__}")
    stable = ([_argument(a, what) for a in args[0]], [(k, _argument(v, what)) for k, v in args[1]])
    text = "\n".join([*more, f"{fn.__module__}:{fn.__qualname__}", inspect.getsource(fn), repr(stable)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _argument(value, what: str) -> str:
    """A partial's argument as an address sees it, the same in every process: a function by its
    own source hash, anything else by its repr, refused where that repr names a memory address."""
    if inspect.isfunction(value) or isinstance(value, partial):
        return source_hash(value, what)
    text = repr(value)
    if re.search(r" at 0x[0-9a-fA-F]+", text):
        raise TypeError(f"{what}: its argument {text} is not the same in another process: pass plain values")
    return text


def rule_outcomes(df: pd.DataFrame, checks: Iterable[OutputCheck]) -> dict[str, tuple[bool, dict]]:
    """(passed, metadata) of every rule on df."""
    df = without_attrs(df)
    return {c.name: (bool(passed), metadata) for c in checks for passed, metadata in [c.fn(df)]}


def failed_rules(df: pd.DataFrame, checks: Iterable[OutputCheck]) -> set[str]:
    return {name for name, (passed, _) in rule_outcomes(df, checks).items() if not passed}


def merge_outcomes(parts: Iterable[tuple[dict, bool]]) -> dict[str, tuple[bool, dict]]:
    """The rules' outcomes on a whole table from those of its segments, each (outcomes, empty): a
    rule passes when it passes on every non-empty segment (on the empty table when all are
    empty), its counts add up and its lists of names ("a, b" or "none") unite."""
    merged: dict[str, tuple[bool, dict]] = {}
    empty = None
    for outcomes, is_empty in parts:
        if is_empty:
            empty = outcomes
            continue
        for name, (passed, metadata) in outcomes.items():
            if name in merged:
                before, seen = merged[name]
                passed, metadata = before and passed, {k: _merged(seen[k], v) for k, v in metadata.items()}
            merged[name] = (bool(passed), metadata)
    return merged or empty or {}


def _merged(a, b):
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool):
        return a + b
    if isinstance(a, str) and isinstance(b, str):  # "none" or names joined by ", "
        names = dict.fromkeys(n for n in [*a.split(", "), *b.split(", ")] if n != "none")
        return ", ".join(names) or "none"
    raise TypeError(f"no rule to merge check metadata {a!r} and {b!r} over segments")


# The shared rules' functions are module-level (with functools.partial for their arguments), so a
# rule can be pickled to the process that computes a segment.
def _rows(df: pd.DataFrame) -> tuple[bool, dict]:
    return len(df) > 0, {"rows": len(df)}


def non_empty() -> OutputCheck:
    return OutputCheck("non_empty", "The output has at least one row.", _rows)


def _missing_columns(columns: list[str], df: pd.DataFrame) -> tuple[bool, dict]:
    missing = [c for c in columns if c not in df.columns]
    return not missing, {"missing_columns": ", ".join(missing) or "none"}


def has_columns(columns: list[str]) -> OutputCheck:
    return OutputCheck("schema", f"Columns present: {', '.join(columns)}.", partial(_missing_columns, columns))


def _null_cells(columns: list[str], df: pd.DataFrame) -> tuple[bool, dict]:
    present = [c for c in columns if c in df.columns]
    nulls = {c: int(df[c].isna().sum()) for c in present}
    return sum(nulls.values()) == 0 and len(present) == len(columns), {
        "null_cells": sum(nulls.values()),
        "columns_with_nulls": ", ".join(c for c, n in nulls.items() if n) or "none",
    }


def no_nulls(columns: list[str]) -> OutputCheck:
    return OutputCheck("no_nulls", f"No missing values in {', '.join(columns)}.", partial(_null_cells, columns))
