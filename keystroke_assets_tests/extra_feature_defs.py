"""A code location = the project's assets + a feature type it does not have (hold_by_key_class.py).
test_backfill points `dagster-daemon` at this module to backfill the new feature over versions that
already exist.
"""

import dagster as dg

from keystroke_assets import definitions as project
from keystroke_assets.assets.features import feature_asset
from keystroke_assets.resources import resources_from_env

from .hold_by_key_class import HOLD_BY_KEY_CLASS

hold_by_key_class = feature_asset(HOLD_BY_KEY_CLASS)

defs = dg.Definitions(
    assets=[*project.defs.assets, hold_by_key_class], resources=resources_from_env(), executor=project.defs.executor
)
