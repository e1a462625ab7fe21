"""Declarative automation: every version's assets get materialized without anyone clicking.

`keep_complete()` is on every asset. It materializes what a version is missing and what depends on
an asset that was updated, once the inputs are there and nothing of it is running, never after a
failed run (no retry storm) or downstream of a failed blocking check. Differences from `eager()`:

- it fills partitions that were already missing when it was first evaluated (eager() only runs
  partitions that become missing later), so a feature asset added to the code is materialized for
  every existing version;
- it never takes a snapshot (web_app_data, the only asset reading no other): a version's snapshot is
  the upload store at the moment the version is made, so whoever makes the version takes it (the
  upload sensor, `keystroke-assets new-version`, or "Materialize" in the UI);
- a partition it requested is not requested again before its materialization is seen: a tick that
  overlaps the run's end may read the run as finished and the asset as still missing.
"""

import os

import dagster as dg

AC = dg.AutomationCondition
DEFAULT_INTERVAL_SECONDS = 30


def keep_complete() -> dg.AutomationCondition:
    reads_another_asset = AC.any_deps_match(AC.missing() | ~AC.missing()).with_label("reads another asset")
    requested_not_stored = AC.newly_requested().since(AC.newly_updated()).with_label("requested, not stored yet")
    missing = (AC.missing() & ~AC.execution_failed() & ~requested_not_stored).with_label(
        "missing, last run not failed, not requested already"
    )
    return (
        reads_another_asset
        & (missing | AC.any_deps_updated().since_last_handled())
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
        # a failed blocking check stops everything downstream, here as in a run. (Not
        # all_deps_blocking_checks_passed(): checks riding along with their asset never count as
        # requested, so it would hold each stage back to a run of its own.)
        & ~AC.any_deps_match(AC.any_checks_match(AC.check_failed(), blocking_only=True))
    ).with_label("keep_complete")


automation_sensor = dg.AutomationConditionSensorDefinition(
    "keep_versions_complete",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=int(os.environ.get("KEYSTROKE_AUTOMATION_INTERVAL_SECONDS", DEFAULT_INTERVAL_SECONDS)),
    description=(
        "Evaluates keep_complete() on every asset: materializes what a version is missing (after its "
        "snapshot) and what depends on an updated asset; never after a failed run or downstream of a "
        "failed blocking check."
    ),
)
