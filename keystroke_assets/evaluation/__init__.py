"""Verification benchmark: how well each feature type tells typists apart, per version.

A feature type declares itself evaluable in its Feature, `Feature(..., evaluation=Evaluable(...))`
(declaration.py); `assets.py` makes `evaluation/<key>` for every such Feature it finds in the
features package, and
`evaluation/summary` over all of them. The protocol, scores and error rates are pure functions
in protocol.py.
"""

from keystroke_assets.evaluation.declaration import Evaluable
from keystroke_assets.evaluation.samples import pooled_steps

__all__ = ["Evaluable", "pooled_steps"]
