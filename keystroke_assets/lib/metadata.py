"""Metadata values that say how they are shown: the wiring turns a Markdown text (a plot) into
Dagster's markdown metadata and a Table into a table, where a plain string would show as text."""

from dataclasses import dataclass

import pandas as pd


class Markdown(str):
    pass


@dataclass(frozen=True)
class Table:
    """A DataFrame shown as a table of its first `max_rows` rows (a bare DataFrame: 200)."""

    df: pd.DataFrame
    max_rows: int = 200
