"""History-free tables (issue 24 item 4): a version's every table (row order, column order, dtypes,
categorical dictionaries) is the same whether its segments were computed now, in a new store,
or reused from an earlier version made of some of its participants, whatever the number of
participants a segment holds. Compared with assert_frame_equal, nothing sorted."""

import shutil

import pandas as pd

from keystroke_assets.definitions import defs
from keystroke_assets.synthetic import aalto_uploads, web_app_uploads, write_uploads

from .conftest import VERSION, segment_names, stored
from .segment_builds import ALL, SEED, base_build, counts, materialize

EARLIER = "2025-09-01_12-00-00_lab-mac"  # before VERSION
EVERY = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())
ONE_A_SEGMENT = {"raw_data": {"participants_per_segment": 1}}


def test_one_snapshot_through_two_histories_gives_the_same_tables(tmp_path_factory, tmp_path):
    base = base_build(tmp_path_factory)[0]
    # A: VERSION from scratch in a new store, 2 participants a segment (the base), its evaluations too
    straight = tmp_path / "straight" / "storage"
    shutil.copytree(base, straight)
    (straight.parent / "uploads").symlink_to(base.parent / "uploads")
    materialize(straight, VERSION, [k for k in EVERY if k.startswith("evaluation/")])
    # B: first an earlier version of 2 web-app participants (the Android phone and a desktop) and one
    # Aalto participant, then VERSION (3 web-app and 1 Aalto more), one participant a segment
    history = tmp_path / "history" / "storage"
    history.parent.mkdir()
    earlier_uploads = tmp_path / "earlier_uploads"
    write_uploads(earlier_uploads, web_app_uploads(2, seed=SEED, broken_every=4))
    write_uploads(earlier_uploads, aalto_uploads(1, seed=SEED))
    (history.parent / "uploads").symlink_to(earlier_uploads)
    materialize(history, EARLIER, ALL, ONE_A_SEGMENT)
    (history.parent / "uploads").unlink()
    (history.parent / "uploads").symlink_to(base.parent / "uploads")
    result = materialize(history, VERSION, EVERY, ONE_A_SEGMENT)

    # the histories differ: B reused the earlier version's 3 segments, and cut 7 where A cut 4
    assert counts(result)["raw_data"] == (4, 3, 0)
    assert (len(segment_names(straight, "keypairs")), len(segment_names(history, "keypairs"))) == (4, 7)
    assert len(EVERY) == 19
    for key in EVERY:
        got, want = stored(history, key), stored(straight, key)
        if key == "web_app_data":  # where the bytes are kept and which version first had them: by history
            got, want = got.drop(columns=["kept_as", "first_seen"]), want.drop(columns=["kept_as", "first_seen"])
        pd.testing.assert_frame_equal(got, want, obj=key)
