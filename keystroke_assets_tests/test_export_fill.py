"""export.load of typenet_ml with its fill fitted on given rows, or without a fill, on the real
samples (docs/features.md §3): a filled value recomputed here from the keystrokes themselves."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from keystroke_assets.export import load
from keystroke_assets.features.typenet_ml_fill import OBSERVED, observed_cells, statistic_columns
from keystroke_assets.lib.keycodes import key_identity
from keystroke_assets.resources import object_store

from .conftest import VERSION, failed_rules_of, materialize_version, upload_folder

SESSION = "features/typenet_ml/session"
SELECTION = [
    dg.AssetKey.from_user_string(k)
    for k in ["web_app_data", "raw_data", "cleaned_data", "keystrokes", "keypairs", SESSION]
]


@pytest.fixture(scope="module")
def storage(real_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("export_fill")
    uploads = upload_folder(
        root / "uploads", real_data / "fpd_webapp_2025" / "web_app_data", real_data / "aalto136m_desktop"
    )
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(root / "storage")}
    (root / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
        result = materialize_version(instance, env, selection=SELECTION)
        assert result.success and failed_rules_of(result) == []
    return object_store(str(root / "storage"))


def test_unfilled_is_the_stored_table_where_observed(storage):
    stored = load(SESSION, VERSION, storage)
    unfilled = load(SESSION, VERSION, storage, filled=False)
    columns = statistic_columns(stored)
    observed = observed_cells(stored)
    assert np.array_equal(observed_cells(unfilled), observed)
    assert np.array_equal(unfilled[columns].to_numpy()[observed], stored[columns].to_numpy()[observed])
    assert unfilled[columns].isna().to_numpy().sum() == (~observed).sum() > 0


def test_fill_fitted_on_session_1_by_hand(storage):
    # a web-app desktop row of session 2 missing a key's HL median that web-app session-1 rows have:
    # the stored rule fills it with its user's mean over all its rows; fitted on session 1 it takes
    # the mean, over the session-1 desktop rows observing the key, of each row's median hold of the
    # key in 30-2000 ms, recomputed here from the keystrokes
    stored = load(SESSION, VERSION, storage)
    fit = lambda df: (df["session_id"] == 1).to_numpy()  # noqa: E731 (Aalto rows have section ids: never 1)
    refit = load(SESSION, VERSION, storage, fill_from=fit)
    observed = pd.DataFrame(observed_cells(stored), columns=statistic_columns(stored))
    web = stored["platform_id"].notna() & (stored["device_type"] == "desktop")
    in_fit, probe = web & (stored["session_id"] == 1), web & (stored["session_id"] == 2)
    medians = [c for c in observed if c.startswith("desktop__HL__") and c.endswith("__median")]
    users = stored["user_id"].astype(str)

    def leaked(c: str) -> pd.Series:
        """Session-2 rows missing c whose user observed it in session 1, as has another user."""
        seen = users[in_fit & observed[c]]
        return probe & ~observed[c] & users.isin(seen) & (seen.nunique() > 1)

    column = next(c for c in medians if leaked(c).any())
    row = observed.index[leaked(column)][0]
    key = column.split("__")[2]

    strokes = load("keystrokes", VERSION, storage)
    strokes = strokes[
        (strokes["device_type"] == "desktop")
        & strokes["platform_id"].notna()
        & (key_identity(strokes["key"].astype(object)) == key).to_numpy()
        & strokes["HL"].between(30, 2000)
    ]
    per_group = strokes.groupby(["user_id", "platform_id", "session_id"], observed=True)["HL"].median()
    fitted = per_group[per_group.index.get_level_values("session_id") == 1]
    assert refit.loc[row, column] == pytest.approx(fitted.mean())
    # the stored value is the user's own mean over all its groups, session 2's included
    own = per_group[stored.loc[row, "user_id"]].mean()
    assert stored.loc[row, column] == pytest.approx(own) and own != pytest.approx(fitted.mean())
    # observed cells are as stored; nothing else of the table changes
    columns = statistic_columns(stored)
    cells = observed_cells(stored)
    assert np.array_equal(refit[columns].to_numpy()[cells], stored[columns].to_numpy()[cells])
    assert refit.drop(columns=[*columns, OBSERVED]).equals(stored.drop(columns=[*columns, OBSERVED]))
    assert np.array_equal(observed_cells(refit), cells)


def test_fill_from_applies_to_typenet_ml_only(storage):
    with pytest.raises(ValueError, match="apply to typenet_ml"):
        load("keystrokes", VERSION, storage, filled=False)
    with pytest.raises(ValueError, match="leave fill_from out"):
        load(SESSION, VERSION, storage, fill_from=lambda df: df["session_id"] == 1, filled=False)
    with pytest.raises(ValueError, match="one boolean per row"):
        load(SESSION, VERSION, storage, fill_from=np.ones(3, bool))
