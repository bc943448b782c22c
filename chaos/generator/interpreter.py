"""The interpreter: runs a generator against worker threads and records the history.

One coordinating thread (the caller's) owns the generator, the context and the history; every
worker thread (client threads 0..C-1, and "nemesis") has an inbox and hands its completions
back on one queue. The loop, as Jepsen's interpreter:

    completions first (they are latency-sensitive: a late one would fake concurrency)
    -> feed each to the generator (update) and record it
    -> ask the generator for an op: dispatch it (record, update, hand to its thread), or wait
       until its time, the next completion, a thread waking or the deadline -- never polling

Everything a generator sees comes from the Scheduler, which has no threads and no clock, so that
the same events in the same order give the same operations (`simulate` drives it in virtual
time; tests replay a real run's history through it). Recorded times are the caller's clock (the
history's controller monotonic ns); generators see ns since the start of the run.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time as _time
from dataclasses import dataclass, field
from typing import Any, Callable

from chaos.generator.core import (LOG, PENDING, SLEEP, Context, Generator, GeneratorError,
                                  is_client_thread, lift)
from chaos.history import FAIL, INFO, INVOKE, NEMESIS, OK, Op

log = logging.getLogger("chaos.generator")

# After a worker could not even be opened (the op certainly did not happen: a fail), its thread
# waits this long before its next op rather than failing thousands of times a second.
OPEN_FAILURE_BACKOFF_S = 0.1
# How long an idle worker thread may take to close its worker once the run is over.
CLOSE_WAIT_S = 2.0


class Worker:
    """What runs one thread's operations. All its methods are called on that thread."""

    def invoke(self, op: Op) -> Op:
        """Perform op; return its completion (type ok, fail or info). An exception becomes an
        info completion (outcome unknown), unless run() was told it is fatal."""
        raise NotImplementedError

    def backoff_after(self, completion: Op) -> float:
        """Seconds this thread waits after `completion` before its next op (e.g. the node is
        down); the thread stays busy meanwhile."""
        return 0.0

    def close(self) -> None:
        pass


class WorkerFactory:
    def open(self, thread: Any, process: Any) -> Worker:
        """A worker for `process` on `thread` (an int, or "nemesis"). Called on that thread,
        again with a fresh process after an info completion retires the old one."""
        raise NotImplementedError


@dataclass
class RunSummary:
    start_ns: int                  # clock() when the run began; generator time 0
    ended: str                     # "exhausted", "stopped", "deadline" or "fatal"
    invocations: int = 0
    completions: int = 0
    unfinished: list = field(default_factory=list)   # recorded invocations never completed
    abandoned_threads: list = field(default_factory=list)  # still stuck in a worker at the end
    processes: dict = field(default_factory=dict)    # thread -> process, to continue a run
    elapsed_s: float = 0.0


# -- the scheduler: all the state a generator sees, driven by events --------------------------------

WAIT, WAIT_UNTIL, DONE, INVOKED, SLEEPING, LOGGED = "wait", "wait_until", "done", "invoke", "sleep", "log"
_HOLD = "hold"  # a thread waiting out its worker's backoff


class Scheduler:
    """The generator, the threads and their processes, and which threads are busy. No threads,
    no clock: a driver tells it the time and the events."""

    def __init__(self, generator: Any, *, concurrency: int, seed: int, processes: dict | None = None):
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise GeneratorError(f"concurrency must be a positive integer, got {concurrency!r}")
        self.gen: Generator = lift(generator)
        self.concurrency = concurrency
        self.seed = seed
        self.threads = tuple(range(concurrency)) + (NEMESIS,)
        self.workers: dict = {t: t for t in range(concurrency)}
        self.workers[NEMESIS] = NEMESIS
        for thread, process in (processes or {}).items():
            if thread not in self.workers:
                raise GeneratorError(f"processes names thread {thread!r}, not one of {list(self.threads)}")
            if is_client_thread(thread) and (not is_client_thread(process) or process % concurrency != thread):
                raise GeneratorError(f"process {process!r} cannot run on thread {thread} "
                                     f"(client thread t runs processes t, t + {concurrency}, ...)")
            self.workers[thread] = process
        self.free: list = list(self.threads)   # longest-free first
        self.busy: dict = {}                   # thread -> the op it runs (or _HOLD)
        self.step = 0                          # events so far: keys the context's random stream

    def context(self, now: int) -> Context:
        return Context(now, self.threads, tuple(self.free), self.workers, self.concurrency,
                       self.seed, self.step)

    def next(self, now: int) -> tuple[str, Any]:
        """Ask the generator: (INVOKED | SLEEPING, (thread, op)), (LOGGED, op), (WAIT_UNTIL, t),
        (WAIT, None) until some event, or (DONE, None)."""
        o, rest = self.gen.op(self.context(now))
        if o is None:
            return (WAIT, None) if self.busy else (DONE, None)
        if o is PENDING:
            if not self.busy:
                raise GeneratorError("the generator is pending but no operation is in flight, so it "
                                     f"can never go on (generator: {self.gen!r})")
            return WAIT, None
        thread = self._check(o)
        if o.time > now:
            return WAIT_UNTIL, o.time
        self.gen = rest
        self.step += 1
        o.time = now
        if o.type == LOG:
            return LOGGED, o
        self.free.remove(thread)
        self.busy[thread] = o
        if o.type == SLEEP:
            return SLEEPING, (thread, o)
        self.gen = self.gen.update(self.context(now), o)
        return INVOKED, (thread, o)

    def _check(self, o: Any) -> Any:
        if not isinstance(o, Op):
            raise GeneratorError(f"the generator emitted {type(o).__name__} {o!r}, not an Op")
        if o.type == LOG:
            return None
        if o.type not in (INVOKE, SLEEP):
            raise GeneratorError(f"the generator emitted an op of type {o.type!r} (valid: invoke, "
                                 f"sleep, log): {o}")
        if isinstance(o.time, bool) or not isinstance(o.time, int):
            raise GeneratorError(f"op time must be integer ns since the start, got {o.time!r}: {o}")
        thread = self.thread_of(o.process)
        if thread not in self.workers or self.workers[thread] != o.process:
            raise GeneratorError(f"the generator emitted an op for process {o.process!r}, which no "
                                 f"thread runs (threads run {self.workers}): {o}")
        if thread in self.busy:
            raise GeneratorError(f"the generator emitted an op for process {o.process!r}, whose "
                                 f"thread is busy: {o}")
        return thread

    def complete(self, thread: Any, completion: Op, now: int, hold_until: int | None = None) -> None:
        """`thread`'s op completed at `now`; with hold_until, the thread stays busy until then."""
        invoke = self.busy.pop(thread)
        self.step += 1
        if hold_until is not None and hold_until > now:
            self.busy[thread] = _HOLD
        else:
            self.free.append(thread)
        # The context still maps the thread to the process that ran the op, as Jepsen's does.
        self.gen = self.gen.update(self.context(now), completion)
        if completion.type == INFO and is_client_thread(thread):
            self.retire(thread, invoke.process)

    def thread_of(self, process: Any) -> Any:
        return process % self.concurrency if is_client_thread(process) else process

    def retire(self, thread: Any, process: Any) -> None:
        """An info (outcome unknown) may still take effect, so `thread` goes on as a new process."""
        if is_client_thread(thread) and self.workers[thread] == process:
            workers = dict(self.workers)  # contexts already handed out keep the map they saw
            workers[thread] = process + self.concurrency
            self.workers = workers

    def wake(self, thread: Any, now: int) -> None:
        """`thread` finished sleeping or backing off."""
        del self.busy[thread]
        self.free.append(thread)
        self.step += 1


# -- the threaded interpreter -----------------------------------------------------------------------

_EXIT = object()
_WAKE = object()


class _Pool:
    """One daemon thread per generator thread, started at its first op."""

    def __init__(self, factory: WorkerFactory, completions: queue.SimpleQueue, fatal: tuple):
        self.factory, self.completions, self.fatal = factory, completions, fatal
        self.inboxes: dict = {}
        self.threads: dict = {}

    def send(self, thread: Any, op: Op) -> None:
        inbox = self.inboxes.get(thread)
        if inbox is None:
            inbox = self.inboxes[thread] = queue.SimpleQueue()
            name = "nemesis" if thread == NEMESIS else f"worker-{thread}"
            t = self.threads[thread] = threading.Thread(target=self._work, args=(thread, inbox),
                                                        name=name, daemon=True)
            t.start()
        inbox.put(op)

    def exit_all(self) -> None:
        for inbox in self.inboxes.values():
            inbox.put(_EXIT)

    def _work(self, thread: Any, inbox: queue.SimpleQueue) -> None:
        worker, process = None, None
        try:
            while True:
                op = inbox.get()
                if op is _EXIT:
                    return
                if worker is None or process != op.process:
                    worker = _close(worker, thread)
                    try:
                        worker, process = self.factory.open(thread, op.process), op.process
                    except self.fatal as e:
                        self.completions.put((thread, op, None, 0.0, e))
                        return
                    except Exception as e:  # noqa: BLE001 - the op certainly did not happen
                        log.warning("thread %s: could not open a worker for process %s: %s", thread, op.process, e)
                        done = Op(process=op.process, type=FAIL, f=op.f, key=op.key, value=op.value,
                                  node=op.node, error=f"could not open a worker: {type(e).__name__}: {e}")
                        self.completions.put((thread, op, done, OPEN_FAILURE_BACKOFF_S, None))
                        continue
                try:
                    done = worker.invoke(op)
                    if not isinstance(done, Op) or done.type not in (OK, FAIL, INFO):
                        raise TypeError(f"worker returned {done!r}, not a completion Op (type ok, fail or info)")
                except self.fatal as e:
                    self.completions.put((thread, op, None, 0.0, e))
                    return
                except Exception as e:  # noqa: BLE001 - unknown error: the outcome is unknown
                    log.warning("thread %s: %s on %s %s: %s", thread, type(e).__name__, op.f, op.key, e)
                    done = Op(process=op.process, type=INFO, f=op.f, key=op.key, value=op.value,
                              node=op.node, error=f"{type(e).__name__}: {e}")
                backoff = 0.0
                try:
                    backoff = float(getattr(worker, "backoff_after", _no_backoff)(done) or 0.0)
                except Exception as e:  # noqa: BLE001 - a broken hint must not stop the thread
                    log.warning("thread %s: backoff_after failed: %s", thread, e)
                if done.type == INFO and is_client_thread(thread):
                    worker = _close(worker, thread)  # its process is retired
                self.completions.put((thread, op, done, max(0.0, backoff), None))
        finally:
            _close(worker, thread)


def _no_backoff(completion: Op) -> float:
    return 0.0


def _close(worker: Any, thread: Any) -> None:
    if worker is not None:
        try:
            worker.close()
        except Exception as e:  # noqa: BLE001
            log.warning("thread %s: closing its worker failed: %s", thread, e)
    return None


def _watch(stop: threading.Event, completions: queue.SimpleQueue, finished: threading.Event) -> None:
    # Turns stop.set() into a wake-up of the coordinating thread's blocking wait; lives at most
    # half a second past the run.
    while not finished.is_set():
        if stop.wait(0.5):
            completions.put(_WAKE)
            return


def run(generator: Any, *, concurrency: int, workers: WorkerFactory, record: Callable[[Op], Any],
        seed: int, stop: threading.Event | None = None, deadline_ns: int | None = None,
        clock: Callable[[], int] = _time.monotonic_ns, grace_s: float = 5.0, fatal: tuple = (),
        processes: dict | None = None) -> RunSummary:
    """Run `generator` until it is exhausted, `stop` is set or `deadline_ns` (ns after the start)
    passes; record(op) gets every invocation and completion, in order, on this thread.

    After stop or the deadline nothing new is dispatched; ops in flight get grace_s seconds to
    complete, and those that do not stay open in the history (which counts them as info). An
    exception of a class in `fatal` raised by a worker ends the run the same way and is then
    re-raised here. `processes` (thread -> process, from a previous RunSummary) continues the
    process numbering of an earlier run."""
    sched = Scheduler(generator, concurrency=concurrency, seed=seed, processes=processes)
    stop = stop if stop is not None else threading.Event()
    completions: queue.SimpleQueue = queue.SimpleQueue()
    pool = _Pool(workers, completions, tuple(fatal))
    finished = threading.Event()
    watcher = threading.Thread(target=_watch, args=(stop, completions, finished), name="generator-stop", daemon=True)
    watcher.start()
    start = clock()
    summary = RunSummary(start_ns=start, ended="exhausted")
    in_flight: dict = {}          # thread -> the recorded invocation
    open_for_good: list = []      # invocations whose worker raised a fatal error
    timers: list = []             # (wake time, seq, thread): sleeps and backoffs
    seq = itertools.count()
    fatal_error: BaseException | None = None
    clean = False

    def complete(item, now: int, winding_down: bool = False) -> None:
        nonlocal fatal_error
        thread, invoke, done, backoff, error = item
        if error is not None:
            fatal_error = fatal_error or error
            open_for_good.append(in_flight.pop(thread))  # its invocation stays open
            return
        in_flight.pop(thread, None)
        done.process = invoke.process
        done.time = start + now
        record(done)
        summary.completions += 1
        event = Op(process=done.process, type=done.type, f=done.f, key=done.key, value=done.value,
                   time=now, node=done.node, error=done.error, extra=done.extra)
        hold = now + int(backoff * 1e9) if backoff > 0 and not winding_down else None
        sched.complete(thread, event, now, hold)
        if hold is not None:
            heapq.heappush(timers, (hold, next(seq), thread))

    try:
        timeout: float | None = 0.0
        while True:
            try:
                item = completions.get_nowait() if timeout == 0.0 else completions.get(timeout=timeout)
            except queue.Empty:
                item = None
            timeout = 0.0
            now = clock() - start
            if item is not None:
                if item is not _WAKE:
                    complete(item, now)
                continue
            while timers and timers[0][0] <= now:
                _, _, thread = heapq.heappop(timers)
                sched.wake(thread, now)
            if fatal_error is not None:
                summary.ended = "fatal"
                break
            if stop.is_set():
                summary.ended = "stopped"
                break
            if deadline_ns is not None and now >= deadline_ns:
                summary.ended = "deadline"
                break
            kind, x = sched.next(now)
            if kind == INVOKED:
                thread, op = x
                recorded = Op(process=op.process, type=INVOKE, f=op.f, key=op.key, value=op.value,
                              time=start + now, node=op.node, extra=dict(op.extra) if op.extra else {})
                record(recorded)
                summary.invocations += 1
                in_flight[thread] = recorded
                pool.send(thread, recorded)
            elif kind == SLEEPING:
                thread, op = x
                heapq.heappush(timers, (op.value, next(seq), thread))
            elif kind == LOGGED:
                log.info("%s", x.value)
            elif kind == DONE:
                break
            else:
                wake = x if kind == WAIT_UNTIL else None
                if timers and (wake is None or timers[0][0] < wake):
                    wake = timers[0][0]
                if deadline_ns is not None and (wake is None or deadline_ns < wake):
                    wake = deadline_ns
                timeout = None if wake is None else max(0.0, (wake - now) / 1e9)
                if timeout == 0.0:
                    timeout = 1e-6  # due already: a zero would mean "don't block" to the loop
        # Wind down: nothing new; in-flight ops get grace_s to complete.
        wind_down_end = clock() + int(grace_s * 1e9)
        while in_flight:
            remaining = (wind_down_end - clock()) / 1e9
            if remaining <= 0:
                break
            try:
                item = completions.get(timeout=remaining)
            except queue.Empty:
                break
            if item is not _WAKE:
                complete(item, clock() - start, winding_down=True)
        if fatal_error is not None:
            summary.ended = "fatal"
        clean = True
    finally:
        finished.set()
        pool.exit_all()
        summary.unfinished = open_for_good + list(in_flight.values())
        summary.abandoned_threads = sorted(in_flight, key=str)
        if clean:
            close_end = _time.monotonic() + CLOSE_WAIT_S
            for thread, t in pool.threads.items():
                if thread not in in_flight:
                    t.join(timeout=max(0.0, close_end - _time.monotonic()))
                    if t.is_alive():
                        summary.abandoned_threads.append(thread)
        for invoke in summary.unfinished:
            # it may still take effect: its process is never used again
            sched.retire(sched.thread_of(invoke.process), invoke.process)
        summary.processes = {t: p for t, p in sched.workers.items()}
        summary.elapsed_s = (clock() - start) / 1e9
    if summary.unfinished:
        log.warning("%d operation(s) still open after the %.1f s grace (they count as info): %s",
                    len(summary.unfinished), grace_s,
                    ", ".join(f"{o.process}:{o.f}" for o in summary.unfinished[:10]))
    if fatal_error is not None:
        raise fatal_error
    return summary


# -- virtual time -------------------------------------------------------------------------------------

def simulate(generator: Any, *, concurrency: int, seed: int,
             respond: Callable[[Op], tuple] | None = None, until_ns: int | None = None,
             max_events: int = 1_000_000, processes: dict | None = None) -> list[Op]:
    """Run `generator` against a scripted system in virtual time, with no threads: respond(op)
    -> (type, value, latency_ns) or (type, value, latency_ns, backoff_s); by default every op
    is ok after 1 ms. Returns the history (invocations and completions, ns since the start).
    Stops dispatching at until_ns; raises GeneratorError past max_events (an endless generator)."""
    respond = respond or (lambda op: (OK, op.value, 1_000_000))
    sched = Scheduler(generator, concurrency=concurrency, seed=seed, processes=processes)
    history: list[Op] = []
    pending: list = []     # (time, seq, kind, thread, payload)
    seq = itertools.count()
    now = 0

    def fire(event) -> None:
        when, _, kind, thread, payload = event
        if kind == "wake":
            sched.wake(thread, when)
            return
        invoke, answer = payload
        done = Op(process=invoke.process, type=answer[0], f=invoke.f, key=invoke.key,
                  value=answer[1], time=when, node=invoke.node)
        history.append(done)
        backoff = answer[3] if len(answer) > 3 else 0.0
        hold = when + int(backoff * 1e9) if backoff else None
        sched.complete(thread, done, when, hold)
        if hold is not None:
            heapq.heappush(pending, (hold, next(seq), "wake", thread, None))

    while True:
        if len(history) > max_events:
            raise GeneratorError(f"simulate: more than {max_events} events; bound the generator "
                                 "(limit, time_limit) or pass until_ns")
        while pending and pending[0][0] <= now:
            fire(heapq.heappop(pending))
        if until_ns is not None and now >= until_ns:
            break
        kind, x = sched.next(now)
        if kind == INVOKED:
            thread, op = x
            history.append(op)
            answer = respond(op)
            heapq.heappush(pending, (now + int(answer[2]), next(seq), "complete", thread, (op, answer)))
        elif kind == SLEEPING:
            thread, op = x
            heapq.heappush(pending, (op.value, next(seq), "wake", thread, None))
        elif kind == DONE:
            break
        elif kind in (WAIT, WAIT_UNTIL):
            wake = x if kind == WAIT_UNTIL else None
            if pending and (wake is None or pending[0][0] <= wake):
                wake = pending[0][0]
            if until_ns is not None and (wake is None or until_ns < wake):
                wake = until_ns
            if wake is None:
                raise GeneratorError("simulate: waiting with nothing in flight")  # Scheduler prevents this
            now = max(now, wake)
    return history
