"""Worker processes for the per-key searches: bounded, with deadlines, ended by SIGKILL.

Why not multiprocessing.Pool or ProcessPoolExecutor: both share one result queue guarded by a lock
between all workers, and ending them early (the first illegal key) can deadlock. Pool.terminate()
SIGTERMs a worker while it holds that lock (or while its large result fills the pipe nobody reads
any more) and then joins its task-handler thread, which waits for the lock forever. A
ProcessPoolExecutor cannot stop a running job at all.

Here every worker has its own pipe and at most one job; nothing is shared, so a worker killed at
any moment leaves nothing locked. The parent only ever waits with a timeout (the job's deadline
plus a grace), so a worker that is stuck, slow or dead costs at most that long, and its key comes
out "unknown". When done, early or not, every worker we started is SIGKILLed by its pid and reaped.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Generator, Iterable

# A search checks its deadline every few thousand steps (milliseconds); past the deadline by this
# much, its worker is presumed stuck and is killed.
GRACE_S = 2.0
REAP_TIMEOUT_S = 5.0

DONE, LATE, DIED = "done", "late", "died"


@dataclass
class Outcome:
    """What became of one job: DONE with its value, LATE (killed past its deadline + grace), or
    DIED (the worker exited before answering; `detail` says how)."""

    status: str
    value: Any = None
    detail: str = ""


class WorkerError(RuntimeError):
    """A job raised in its worker process (a bug, not a verdict): the worker's traceback."""


def _serve(conn, func: Callable, inherited_fds: list[int]) -> None:
    # A forked worker inherits the parent's ends of its siblings' pipes: close them, or a sibling's
    # death would never read as end-of-file in the parent... and keep nothing it does not need.
    for fd in inherited_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if job is None:
            return
        try:
            answer = (True, func(*job))
        except Exception:  # noqa: BLE001 - sent to the parent, which raises it
            answer = (False, traceback.format_exc())
        try:
            conn.send(answer)
        except (OSError, ValueError):
            return


class _Worker:
    def __init__(self, ctx, func: Callable, siblings: list["_Worker"]):
        parent_end, child_end = ctx.Pipe(duplex=True)
        fork = ctx.get_start_method() == "fork"
        # Only a forked child holds copies of the parent's descriptors; a spawned one has none.
        inherited = [w.conn.fileno() for w in siblings if not w.conn.closed] + [parent_end.fileno()] if fork else []
        self.process = ctx.Process(target=_serve, args=(child_end, func, inherited), daemon=True,
                                   name="splitbrain-search")
        self.process.start()
        child_end.close()  # ours no longer: end-of-file on parent_end now means the worker is gone
        self.conn: Connection = parent_end
        self.job: Any = None
        self.hard_deadline = math.inf  # when a job is sent: its deadline plus the grace

    def kill(self) -> None:
        """SIGKILL by pid (never a broad name), then reap."""
        p = self.process
        # exitcode None: not yet reaped, so the pid is still this child's and cannot be reused.
        if p.pid is not None and p.exitcode is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.join(REAP_TIMEOUT_S)
        self.conn.close()

    def exit_detail(self) -> str:
        self.process.join(REAP_TIMEOUT_S)
        code = self.process.exitcode
        if code is None:
            return "closed its pipe but did not exit"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"


def start_method() -> str:
    # fork is cheap, but unsafe when the caller runs threads (the controller does): spawn then.
    return "fork" if threading.active_count() == 1 else "spawn"


def run_jobs(func: Callable, jobs: Iterable[tuple[Any, tuple, float]], workers: int,
             method: str | None = None) -> Generator[tuple[Any, Outcome], None, None]:
    """Run func(*args) for each (job_id, args, deadline) in at most `workers` processes.

    Yields (job_id, Outcome) as jobs finish; at most `workers` jobs are outstanding at a time and
    the next job is taken from `jobs` only when a worker is free, so a caller that stops iterating
    (or closes the generator) stops all work: the workers are then SIGKILLed and reaped. A job
    still running GRACE_S past its deadline is LATE (its worker is killed and replaced). A job
    that raised raises WorkerError here.
    """
    ctx = multiprocessing.get_context(method or start_method())
    pending = iter(jobs)
    pool: list[_Worker] = []
    idle: list[_Worker] = []
    busy: dict[Any, _Worker] = {}  # conn -> worker
    exhausted = False
    try:
        while True:
            while not exhausted and (idle or len(pool) < workers):
                job = next(pending, None)
                if job is None:
                    exhausted = True
                    break
                job_id, args, deadline = job
                w = idle.pop() if idle else None
                if w is None:
                    w = _Worker(ctx, func, pool)
                    pool.append(w)
                w.job, w.hard_deadline = job_id, deadline + GRACE_S
                try:
                    w.conn.send(args)
                except OSError:  # it died while idle
                    yield job_id, Outcome(DIED, detail=f"the search process {w.exit_detail()}")
                    _retire(w, pool)
                    continue
                busy[w.conn] = w
            if not busy:
                return
            timeout = max(0.0, min(w.hard_deadline for w in busy.values()) - time.monotonic())
            ready = wait(list(busy), timeout)
            if not ready:
                now = time.monotonic()
                for w in [w for w in busy.values() if w.hard_deadline <= now]:
                    del busy[w.conn]
                    _retire(w, pool)
                    yield w.job, Outcome(LATE, detail=f"the search did not stop within {GRACE_S:g} s "
                                                      "of its deadline and was killed")
                continue
            for conn in ready:
                w = busy.pop(conn)
                try:
                    ok, value = w.conn.recv()  # (w.conn is conn: busy is keyed by it)
                except (EOFError, OSError):
                    detail = w.exit_detail()
                    _retire(w, pool)
                    yield w.job, Outcome(DIED, detail=f"the search process {detail}")
                    continue
                if not ok:
                    raise WorkerError(f"job {w.job!r} failed in a worker process:\n{value}")
                idle.append(w)
                yield w.job, Outcome(DONE, value)
    finally:
        for w in pool:
            w.kill()


def _retire(w: _Worker, pool: list[_Worker]) -> None:
    w.kill()
    pool.remove(w)


__all__ = ["run_jobs", "Outcome", "WorkerError", "DONE", "LATE", "DIED", "GRACE_S", "start_method"]
