"""Events → keystrokes → keypairs, against hand-computed values (spec/features.md §1-2)."""

import dagster as dg
import pandas as pd
import pytest

from keystroke_assets.assets.keypairs import valid_keypairs
from keystroke_assets.ingest.web_app import parse_web_app_csvs
from keystroke_assets.keystrokes import keypairs

IDS = {"user_id": "u" * 32, "device_type": "desktop", "platform_id": 1, "video_id": 1, "session_id": 1, "task_id": 0}


def events_of(text: str, file: str = "f_task_0.csv") -> pd.DataFrame:
    parsed = parse_web_app_csvs([text.encode()])
    assert parsed.problems.empty
    return parsed.events.assign(file=file, **IDS)


def pairs_of(text: str):
    return keypairs(events_of(text))


def test_real_first_pairs(real_data):
    data = (real_data / "fpd_webapp_2025" / "web_app_data" / "f_090e14f795db6d9fad9fc4ddd6ff5094_0.csv").read_text()
    pairs, quality = keypairs(events_of(data))
    # P s 13225, R s 13324, P t 13866, R t 13922, P u 14562, R u 14634 (ms, offset 1735660000000)
    p0, p1 = pairs.iloc[0], pairs.iloc[1]
    assert (p0.key1, p0.key2) == ("s", "t")
    assert (p0.HL, p0.IL, p0.PL, p0.RL) == (13324 - 13225, 13866 - 13324, 13866 - 13225, 13922 - 13324)  # 99 542 641 598
    assert (p1.key1, p1.key2) == ("t", "u")
    assert (p1.HL, p1.IL, p1.PL, p1.RL) == (56, 14562 - 13922, 14562 - 13866, 14634 - 13922)  # 56 640 696 712
    assert (p0.key1_press, p0.key2_release) == (1735660013225, 1735660013922)
    assert p0.sequence_id == 0 and p1.sequence_id == 1


def test_real_quote_key_pairs(real_data):
    data = (real_data / "fpd_webapp_2025" / "web_app_data" / "f_1a8939f78d8fd33068520f598b6bb6b8_3.csv").read_text()
    pairs, _ = keypairs(events_of(data))
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
    text = "P,a,1000000000000\nR,a,1000000000020\nP,b,1000000000100\nR,b,1000000000200\nP,c,1000000001300\nR,c,1000000001400\n"
    pairs, _ = pairs_of(text)
    # pair a→b: HL 20 < 30 → outlier; pair b→c: HL 100, IL 1100 > 1000 → outlier
    assert pairs["outlier"].tolist() == [True, True]
    pairs, _ = pairs_of("P,a,1000000000000\nR,a,1000000000030\nP,b,1000000001030\nR,b,1000000001100\n")
    assert pairs["outlier"].tolist() == [False]  # HL 30 and IL 1000 are inside the bounds


def test_tasks_are_paired_separately():
    a = events_of("P,a,1000000000000\nR,a,1000000000100\nP,b,1000000000200\nR,b,1000000000300\n", "f_1.csv")
    b = events_of("P,c,1000000000000\nR,c,1000000000100\n", "f_2.csv")
    pairs, _ = keypairs(pd.concat([a, b], ignore_index=True))
    assert list(zip(pairs.key1, pairs.key2)) == [("a", "b")]  # no pair across tasks


def test_aalto_rows_and_release_before_press():
    rows = pd.DataFrame(
        {"file": "7_keystrokes.txt", "user_id": "7", "device_type": "desktop", "platform_id": pd.NA, "video_id": pd.NA,
         "session_id": 1, "task_id": 1, "line": [2, 3, 4, 5], "event": "K", "key": ["h", "i", "x", "!"],
         "time_ms": [1000, 1150, 1300, 1200], "release_ms": [1100, 1230, 1250, 1290], "keycode": [72, 73, 88, 49]}
    )
    pairs, quality = keypairs(rows)
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
    pairs, quality = keypairs(events)
    # f_1: a 0..100, b 200..300 → HL 100, IL 100, PL 200, RL 200; f_2: c 0..50, d 500..600 → 50, 450, 500, 550
    assert pairs[["user_id", "task_id", "sequence_id", "key1", "key2", "HL", "IL", "PL", "RL"]].values.tolist() == [
        ["u" * 32, 0, 0, "a", "b", 100, 100, 200, 200],
        ["v" * 32, 1, 0, "c", "d", 50, 450, 500, 550],
    ]
    assert quality.index.tolist() == ["u" * 32, "v" * 32] and quality.to_numpy().sum() == 0


def test_keypair_constraints_pass_real_pairs_and_stop_the_step_with_the_reason(real_data):
    data = (real_data / "fpd_webapp_2025" / "web_app_data" / "f_090e14f795db6d9fad9fc4ddd6ff5094_0.csv").read_text()
    pairs, _ = keypairs(events_of(data))
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
