"""A test whose prerequisite is missing (../shared/data/real, Chromium, Postgres) skips on a
developer's machine and fails under CI=true, so CI never passes by skipping."""

import pytest

from .conftest import require


def test_a_missing_prerequisite_skips_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no chromium here"):
        require(False, "no chromium here")


def test_a_missing_prerequisite_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and no chromium here"):
        require(False, "no chromium here")


def test_a_present_prerequisite_does_neither(monkeypatch):
    monkeypatch.setenv("CI", "true")
    require(True, "no chromium here")
