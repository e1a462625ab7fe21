"""What a feature module declares to be evaluated, and finding the declarations."""

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType

import pandas as pd

SPLITS = ("session", "platform")


@dataclass(frozen=True)
class Evaluable:
    """A feature asset the verification benchmark evaluates.

    - feature: its key under `features/` (e.g. "typenet_ml/session"); the evaluation asset is
      `evaluation/<feature>`.
    - rows: the samples are the rows with these values (e.g. {"grain": "task"}); default every row.
    - split: "session" (each user's first sessions enrol, the later ones probe: protocol.py) or
      "platform" (leave-one-platform-out, for a grain that pools a user's sessions).
    - vectors: the samples as ids + numeric columns, for a table that is not one already (a
      sequence table pooled into a baseline); default: the rows as stored, every numeric column
      except the ids is a feature.
    - label: shown next to the feature in the results (e.g. "baseline").
    """

    feature: str
    rows: Mapping[str, object] = field(default_factory=dict)
    split: str = "session"
    vectors: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    label: str = ""

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"{self.feature}: split must be one of {', '.join(SPLITS)}, not {self.split!r}")
        if self.feature == "summary":
            raise ValueError("'summary' is the name of the evaluation summary; name the feature otherwise")


def declarations(package: ModuleType) -> list[Evaluable]:
    """Every Evaluable (or list of them) at the top level of the package's modules, by feature key:
    a module dropped into the package is found as definitions.py finds its assets."""
    found: dict[str, Evaluable] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            for item in value if type(value) in (list, tuple) else [value]:
                if isinstance(item, Evaluable):
                    found.setdefault(item.feature, item)
    return [found[k] for k in sorted(found)]
