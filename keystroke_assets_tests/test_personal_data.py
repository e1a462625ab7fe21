"""Personal data stays in the snapshot: no asset after web_app_data carries a personal field name,
an e-mail-like string, or any personal value of the uploads (e-mail, demographics, consent
details, user agents, time zones, screen sizes, record timestamps, typed text) in its columns,
its cells, its materialization metadata or the summaries stored beside its segments. Every asset
the code location defines at test time is materialized and scanned, the feature assets included.
The uploads include a participant who typed an e-mail address into a bad line and wrote one into
the consent answer: the quality reports say what kind of problem, never the text.

What is scanned for is read from the uploads themselves (real samples plus generated participants
with realistic personal records), never from the pipeline.
"""

import json
import re

import dagster as dg
import pandas as pd

from keystroke_assets.definitions import defs
from keystroke_assets.synthetic import participant_id, web_app_uploads, write_uploads

from .conftest import materialize_version, stored

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# in a column name with case and separators removed
PERSONAL_NAMES = [
    "email",
    "useragent",
    "gender",
    "handedness",
    "education",
    "consent",
    "timezone",
    "screensize",
    "deviceinfo",
    "birth",
    "sentence",
    "userinput",
    "rawtext",
    "typedtext",
]
PERSONAL_WORDS = {"age", "sex", "mail", "ip", "url", "language"}  # whole words of a column name
# record fields that are no personal data: ids the datasets are keyed by, the device class
NOT_PERSONAL = {
    "userId",
    "user_id",
    "session_id",
    "platform_id",
    "task_id",
    "is_mobile",
    "device_type",
    "platform",
    "consented",
    "start_time",
    "end_time",
    "duration_ms",
    "last_task_index",
    "study_version",
    "completion_status",
    "survey_code_generated",
    "redirect_to_survey_code",
    "is_mturk_session",
}


def personal_values(uploads) -> set[str]:
    """Every personal string of the uploads: record fields (nested ones too), typed texts, the
    Aalto sentences and inputs. Short ones (an age such as '31') would match by chance."""
    found = set()

    def walk(value, key=None):
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in NOT_PERSONAL:
                    walk(v, k)
        elif isinstance(value, str) and len(value) >= 5:
            found.add(value)

    for path in uploads.iterdir():
        if path.name.endswith(".json"):
            walk(json.loads(path.read_text()))
        elif path.name.endswith("_raw.txt"):
            found.add(path.read_text().strip())
        elif path.name.endswith("_keystrokes.txt"):
            rows = [line.split("\t") for line in path.read_bytes().decode("latin-1").splitlines()[1:]]
            found.update(r[i] for r in rows for i in (2, 3) if len(r) > 3 and len(r[i]) >= 5)
    return found


def column_problems(name: str) -> list[str]:
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    words = set(re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()))
    return [p for p in PERSONAL_NAMES if p in flat] + sorted(words & PERSONAL_WORDS)


PLANTED = "jane.doe.planted@example.invalid"


def plant(uploads) -> None:
    """A generated participant whose consent answer and one bad line of a task hold an e-mail."""
    write_uploads(uploads, web_app_uploads(1, seed=22, first_index=7, broken_every=0))
    user = participant_id(7, seed=22)
    (uploads / f"{user}_consent.json").write_text(json.dumps({"consented": f"No, ask {PLANTED}"}))
    task = uploads / f"f_{user}_0.csv"
    task.write_bytes(task.read_bytes() + f"P,{PLANTED},soon\n".encode())


def test_no_personal_data_after_the_snapshot(instance, real_uploads, tmp_path):
    write_uploads(real_uploads, web_app_uploads(3, seed=21, broken_every=0))
    plant(real_uploads)
    personal = personal_values(real_uploads) | {PLANTED}
    # the scan has something to find: e-mails, user agents, time zones and a real typed sentence
    sentence = (real_uploads / "f_090e14f795db6d9fad9fc4ddd6ff5094_0_raw.txt").read_text().strip()
    assert sentence in personal and "participant0001@example.invalid" in personal
    assert "Was wondering if you and Natalie connected?" in personal  # an Aalto sentence
    assert any("Mozilla/5.0" in p for p in personal) and "America/Los_Angeles" in personal

    env = {"KEYSTROKE_UPLOADS": str(real_uploads), "KEYSTROKE_STORAGE": str(tmp_path / "storage")}
    assert materialize_version(instance, env).success

    scanned = []
    for key in sorted(defs.resolve_asset_graph().get_all_asset_keys(), key=lambda k: k.path):
        if key == dg.AssetKey("web_app_data"):
            continue  # the snapshot: holds the uploads as they came, personal objects included
        event = instance.get_latest_materialization_event(key)
        metadata = event.asset_materialization.metadata
        df = stored(tmp_path / "storage", key.to_user_string())
        label = key.to_user_string()
        assert [(c, p) for c in df.columns for p in column_problems(str(c))] == [], label

        strings = set()
        for column in df.columns:
            if not (pd.api.types.is_numeric_dtype(df[column]) or pd.api.types.is_bool_dtype(df[column])):
                strings.update(df[column].dropna().astype(str).unique())
        strings.update(str(v.value) for v in metadata.values())
        # the summaries stored beside the asset's segments (what its metadata is made from)
        folder = tmp_path / "storage" / key.to_user_string()
        strings.update(p.read_text() for p in folder.rglob("*.json"))
        assert [s for s in strings if EMAIL.search(s)] == [], label
        # a personal value inside a cell, or a cell of 16+ characters cut out of one (a fragment of text)
        assert [(s[:40], p[:40]) for s in strings for p in personal if p in s or (len(s) >= 16 and s in p)] == [], label
        scanned.append(label)
    assert {"raw_data", "cleaned_data", "keypairs"} <= set(scanned)
    assert any(s.startswith("features/") for s in scanned)
    # the planted participant is reported, by the kind of each problem
    reports = {
        key: instance.get_latest_materialization_event(dg.AssetKey(key)).asset_materialization.metadata[label]
        for key, label in [("raw_data", "parse_problems"), ("cleaned_data", "broken_participants")]
    }
    user = participant_id(7, seed=22)
    problems = [r.data["problem"] for r in reports["raw_data"].value.records if r.data["file"] == f"f_{user}_0.csv"]
    assert len(problems) == 1 and problems[0].endswith(": time is not a non-negative integer of ms")
    assert [r.data["reasons"] for r in reports["cleaned_data"].value.records if r.data["user_id"] == user] == [
        'consent is not "Yes" (a string)'
    ]
