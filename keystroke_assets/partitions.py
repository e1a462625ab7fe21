"""Dataset versions: one dynamic partition per immutable snapshot of the upload store."""

import getpass
import re
import socket
from datetime import UTC, datetime

import dagster as dg

dataset_versions = dg.DynamicPartitionsDefinition(name="dataset_versions")

VERSION_FORMAT = "YYYY-MM-DD_HH-MM-SS_<creator>"
# Matched with fullmatch: `$` would also accept a trailing newline. ASCII: `\d` would take any
# script's digits, and strptime reads them.
_VERSION_RE = re.compile(r"(\d{4}-\d{2}-\d{2})_(\d{2}-\d{2}-\d{2})_([a-z0-9]+(?:-[a-z0-9]+)*)", re.ASCII)
_CREATOR_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


class InvalidVersionId(ValueError):
    pass


def default_creator() -> str:
    """`<host>-<user>` reduced to the allowed alphabet."""
    raw = f"{socket.gethostname().split('.')[0]}-{getpass.getuser()}".lower()
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", raw)).strip("-") or "unknown"


def make_version_id(creator: str, when: datetime | None = None) -> str:
    """The partition key of a new version: UTC creation time and creator."""
    if not _CREATOR_RE.fullmatch(creator or ""):
        raise InvalidVersionId(
            f"invalid creator {creator!r}: use lower-case letters, digits and single '-' "
            "(e.g. 'lab-mac-alice' or 'sensor')"
        )
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return f"{when:%Y-%m-%d_%H-%M-%S}_{creator}"


def validate_version_id(version: str) -> str:
    """Return the id unchanged, or raise InvalidVersionId explaining the expected form."""
    match = _VERSION_RE.fullmatch(version) if isinstance(version, str) else None
    if match:
        try:
            datetime.strptime(f"{match[1]}_{match[2]}", "%Y-%m-%d_%H-%M-%S")
            return version
        except ValueError:
            pass
    raise InvalidVersionId(
        f"invalid dataset version id {version!r}: expected {VERSION_FORMAT} in UTC, "
        "creator made of lower-case letters, digits and '-', e.g. '2025-09-07_00-27-43_lab-mac'"
    )


def version_created_at(version: str) -> datetime:
    validate_version_id(version)
    return datetime.strptime(version[:19], "%Y-%m-%d_%H-%M-%S").replace(tzinfo=UTC)


def version_creator(version: str) -> str:
    return validate_version_id(version)[20:]
