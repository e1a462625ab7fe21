"""The whole chain for one version on a real local instance: real samples, generated uploads,
broken uploads, determinism, the snapshot."""

import re
import shutil

import dagster as dg
import pandas as pd

from keystroke_assets.synthetic import aalto_uploads, web_app_uploads, write_uploads

from .conftest import SEGMENTED, VERSION, failed_rules_of, materialize_version, stored

SNAPSHOT = "web_app_data"
AFTER_SNAPSHOT = [
    "raw_data",
    "cleaned_data",
    "keystrokes",
    "keypairs",
    "features/typenet_ml/platform",
    "features/typenet_ml/session",
    "features/typenet_ml/video",
]
CHAIN = [SNAPSHOT, *AFTER_SNAPSHOT]
CHAIN_KEYS = [dg.AssetKey.from_user_string(k) for k in CHAIN]


def env_for(uploads, tmp_path) -> dict:
    return {"KEYSTROKE_UPLOADS": str(uploads), "KEYSTROKE_STORAGE": str(tmp_path / "storage")}


def generated_uploads(tmp_path):
    """Two complete web-app participants and one Aalto participant: every kind of object a stage reads."""
    uploads = tmp_path / "uploads"
    write_uploads(uploads, web_app_uploads(2, seed=2, broken_every=0))
    write_uploads(uploads, aalto_uploads(1, seed=2))
    return uploads


def read(tmp_path, key: str, version: str = VERSION) -> pd.DataFrame:
    return stored(tmp_path / "storage", key, version)


def metadata(instance, key: str, version: str = VERSION) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(key))
    assert event.dagster_event.partition == version
    return event.asset_materialization.metadata


def test_real_samples_end_to_end(instance, real_uploads, tmp_path):
    result = materialize_version(instance, env_for(real_uploads, tmp_path), selection=CHAIN_KEYS)
    assert result.success and failed_rules_of(result) == []
    for key in CHAIN:
        md = metadata(instance, key)
        assert md["dagster/row_count"].value == len(read(tmp_path, key)) > 0
        stored_as = "segments.json" if key in SEGMENTED else "parquet"
        assert md["path"].value == str(tmp_path / "storage" / key / f"{VERSION}.{stored_as}")
        assert md["dagster/column_schema"].value.columns

    cleaned = read(tmp_path, "cleaned_data")
    # 2 complete desktop web-app users and 6 Aalto participants; the phone user's tasks i_..._4 / _7
    # hold 2 events each (< 290) and the stray older user has one task: both broken, with reasons.
    assert sorted(cleaned["user_id"].unique()) == sorted(
        [
            "090e14f795db6d9fad9fc4ddd6ff5094",
            "1a8939f78d8fd33068520f598b6bb6b8",
            "100001",
            "100003",
            "100007",
            "100008",
            "100013",
            "100122",
        ]
    )
    broken = {
        r.data["user_id"]: r.data["reasons"]
        for r in metadata(instance, "cleaned_data")["broken_participants"].value.records
    }
    assert set(broken) == {"4b4a2c43f630c0b68c7e081dcab95f96", "a74d19a94ce2519e5dac099da4fb4830"}
    assert "i_4b4a2c43f630c0b68c7e081dcab95f96_4.csv (2)" in broken["4b4a2c43f630c0b68c7e081dcab95f96"]
    assert "17 task CSVs missing" in broken["a74d19a94ce2519e5dac099da4fb4830"]
    assert "consent record missing" in broken["a74d19a94ce2519e5dac099da4fb4830"]

    pairs = read(tmp_path, "keypairs")
    first = pairs[(pairs.user_id == "090e14f795db6d9fad9fc4ddd6ff5094") & (pairs.task_id == 0)].iloc[0]
    # f_090e..._0.csv starts P s 13225, R s 13324, P t 13866, R t 13922
    assert (first.key1, first.key2, first.HL, first.IL, first.PL, first.RL) == ("s", "t", 99, 542, 641, 598)
    assert (first.platform_id, first.video_id, first.session_id) == (1, 1, 1)
    aalto = pairs[pairs.user_id == "100001"]
    assert aalto["platform_id"].isna().all() and aalto["session_id"].nunique() == 15

    platform = read(tmp_path, "features/typenet_ml/platform")
    # one row per (user, platform): 2 web users x 3 platforms + 6 Aalto users (no platform)
    assert len(platform) == 2 * 3 + 6
    assert set(platform["device_type"]) == {"desktop"}


def test_generated_uploads_end_to_end(instance, tmp_path):
    uploads = tmp_path / "uploads"
    write_uploads(uploads, web_app_uploads(8, seed=3, broken_every=4))
    result = materialize_version(instance, env_for(uploads, tmp_path), selection=CHAIN_KEYS)
    assert result.success and failed_rules_of(result) == []
    md = metadata(instance, "cleaned_data")
    # every 4th participant (indices 3 and 7) is generated broken
    assert md["participants_broken"].value == 2
    assert md["participants_complete"].value == 6
    pairs = read(tmp_path, "keypairs")
    assert pairs["user_id"].nunique() == 6
    assert (pairs["PL"] == pairs["HL"] + pairs["IL"]).all()


def test_broken_uploads_never_sink_the_version(instance, tmp_path):
    uploads = tmp_path / "uploads"
    write_uploads(uploads, web_app_uploads(3, seed=1, broken_every=0))
    good_files = sorted(p.name for p in uploads.glob("*.csv"))
    victim_user = good_files[0].split("_")[1]
    bad = {
        f"f_{victim_user}_0.csv": b"",  # empty (replaces a good task: that participant becomes broken)
        "f_" + "b" * 32 + "_0.csv": b"Press or Release,Key,Time\n",  # header only
        "f_" + "c" * 32 + "_3.csv": b"\x00\x01\x02\xff\xfe garbage",
        "f_" + "d" * 32 + "_6.csv": b"user,when\nx,1\n",  # wrong columns
        "f_" + "e" * 32 + "_9.csv": b"P,a,now\nR,a,later\n",  # non-numeric time
        "f_" + "f" * 32 + "_12.csv": b"P,a,1735660013225\nR,a,1735660013300\nP,b,173566",  # truncated last line
        "notes_from_2024.csv": b"P,a,1735660013225\n",  # unknown name
        "f_" + "a" * 32 + "_15.csv.gstmp": b"P,a,17356",  # partial upload
        "i_" + "a" * 32 + "_1.csv": "P,é,1735660013225\n".encode("latin-1"),  # not UTF-8
    }
    for name, data in bad.items():
        (uploads / name).write_bytes(data)

    result = materialize_version(instance, env_for(uploads, tmp_path), selection=CHAIN_KEYS)
    assert result.success and failed_rules_of(result) == []

    problems = {
        r.data["file"]: r.data["problem"] for r in metadata(instance, "raw_data")["parse_problems"].value.records
    }
    assert problems[f"f_{victim_user}_0.csv"] == "empty file"
    assert problems["f_" + "b" * 32 + "_0.csv"] == "header only"
    assert "binary" in problems["f_" + "c" * 32 + "_3.csv"]
    assert "no valid event line" in problems["f_" + "d" * 32 + "_6.csv"]
    assert "not a non-negative integer" in problems["f_" + "e" * 32 + "_9.csv"]
    assert "1 bad lines dropped" in problems["f_" + "f" * 32 + "_12.csv"]
    assert "not UTF-8" in problems["i_" + "a" * 32 + "_1.csv"]
    ignored = {
        r.data["name"]: r.data["reason"]
        for r in metadata(instance, "web_app_data")["ignored_objects_report"].value.records
    }
    assert "unrecognised" in ignored["notes_from_2024.csv"]
    assert "partial" in ignored["f_" + "a" * 32 + "_15.csv.gstmp"]

    # every line of every good file is present: count them against the files themselves
    raw = read(tmp_path, "raw_data")
    for name in good_files:
        if name == f"f_{victim_user}_0.csv":
            continue
        lines = (uploads / name).read_text().strip("\n").split("\n")
        assert (raw["file"] == name).sum() == len(lines) - 1  # minus the header
    # the truncated file keeps its two good lines
    assert (raw["file"] == "f_" + "f" * 32 + "_12.csv").sum() == 2
    cleaned = read(tmp_path, "cleaned_data")
    assert victim_user not in set(cleaned["user_id"]) and cleaned["user_id"].nunique() == 2


def test_same_version_twice_gives_identical_outputs(instance, real_uploads, tmp_path):
    env = env_for(real_uploads, tmp_path)
    materialize_version(instance, env, selection=CHAIN_KEYS)
    first = {k: read(tmp_path, k) for k in AFTER_SNAPSHOT}
    # the upload store changes after the snapshot: re-materializing later stages reads the snapshot
    (real_uploads / "f_090e14f795db6d9fad9fc4ddd6ff5094_0.csv").write_bytes(b"")
    # and every stage computes again: no segment or partial result of the first run is left to reuse
    for folder in (tmp_path / "storage").iterdir():
        if folder.name != SNAPSHOT:
            shutil.rmtree(folder)
    again = materialize_version(instance, env, selection=AFTER_SNAPSHOT)
    recomputed = {
        (e.asset_key.to_user_string(), k.removesuffix("/computed")): (e.materialization.metadata[k].value, v.value)
        for e in again.get_asset_materialization_events()
        for k, v in e.materialization.metadata.items()
        if k.endswith("segments/reused")
        for k in [k.replace("/reused", "/computed")]
    }
    assert {key for key, _ in recomputed} == set(AFTER_SNAPSHOT)
    assert all(computed > 0 == reused for computed, reused in recomputed.values()), recomputed
    for key, before in first.items():
        pd.testing.assert_frame_equal(read(tmp_path, key), before)


def test_snapshot_keeps_each_object_once(instance, tmp_path):
    uploads = generated_uploads(tmp_path)
    env = env_for(uploads, tmp_path)
    materialize_version(instance, env, selection=[SNAPSHOT])
    second = "2025-09-08_00-00-00_lab-mac"
    materialize_version(instance, env, version=second, selection=[SNAPSHOT])
    assert metadata(instance, "web_app_data", second)["bytes_new"].value == 0
    packs = sorted(p.relative_to(tmp_path / "storage").as_posix() for p in (tmp_path / "storage").rglob("*.pack"))
    # one pack per kind of object the stages read, all from the first version's one writer
    token = packs[0].split("/")[-1].split("-")[0]
    assert re.fullmatch("[0-9a-f]{16}", token)
    assert packs == [
        f"web_app_data/packs/{VERSION}/{token}-{k}.pack"
        for k in ["aalto", "keystrokes", "raw_text", "record", "task_metadata"]
    ]
    manifest = read(tmp_path, "web_app_data", second)
    assert manifest["kept_as"].dropna().str.startswith(f"web_app_data/packs/{VERSION}/").all()
    assert manifest["kept_as"].notna().sum() == (manifest["kind"] != "unrecognised").sum()
    # the bytes kept are the upload's bytes
    csv = manifest[manifest["kind"] == "keystrokes"].iloc[0]
    pack, span = csv["kept_as"].rsplit("@", 1)
    offset, size = map(int, span.split(":"))
    kept = (tmp_path / "storage" / pack).read_bytes()[offset : offset + size]
    assert kept == (uploads / csv["name"]).read_bytes()


def test_a_version_keeps_its_object_set(instance, tmp_path):
    uploads = generated_uploads(tmp_path)
    env = env_for(uploads, tmp_path)
    materialize_version(instance, env, selection=[SNAPSHOT])
    (aalto,) = uploads.glob("*_keystrokes.txt")
    aalto.unlink()
    materialize_version(instance, env, selection=[SNAPSHOT])
    assert metadata(instance, "web_app_data")["snapshot"].value == "kept from its first materialization"
    assert aalto.name in set(read(tmp_path, "web_app_data")["name"])


def test_invalid_partition_refused_before_anything_is_written(instance, tmp_path):
    result = materialize_version(
        instance,
        env_for(generated_uploads(tmp_path), tmp_path),
        version="2025-09-07 bad",
        selection=[SNAPSHOT],
        raise_on_error=False,
    )
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0]
    assert "YYYY-MM-DD_HH-MM-SS_<creator>" in failure.step_failure_data.user_failure_data.description
    assert not (tmp_path / "storage").exists()


def test_failed_blocking_check_stops_downstream(instance, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "readme.txt").write_bytes(b"nothing to see")  # no keystroke file at all
    result = materialize_version(instance, env_for(uploads, tmp_path), selection=CHAIN_KEYS, raise_on_error=False)
    assert ("raw_data", "non_empty") in failed_rules_of(result)
    assert instance.get_latest_materialization_event(dg.AssetKey("keypairs")) is None
