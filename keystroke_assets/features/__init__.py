"""Feature types: one module per type, each defining its asset(s) under the key prefix `features/`.

definitions.py loads every module of this package, so a new feature type is one new module.
Shared pieces live in `common.py`.
"""
