"""What a feature type declares to be evaluated (its Feature's `evaluation`), and finding the
declarations."""

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType

import pandas as pd

from keystroke_assets.lib.declared import declared


@dataclass(frozen=True)
class Evaluable:
    """How the verification benchmark evaluates a feature type (`Feature(..., evaluation=Evaluable(...))`).

    - rows: the samples are the rows with these values (e.g. {"grain": "task"}); default every row.
    - vectors: the samples as ids + numeric columns, for a table that is not one already (a
      sequence table pooled into a baseline, typenet_ml's statistics before its fill); default: the
      rows as stored, every numeric column except the ids is a feature. Must not use one row's
      values in another's vector (a fill over a user's rows carries the user's identity into its
      probes): the protocol fits everything on enrolment samples itself.
    - key_dependent: the columns are keys (per-key statistics): never compared across phone
      keyboards that name keys and those that report `Unidentified`.
    - not_evaluable: why the rows cannot be evaluated (e.g. they pool the sessions that enrolment
      and probe must not share); reported per device type instead of rates.
    - label: shown next to the feature in the results (e.g. "baseline").
    - feature: the feature's key under `features/` (e.g. "typenet_ml/session"), taken from the
      Feature that declares it; the evaluation asset is `evaluation/<feature>`.
    """

    rows: Mapping[str, object] = field(default_factory=dict)
    vectors: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    key_dependent: bool = False
    not_evaluable: str = ""
    label: str = ""
    feature: str = ""

    def __post_init__(self):
        if self.feature == "summary":
            raise ValueError("'summary' is the name of the evaluation summary; name the feature otherwise")


def evaluations(features: Iterable) -> list[Evaluable]:
    """The evaluation of every Feature (duck-typed: `name`, `evaluation`) that declares one, named by
    its feature key."""
    return [
        dataclasses.replace(f.evaluation, feature=f.name)
        for f in features
        if isinstance(getattr(f, "evaluation", None), Evaluable)
    ]


def declarations(package: ModuleType) -> list[Evaluable]:
    """The evaluations of the feature types declared in the package's modules, by feature key."""
    found = {e.feature: e for e in reversed(evaluations(declared(package)))}  # the first of a name
    return [found[k] for k in sorted(found)]
