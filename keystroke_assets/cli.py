"""keystroke-assets: the team's commands, a thin layer over Dagster. This module parses the
command line; what each command does is in commands.py.

Exit codes: 0 done; 1 a run failed; 2 bad arguments (malformed version id, bad creator, no
DAGSTER_HOME); 3 unknown version or asset.
"""

import argparse
import sys
from collections.abc import Sequence

from keystroke_assets import commands


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keystroke-assets",
        description="Dataset versions and features of keystroke_assets, over the Dagster instance in DAGSTER_HOME.",
        epilog="Exit codes: 0 done, 1 a run failed, 2 bad arguments, 3 unknown version or asset.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("versions", help="every version × asset: materialized (when, code version), stale or missing")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=lambda a: commands.versions(a.json))

    p = sub.add_parser("new-version", help="snapshot the upload store now; print the new version id")
    p.add_argument("--creator", help="who makes it: lower-case letters, digits and '-' (default: <host>-<user>)")
    p.set_defaults(run=lambda a: commands.new_version(a.creator))

    p = sub.add_parser("materialize", help="run what a version is missing (or has stale)")
    p.add_argument("--version", required=True, help="the version id, YYYY-MM-DD_HH-MM-SS_<creator>")
    p.add_argument(
        "-f",
        "--feature",
        action="append",
        default=[],
        metavar="FEATURE",
        help="only this asset or feature and what it reads "
        "(repeatable; a prefix such as typenet_ml selects all under it)",
    )
    p.add_argument(
        "--force", action="store_true", help="run the selection again even where it is up to date (never the snapshot)"
    )
    p.add_argument("--dry-run", action="store_true", help="print what would run; write nothing")
    p.set_defaults(run=lambda a: commands.materialize(a.version, a.feature, a.force, a.dry_run))

    p = sub.add_parser(
        "backfill", help="a Dagster backfill of features over versions (runs in the daemon, shown in the UI)"
    )
    p.add_argument(
        "-f", "--feature", action="append", required=True, metavar="FEATURE", help="asset or feature (repeatable)"
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--all-versions", action="store_true", help="every version whose inputs exist")
    which.add_argument("--missing", action="store_true", help="only versions where the feature is missing")
    which.add_argument(
        "--stale",
        action="store_true",
        help="only versions where the feature is stale (its code_version or an input changed)",
    )
    p.add_argument(
        "--here",
        action="store_true",
        help="a run per version here, one after the other, not a backfill in the daemon (no 30 s daemon tick)",
    )
    p.set_defaults(
        run=lambda a: commands.backfill(
            a.feature, "all" if a.all_versions else "stale" if a.stale else "missing", a.here
        )
    )

    p = sub.add_parser("gc", help="delete the stored segments and partial results that no version's list names")
    p.add_argument("--dry-run", action="store_true", help="print what would be deleted; delete nothing")
    p.add_argument(
        "--grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep what was written or reused this recently (default: an hour), so a run in flight keeps its segments",
    )
    p.add_argument(
        "--keycodes",
        choices=["classes", "none"],
        help="also delete every segment stored with keycodes less strict than this, listed or not, and name the "
        "versions to materialize again",
    )
    p.set_defaults(run=lambda a: commands.gc(a.dry_run, a.grace, a.keycodes))

    p = sub.add_parser("export-versions-json", help="write the old versions.json, generated from the instance")
    p.add_argument("path", nargs="?", help="output file (default: stdout)")
    p.set_defaults(run=lambda a: commands.export_versions_json(a.path))

    p = sub.add_parser("demo", help="generated uploads, a demo version and the local Dagster (`dg dev`) on 127.0.0.1")
    p.add_argument("--participants", type=int, default=12, help="generated participants (default 12)")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(run=lambda a: commands.demo(a.participants, a.port))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except commands.CommandError as e:
        print(f"keystroke-assets {args.command}: error: {e}", file=sys.stderr)
        return e.code


if __name__ == "__main__":
    sys.exit(main())
