"""The code location of benchmarks/backfill.py: the project's assets and resources without its
sensors, so that nothing but the timed backfill runs."""

import dagster as dg

from keystroke_assets import definitions as project

defs = dg.Definitions(assets=project.defs.assets, resources=project.defs.resources, executor=project.defs.executor)
