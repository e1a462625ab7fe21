"""Where a step computes its segments (participant segments, keystroke_assets.segments): in the step's own
process, in a pool of processes on this machine, or on a Dask cluster (docs/performance.md
"Scaling"). The step sees results in segment order, whichever runs them."""

import multiprocessing
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import dagster as dg

# What a pool's processes import once, in the fork server, before it forks them.
_PRELOAD = [
    "keystroke_assets.assets.raw_data",
    "keystroke_assets.assets.cleaned_data",
    "keystroke_assets.assets.keypairs",
    "keystroke_assets.features.behavioral",
    "keystroke_assets.features.kvc",
    "keystroke_assets.features.statistical",
    "keystroke_assets.features.typenet_ml",
    "keystroke_assets.features.typenet_sequences",
]


# The pool for the life of the process (a run worker runs every step of a run): its fork server
# imports the stages once per run, not once per step. Its processes get the environment the pool
# was made in (the store's credentials, an emulator's address); another environment, another pool.
_POOL: dict[tuple, ProcessPoolExecutor] = {}


def _start_worker(environment: dict, run_pid: int) -> None:
    """A pool process's start: the environment of the process that made the pool, and a watchdog
    that ends this process as soon as that process is gone (killed, even by SIGKILL). Without it
    a killed run leaves its workers (and so the fork server) running, writing segments for no one."""
    os.environ.clear()
    os.environ.update(environment)
    threading.Thread(target=_exit_with, args=(run_pid,), daemon=True, name="run-watchdog").start()


def _exit_with(pid: int) -> None:
    """Exit this process once the process `pid` has exited: at once through a pidfd (Linux), else
    within a second (macOS)."""
    try:
        if hasattr(os, "pidfd_open"):
            select.select([os.pidfd_open(pid)], [], [])  # readable once it has exited; immune to pid reuse
        else:
            while True:
                os.kill(pid, 0)
                time.sleep(1)
    except ProcessLookupError:  # gone already
        pass
    os._exit(1)


def _pool(workers: int) -> ProcessPoolExecutor:
    key = (workers, tuple(sorted(os.environ.items())))
    if key not in _POOL:
        for old in _POOL.values():
            old.shutdown(wait=False, cancel_futures=True)
        _POOL.clear()
        # A fork server, not fork: the step's process has threads (Dagster's), and a fork copies
        # their locks in whatever state; the server imports the stages' code once.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        _POOL[key] = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker, initargs=(dict(os.environ), os.getpid())
        )
    return _POOL[key]


def _in_order(submit: Callable, segments: Sequence, window: int) -> Iterator:
    """Each segment's result in segment order, with at most `window` segments submitted and not
    yet taken: a large version's results wait in memory only that many at a time."""
    pending = deque()
    try:
        for segment in segments:
            if len(pending) == window:
                yield pending.popleft().result()
            pending.append(submit(segment))
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:  # the step failed or stopped: nothing more to compute
            future.cancel()


class SegmentExecutor(dg.ConfigurableResource):
    """Maps a pure, picklable function over a step's segments. `scheduler` set: on the Dask
    cluster at that address (`tcp://host:8786`), each segment retried `retries` times on an error
    and computed again when its worker dies. Else on this machine, in a pool of `workers`
    processes (0: one per core), or in the step's own process with `workers` 1 or fewer than two
    segments per worker to compute: a pool's start (~1 s, once per run) pays from there on."""

    scheduler: str | None = None
    workers: int = 0
    retries: int = 2

    def map(self, fn: Callable, segments: Sequence) -> Iterator:
        if self.scheduler:
            return self._on_dask(fn, segments)
        workers = self.workers or os.cpu_count() or 1
        if workers < 2 or len(segments) < 2 * workers:
            return map(fn, segments)
        return self._on_pool(fn, segments, workers)

    def _on_pool(self, fn: Callable, segments: Sequence, workers: int) -> Iterator:
        pool = _pool(workers)
        try:
            yield from _in_order(lambda s: pool.submit(fn, s), segments, 2 * workers)
        except BrokenProcessPool:
            _POOL.clear()  # a worker died: the step's retry starts a new pool
            raise

    def _on_dask(self, fn: Callable, segments: Sequence) -> Iterator:
        import distributed  # only a step on a cluster pays for its import

        with distributed.Client(self.scheduler) as client:
            window = 2 * max(1, sum(client.nthreads().values()))
            submit = lambda s: client.submit(fn, s, retries=self.retries, pure=False)  # noqa: E731
            yield from _in_order(submit, segments, window)
