"""keystroke_assets: keystroke-dynamics datasets as Dagster software-defined assets."""

import pandas as pd

# pandas 3's copy-on-write semantics now: a copy (the IO manager's, a filter, a reset index) shares
# its columns until one side writes, so handing several steps the same table costs nothing.
pd.set_option("mode.copy_on_write", True)
