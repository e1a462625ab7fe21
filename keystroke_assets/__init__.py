"""keystroke_assets: keystroke-dynamics datasets as Dagster software-defined assets."""
