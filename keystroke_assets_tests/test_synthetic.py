"""The synthetic upload generator: determinism, formats, completeness and realism."""

import json
import re
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np

from keystroke_assets import synthetic as syn
from keystroke_assets.lib.ingest.aalto import parse_aalto_files

LINE_RE = re.compile(r"^[PR],.*,\d{13}$")
TASK_RE = re.compile(
    r"^(?P<p>[fit])_(?P<u>[0-9a-f]{32})_(?P<seq>1[0-7]|[0-9])(?P<suffix>\.csv|_raw\.txt|_metadata\.json)$"
)
RECORD_RE = re.compile(r"^(?P<u>[0-9a-f]{32})_(?P<record>consent|demographics|start_time|completion)\.json$")
AALTO_RE = re.compile(r"^(?P<pid>\d+)_keystrokes\.txt$")
METADATA_KEYS = {
    "user_id",
    "platform_id",
    "task_id",
    "start_time",
    "end_time",
    "duration_ms",
    "platform",
    "is_mobile",
    "device_type",
    "user_agent",
    "screen_size",
}


@cache
def web(n: int, seed: int = 0, first_index: int = 0, broken_every: int = 25) -> dict[str, bytes]:
    objs = list(syn.web_app_uploads(n, seed, first_index=first_index, broken_every=broken_every))
    names = [name for name, _ in objs]
    assert len(set(names)) == len(names), "duplicate object names"
    return dict(objs)


@cache
def aalto(n: int, seed: int = 0, first_index: int = 0) -> dict[str, bytes]:
    return dict(syn.aalto_uploads(n, seed, first_index=first_index))


def events(data: bytes) -> list[tuple[str, str, int]]:
    """Split each line on its first and last comma (docs/data.md §1)."""
    lines = data.decode("utf-8").split("\n")
    assert lines[0] == syn.CSV_HEADER
    assert lines[-1] == ""  # "\n" line ends, the last one included
    out = []
    for line in lines[1:-1]:
        a, b = line.find(","), line.rfind(",")
        out.append((line[:a], line[a + 1 : b], int(line[b + 1 :])))
    return out


def keystrokes(evs: list[tuple[str, str, int]], counts: Counter) -> list[tuple[str, int, int]]:
    """docs/features.md §1, kept simple: (key, press, release) in press order; `counts` gets the
    duplicate, auto-repeat, orphan, unreleased and case-changed events."""
    order = sorted(range(len(evs)), key=lambda i: (evs[i][2], i))
    seen, down, out = set(), {}, []
    for i in order:
        if evs[i] in seen:
            counts["duplicate"] += 1
            continue
        seen.add(evs[i])
        kind, key, t = evs[i]
        ident = key.lower() if len(key) == 1 else key
        if kind == "P":
            counts["repeat"] += ident in down
            down.setdefault(ident, (key, t))
        elif ident in down:
            key0, p = down.pop(ident)
            counts["case"] += key0 != key
            out.append((key0, p, t))
        else:
            counts["orphan"] += 1
    counts["unreleased"] += len(down)
    return sorted(out, key=lambda k: (k[1], k[2]))


def user_objects(objs: dict[str, bytes], user: str) -> dict[str, bytes]:
    return {n: d for n, d in objs.items() if user in n}


# --------------------------------------------------------------------------------------------


def test_participant_id():
    uid = syn.participant_id(7, seed=3)
    assert re.fullmatch(r"[0-9a-f]{32}", uid)
    assert uid == syn.participant_id(7, seed=3)
    assert len({syn.participant_id(i, s) for i in range(50) for s in range(3)}) == 150


def test_same_seed_same_bytes_other_seed_other_bytes():
    a = list(syn.web_app_uploads(3, seed=5))
    assert a == list(syn.web_app_uploads(3, seed=5))
    b = dict(syn.web_app_uploads(3, seed=6))
    assert not set(dict(a)) & set(b)  # other ids
    assert [d for n, d in a if n.endswith(".csv")][0] != [d for n, d in b.items() if n.endswith(".csv")][0]
    assert list(syn.aalto_uploads(2, seed=5)) == list(syn.aalto_uploads(2, seed=5))
    assert list(syn.aalto_uploads(1, seed=5)) != list(syn.aalto_uploads(1, seed=6))


def test_prefix_stable_whatever_n():
    small, big = web(4), web(6)
    assert all(big[name] == data for name, data in small.items())
    tail = web(2, first_index=4)
    assert set(small) | set(tail) == set(big)
    assert all(big[name] == data for name, data in tail.items())
    assert aalto(2).items() <= aalto(3).items()
    assert aalto(1, first_index=2).items() <= aalto(3).items()


def test_names_follow_the_spec():
    objs = web(6)
    users = set()
    for name in objs:
        m = TASK_RE.match(name)
        if m:
            assert int(m["seq"]) % 3 == "fit".index(m["p"])
            users.add(m["u"])
        else:
            assert RECORD_RE.match(name), name
    assert users == {syn.participant_id(i) for i in range(6)}
    assert all(AALTO_RE.match(n) for n in aalto(3))
    assert sorted(aalto(3)) == ["100000_keystrokes.txt", "100001_keystrokes.txt", "100002_keystrokes.txt"]


def test_every_csv_line_is_an_event_or_the_header():
    for name, data in web(8).items():
        if name.endswith(".csv"):
            lines = data.decode("utf-8").split("\n")
            assert lines[0] == syn.CSV_HEADER and lines[-1] == ""
            bad = [ln for ln in lines[1:-1] if not LINE_RE.match(ln)]
            assert not bad, (name, bad[:3])


def test_a_complete_participant():
    uid = syn.participant_id(0)
    objs = user_objects(web(6), uid)
    assert syn.broken_kind(0) is None
    csvs = {n: d for n, d in objs.items() if n.endswith(".csv")}
    assert sorted(csvs) == sorted(f"{syn.task_prefix(s)}_{uid}_{s}.csv" for s in range(18))
    assert all(len(events(d)) >= syn.MIN_EVENTS for d in csvs.values())
    for seq in range(18):
        stem = f"{'fit'[seq % 3]}_{uid}_{seq}"
        meta = json.loads(objs[f"{stem}_metadata.json"])
        assert set(meta) == METADATA_KEYS
        assert (meta["user_id"], meta["task_id"], meta["platform_id"]) == (uid, str(seq), str(seq % 3))
        assert meta["platform"] == ("facebook", "instagram", "twitter")[seq % 3]
        assert meta["end_time"] - meta["start_time"] == meta["duration_ms"] > 0
        assert objs[f"{stem}_raw.txt"].decode()
    consent = json.loads(objs[f"{uid}_consent.json"])
    assert consent["consented"] == "Yes" and consent["userId"] == uid
    assert set(consent) == {"consented", "userId", "timestamp", "userAgent", "url"}
    demographics = json.loads(objs[f"{uid}_demographics.json"])
    assert demographics["email"] == "participant0000@example.invalid"
    assert {"age", "gender", "handedness", "education", "is_mobile", "device_type"} <= set(demographics)
    assert json.loads(objs[f"{uid}_start_time.json"])["session_id"] == uid
    assert json.loads(objs[f"{uid}_completion.json"])["user_id"] == uid


def test_broken_participants_at_the_expected_indices():
    objs = web(20, broken_every=5)
    assert [syn.broken_kind(i, 5) for i in range(20)] == [None] * 4 + ["consent_no"] + [None] * 4 + [
        "missing_task_csv"
    ] + [None] * 4 + ["short_task"] + [None] * 4 + ["no_demographics"]

    def state(i):
        uid = syn.participant_id(i)
        mine = user_objects(objs, uid)
        csvs = [d for n, d in mine.items() if n.endswith(".csv")]
        return {
            "consent": json.loads(mine[f"{uid}_consent.json"])["consented"],
            "demographics": f"{uid}_demographics.json" in mine,
            "start_time": f"{uid}_start_time.json" in mine,
            "csvs": len(csvs),
            "short": sum(len(events(d)) < syn.MIN_EVENTS for d in csvs),
            "metadata": sum(n.endswith("_metadata.json") for n in mine),
        }

    complete = {"consent": "Yes", "demographics": True, "start_time": True, "csvs": 18, "short": 0, "metadata": 18}
    for i in range(20):
        expected = dict(complete)
        kind = syn.broken_kind(i, 5)
        if kind == "consent_no":
            expected["consent"] = "No"
        elif kind == "missing_task_csv":
            expected["csvs"] = 17
        elif kind == "short_task":
            expected["short"] = 1
        elif kind == "no_demographics":
            expected["demographics"] = False
        assert state(i) == expected, (i, kind)

    # the default: every 25th, and 0 disables
    assert syn.broken_kind(24) == "consent_no" and syn.broken_kind(49) == "missing_task_csv"
    assert syn.broken_kind(23) is None and syn.broken_kind(24, 0) is None
    assert web(20, broken_every=0).keys() >= {f"{syn.participant_id(19)}_demographics.json"}


def test_quote_and_comma_keys_occur_unescaped():
    lines = Counter()
    for name, data in web(8).items():
        if name.endswith(".csv"):
            for line in data.decode().split("\n"):
                if line[:4] in ('P,",', "P,,,") or line.startswith("P,Key.comma,"):
                    lines[line[:4]] += 1
    assert lines['P,",'] > 0  # the double quote, raw
    assert lines["P,,,"] > 0  # the comma, raw (some tasks, as older app versions wrote it)
    assert lines["P,Ke"] > lines["P,,,"]  # mostly as Key.comma
    evs = [e for n, d in web(8).items() if n.endswith(".csv") for e in events(d)]
    assert {k for _, k, _ in evs} >= {",", '"', "Key.comma", "Key.shift", "Key.space", "Key.backspace", "'", "."}


def test_desktop_typing_looks_real():
    objs = web(8)
    holds, latencies, n_keys, stats = [], [], [], Counter()
    for i in range(8):
        if syn.is_mobile_participant(i) or syn.broken_kind(i):
            continue
        for name, data in user_objects(objs, syn.participant_id(i)).items():
            if not name.endswith(".csv"):
                continue
            ks = keystrokes(events(data), stats)
            n_keys.append(len(ks))
            press = np.array([k[1] for k in ks])
            release = np.array([k[2] for k in ks])
            holds.extend(release - press)
            latencies.extend(press[1:] - release[:-1])
    assert len(n_keys) >= 5 * 18
    assert 150 <= np.median(n_keys) <= 220
    holds, latencies = np.array(holds), np.array(latencies)
    assert 70 <= np.median(holds) <= 140
    assert 100 <= np.median(latencies) <= 300
    assert 0.08 <= (latencies < 0).mean() <= 0.3  # rollover
    assert (latencies > 2000).mean() > 0.005  # long pauses
    # the quirks of the real app: rare, but present
    assert 0 < stats["repeat"] < len(n_keys) * 5
    assert 0 < stats["case"] < len(n_keys)
    assert 0 < stats["unreleased"] < len(n_keys) / 5
    assert stats["duplicate"] < len(n_keys) / 10 and stats["orphan"] < len(n_keys) / 10


def csv_events(objs: dict[str, bytes]) -> list[tuple[str, str, int]]:
    return [e for n, d in objs.items() if n.endswith(".csv") for e in events(d)]


def holds_of(objs: dict[str, bytes]) -> np.ndarray:
    holds = []
    for name, data in objs.items():
        if name.endswith(".csv"):
            holds.extend(r - p for _, p, r in keystrokes(events(data), Counter()))
    return np.array(holds)


def test_phones_like_the_real_ones():
    kinds = {i: syn.phone_kind(i) for i in range(40)}
    android = [i for i, k in kinds.items() if k == "android"]
    iphone = [i for i, k in kinds.items() if k == "iphone"]
    # about 15 % of participants type on a phone, half each kind
    assert 1 <= len(android) <= 10 and 1 <= len(iphone) <= 10
    assert all(syn.is_mobile_participant(i) == (k is not None) for i, k in kinds.items())

    for i, kind in [(android[0], "android"), (iphone[0], "iphone")]:
        uid = syn.participant_id(i)
        objs = web(1, first_index=i)
        demographics = json.loads(objs[f"{uid}_demographics.json"])
        meta = json.loads(objs[f"f_{uid}_0_metadata.json"])
        # as the real task metadata writes it
        assert (demographics["is_mobile"], demographics["device_type"]) == (True, kind)
        assert (meta["is_mobile"], meta["device_type"]) == (True, kind)
        assert all(len(events(d)) >= syn.MIN_EVENTS for n, d in objs.items() if n.endswith(".csv"))

    # Android: every key `Unidentified` but Enter at the end of some tasks: at most 18 of >= 18 x 150
    # keystrokes, so > 99 %; holds of a few ms (the real one: median 5, 95 % under 9)
    objs = web(1, first_index=android[0])
    keys = Counter(k for kind, k, _ in csv_events(objs) if kind == "P")
    assert set(keys) <= {"Unidentified", "Key.enter"}
    assert keys["Unidentified"] / sum(keys.values()) > 0.99
    holds = holds_of(objs)
    assert 3 <= np.median(holds) <= 8 and np.percentile(holds, 95) < 15

    # iPhone: real key names, capitals without Shift; holds median ~11 ms, most under 30 ms
    objs = web(1, first_index=iphone[0])
    keys = Counter(k for kind, k, _ in csv_events(objs) if kind == "P")
    assert "Unidentified" not in keys and "Key.shift" not in keys
    assert keys["Key.space"] > 300 and keys["e"] > 100 and sum(keys[c] for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ") > 10
    holds = holds_of(objs)
    assert 7 <= np.median(holds) <= 16 and 0.75 <= (holds < 30).mean() <= 0.95
    # desktops keep theirs: no Unidentified, holds of ~100 ms (test_desktop_typing_looks_real)
    desktop = next(i for i, k in kinds.items() if k is None)
    assert "Unidentified" not in {k for _, k, _ in csv_events(web(1, first_index=desktop))}


EMPTY_LINE = re.compile(rb"^[PR],,\d{13}$", re.M)  # a key the browser did not name (not the raw comma P,,,t)


def test_empty_key_lines():
    assert [i for i in range(24) if syn.has_empty_keys(i)] == [5, 13, 21]  # every 8th from 5
    objs = web(1, first_index=5)
    lines = [m.group() for n, d in objs.items() if n.endswith(".csv") for m in EMPTY_LINE.finditer(d)]
    presses = sum(line.startswith(b"P") for line in lines)
    # 2-5 % of ~630 words (18 tasks of ~35 words), their letters unnamed: tens of keystrokes
    assert 20 <= presses <= 300 and abs(2 * presses - len(lines)) <= 5  # each pressed and released
    # split on the first and last comma, the key is empty
    assert ("P", "", int(lines[0][3:])) in csv_events(objs)
    # whole words: an unnamed run follows a space (or another unnamed key, or a typo's Backspace)
    evs = [e for e in csv_events(objs) if e[0] == "P"]
    before = Counter(a[1] for a, b in zip(evs, evs[1:]) if b[1] == "" and a[1] != "")
    assert before["Key.space"] >= max(before.values()) and before["Key.space"] > 5
    # the others have none
    for i in [0, 4, 6]:
        assert not any(EMPTY_LINE.search(d) for n, d in web(1, first_index=i).items() if n.endswith(".csv"))


def test_demo_uploads_mix_every_path():
    objs = dict(syn.demo_uploads(12))
    # a share 0.1 of the indices, spread evenly: index 9 of 0..11 is an Aalto participant
    assert [n for n in objs if n.endswith("_keystrokes.txt")] == ["100009_keystrokes.txt"]
    assert objs["100009_keystrokes.txt"] == aalto(1, first_index=9)["100009_keystrokes.txt"]
    # the others exactly as web_app_uploads makes them: desktop, Android (2), iPhone (7), empty keys (5)
    web_part = {n: d for n, d in objs.items() if not n.endswith("_keystrokes.txt")}
    assert web_part == {n: d for n, d in web(12).items() if syn.participant_id(9) not in n}
    assert [syn.phone_kind(i) for i in (2, 7)] == ["android", "iphone"] and syn.has_empty_keys(5)
    # 40 participants: indices 9, 19, 29, 39; prefix-stable as the other generators
    more = dict(syn.demo_uploads(40))
    assert sorted(n for n in more if n.endswith("_keystrokes.txt")) == [
        f"{100_000 + i}_keystrokes.txt" for i in (9, 19, 29, 39)
    ]
    assert objs.items() <= more.items()
    assert dict(syn.demo_uploads(28, first_index=12)).items() <= more.items()
    assert not any(n.endswith("_keystrokes.txt") for n, _ in syn.demo_uploads(12, aalto_share=0))


def test_aalto_files():
    # the project's Aalto parser reads them whole: 15 sections each, no problem reported
    parsed = parse_aalto_files([d for _, d in sorted(aalto(3).items())])
    assert parsed.problems.empty
    assert parsed.events.groupby("user_id")["session_id"].nunique().to_dict() == {
        "100000": 15,
        "100001": 15,
        "100002": 15,
    }
    assert (parsed.events["release_ms"] > parsed.events["time_ms"]).all()
    for index, (_, data) in enumerate(sorted(aalto(3).items())):
        lines = data.decode("utf-8").split("\n")
        assert (
            lines[0].split("\t")
            == [
                "PARTICIPANT_ID",
                "TEST_SECTION_ID",
                "SENTENCE",
                "USER_INPUT",
                "KEYSTROKE_ID",
                "PRESS_TIME",
                "RELEASE_TIME",
                "LETTER",
                "KEYCODE",
            ]
            and lines[-1] == ""
        )  # the public set's header (docs/data.md §1)
        rows = [ln.split("\t") for ln in lines[1:-1]]
        assert all(len(r) == 9 for r in rows)
        assert {r[0] for r in rows} == {str(100_000 + index)}
        sections = Counter(r[1] for r in rows)
        assert len(sections) == 15 and min(sections.values()) >= 30
        press = np.array([int(r[5]) for r in rows])
        release = np.array([int(r[6]) for r in rows])
        assert (release > press).all() and (press > 1_473_000_000_000).all()
        assert {r[7] for r in rows} >= {"SHIFT", " ", "."}
        assert all(r[8].isdigit() for r in rows)
        assert {(r[7], r[8]) for r in rows if r[7] in ("SHIFT", " ", ".", "a")} <= {
            ("SHIFT", "16"),
            (" ", "32"),
            (".", "190"),
            ("a", "65"),
        }
        for sid in sections:
            sentence = {r[2] for r in rows if r[1] == sid}
            assert len(sentence) == 1 and 35 <= len(sentence.pop()) <= 80


def test_write_uploads_and_command_line(tmp_path, capsys):
    objs = list(syn.web_app_uploads(2))
    assert syn.write_uploads(tmp_path / "a" / "uploads", iter(objs)) == len(objs)
    for name, data in objs:
        assert (tmp_path / "a" / "uploads" / name).read_bytes() == data

    assert syn.main(["--out", str(tmp_path / "b"), "-n", "2", "--first-index", "3", "--seed", "1"]) == 0
    summary = capsys.readouterr().out.strip()
    assert "\n" not in summary and "web_app" in summary
    assert {p.name for p in (tmp_path / "b").iterdir()} == set(dict(syn.web_app_uploads(2, 1, first_index=3)))

    assert syn.main(["--out", str(tmp_path / "m"), "-n", "10", "--format", "mixed"]) == 0
    assert {p.name for p in (tmp_path / "m").iterdir()} == set(dict(syn.demo_uploads(10)))
    assert (tmp_path / "m" / "100009_keystrokes.txt").exists()

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "keystroke_assets.synthetic",
            "--out",
            str(tmp_path / "c"),
            "-n",
            "2",
            "--format",
            "aalto",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(syn.__file__).parents[1],
    )
    assert "2 files" in done.stdout
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["100000_keystrokes.txt", "100001_keystrokes.txt"]
