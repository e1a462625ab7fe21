"""`keystroke-assets gc` (issue 24 item 5): it deletes the segments no version's list names, keeps
what is listed, young, written after it started or just reused by a run, says what it freed (the
same with --dry-run, which deletes nothing), and --keycodes deletes the segments made with a laxer
keycodes policy, naming the versions to materialize again."""

import dataclasses
import os
import re
import time

import dagster as dg
import pytest

from keystroke_assets import cli
from keystroke_assets.assets.features import feature_asset
from keystroke_assets.definitions import defs
from keystroke_assets.export import load
from keystroke_assets.features.statistical import STATISTICAL
from keystroke_assets.lib.segments import segment_object, summary_object
from keystroke_assets.resources import object_store
from keystroke_assets.resources.object_store import LocalObjectStore
from keystroke_assets.resources.parquet_io_manager import DamagedSegment

from .conftest import VERSION, segment_names
from .segment_builds import ALL, SEGMENTS, V2, base_build, copy_of, counts, materialize

V3 = "2025-09-09_09-00-00_lab-mac"
SEQUENCES_AND_KVC = ["features/kvc", "features/typenet_sequences"]
TWO_HOURS_AGO = time.time() - 7200


def files(storage) -> dict[str, int]:
    """Every object of a local store: {name: size}."""
    return {str(p.relative_to(storage)): p.stat().st_size for p in storage.rglob("*") if p.is_file()}


def age(storage, older_than: float = TWO_HOURS_AGO, but: set[str] = frozenset()) -> None:
    for name in files(storage).keys() - but:
        os.utime(storage / name, (older_than, older_than))


def segment_objects(storage, key: str) -> set[str]:
    """The rows and summaries of an asset's stored segments."""
    return {n for n in files(storage) if n.startswith(f"{key}/segments/")}


def with_both(names) -> set[str]:
    return {m for n in names for m in (n, summary_object(n))}


def statistical_at(code_version: str):
    """Every asset, statistical's code version `code_version`: the code after an edit."""
    key = dg.AssetKey(STATISTICAL.key_path)
    return [
        feature_asset(dataclasses.replace(STATISTICAL, code_version=code_version)) if a.keys == {key} else a
        for a in defs.assets
    ]


def gc(monkeypatch, storage, capsys, *argv: str) -> tuple[int, int]:
    """`keystroke-assets gc ARGV` on the store; (objects, bytes) it says it freed (or would)."""
    monkeypatch.setenv("KEYSTROKE_STORAGE", str(storage))
    assert cli.main(["gc", *argv]) == 0
    out = capsys.readouterr().out
    freed = re.search(r"(?:would free|freed) ([\d,]+) objects, ([\d,]+) bytes", out)
    return int(freed[1].replace(",", "")), int(freed[2].replace(",", ""))


@pytest.fixture(scope="module")
def three_code_versions(tmp_path_factory):
    """VERSION with statistical at code version 1 (the base store); then V2 (the same uploads) with
    it at 2, and again at 3: V2's list names the code 3 segments, none the code 2 ones."""
    base = base_build(tmp_path_factory)[0]
    storage = copy_of(base, tmp_path_factory.mktemp("three"))
    made = [segment_objects(storage, "features/statistical")]
    for code_version, selection in [("2", ALL), ("3", ["features/statistical"])]:
        before = segment_objects(storage, "features/statistical")
        materialize(storage, V2, selection, assets=statistical_at(code_version))
        made.append(segment_objects(storage, "features/statistical") - before)
    assert [len(m) for m in made] == [2 * SEGMENTS] * 3  # rows and summary of each segment
    return storage, made


def test_gc_keeps_only_what_a_version_lists_and_every_version_is_reused_after_it(
    three_code_versions, tmp_path, monkeypatch, capsys
):
    storage = copy_of(three_code_versions[0], tmp_path)
    code1, code2, code3 = three_code_versions[1]
    before = files(storage)
    # --dry-run: what would go, nothing gone
    would = gc(monkeypatch, storage, capsys, "--dry-run", "--grace", "0")
    assert files(storage) == before
    freed = gc(monkeypatch, storage, capsys, "--grace", "0")
    assert freed == would == (len(code2), sum(before[n] for n in code2))
    assert files(storage) == {n: s for n, s in before.items() if n not in code2}
    assert segment_objects(storage, "features/statistical") == code1 | code3
    # every version as it was made reuses every segment it lists
    for version, assets in [(VERSION, None), (V2, statistical_at("3"))]:
        assert set(counts(materialize(storage, version, ALL, assets=assets)).values()) == {(0, SEGMENTS, 0)}
    assert gc(monkeypatch, storage, capsys, "--grace", "0") == (0, 0)


def test_gc_keeps_a_young_segment(three_code_versions, tmp_path, monkeypatch, capsys):
    storage = copy_of(three_code_versions[0], tmp_path)
    code2 = three_code_versions[1][1]
    young = with_both([sorted(code2)[0].removesuffix(".json") + ".parquet"])
    age(storage, but=young)
    assert gc(monkeypatch, storage, capsys, "--grace", "600")[0] == len(code2) - 2
    assert segment_objects(storage, "features/statistical") & code2 == young


def test_gc_keeps_a_segment_written_after_it_started(three_code_versions, tmp_path, monkeypatch, capsys):
    storage = copy_of(three_code_versions[0], tmp_path)
    code2 = three_code_versions[1][1]
    written = segment_object(["features", "statistical"], "written_while_gc_lists", "parquet")
    listing = LocalObjectStore.stored_objects

    def a_run_writes_first(self):  # a run writes a segment its version does not list yet
        self.write_bytes(written, b"a segment")
        return listing(self)

    monkeypatch.setattr(LocalObjectStore, "stored_objects", a_run_writes_first)
    assert gc(monkeypatch, storage, capsys, "--grace", "0")[0] == len(code2)
    assert (storage / written).read_bytes() == b"a segment"


def test_gc_keeps_what_a_run_in_flight_reused(three_code_versions, tmp_path, monkeypatch, capsys):
    storage = copy_of(three_code_versions[0], tmp_path)
    code2 = three_code_versions[1][1]
    age(storage)
    # a run of V3 at code version 2 reuses the segments no list names, and has not written its list yet
    result = materialize(storage, V3, ALL, assets=statistical_at("2"))
    assert counts(result)["features/statistical"] == (0, SEGMENTS, 0)
    (storage / "features" / "statistical" / f"{V3}.segments.json").unlink()
    assert all((storage / n).stat().st_mtime > time.time() - 600 for n in code2)  # touched when reused
    assert gc(monkeypatch, storage, capsys)[0] == 0  # default grace: an hour
    assert code2 <= segment_objects(storage, "features/statistical")


def test_gc_keycodes_none_deletes_what_was_made_with_full_and_names_the_versions(
    tmp_path_factory, tmp_path, monkeypatch, capsys
):
    storage = copy_of(base_build(tmp_path_factory)[0], tmp_path)  # VERSION: kvc and sequences with full
    none = {"keycodes": "none"}
    materialize(storage, V2, ALL, {"features__kvc": none, "features__typenet_sequences": none})
    full = {k: segment_objects(storage, k) - with_both(segment_names(storage, k, V2)) for k in SEQUENCES_AND_KVC}
    kept = files(storage).keys() - set().union(*full.values())
    monkeypatch.setenv("KEYSTROKE_STORAGE", str(storage))
    assert cli.main(["gc", "--keycodes", "none"]) == 0
    said = capsys.readouterr()
    assert f"freed {sum(map(len, full.values()))} objects" in said.out
    assert files(storage).keys() == kept
    for key in SEQUENCES_AND_KVC:  # listed by VERSION, made with full: gone, and VERSION is named
        assert full[key] and full[key] == with_both(segment_names(storage, key))
        listed = f"{key}/{VERSION}.segments.json names segments made with keycodes full or classes: materialize it"
        assert listed in said.err
        with pytest.raises(DamagedSegment, match="is missing: materialize its asset again"):
            load(key, VERSION, object_store(str(storage)))
    assert f"{V2}.segments.json" not in said.err
    for key in SEQUENCES_AND_KVC:  # made with none: kept
        assert len(load(key, V2, object_store(str(storage)))) > 0


def test_gc_on_gcs_deletes_the_unlisted_and_keeps_the_listed(three_code_versions, gcs_bucket, monkeypatch, capsys):
    local, (code1, code2, code3) = three_code_versions
    # statistical's lists and segments of the three code versions, in a bucket
    folder = local / "features" / "statistical"
    objects = {str(p.relative_to(local)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    for name, data in objects.items():
        gcs_bucket.blob(f"datasets/{name}").upload_from_string(data)
    store = f"gs://{gcs_bucket.name}/datasets"
    assert gc(monkeypatch, store, capsys, "--grace", "0") == (len(code2), sum(len(objects[n]) for n in code2))
    left = {b.name.removeprefix("datasets/") for b in gcs_bucket.list_blobs(prefix="datasets/")}
    assert left == objects.keys() - code2 and code1 | code3 <= left
