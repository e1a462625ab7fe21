"""The code location: every asset, check, sensor and resource of keystroke_assets."""

import dagster as dg

from keystroke_assets import assets, features
from keystroke_assets.assets.features import feature_assets
from keystroke_assets.automation import automation_sensor
from keystroke_assets.evaluation.assets import evaluation_assets
from keystroke_assets.resources import resources_from_env
from keystroke_assets.sensors import upload_sensor

defs = dg.Definitions(
    assets=[
        *dg.load_assets_from_package_module(assets),
        *feature_assets(features),  # an asset per feature type declared in the package
        *evaluation_assets(features),  # an evaluation per feature module that declares one
    ],
    sensors=[upload_sensor, automation_sensor],
    resources=resources_from_env(),
    # A version's steps are a short chain of pandas work: one process per step would spend more
    # time importing Dagster than computing.
    executor=dg.in_process_executor,
)
