"""What `keystroke-assets` does, command by command (the parsing is in cli.py).

Versions are the instance's `dataset_versions` partitions (DAGSTER_HOME), what exists is the
instance's materializations, the assets are the code location's: nothing is kept anywhere else.
Results go to stdout, progress and errors to stderr; each command returns its exit code.

Dagster and the code location are imported inside the commands: `--help` and argument errors
answer at once.
"""

import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND = 0, 1, 2, 3
SNAPSHOT = "web_app_data"  # a version's snapshot: taken once, never re-taken by these commands
CLI_TAG = "keystroke/cli"
# What `demo` needs in the folder it runs in (the repository root): the local instance's settings,
# whose folder is DAGSTER_HOME, and the workspace `dg dev` loads.
LOCAL_INSTANCE, WORKSPACE = "dagster.yaml", "workspace.yaml"


class CommandError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def _say(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Dagster: instance, definitions, state -------------------------------------------------------


def _instance():
    import dagster as dg
    import yaml

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise CommandError(
            "DAGSTER_HOME is not set: point it at the instance, e.g. `export DAGSTER_HOME=$PWD` at the "
            "repository root (the instance `keystroke-assets demo` uses)"
        )
    # The repository's dagster.yaml names its folders relative to where a process runs: elsewhere
    # they would be another, empty instance.
    settings = Path(home, LOCAL_INSTANCE)
    relative = _relative_folders(yaml.safe_load(settings.read_text())) if settings.is_file() else []
    if relative and Path.cwd().resolve() != Path(home).resolve():
        raise CommandError(f"{settings} names its folders ({', '.join(relative)}) relative to {home}: run this there")
    return dg.DagsterInstance.get()


def _relative_folders(settings) -> list[str]:
    """The `base_dir` values of an instance's settings that are relative paths."""
    if isinstance(settings, dict):
        own = [v for k, v in settings.items() if k == "base_dir" and isinstance(v, str) and not os.path.isabs(v)]
        return own + [f for v in settings.values() for f in _relative_folders(v)]
    return []


def _graph():
    from keystroke_assets.definitions import defs

    return defs.resolve_asset_graph()


def _check_version(instance, version: str) -> str:
    from keystroke_assets.partitions import InvalidVersionId, dataset_versions, validate_version_id

    try:
        validate_version_id(version)
    except InvalidVersionId as e:
        raise CommandError(str(e)) from None
    if not instance.has_dynamic_partition(dataset_versions.name, version):
        raise CommandError(f"unknown version {version!r}: `keystroke-assets versions` lists them", EXIT_NOT_FOUND)
    return version


def resolve_assets(names: Sequence[str], graph) -> list:
    """Asset keys named as `features/typenet_ml/platform`, `typenet_ml/platform`, or a prefix
    (`typenet_ml`: every asset under it), in dependency order."""
    keys = list(graph.toposorted_asset_keys)
    chosen = set()
    for name in names:
        name = name.strip("/")
        forms = {name, f"features/{name}"}
        found = [k for k in keys if (s := k.to_user_string()) in forms or any(s.startswith(f + "/") for f in forms)]
        if not found:
            known = ", ".join(k.to_user_string().removeprefix("features/") for k in keys)
            raise CommandError(f"unknown asset or feature {name!r}; known: {known}", EXIT_NOT_FOUND)
        chosen.update(found)
    return [k for k in keys if k in chosen]


@dataclass(frozen=True)
class State:
    status: str  # materialized / missing / stale
    materialized_at: float | None = None
    code_version: str | None = None
    path: str | None = None


def asset_states(instance, graph, keys: Iterable, versions: Sequence[str]) -> dict:
    """{(asset key, version): State} from the instance's latest materialization of each partition."""
    import dagster as dg

    from keystroke_assets.backfills import stale_partitions

    states = {}
    for key in keys:
        latest = instance.get_latest_storage_id_by_partition(
            key, dg.DagsterEventType.ASSET_MATERIALIZATION, set(versions)
        )
        records = (
            instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, storage_ids=list(latest.values())), limit=max(len(latest), 1)
            ).records
            if latest
            else []
        )
        stale = set(stale_partitions(instance, graph, key)) if latest else set()
        by_version = {r.partition_key: r for r in records}
        for version in versions:
            record = by_version.get(version)
            if record is None:
                states[key, version] = State("missing")
                continue
            materialization = record.asset_materialization
            path = materialization.metadata.get("path")
            states[key, version] = State(
                "stale" if version in stale else "materialized",
                record.timestamp,
                (materialization.tags or {}).get("dagster/code_version"),
                path.value if path is not None else None,
            )
    return states


def _versions(instance) -> list[str]:
    from keystroke_assets.partitions import dataset_versions

    return sorted(instance.get_dynamic_partitions(dataset_versions.name))


# --- running in-process, with progress -----------------------------------------------------------


def run_in_process(instance, version: str, keys: Sequence) -> bool:
    """Materialize `keys` for `version` in this process with the environment's resources; print one
    line per asset as it is stored (and a heartbeat while a step runs long). True on success."""
    import dagster as dg

    from keystroke_assets.definitions import defs
    from keystroke_assets.resources import resources_from_env

    token = uuid.uuid4().hex
    outcome = {}

    def run():
        try:
            outcome["result"] = dg.materialize(
                list(defs.assets),
                selection=list(keys),
                partition_key=version,
                instance=instance,
                resources=resources_from_env(),
                raise_on_error=False,
                tags={CLI_TAG: token},
                run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
            )
        except Exception as e:  # reported below, never lost in the thread
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    began = time.monotonic()
    thread.start()
    run_id, cursor, running, last_line = None, None, {}, began
    wanted = {
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_FAILURE,
        dg.DagsterEventType.ASSET_MATERIALIZATION,
        dg.DagsterEventType.ASSET_CHECK_EVALUATION,
    }
    while True:
        finished = not thread.is_alive()
        if run_id is None:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={CLI_TAG: token}), limit=1)
            run_id = runs[0].run_id if runs else None
            if run_id:
                _say(f"  run {run_id} (also in the UI: Runs)")
        if run_id:
            connection = instance.get_records_for_run(run_id, cursor=cursor, of_type=wanted)
            cursor = connection.cursor
            for record in connection.records:
                entry = record.event_log_entry
                event = entry.dagster_event
                now = f"[{time.monotonic() - began:6.1f}s]"
                if event.event_type == dg.DagsterEventType.STEP_START:
                    running[event.step_key] = time.monotonic()
                elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                    _say(f"  {now} stored   {event.asset_key.to_user_string()}")
                elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                    check = event.event_specific_data
                    if not check.passed:
                        rules = check.metadata["failed_rules"].value
                        _say(f"  {now} check failed: {check.asset_key.to_user_string()} {rules}")
                elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
                    error = event.event_specific_data.error
                    message = (error.message if error else entry.message or "").strip().splitlines()
                    _say(f"  {now} FAILED   {event.step_key}: {message[0] if message else ''}")
                if event.event_type in (dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.STEP_FAILURE):
                    running.pop(event.step_key, None)
                last_line = time.monotonic()
        if finished:
            break
        if running and time.monotonic() - last_line > 15:
            steps = ", ".join(f"{s} ({time.monotonic() - t:.0f} s)" for s, t in running.items())
            _say(f"  [{time.monotonic() - began:6.1f}s] running  {steps}")
            last_line = time.monotonic()
        time.sleep(0.3)
    thread.join()
    if "error" in outcome:
        _say(f"  run could not start: {outcome['error']}")
        return False
    return outcome["result"].success


# --- commands --------------------------------------------------------------------------------------


def versions(as_json: bool = False) -> int:
    instance, graph = _instance(), _graph()
    versions = _versions(instance)
    keys = list(graph.toposorted_asset_keys)
    states = asset_states(instance, graph, keys, versions)
    from keystroke_assets.partitions import version_created_at, version_creator

    rows = [
        {
            "version": v,
            "created_by": version_creator(v),
            "created_at": _iso(version_created_at(v).timestamp()),
            "assets": {
                k.to_user_string(): {
                    "status": states[k, v].status,
                    "materialized_at": _iso(states[k, v].materialized_at),
                    "code_version": states[k, v].code_version,
                }
                for k in keys
            },
        }
        for v in versions
    ]
    if as_json:
        print(json.dumps({"versions": rows}, indent=2))
        return EXIT_OK
    if not rows:
        print("no versions yet: `keystroke-assets new-version` makes one (or the upload sensor will)")
        return EXIT_OK
    width = max(len(k.to_user_string()) for k in keys)
    for row in rows:
        counts = {
            s: sum(a["status"] == s for a in row["assets"].values()) for s in ("materialized", "stale", "missing")
        }
        print(
            f"{row['version']}  ({counts['materialized']} materialized, {counts['stale']} stale, "
            f"{counts['missing']} missing)"
        )
        for name, a in row["assets"].items():
            when = (a["materialized_at"] or "").replace("T", " ").rstrip("Z")
            code = f"code {a['code_version']}" if a["code_version"] else ""
            print(f"  {name:<{width}}  {a['status']:<12}  {when:<19}  {code}".rstrip())
    return EXIT_OK


def new_version(creator: str | None = None) -> int:
    from keystroke_assets.partitions import InvalidVersionId, dataset_versions, default_creator, make_version_id

    creator = creator or default_creator()
    try:
        version = make_version_id(creator)
    except InvalidVersionId as e:
        raise CommandError(str(e)) from None
    instance = _instance()
    if instance.has_dynamic_partition(dataset_versions.name, version):
        time.sleep(1.05 - time.time() % 1)  # ids have whole seconds
        version = make_version_id(creator)
    instance.add_dynamic_partitions(dataset_versions.name, [version])
    _say(f"new version {version}: taking the snapshot of the upload store")
    import dagster as dg

    if not run_in_process(instance, version, [dg.AssetKey(SNAPSHOT)]):
        instance.delete_dynamic_partition(dataset_versions.name, version)
        _say(f"the snapshot failed; version {version} removed")
        return EXIT_FAILED
    _say(
        "automation (dagster dev, or the daemon) materializes the rest; or run "
        f"`keystroke-assets materialize --version {version}`"
    )
    print(version)
    return EXIT_OK


def plan(graph, states: dict, version: str, selected: Sequence, force: bool) -> list[tuple]:
    """[(asset key, reason)] to run, in dependency order: the selection and whatever it reads,
    where missing, stale, forced (the selection only) or downstream of something that runs.
    The snapshot runs only when missing: a version's content never changes."""
    needed = set(selected)
    for key in selected:
        needed |= graph.get_ancestor_asset_keys(key)
    steps = {}
    for key in graph.toposorted_asset_keys:
        if key not in needed:
            continue
        status = states[key, version].status
        upstream = [p for p in graph.get(key).parent_keys if p in steps]
        if status == "missing":
            steps[key] = "missing"
        elif key.to_user_string() == SNAPSHOT:
            continue
        elif status == "stale":
            steps[key] = "stale"
        elif upstream:
            steps[key] = f"reads {upstream[0].to_user_string()}, which runs"
        elif force and key in selected:
            steps[key] = "--force"
    return list(steps.items())


def materialize(version: str, features: Sequence[str] = (), force: bool = False, dry_run: bool = False) -> int:
    instance, graph = _instance(), _graph()
    version = _check_version(instance, version)
    selected = resolve_assets(features, graph) if features else list(graph.toposorted_asset_keys)
    states = asset_states(instance, graph, graph.toposorted_asset_keys, [version])
    steps = plan(graph, states, version, selected, force)
    if not steps:
        print(
            f"nothing to run for {version}: everything selected is materialized and up to date (--force runs it again)"
        )
        return EXIT_OK
    width = max(len(k.to_user_string()) for k, _ in steps)
    header = "would run" if dry_run else "running"
    print(f"{header} for {version}:")
    for key, reason in steps:
        print(f"  {key.to_user_string():<{width}}  ({reason})")
    if dry_run:
        return EXIT_OK
    ok = run_in_process(instance, version, [k for k, _ in steps])
    _say("done" if ok else "the run failed: see the lines above, or the run in the UI")
    return EXIT_OK if ok else EXIT_FAILED


def backfill(features: Sequence[str], which: str, here: bool = False) -> int:
    """Backfill `features` over the versions where they are `which`: "missing", "stale" or "all".
    A Dagster backfill the daemon runs, or with `here` a run per version in this process, one
    after the other (no daemon tick to wait for); a version's failure leaves the others to run."""
    from keystroke_assets.backfills import launch_asset_backfill

    instance, graph = _instance(), _graph()
    keys = resolve_assets(features, graph)
    versions = _versions(instance)
    if not versions:
        raise CommandError("no versions yet: nothing to backfill", EXIT_NOT_FOUND)
    inputs = {p for k in keys for p in graph.get(k).parent_keys} - set(keys)
    states = asset_states(instance, graph, [*keys, *inputs], versions)
    ready = []
    for v in versions:
        absent = [p.to_user_string() for p in inputs if states[p, v].status == "missing"]
        if absent:
            _say(
                f"skipping {v}: {', '.join(sorted(absent))} not materialized "
                f"(`keystroke-assets materialize --version {v}`)"
            )
        else:
            ready.append(v)
    # one backfill per set of versions, so no asset runs again where it is up to date
    groups: dict[tuple, list] = {}
    for key in keys:
        todo = tuple(v for v in ready if which == "all" or states[key, v].status == which)
        if todo:
            groups.setdefault(todo, []).append(key)
    if not groups:
        print(
            "nothing to backfill: "
            + ("no version is ready" if which == "all" else f"no version has these assets {which}")
        )
        return EXIT_OK
    if here:
        failed = []
        for todo, group in groups.items():
            for v in todo:
                _say(f"{v}: {', '.join(k.to_user_string() for k in group)}")
                if not run_in_process(instance, v, group):
                    failed.append(v)
        _say(f"{len(failed)} of {sum(map(len, groups))} runs failed: {', '.join(failed)}" if failed else "done")
        return EXIT_FAILED if failed else EXIT_OK
    for todo, group in groups.items():
        names = ", ".join(k.to_user_string() for k in group)
        title = f"keystroke-assets backfill {' '.join(features)}"
        backfill_id = launch_asset_backfill(instance, group, list(todo), title=title)
        _say(
            f"backfill {backfill_id}: {names} × {len(todo)} versions; the daemon runs it "
            f"(UI: Overview → Backfills, /runs/b/{backfill_id})"
        )
        print(backfill_id)
    return EXIT_OK


def versions_json(instance, graph) -> dict:
    """The old versions.json, generated from the instance: stages and features that exist, with
    path; features also with extracted_at and version (the code version that made them)."""
    from keystroke_assets.partitions import version_created_at, version_creator

    versions = _versions(instance)
    keys = list(graph.toposorted_asset_keys)
    states = asset_states(instance, graph, keys, versions)
    out = []
    for v in versions:
        stages, features = {}, {}
        for key in keys:
            state = states[key, v]
            if state.status == "missing":
                continue
            name = key.to_user_string()
            if name.startswith("features/"):
                features[name.removeprefix("features/")] = {
                    "path": state.path,
                    "extracted_at": _iso(state.materialized_at),
                    "version": state.code_version,
                }
            else:
                stages[name] = {"path": state.path}
        out.append(
            {
                "version_id": v,
                "created_by": version_creator(v),
                "timestamp": _iso(version_created_at(v).timestamp()),
                "stages": stages,
                "features": features,
            }
        )
    return {"versions": out}


def export_versions_json(target: str | None = None) -> int:
    """versions_json to the file `target` (written whole, then renamed), or to stdout."""
    text = json.dumps(versions_json(_instance(), _graph()), indent=2) + "\n"
    if target in (None, "-"):
        sys.stdout.write(text)
        return EXIT_OK
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)  # readers never see half a file
    _say(f"wrote {path}")
    return EXIT_OK


def _start_run_retries_at_the_end(instance) -> None:
    """Set the run-retry watcher's cursors where its first start would (the end of the event log),
    so that the daemon of a new instance does not warn that it has none."""
    from dagster._daemon.auto_run_reexecution.event_log_consumer import DAGSTER_EVENT_TYPES, _create_cursor_key

    keys = {_create_cursor_key(t) for t in DAGSTER_EVENT_TYPES}
    missing = keys - set(instance.daemon_cursor_storage.get_cursor_values(keys))
    if missing:
        end = str(instance.event_log_storage.get_maximum_record_id() or 0)
        instance.daemon_cursor_storage.set_cursor_values(dict.fromkeys(missing, end))


def demo(participants: int, port: int) -> int:
    """Demo data, a demo version and the local Dagster (`dg dev`: webserver and daemon), all under
    the current folder: the repository root, whose dagster.yaml is the local instance (DAGSTER_HOME)."""
    here = Path.cwd().resolve()
    missing = [name for name in (LOCAL_INSTANCE, WORKSPACE) if not (here / name).is_file()]
    if missing:
        raise CommandError(f"no {' or '.join(missing)} in {here}: run `keystroke-assets demo` from the repository root")
    if os.environ.get("DAGSTER_HOME") and Path(os.environ["DAGSTER_HOME"]).resolve() != here:
        _say(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']} ignored: the demo's instance is {here / LOCAL_INSTANCE}")
    # `dg dev` warns unless DAGSTER_HOME is the folder it runs in, whose dagster.yaml it finds
    os.environ["DAGSTER_HOME"] = str(here)
    # Dagster's telemetry uploader runs whatever dagster.yaml says and moves DAGSTER_HOME/logs;
    # only this variable stops it
    os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"
    (here / ".nux").mkdir(exist_ok=True)
    (here / ".nux" / "nux.yaml").write_text("seen: 1\n")  # no "Join the Dagster community" pop-up
    # absolute locations, so the code server and run workers agree whatever their folder
    for name, default in (("KEYSTROKE_UPLOADS", "data/uploads"), ("KEYSTROKE_STORAGE", "data/storage")):
        value = os.environ.get(name, default)
        os.environ[name] = value if value.startswith("gs://") else str((here / value).resolve())
    os.environ.setdefault("KEYSTROKE_QUIET_SECONDS", "60")  # a demo should not wait 10 minutes

    from keystroke_assets.partitions import dataset_versions, make_version_id
    from keystroke_assets.resources import resources_from_env
    from keystroke_assets.synthetic import demo_uploads

    uploads = resources_from_env()["uploads"]
    if uploads.list_names():
        _say(f"uploads: {uploads.uri()} already has files; left as they are")
    else:
        _say(f"uploads: writing {participants} generated participants to {uploads.uri()}")
        for name, data in demo_uploads(participants, seed=0):
            uploads.write_bytes(name, data)
    instance = _instance()
    _start_run_retries_at_the_end(instance)
    if not instance.get_dynamic_partitions(dataset_versions.name):
        version = make_version_id("demo")
        instance.add_dynamic_partitions(dataset_versions.name, [version])
        _say(f"added version {version}")
    url = f"http://127.0.0.1:{port}"
    _say(f"""
Dagster UI: {url}   (DAGSTER_HOME={here})
- Materialize the demo version: Assets → Materialize all → pick the version. (A version's snapshot is
  taken by whoever makes it; automation then keeps the rest of it complete.)
- A new version: copy a participant's files into {uploads.uri()}; the upload sensor makes one after
  {os.environ["KEYSTROKE_QUIET_SECONDS"]} s without new uploads and it is materialized by itself. Or run
  `keystroke-assets new-version`.
- In another shell, here: `export DAGSTER_HOME=$PWD`, then `keystroke-assets versions`.
""")
    # `dg dev`, not `dagster dev` (superseded in Dagster 1.13). With a workspace file it starts the
    # same services at once, without dg's project checks (they warn when no virtualenv is active).
    argv = [
        str(Path(sys.executable).with_name("dg")),
        "dev",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        str(here / WORKSPACE),
    ]
    sys.stdout.flush()
    os.execv(argv[0], argv)
