"""keystroke_assets: keystroke-dynamics datasets as Dagster software-defined assets."""

import pandas as pd

# pandas 3's copy-on-write semantics now: a copy (a filter, a reset index, a shallow copy) shares
# its columns until one side writes.
pd.set_option("mode.copy_on_write", True)
