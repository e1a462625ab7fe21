"""The upload sensor: a new dataset version when participants have become complete and the upload
store has been quiet for a while.

Each tick lists the store's stamps (name, size, generation: no object is read). Nothing else
happens unless that listing differs from the last one or complete participants are waiting for a
version. A participant is complete by name (docs/data.md §2): the consent, start-time and
demographics records and all 18 task CSVs are present; an Aalto participant's one file is. Whether
the consent says Yes and each task holds enough events stays cleaned_data's decision.

When the set of complete participants differs from the one of the last version the sensor made
(new participants, or a withdrawal removed some), and no object has arrived for the quiet period,
the sensor adds the version `<newest object's time>_sensor` and requests its snapshot
(web_app_data); declarative automation materializes everything downstream. The id comes from the
listing, not the clock, and the run key is the id: a tick evaluated again with the same cursor
(a daemon killed mid-tick) makes the same request, which Dagster does not repeat.
"""

import hashlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from keystroke_assets.assets.cleaned_data import TASKS_PER_PARTICIPANT
from keystroke_assets.assets.web_app_data import web_app_data
from keystroke_assets.lib.ingest.names import classify
from keystroke_assets.partitions import dataset_versions, make_version_id, version_created_at
from keystroke_assets.resources.object_store import ObjectStamp, ObjectStore

CREATOR = "sensor"
REQUIRED_RECORDS = ("consent", "demographics", "start_time")
DEFAULT_QUIET_SECONDS = 600
DEFAULT_INTERVAL_SECONDS = 30


def quiet_seconds() -> float:
    """How long the store must stay unchanged before a version is made (env KEYSTROKE_QUIET_SECONDS)."""
    return float(os.environ.get("KEYSTROKE_QUIET_SECONDS", DEFAULT_QUIET_SECONDS))


def _digest(lines: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:32]


def listing_digest(stamps: Mapping[str, ObjectStamp]) -> str:
    return _digest([f"{name}\t{s.size}\t{s.generation}" for name, s in sorted(stamps.items())])


def complete_participants(stamps: Mapping[str, ObjectStamp]) -> pd.Series:
    """Participants complete by name → the time of their newest object (seconds since the epoch)."""
    names = classify(pd.Series(list(stamps), dtype=object))
    names["modified"] = [s.modified for s in stamps.values()]
    tasks = names[names["kind"] == "keystrokes"].groupby("user_id")["task_id"].nunique()
    records = names[names["record"].isin(REQUIRED_RECORDS)].groupby("user_id")["record"].nunique()
    web = tasks.index[tasks == TASKS_PER_PARTICIPANT].intersection(records.index[records == len(REQUIRED_RECORDS)])
    aalto = names.loc[names["kind"] == "aalto", "user_id"]
    complete = names[names["user_id"].isin(web.union(pd.Index(aalto)))]
    return complete.groupby("user_id")["modified"].max().sort_index()


@dataclass(frozen=True)
class UploadCursor:
    listing: str  # digest of the listing seen last
    changed_at: float  # when the sensor first saw that listing
    newest: float  # the newest object's time in it
    complete: str  # digest of its complete participants
    complete_count: int
    versioned: str  # digest of the complete participants the last version was made for
    last_version: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> "UploadCursor | None":
        return cls(**json.loads(text)) if text else None


@dataclass(frozen=True)
class Decision:
    version: str | None  # the version to make, or None
    cursor: UploadCursor
    reason: str


def _first_baseline(complete: pd.Series, existing_versions: Sequence[str]) -> str:
    """With no cursor yet (a new instance, or the sensor's first tick), participants whose every
    object is older than the newest existing version count as already versioned."""
    if not len(existing_versions):
        return _digest([])
    newest_version = max(version_created_at(v).timestamp() for v in existing_versions)
    # ids have whole seconds: objects written within the version's second came before it
    return _digest(list(complete.index[complete < newest_version + 1]))


def decide(
    stamps: Mapping[str, ObjectStamp],
    cursor: UploadCursor | None,
    now: float,
    quiet: float,
    existing_versions: Sequence[str] = (),
) -> Decision:
    """The sensor's decision, a pure function of the listing, the cursor and the time."""
    listing = listing_digest(stamps)
    if cursor is None or cursor.listing != listing:
        complete = complete_participants(stamps)
        cursor = UploadCursor(
            listing=listing,
            changed_at=now,
            newest=max((s.modified for s in stamps.values()), default=0.0),
            complete=_digest(list(complete.index)),
            complete_count=len(complete),
            versioned=cursor.versioned if cursor else _first_baseline(complete, existing_versions),
            last_version=cursor.last_version if cursor else None,
        )
    if cursor.complete == cursor.versioned:
        return Decision(
            None, cursor, f"no change in complete participants ({cursor.complete_count}) since the last version"
        )
    quiet_since = max(cursor.changed_at, cursor.newest)
    if now - quiet_since < quiet:
        until = datetime.fromtimestamp(quiet_since + quiet, UTC)
        return Decision(
            None,
            cursor,
            f"{cursor.complete_count} complete participants differ from the last version; waiting for "
            f"{quiet:g} s without new uploads (until {until:%Y-%m-%d %H:%M:%S} UTC if nothing arrives)",
        )
    when = math.floor(cursor.newest)
    if cursor.last_version:  # a later burst always gets a later id, even with preserved mtimes
        when = max(when, int(version_created_at(cursor.last_version).timestamp()) + 1)
    version = make_version_id(CREATOR, datetime.fromtimestamp(when, UTC))
    return Decision(
        version,
        replace(cursor, versioned=cursor.complete, last_version=version),
        f"new version {version}: {cursor.complete_count} complete participants, "
        f"no upload for {now - quiet_since:.0f} s",
    )


@dg.sensor(
    name="upload_sensor",
    target=dg.AssetSelection.assets(web_app_data),
    minimum_interval_seconds=int(os.environ.get("KEYSTROKE_SENSOR_INTERVAL_SECONDS", DEFAULT_INTERVAL_SECONDS)),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Makes a new dataset version (`<time>_sensor`) and snapshots it when participants have become "
        "complete (all required uploads present) and no upload has arrived for KEYSTROKE_QUIET_SECONDS "
        f"(default {DEFAULT_QUIET_SECONDS} s). Automation materializes the rest of the version."
    ),
)
def upload_sensor(context: dg.SensorEvaluationContext, uploads: ObjectStore) -> dg.SensorResult:
    cursor = UploadCursor.from_json(context.cursor)
    existing = context.instance.get_dynamic_partitions(dataset_versions.name) if cursor is None else ()
    decision = decide(uploads.list_stamps(), cursor, time.time(), quiet_seconds(), existing)
    if decision.version is None:
        return dg.SensorResult(skip_reason=decision.reason, cursor=decision.cursor.to_json())
    context.log.info(decision.reason)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=decision.version, partition_key=decision.version)],
        dynamic_partitions_requests=[dataset_versions.build_add_request([decision.version])],
        cursor=decision.cursor.to_json(),
    )
