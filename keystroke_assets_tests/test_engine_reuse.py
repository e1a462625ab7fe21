"""Reuse verifies (issue 24 item 3): a stored segment is reused only when its object matches the size
and CRC32C its summary recorded; a missing or damaged one is computed again and reported, and a
version's table whose segment was damaged afterwards is never read."""

import re

import pandas as pd
import pytest

from keystroke_assets.export import load
from keystroke_assets.resources import object_store
from keystroke_assets.resources.parquet_io_manager import DamagedSegment

from .conftest import SEGMENTED, VERSION, segment_names
from .segment_builds import ALL, SEGMENTS, TYPENET_ML, V2, assert_same_tables, base_build, copy_of, counts, materialize


def delete(path) -> None:
    path.unlink()


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_a_byte(path) -> None:
    """The same size, one bit of one byte changed."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return base_build(tmp_path_factory)[0]


def test_missing_and_damaged_segments_are_computed_again_and_reported(base, tmp_path):
    storage = copy_of(base, tmp_path)
    damaged = {"raw_data": (0, delete), "cleaned_data": (1, truncate), "features/kvc": (2, flip_a_byte)}
    before = {}
    for key, (segment, damage) in damaged.items():
        path = storage / segment_names(storage, key)[segment]
        before[key] = path.read_bytes()
        damage(path)
    # a version of the same uploads: every segment's address is VERSION's
    result = materialize(storage, V2, ALL)
    assert counts(result) == {
        **dict.fromkeys(SEGMENTED, (0, SEGMENTS, 0)),
        **dict.fromkeys(damaged, (1, SEGMENTS - 1, 1)),
        **{f"{k} {p}": (0, SEGMENTS, 0) for k in TYPENET_ML for p in ["digraphs", "statistics"]},
    }
    assert_same_tables(storage, base, ALL, V2, VERSION)
    # made again with the bytes they had: VERSION's list, which recorded them, reads again
    for key, (segment, _) in damaged.items():
        assert (storage / segment_names(storage, key)[segment]).read_bytes() == before[key], key
    assert_same_tables(storage, base, ALL)


@pytest.mark.parametrize("damage", [delete, truncate, flip_a_byte])
def test_a_table_whose_segment_was_damaged_afterwards_is_never_read(base, tmp_path, damage):
    storage = copy_of(base, tmp_path)
    name = segment_names(storage, "keypairs")[1]
    damage(storage / name)
    with pytest.raises(DamagedSegment, match=re.escape(str(storage / name))):
        load("keypairs", VERSION, object_store(str(storage)))
    # the other tables still read
    pd.testing.assert_frame_equal(
        load("keystrokes", VERSION, object_store(str(storage))), load("keystrokes", VERSION, object_store(str(base)))
    )
