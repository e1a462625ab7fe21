from datetime import UTC, datetime, timezone

import pytest

from keystroke_assets.partitions import (
    InvalidVersionId,
    make_version_id,
    validate_version_id,
    version_created_at,
    version_creator,
)


def test_make_version_id_uses_utc_and_creator():
    when = datetime(2025, 9, 7, 2, 27, 43, tzinfo=UTC)
    assert make_version_id("lab-mac", when) == "2025-09-07_02-27-43_lab-mac"


def test_make_version_id_converts_to_utc():
    from datetime import timedelta

    cest = timezone(timedelta(hours=2))
    assert make_version_id("sensor", datetime(2025, 9, 7, 2, 27, 43, tzinfo=cest)) == "2025-09-07_00-27-43_sensor"


@pytest.mark.parametrize(
    "version", ["2025-09-07_00-27-43_lab-mac", "2026-01-31_23-59-59_sensor", "2025-09-07_00-27-43_a1"]
)
def test_valid_ids(version):
    assert validate_version_id(version) == version


@pytest.mark.parametrize(
    "version",
    [
        "2025-09-07_00-27-43",  # no creator
        "2025-09-07_00-27-43_Lab",  # upper case
        "2025-09-07_00-27-43_lab_mac",  # underscore
        "2025-09-07 00-27-43_lab",  # space
        "2025-13-07_00-27-43_lab",  # month 13
        "2025-09-07_24-00-00_lab",  # hour 24
        "a...b",
        "../../etc_passwd",
        "2025-09-07_00-27-43_lab-",  # dangling dash
        "",
        "2025-09-07_00-27-43_lab-mac\n",  # trailing newline (`$` of re.match accepted it)
        "2025-09-07_00-27-43_lab-mac ",  # trailing space
        " 2025-09-07_00-27-43_lab-mac",  # leading space
        "\u0662\u0660\u0662\u0665-09-07_00-27-43_lab",  # Arabic-Indic digits for the year: strptime reads them
    ],
)
def test_invalid_ids_are_refused_with_the_expected_form(version):
    with pytest.raises(InvalidVersionId, match=r"YYYY-MM-DD_HH-MM-SS_<creator>"):
        validate_version_id(version)


@pytest.mark.parametrize("creator", ["Alice Smith", "lab-mac\n", "lab-mac "])
def test_bad_creator_refused(creator):
    with pytest.raises(InvalidVersionId, match="lower-case"):
        make_version_id(creator)


def test_parts_of_an_id():
    assert version_creator("2025-09-07_00-27-43_lab-mac-alice") == "lab-mac-alice"
    assert version_created_at("2025-09-07_00-27-43_lab-mac") == datetime(2025, 9, 7, 0, 27, 43, tzinfo=UTC)
