"""The upload sensor without the daemon: completeness by name, one version per burst, the quiet
period, idempotent re-evaluation, cheap empty ticks, the cursor of a new instance, and the GCS
listing it reads."""

import os
from datetime import UTC, datetime

import dagster as dg
from dagster_gcp import GCSResource

from keystroke_assets import sensors
from keystroke_assets.partitions import dataset_versions, make_version_id
from keystroke_assets.resources.object_store import GCSObjectStore, LocalObjectStore, ObjectStamp
from keystroke_assets.sensors import UploadCursor, complete_participants, decide, upload_sensor
from keystroke_assets.synthetic import participant_id, web_app_uploads, write_uploads

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
QUIET = 600


def participant(u: str, tasks=range(18), records=("consent", "demographics", "start_time")) -> list[str]:
    return [f"{'fit'[s % 3]}_{u}_{s}.csv" for s in tasks] + [f"{u}_{r}.json" for r in records]


def stamps_of(names, first=T0, step=1.0) -> dict[str, ObjectStamp]:
    """Objects arriving one every `step` seconds from `first`."""
    return {n: ObjectStamp(10, str(i), first + i * step) for i, n in enumerate(names)}


def burst(n: int, first_index: int = 0, first=T0, step=1.0) -> dict[str, ObjectStamp]:
    return stamps_of([name for name, _ in web_app_uploads(n, seed=0, first_index=first_index)], first, step)


def test_completeness_by_name():
    a, b, c, d, e = (ch * 32 for ch in "abcde")
    names = [
        *participant(a),
        *participant(b, tasks=[t for t in range(18) if t != 7]),  # one task CSV missing
        *participant(c, records=("consent", "start_time")),  # no demographics record
        *participant(d, tasks=range(17)),
        f"t_{d}_17.csv.gstmp",  # the last CSV still uploading
        *participant(e),
        f"{e}_completion.json",
        f"f_{e}_0_raw.txt",  # extra objects change nothing
        "100001_keystrokes.txt",  # an Aalto participant is one file
        "2024-01-01T00:00:00_" + "f" * 32 + "_consent.json",  # an old name: never a participant
    ]
    stamps = stamps_of(names)
    complete = complete_participants(stamps)
    assert list(complete.index) == ["100001", a, e]
    # e's newest object is f_e_0_raw.txt, the 2nd last of the list
    assert complete[e] == stamps[f"f_{e}_0_raw.txt"].modified == T0 + len(names) - 3


def test_generated_broken_participants_by_name():
    # of 8 generated with broken_every=4, index 3 says consent "No" (complete by name: the content
    # is cleaned_data's business) and index 7 misses a task CSV
    names = [n for n, _ in web_app_uploads(8, seed=0, broken_every=4)]
    complete = complete_participants(stamps_of(names))
    assert sorted(complete.index) == sorted(participant_id(i, 0) for i in [0, 1, 2, 3, 4, 5, 6])


def test_a_burst_makes_one_version_after_the_quiet_period():
    one = burst(1)  # one participant's 58 uploads, one a second
    names = list(one)
    assert len(names) == 58
    cursor, made = None, []
    for i in range(1, len(names) + 1):  # the sensor ticks after every upload
        arrived = {n: one[n] for n in names[:i]}
        d = decide(arrived, cursor, now=T0 + i - 0.5, quiet=QUIET)
        cursor = d.cursor
        made += [d.version] if d.version else []
    assert made == []
    last = T0 + 57  # the 58th object
    d = decide(one, cursor, now=last + QUIET - 1, quiet=QUIET)
    assert d.version is None and "waiting" in d.reason
    d = decide(one, cursor, now=last + QUIET + 0.5, quiet=QUIET)
    # the id is the newest object's time (00:00:57), not the clock
    assert d.version == "2026-01-01_00-00-57_sensor"
    after = decide(one, d.cursor, now=last + 5 * QUIET, quiet=QUIET)
    assert after.version is None and "no change" in after.reason


def test_quiet_period_counts_from_when_the_sensor_saw_the_change():
    # objects with old times (copied with preserved mtimes) still wait a quiet period from the tick
    # that first saw them
    old = burst(1, first=T0 - 86_400)
    first = decide(old, None, now=T0, quiet=QUIET)
    assert first.version is None and first.cursor.changed_at == T0
    assert decide(old, first.cursor, now=T0 + QUIET - 1, quiet=QUIET).version is None
    assert decide(old, first.cursor, now=T0 + QUIET, quiet=QUIET).version is not None


def test_same_cursor_same_decision():
    one = burst(1)
    seen = decide(one, None, now=T0 + 60, quiet=QUIET).cursor
    a = decide(one, seen, now=T0 + 60 + QUIET, quiet=QUIET)
    b = decide(one, seen, now=T0 + 60 + QUIET + 30, quiet=QUIET)  # the tick evaluated again later
    assert a.version == b.version and a.cursor == b.cursor


def test_next_burst_gets_its_own_later_version():
    first = burst(2)
    seen = decide(first, None, now=T0 + 200, quiet=QUIET).cursor
    v1 = decide(first, seen, now=T0 + 200 + QUIET, quiet=QUIET)
    # a third participant arrives copied with times older than v1's id (e.g. `cp -p`)
    both = {**first, **burst(1, first_index=2, first=T0 - 3600)}
    seen = decide(both, v1.cursor, now=T0 + 2000, quiet=QUIET).cursor
    v2 = decide(both, seen, now=T0 + 2000 + QUIET, quiet=QUIET)
    assert v1.version == "2026-01-01_00-01-55_sensor"  # 2 × 58 objects: newest at T0 + 115 s
    assert v2.version == "2026-01-01_00-01-56_sensor"  # one second after v1, never the same id


def test_an_incomplete_participant_makes_no_version():
    partial = stamps_of(participant("a" * 32, tasks=range(17)))
    seen = decide(partial, None, now=T0, quiet=QUIET).cursor
    d = decide(partial, seen, now=T0 + 10 * QUIET, quiet=QUIET)
    assert d.version is None and d.cursor.complete_count == 0


def test_a_withdrawal_makes_a_version_without_that_participant():
    two = burst(2)
    seen = decide(two, None, now=T0 + 200, quiet=QUIET).cursor
    v1 = decide(two, seen, now=T0 + 200 + QUIET, quiet=QUIET)
    gone = participant_id(0, 0)
    left = {n: s for n, s in two.items() if gone not in n}
    seen = decide(left, v1.cursor, now=T0 + 3000, quiet=QUIET).cursor
    v2 = decide(left, seen, now=T0 + 3000 + QUIET, quiet=QUIET)
    assert v2.version is not None and v2.cursor.complete_count == 1


def test_a_new_instance_does_not_version_again_what_an_existing_version_holds():
    two = burst(2)  # newest object at T0 + 115 s
    demo = make_version_id("demo", datetime.fromtimestamp(T0 + 120, UTC))
    seen = decide(two, None, now=T0 + 130, quiet=QUIET, existing_versions=[demo]).cursor
    assert decide(two, seen, now=T0 + 10 * QUIET, quiet=QUIET).version is None
    # a participant arriving after the demo version is new
    three = {**two, **burst(1, first_index=2, first=T0 + 300)}
    seen = decide(three, None, now=T0 + 400, quiet=QUIET, existing_versions=[demo]).cursor
    assert decide(three, seen, now=T0 + 400 + QUIET, quiet=QUIET).version is not None


def test_a_tick_with_nothing_new_only_lists(monkeypatch):
    one = burst(1)
    seen = decide(one, None, now=T0 + 60, quiet=QUIET).cursor
    done = decide(one, seen, now=T0 + 60 + QUIET, quiet=QUIET).cursor

    def fail(*_):
        raise AssertionError("names classified on a tick with nothing new")

    monkeypatch.setattr(sensors, "complete_participants", fail)
    d = decide(one, done, now=T0 + 9999, quiet=QUIET)
    assert d.version is None and d.cursor == done


def test_cursor_round_trips_as_json():
    cursor = decide(burst(1), None, now=T0, quiet=QUIET).cursor
    assert UploadCursor.from_json(cursor.to_json()) == cursor
    assert UploadCursor.from_json(None) is None


# --- the sensor definition, on a real instance and a local folder ---------------------------------


def evaluate(instance, store, cursor=None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"uploads": store}) as context:
        return upload_sensor(context)


def test_sensor_adds_the_version_and_requests_its_snapshot_once(instance, tmp_path, monkeypatch):
    monkeypatch.setenv("KEYSTROKE_QUIET_SECONDS", "0")
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    store = LocalObjectStore(root=str(uploads))
    empty = evaluate(instance, store)
    assert not empty.run_requests and "no change" in empty.skip_reason.skip_message

    write_uploads(uploads, web_app_uploads(2, seed=0))
    for i, path in enumerate(sorted(uploads.iterdir())):
        os.utime(path, (T0 + i, T0 + i))  # newest: the 116th object at T0 + 115 s
    result = evaluate(instance, store, cursor=empty.cursor)
    version = "2026-01-01_00-01-55_sensor"
    assert [r.partition_key for r in result.run_requests] == [version]
    assert [r.run_key for r in result.run_requests] == [version]  # the daemon never repeats a run key
    assert [(r.partitions_def_name, r.partition_keys) for r in result.dynamic_partitions_requests] == [
        (dataset_versions.name, [version])
    ]
    instance.add_dynamic_partitions(dataset_versions.name, [version])  # what the daemon does

    again = evaluate(instance, store, cursor=result.cursor)
    assert not again.run_requests and not again.dynamic_partitions_requests
    # a daemon killed before it stored the cursor evaluates the tick again: the same request
    retried = evaluate(instance, store, cursor=empty.cursor)
    assert [r.run_key for r in retried.run_requests] == [version]
    # with no cursor at all, the version in the instance already holds these participants
    assert not evaluate(instance, store, cursor=None).run_requests


def test_sensor_never_reads_an_object(instance, tmp_path, monkeypatch):
    monkeypatch.setenv("KEYSTROKE_QUIET_SECONDS", "0")
    write_uploads(tmp_path, web_app_uploads(1, seed=0))

    def fail(*_args, **_kwargs):
        raise AssertionError("the sensor read or checksummed an object")

    monkeypatch.setattr(LocalObjectStore, "read_bytes", fail)
    monkeypatch.setattr(LocalObjectStore, "list_objects", fail)
    assert len(evaluate(instance, LocalObjectStore(root=str(tmp_path))).run_requests) == 1


def test_sensor_defaults():
    assert upload_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensors.DEFAULT_QUIET_SECONDS == 600


# --- GCS: the listing the sensor reads ------------------------------------------------------------


def test_gcs_stamps_and_a_version_from_a_bucket(instance, gcs_bucket, monkeypatch):
    monkeypatch.setenv("KEYSTROKE_QUIET_SECONDS", "0")
    uploads = dict(web_app_uploads(1, seed=0))
    for name, data in uploads.items():
        gcs_bucket.blob(f"uploads/{name}").upload_from_string(data)
    gcs_bucket.blob("elsewhere/x.csv").upload_from_string(b"not under the prefix")
    store = GCSObjectStore(gcs=GCSResource(project="test"), bucket=gcs_bucket.name, prefix="uploads")

    stamps = store.list_stamps()
    assert set(stamps) == set(uploads)
    name = next(iter(uploads))
    blob = gcs_bucket.get_blob(f"uploads/{name}")
    assert stamps[name] == ObjectStamp(len(uploads[name]), str(blob.generation), blob.updated.timestamp())

    result = evaluate(instance, store)
    newest = max(s.modified for s in stamps.values())
    expected = make_version_id("sensor", datetime.fromtimestamp(int(newest), UTC))
    assert [r.partition_key for r in result.run_requests] == [expected]
