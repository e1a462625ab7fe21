"""Events → keystrokes → keypairs, against hand-computed values (docs/features.md §1-2)."""

import shutil

import dagster as dg
import pandas as pd
import pytest

from keystroke_assets.assets.keypairs import valid_keypairs, valid_keystrokes
from keystroke_assets.lib.ingest.web_app import parse_web_app_csvs
from keystroke_assets.lib.latencies import (
    DEFAULT_OUTLIER_THRESHOLDS,
    KEYSTROKE_COLUMNS,
    OutlierThresholds,
    keypairs_from_events,
    keystrokes_from_events,
    pairs_from_keystrokes,
)

from .conftest import VERSION, materialize_version, stored

IDS = {"user_id": "u" * 32, "device_type": "desktop", "platform_id": 1, "video_id": 1, "session_id": 1, "task_id": 0}


def events_of(text: str, file: str = "f_task_0.csv") -> pd.DataFrame:
    parsed = parse_web_app_csvs([text.encode()])
    assert parsed.problems.empty
    return parsed.events.assign(file=file, **IDS)


def pairs_of(text: str):
    return keypairs_from_events(events_of(text))


def test_real_first_pairs(real_data):
    data = (real_data / "fpd_webapp_2025" / "web_app_data" / "f_090e14f795db6d9fad9fc4ddd6ff5094_0.csv").read_text()
    pairs, quality = keypairs_from_events(events_of(data))
    # P s 13225, R s 13324, P t 13866, R t 13922, P u 14562, R u 14634 (ms, offset 1735660000000)
    p0, p1 = pairs.iloc[0], pairs.iloc[1]
    assert (p0.key1, p0.key2) == ("s", "t")
    assert (p0.HL, p0.IL, p0.PL, p0.RL) == (
        13324 - 13225,
        13866 - 13324,
        13866 - 13225,
        13922 - 13324,
    )  # 99 542 641 598
    assert (p1.key1, p1.key2) == ("t", "u")
    assert (p1.HL, p1.IL, p1.PL, p1.RL) == (56, 14562 - 13922, 14562 - 13866, 14634 - 13922)  # 56 640 696 712
    assert (p0.key1_press, p0.key2_release) == (1735660013225, 1735660013922)
    assert p0.sequence_id == 0 and p1.sequence_id == 1


def test_real_quote_key_pairs(real_data):
    data = (real_data / "fpd_webapp_2025" / "web_app_data" / "f_1a8939f78d8fd33068520f598b6bb6b8_3.csv").read_text()
    pairs, _ = keypairs_from_events(events_of(data))
    quote = pairs[pairs["key1"] == '"'].iloc[0]
    # lines 311/313: P," at 120381, R," at 120503: HL 122 ms
    assert quote.key1_press == 1735660120381 and quote.HL == 122


def test_rollover_gives_negative_il_and_keeps_both_holds():
    pairs, _ = pairs_of("P,a,1000000000000\nP,b,1000000000050\nR,a,1000000000100\nR,b,1000000000180\n")
    (p,) = pairs.itertuples()
    # a: 0..100, b: 50..180 → HL 100, IL 50-100 = -50, PL 50, RL 80
    assert (p.HL, p.IL, p.PL, p.RL) == (100, -50, 50, 80)


def test_case_insensitive_release_and_key_as_typed():
    pairs, _ = pairs_of("P,Key.shift,1000000000000\nP,A,1000000000040\nR,Key.shift,1000000000090\nR,a,1000000000120\n")
    (p,) = pairs.itertuples()
    assert (p.key1, p.key2) == ("Key.shift", "A")  # the press's spelling
    # shift 0..90, A 40..120 → HL 90, IL -50, PL 40, RL 30
    assert (p.HL, p.IL, p.PL, p.RL) == (90, -50, 40, 30)


def test_auto_repeat_keeps_first_press():
    pairs, quality = pairs_of(
        "P,a,1000000000000\nP,a,1000000000500\nP,a,1000000000530\nR,a,1000000000600\nP,b,1000000000700\nR,b,1000000000760\n"
    )
    (p,) = pairs.itertuples()
    # a held 0..600 (the repeats at 500 and 530 dropped), b 700..760
    assert (p.HL, p.IL, p.PL, p.RL) == (600, 100, 700, 160)
    assert quality["auto_repeats"].sum() == 2


def test_orphan_unreleased_and_duplicates_are_dropped_and_counted():
    text = (
        "R,x,1000000000000\n"  # orphan: x was never pressed
        "P,a,1000000000010\nP,a,1000000000010\n"  # exact duplicate event
        "R,a,1000000000100\n"
        "P,z,1000000000150\n"  # unreleased
        "P,b,1000000000200\nR,b,1000000000260\n"
    )
    pairs, quality = pairs_of(text)
    # keystrokes a (10..100) and b (200..260); z and the orphan are gone, their neighbours keep holds
    (p,) = pairs.itertuples()
    assert (p.key1, p.key2, p.HL, p.IL, p.PL, p.RL) == ("a", "b", 90, 100, 190, 160)
    q = quality.iloc[0]
    assert (q.duplicates, q.orphans, q.unreleased, q.auto_repeats) == (1, 1, 1, 0)


def test_equal_times_keep_file_order_and_outlier_flag():
    # b pressed at the same ms as a is released: file order decides; a held 2500 ms → outlier
    pairs, _ = pairs_of("P,a,1000000000000\nR,a,1000000002500\nP,b,1000000002500\nR,b,1000000002600\n")
    (p,) = pairs.itertuples()
    assert (p.HL, p.IL, p.outlier) == (2500, 0, True)


def test_outlier_thresholds():
    text = (
        "P,a,1000000000000\nR,a,1000000000020\nP,b,1000000000100\n"
        "R,b,1000000000200\nP,c,1000000001300\nR,c,1000000001400\n"
    )
    pairs, _ = pairs_of(text)
    # pair a→b: HL 20 < 30 → outlier; pair b→c: HL 100, IL 1100 > 1000 → outlier
    assert pairs["outlier"].tolist() == [True, True]
    pairs, _ = pairs_of("P,a,1000000000000\nR,a,1000000000030\nP,b,1000000001030\nR,b,1000000001100\n")
    assert pairs["outlier"].tolist() == [False]  # HL 30 and IL 1000 are inside the bounds


def test_tasks_are_paired_separately():
    a = events_of("P,a,1000000000000\nR,a,1000000000100\nP,b,1000000000200\nR,b,1000000000300\n", "f_1.csv")
    b = events_of("P,c,1000000000000\nR,c,1000000000100\n", "f_2.csv")
    pairs, _ = keypairs_from_events(pd.concat([a, b], ignore_index=True))
    assert list(zip(pairs.key1, pairs.key2)) == [("a", "b")]  # no pair across tasks


def test_aalto_rows_and_release_before_press():
    rows = pd.DataFrame(
        {
            "file": "7_keystrokes.txt",
            "user_id": "7",
            "device_type": "desktop",
            "platform_id": pd.NA,
            "video_id": pd.NA,
            "session_id": 1,
            "task_id": 1,
            "line": [2, 3, 4, 5],
            "event": "K",
            "key": ["h", "i", "x", "!"],
            "time_ms": [1000, 1150, 1300, 1200],
            "release_ms": [1100, 1230, 1250, 1290],
            "keycode": [72, 73, 88, 49],
        }
    )
    pairs, quality = keypairs_from_events(rows)
    # x (1300..1250) released before press: dropped; order by press: h 1000, i 1150, ! 1200
    assert list(zip(pairs.key1, pairs.key2)) == [("h", "i"), ("i", "!")]
    assert pairs[["HL", "IL", "PL", "RL"]].values.tolist() == [[100, 50, 150, 130], [80, -30, 50, 60]]
    assert pairs["keycode2"].tolist() == [73, 49]
    assert quality.loc["7", "release_before_press"] == 1


def test_equal_presses_ordered_by_release():
    # a and b pressed at the same ms: keystrokes ordered by release, so b (0..50) comes before a (0..100)
    pairs, _ = pairs_of("P,a,1000000000000\nP,b,1000000000000\nR,b,1000000000050\nR,a,1000000000100\n")
    (p,) = pairs.itertuples()
    # HL 50, IL 0 - 50 = -50, PL 0, RL 100 - 50 = 50
    assert (p.key1, p.key2, p.HL, p.IL, p.PL, p.RL) == ("b", "a", 50, -50, 0, 50)


def test_key_down_at_the_end_is_unreleased_even_after_a_release_or_repeats():
    pairs, quality = pairs_of(
        "P,a,1000000000000\nR,a,1000000000100\n"  # keystroke a 0..100
        "P,b,1000000000200\nR,b,1000000000260\n"  # keystroke b 200..260
        "P,a,1000000000300\n"  # a pressed again, never released
        "P,c,1000000000400\nP,c,1000000000900\nP,c,1000000000930\n"  # c held with two repeats, never released
    )
    (p,) = pairs.itertuples()
    assert (p.key1, p.key2, p.HL, p.IL, p.PL, p.RL) == ("a", "b", 100, 100, 200, 160)
    q = quality.iloc[0]
    assert (q.unreleased, q.auto_repeats, q.orphans, q.duplicates) == (2, 2, 0, 0)


def test_interleaved_rows_of_two_tasks():
    # rows of two files alternate, so each task's rows form several runs
    a = events_of("P,a,1000000000000\nR,a,1000000000100\nP,b,1000000000200\nR,b,1000000000300\n", "f_1.csv")
    b = events_of("P,c,1000000000000\nR,c,1000000000050\nP,d,1000000000500\nR,d,1000000000600\n", "f_2.csv")
    b = b.assign(user_id="v" * 32, task_id=1)
    events = pd.concat([a, b], ignore_index=True).iloc[[0, 4, 1, 5, 6, 2, 3, 7]].reset_index(drop=True)
    pairs, quality = keypairs_from_events(events)
    # f_1: a 0..100, b 200..300 → HL 100, IL 100, PL 200, RL 200; f_2: c 0..50, d 500..600 → 50, 450, 500, 550
    assert pairs[["user_id", "task_id", "sequence_id", "key1", "key2", "HL", "IL", "PL", "RL"]].values.tolist() == [
        ["u" * 32, 0, 0, "a", "b", 100, 100, 200, 200],
        ["v" * 32, 1, 0, "c", "d", 50, 450, 500, 550],
    ]
    assert quality.index.tolist() == ["u" * 32, "v" * 32] and quality.to_numpy().sum() == 0


def test_keypair_constraints_pass_real_pairs_and_stop_the_step_with_the_reason(real_data):
    data = (real_data / "fpd_webapp_2025" / "web_app_data" / "f_090e14f795db6d9fad9fc4ddd6ff5094_0.csv").read_text()
    pairs, _ = keypairs_from_events(events_of(data))
    valid_keypairs(pairs)
    row = pairs.index == 3
    broken = {
        "InRangeColumnConstraint.*HL": pairs.assign(HL=pairs["HL"].where(~row, -1)),
        "NonNullableColumnConstraint.*key1": pairs.assign(key1=pairs["key1"].where(~row)),
        "CategoricalColumnConstraint.*device_type": pairs.assign(
            device_type=pairs["device_type"].cat.add_categories(["tablet"]).where(~row, "tablet")
        ),
    }
    for reason, frame in broken.items():
        with pytest.raises(dg.Failure, match=f"keypairs not valid: Violated .{reason}"):
            valid_keypairs(frame)


# --- empty keys (docs/features.md §1) -------------------------------------------------------------
# `Key.space`, three keys the browser could not name, `Key.space` (ms after 1000000000000):
# space 1000..1080, empty 1220..1265, 1405..1450, 1590..1640, space 1799..1870.
EMPTY_KEYS = (
    "P,Key.space,1000000001000\nR,Key.space,1000000001080\n"
    "P,,1000000001220\nR,,1000000001265\n"
    "P,,1000000001405\nR,,1000000001450\n"
    "P,,1000000001590\nR,,1000000001640\n"
    "P,Key.space,1000000001799\nR,Key.space,1000000001870\n"
)


def test_empty_keys_are_unidentified_keystrokes_not_a_false_pair():
    pairs, quality = pairs_of(EMPTY_KEYS)
    assert list(zip(pairs.key1, pairs.key2)) == [
        ("Key.space", "Unidentified"),
        ("Unidentified", "Unidentified"),
        ("Unidentified", "Unidentified"),
        ("Unidentified", "Key.space"),
    ]
    assert pairs[["HL", "IL", "PL", "RL"]].values.tolist() == [
        [1080 - 1000, 1220 - 1080, 1220 - 1000, 1265 - 1080],  # 80 140 220 185
        [1265 - 1220, 1405 - 1265, 1405 - 1220, 1450 - 1265],  # 45 140 185 185
        [1450 - 1405, 1590 - 1450, 1590 - 1405, 1640 - 1450],  # 45 140 185 190
        [1640 - 1590, 1799 - 1640, 1799 - 1590, 1870 - 1640],  # 50 159 209 230
    ]
    # dropping the empty keys made one pair: space 1000..1080 → space 1799, IL 1799 - 1080 = 719
    assert pairs["keycode1"].tolist() == [32, 0, 0, 0] and pairs["keycode2"].tolist() == [0, 0, 0, 32]
    q = quality.iloc[0]
    assert q.empty_keys == 3  # keystrokes, not events (6 lines)
    assert (q.duplicates, q.orphans, q.unreleased, q.auto_repeats) == (0, 0, 0, 0)


def test_empty_key_beside_a_recorded_unidentified_and_the_raw_comma():
    # an empty key name, the phone's `Unidentified` and the old files' raw comma (`P,,,<t>`, key `,`)
    strokes, quality = keystrokes_from_events(
        events_of(
            "P,,1000000000000\nR,,1000000000005\n"
            "P,Unidentified,1000000000100\nR,Unidentified,1000000000104\n"
            "P,,,1000000000200\nR,,,1000000000290\n"
        )
    )
    assert strokes["key"].tolist() == ["Unidentified", "Unidentified", ","]
    assert strokes["keycode"].tolist() == [0, 0, 188]  # `,` is Key.comma's code
    assert strokes["HL"].tolist() == [5, 4, 90]
    assert quality["empty_keys"].tolist() == [1]


# --- the keystrokes table ---------------------------------------------------------------------------
def test_keystrokes_table_by_hand_with_a_task_of_one_keystroke():
    a = events_of("P,h,1000000000000\nP,i,1000000000050\nR,h,1000000000100\nR,i,1000000000180\n", "f_1.csv")
    b = events_of("P,x,1000000000000\nR,x,1000000000070\n", "f_2.csv").assign(task_id=1, platform_id=2)
    strokes, _ = keystrokes_from_events(pd.concat([a, b], ignore_index=True))
    valid_keystrokes(strokes)
    assert list(strokes.columns) == KEYSTROKE_COLUMNS
    # h 0..100, i 50..180 (overlapping); the second task has one keystroke, x 0..70: no pair, but a keystroke
    assert strokes[["task_id", "sequence_id", "key", "keycode", "press_ms", "release_ms", "HL"]].values.tolist() == [
        [0, 0, "h", 72, 1000000000000, 1000000000100, 100],
        [0, 1, "i", 73, 1000000000050, 1000000000180, 130],
        [1, 0, "x", 88, 1000000000000, 1000000000070, 70],
    ]
    pairs = pairs_from_keystrokes(strokes, DEFAULT_OUTLIER_THRESHOLDS)
    assert pairs[["task_id", "key1", "key2", "HL", "IL"]].values.tolist() == [[0, "h", "i", 100, 50 - 100]]


# --- outliers by device type (docs/features.md §2) ---------------------------------------------------
PHONE_TAP = "P,a,1000000000000\nR,a,1000000000003\nP,b,1000000000200\nR,b,1000000000204\n"


def test_a_3_ms_hold_is_an_outlier_on_a_desktop_not_on_a_phone():
    # a held 3 ms (0..3), b 200..204: HL 3, IL 197
    desktop, _ = keypairs_from_events(events_of(PHONE_TAP))
    mobile, _ = keypairs_from_events(events_of(PHONE_TAP).assign(device_type="mobile"))
    assert (desktop.HL[0], desktop.IL[0]) == (3, 197)
    assert desktop["outlier"].tolist() == [True]  # HL 3 < 30
    assert mobile["outlier"].tolist() == [False]  # a phone has no lower bound on HL


def test_each_pair_takes_its_own_device_types_thresholds():
    both = pd.concat(
        [events_of(PHONE_TAP), events_of(PHONE_TAP, "f_2.csv").assign(user_id="v" * 32, device_type="mobile")],
        ignore_index=True,
    )
    strict_phones = {
        **DEFAULT_OUTLIER_THRESHOLDS,
        "mobile": OutlierThresholds(hl_min_ms=0, hl_max_ms=2000, il_abs_max_ms=150),
    }
    pairs, _ = keypairs_from_events(both, strict_phones)
    # both pairs HL 3, IL 197: the desktop one by HL 3 < 30, the mobile one by |IL| 197 > 150
    assert pairs[["device_type", "outlier"]].values.tolist() == [["desktop", True], ["mobile", True]]
    loose_desktops = {
        **DEFAULT_OUTLIER_THRESHOLDS,
        "desktop": OutlierThresholds(hl_min_ms=2, hl_max_ms=2000, il_abs_max_ms=1000),
    }
    pairs, _ = keypairs_from_events(both, loose_desktops)
    assert pairs["outlier"].tolist() == [False, False]  # HL 3 >= 2; the phone's default bounds hold too
    with pytest.raises(ValueError, match="no outlier thresholds for device type 'mobile'"):
        keypairs_from_events(both, {"desktop": DEFAULT_OUTLIER_THRESHOLDS["desktop"]})


IPHONE = "afa09ecc0c8457d3f735dc457b14526f"


def test_outlier_rules_run_config_changes_the_flag_in_a_materialization(real_data, instance, tmp_path):
    uploads = tmp_path / "uploads"
    shutil.copytree(real_data / "fpd_webapp_2025_iphone" / "web_app_data", uploads)
    env = {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(tmp_path / "storage")}
    chain = [dg.AssetKey(k) for k in ["web_app_data", "raw_data", "cleaned_data", "keystrokes", "keypairs"]]
    stricter = "2025-09-07_00-27-44_lab-mac"
    assert materialize_version(instance, env, selection=chain).success
    tighter = {"resources": {"outlier_rules": {"config": {"mobile_hl_max_ms": 20}}}}
    assert materialize_version(instance, env, stricter, selection=chain, run_config=tighter).success

    def first_pairs(version):
        pairs = stored(tmp_path / "storage", "keypairs", version)
        task = pairs[(pairs["user_id"] == IPHONE) & (pairs["task_id"] == 0)]
        return task[["device_type", "key1", "key2", "HL", "IL", "outlier"]].head(3).values.tolist()

    # f_afa0..._0.csv: P V 22973, R V 22999, P e 23277, R e 23303, P y 23468, R y 23472, P Key.space 23635
    # V→e: HL 22999 - 22973 = 26, IL 23277 - 22999 = 278; e→y: HL 26, IL 23468 - 23303 = 165;
    # y→space: HL 23472 - 23468 = 4, IL 23635 - 23472 = 163. Defaults: a phone has no lower bound on HL.
    assert first_pairs(VERSION) == [
        ["mobile", "V", "e", 26, 278, False],
        ["mobile", "e", "y", 26, 165, False],
        ["mobile", "y", "Key.space", 4, 163, False],
    ]
    # mobile_hl_max_ms = 20: the 26 ms holds are outliers now, the 4 ms one is not
    assert first_pairs(stricter) == [
        ["mobile", "V", "e", 26, 278, True],
        ["mobile", "e", "y", 26, 165, True],
        ["mobile", "y", "Key.space", 4, 163, False],
    ]
    shown = instance.get_latest_materialization_event(dg.AssetKey("keypairs")).asset_materialization.metadata
    assert shown["outlier_thresholds"].value == (
        "desktop: HL < 30 or HL > 2000 or |IL| > 1000 ms; mobile: HL > 20 or |IL| > 1000 ms"
    )
    # and so does the stored column's description
    columns = {c.name: c.description for c in shown["dagster/column_schema"].value.columns}
    assert columns["outlier"].endswith("mobile: HL > 20 or |IL| > 1000 ms")
    strokes = instance.get_latest_materialization_event(dg.AssetKey("keystrokes")).asset_materialization.metadata
    columns = {c.name: c.description for c in strokes["dagster/column_schema"].value.columns}
    assert columns["HL"] == "hold latency = release_ms - press_ms, ms"
