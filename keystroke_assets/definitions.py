"""The code location: every asset, check, sensor and resource of keystroke_assets."""

import dagster as dg

from keystroke_assets import assets, features
from keystroke_assets.resources import resources_from_env

defs = dg.Definitions(
    assets=[
        *dg.load_assets_from_package_module(assets),
        *dg.load_assets_from_package_module(features),
    ],
    resources=resources_from_env(),
)
