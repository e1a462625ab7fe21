"""The project's Dagster-free library: pure functions and plain data under the Dagster wiring.
Nothing here imports Dagster or the rest of keystroke_assets; the wiring (assets, resources, the
segment engine's steps) imports from here."""
