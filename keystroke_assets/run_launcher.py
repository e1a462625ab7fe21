"""The local instance's run launcher: Dagster's default one, which also tells run monitoring
whether a run's process is still alive.

Dagster's DefaultRunLauncher cannot say whether a run's worker is alive, so run monitoring never
fails a run whose process was killed: the run stays STARTED, and the run queue's one-run-per-version
limit then holds every later run of the version for ever. Every run process records its pid in an
engine event ("Started process for run", "Executing steps in process"): a run launched from the
queue and a run the CLI executes in its own process alike. A run whose recorded process no longer
exists (or is a later process that reuses the pid) has no worker: run monitoring marks it failed
(the root dagster.yaml, `run_monitoring`), and the queue moves on. Local runs only: the
local instance is one machine's.
"""

import dagster as dg
import psutil
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus


def run_process(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, when it was recorded) of the process a run last recorded, or None if none yet."""
    for entry in reversed(instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)):
        pid = entry.dagster_event.engine_event_data.metadata.get("pid")
        if pid is not None:
            return int(pid.value), entry.timestamp
    return None


def process_alive(pid: int, since: float) -> bool:
    """Whether the process `pid` that existed at `since` (seconds since the epoch) still runs."""
    try:
        process = psutil.Process(pid)
        return process.create_time() <= since + 1 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class LocalRunLauncher(dg.DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        recorded = run_process(self._instance, run.run_id)
        if recorded is None:  # started an instant ago: its process has not written its pid yet
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no process recorded yet")
        pid, since = recorded
        if process_alive(pid, since):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run's process (pid {pid}) is gone: killed or crashed")
