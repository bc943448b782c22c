"""The interpreter: runs a generator against worker threads and records the history.

Every thread of the generator (client threads 0..C-1, and "nemesis") is a worker thread with an
inbox. The generator and its context are behind one lock; each event is settled under it, in the
order events happen, as in Jepsen's interpreter loop:

    a completion (or a thread's sleep or backoff ending) -> record it, feed it to the generator
    -> ask the generator: record and dispatch every op it has ready, or note when to ask again

Two things differ from Jepsen's single loop, both for CPython's GIL (bench/bench_generator.py
measures them): the thread an event happened on settles it itself and simply runs next the op
the generator gives it, so an op costs no hand-over between threads (a coordinating thread
spent most of its time waiting to get the GIL back); and the ops to record queue up in order
under the lock, to be recorded outside it by the worker thread that needs them on record first
(before it performs its next op or waits), so that encoding and writing the history stays out
of the lock without a recorder thread (which cost a GIL hand-over per op). The caller's thread
coordinates: it starts the run, wakes up for ops timed in the future, notices stop and the
deadline, and winds down. Nothing polls: every wait is a blocking wait with a timeout.

Everything a generator sees comes from the Scheduler, which has no threads and no clock, so that
the same events in the same order give the same operations (`simulate` drives it in virtual
time; tests replay a real run's history through it). Recorded times are the caller's clock (the
history's controller monotonic ns); generators see ns since the start of the run.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import queue
import threading
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chaos.generator.core import (_BASE_UPDATE, LOG, PENDING, SLEEP, Context, Generator,
                                  GeneratorError, StepRandom, _ignores_updates, is_client_thread,
                                  lift)
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
        # Longest-free first, the nemesis thread always last: a plain op goes to a client, and the
        # common scopes (clients, nemesis) are a slice of it.
        self.free: list = list(self.threads)
        self.busy: dict = {}                   # thread -> the op it runs (or _HOLD)
        self.step = 0                          # events so far: keys the context's random stream
        # Whether the generator was told of the last op dispatched (update), and so may keep it;
        # if not, the op is the driver's to change (a deaf generator: the interpreter records it
        # as it is instead of copying it).
        self.told = False
        self._rng_box = [None, StepRandom(0)]  # every question's random stream, reseeded (Context.rng)

    def context(self, now: int) -> Context:
        box = self._rng_box
        box[0] = None  # a new question: its stream is drawn afresh (Context.rng)
        return Context(now, self.threads, tuple(self.free), self.workers, self.concurrency,
                       self.seed, self.step, box)

    def next(self, now: int) -> tuple[str, Any]:
        """Ask the generator: (INVOKED | SLEEPING, (thread, op)), (LOGGED, op), (WAIT_UNTIL, t),
        (WAIT, None) until some event, or (DONE, None)."""
        if not self.free:
            return WAIT, None  # every op needs a free thread: only a completion can help
        keep = self.gen.threads_kept
        if keep is not None and self.busy:
            for thread in self.free:
                if keep(thread):
                    break
            else:
                # Every thread the generator could use is busy: asked, it could only say
                # pending (or exhausted, which with ops in flight means waiting all the same).
                return WAIT, None
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
        gen = self.gen
        self.told = not (type(gen).update is _BASE_UPDATE or gen.deaf)  # (_ignores_updates)
        if self.told:
            self.gen = self.gen.update(self.context(now), o)
        return INVOKED, (thread, o)

    def _check(self, o: Any) -> Any:
        """The thread to run op o on, or a GeneratorError saying why there is none."""
        # The common case first, cheaply: a client invocation for a free thread's process.
        if type(o) is Op and o.type == INVOKE and type(o.time) is int and type(o.process) is int:
            thread = o.process % self.concurrency
            if self.workers[thread] == o.process and thread not in self.busy:
                return thread
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
            self._free(thread)
        # The context still maps the thread to the process that ran the op, as Jepsen's does.
        gen = self.gen
        if not (type(gen).update is _BASE_UPDATE or gen.deaf):  # (_ignores_updates)
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
        self._free(thread)
        self.step += 1

    def _free(self, thread: Any) -> None:
        free = self.free
        if thread != NEMESIS and free and free[-1] == NEMESIS:
            free.insert(len(free) - 1, thread)
        else:
            free.append(thread)


# -- the threaded interpreter -----------------------------------------------------------------------

_EXIT = object()
_WAKE = object()


def _close(worker: Any, thread: Any) -> None:
    if worker is not None:
        try:
            worker.close()
        except Exception as e:  # noqa: BLE001 - closing is best effort; the run goes on
            log.warning("thread %s: closing its worker failed: %s", thread, e)


class _Records:
    """The ops to record, in the order they happened, and who records them: the threads that
    need them on record (flat combining). Ops are added under the interpreter's lock, so the
    queue's order is the history's; record() runs one call at a time under this class's lock,
    outside the interpreter's, on a thread that has an op to perform or is about to wait. No
    thread of its own: handing each op to a recorder thread cost a GIL hand-over per op."""

    def __init__(self, record: Callable[[Op], Any] | None, record_batch: Callable[[list], Any] | None,
                 on_error: Callable[[BaseException], None]):
        if record_batch is None:
            if record is None:
                raise TypeError("run() needs record (one op at a time) or record_batch (a list)")

            def record_batch(ops: list) -> None:
                for op in ops:
                    record(op)
        elif record is not None:
            raise TypeError("run() takes record or record_batch, not both")
        self.record_batch, self.on_error = record_batch, on_error
        self.queue: collections.deque = collections.deque()
        self.queued = 0    # ops ever added (under the interpreter's lock)
        self.written = 0   # ops ever recorded and flushed (under self.lock)
        self.lock = threading.Lock()
        self.failed = False

    def add(self, op: Op) -> None:
        self.queue.append(op)
        self.queued += 1

    def write(self, timeout: float = -1) -> bool:
        """Return once every op added before the call is recorded: at once if another thread
        already recorded them, else after recording them (and everything queued with them, as one
        batch flushed once) or waiting for the thread that is. False: the lock was not had within
        `timeout` s (another thread is stuck in record())."""
        upto = self.queued
        if self.written >= upto:
            return True
        if not self.lock.acquire(timeout=timeout):
            return False
        try:
            if self.written < upto:
                queue = self.queue
                # all queued so far (at least up to `upto`), as one batch
                batch = [queue.popleft() for _ in range(len(queue))]
                if not self.failed:
                    try:
                        self.record_batch(batch)
                    except Exception as e:  # noqa: BLE001 - a history that cannot be written ends the run
                        self.failed = True
                        self.on_error(e)
                self.written += len(batch)
        finally:
            self.lock.release()
        return True


class _Run:
    """One call of run(): the Scheduler behind one lock, the worker threads, the coordinator."""

    def __init__(self, generator, concurrency, factory, record, record_batch, seed, stop,
                 deadline_ns, clock, grace_s, fatal, processes):
        self.sched = Scheduler(generator, concurrency=concurrency, seed=seed, processes=processes)
        self.factory, self.record, self.clock = factory, record, clock
        self.fatal, self.stop, self.deadline_ns, self.grace_s = tuple(fatal), stop, deadline_ns, grace_s
        self.lock = threading.Lock()
        self.wakeups: queue.SimpleQueue = queue.SimpleQueue()   # pokes for the coordinator
        self.halt = threading.Event()      # winding down: sleeps and backoffs end at once
        self.inboxes: dict = {}
        self.threads: dict = {}
        self.in_flight: dict = {}          # thread -> its recorded, uncompleted invocation
        self.open_for_good: list = []      # invocations whose worker raised a fatal error
        self.stopping = False              # nothing new is dispatched
        self.finished = False              # run() is returning: late completions are dropped
        self.error: BaseException | None = None
        self.done = False                  # the generator is exhausted and no thread is busy
        self.next_wake: int | None = None  # the generator's next op is not due before this
        self.waiting_until: int | None = None  # the coordinator's wake-up (None: when poked)
        self.records = _Records(record, record_batch, self._record_failed)
        self.start = clock()
        self.summary = RunSummary(start_ns=self.start, ended="exhausted")

    def _record_failed(self, error: BaseException) -> None:
        with self.lock:
            self.error = self.error or error
            self._begin_stop("fatal")

    # -- under the lock -----------------------------------------------------------------------------
    def _poke(self) -> None:
        self.wakeups.put(_WAKE)

    def _begin_stop(self, reason: str) -> None:
        if not self.stopping:
            self.stopping = True
            self.summary.ended = reason
            self.halt.set()
            self._poke()

    def _halted(self, now: int) -> bool:
        if self.stopping:
            return True
        if self.stop.is_set():
            self._begin_stop("stopped")
        elif self.deadline_ns is not None and now >= self.deadline_ns:
            self._begin_stop("deadline")
        return self.stopping

    def _dispatch(self, now: int, me: Any = None) -> Op | None:
        """Hand out every op the generator has ready; return the one for thread `me`, if any."""
        mine = None
        while True:
            kind, x = self.sched.next(now)
            if kind == INVOKED or kind == SLEEPING:
                thread, op = x
                if kind == INVOKED:
                    if self.sched.told:  # the generator may keep it, in its own time
                        op = Op(process=op.process, type=INVOKE, f=op.f, key=op.key, value=op.value,
                                time=self.start + now, node=op.node,
                                extra=dict(op.extra) if op.extra else {})
                    else:  # nobody else has it: it is the history's
                        op.time = self.start + now
                    records = self.records
                    records.queue.append(op)  # (records.add, inlined: once per op)
                    records.queued += 1
                    self.summary.invocations += 1
                    self.in_flight[thread] = op
                if thread == me:
                    mine = op
                else:
                    self._send(thread, op)
            elif kind == LOGGED:
                log.info("%s", x.value)
            else:
                self.done = kind == DONE
                self.next_wake = x if kind == WAIT_UNTIL else None
                if self.done or (self.next_wake is not None and
                                 (self.waiting_until is None or self.next_wake < self.waiting_until)):
                    self._poke()  # the coordinator has to wake up earlier than it planned
                return mine

    def _send(self, thread: Any, op: Op) -> None:
        inbox = self.inboxes.get(thread)
        if inbox is None:
            inbox = self.inboxes[thread] = queue.SimpleQueue()
            name = "nemesis" if thread == NEMESIS else f"worker-{thread}"
            t = self.threads[thread] = threading.Thread(target=self._work, args=(thread, inbox),
                                                        name=name, daemon=True)
            t.start()
        inbox.put(op)

    # -- worker threads ---------------------------------------------------------------------------
    def _settle(self, thread: Any, invoke: Op | None = None, done: Op | None = None,
                backoff: float = 0.0) -> tuple[Op | None, bool]:
        """A completion (or, with none, the end of a sleep or backoff) of `thread`: record it, tell
        the generator, dispatch. Returns (this thread's next op, whether it holds for backoff)."""
        with self.lock:
            if self.finished:
                return None, False
            try:
                now = self.clock() - self.start
                held = False
                if done is None:
                    self.sched.wake(thread, now)
                else:
                    assert invoke is not None  # a completion always comes with its invocation
                    self.in_flight.pop(thread, None)
                    done.process = invoke.process
                    done.time = self.start + now
                    records = self.records
                    records.queue.append(done)  # (records.add, inlined: once per op)
                    records.queued += 1
                    self.summary.completions += 1
                    held = backoff > 0 and not self.stopping
                    if _ignores_updates(self.sched.gen):
                        event = done  # not passed on: the Scheduler reads only its type
                    else:  # the generator hears it in its own time
                        event = Op(process=done.process, type=done.type, f=done.f, key=done.key,
                                   value=done.value, time=now, node=done.node, error=done.error,
                                   extra=done.extra)
                    self.sched.complete(thread, event, now, now + int(backoff * 1e9) if held else None)
                if self.stopping or (self.deadline_ns is not None and now >= self.deadline_ns) \
                        or self.stop.is_set():
                    self._halted(now)
                    if not self.in_flight:
                        self._poke()  # the wind-down waits for exactly this
                    return None, False
                return self._dispatch(now, thread), held
            except Exception as e:
                self.error = self.error or e
                self._begin_stop("fatal")
                return None, False

    def _settle_fatal(self, thread: Any, error: BaseException) -> None:
        with self.lock:
            if self.finished:
                return
            self.open_for_good.append(self.in_flight.pop(thread))
            self.error = self.error or error
            self._begin_stop("fatal")

    def _perform(self, thread: Any, op: Op, worker: Any, process: Any):
        """op on this thread's worker, opened afresh for a new process:
        (completion or None if fatal, backoff s, fatal exception, worker, process)."""
        if worker is None or process != op.process:
            _close(worker, thread)
            worker = None
            try:
                worker, process = self.factory.open(thread, op.process), op.process
            except self.fatal as e:
                return None, 0.0, e, None, None
            except Exception as e:
                log.warning("thread %s: could not open a worker for process %s: %s", thread, op.process, e)
                done = Op(process=op.process, type=FAIL, f=op.f, key=op.key, value=op.value,
                          node=op.node, error=f"could not open a worker: {type(e).__name__}: {e}")
                return done, OPEN_FAILURE_BACKOFF_S, None, None, None
        try:
            done = worker.invoke(op)
            if not isinstance(done, Op) or done.type not in (OK, FAIL, INFO):
                raise TypeError(f"worker returned {done!r}, not a completion Op (type ok, fail or info)")
        except self.fatal as e:
            return None, 0.0, e, worker, process
        except Exception as e:
            log.warning("thread %s: %s on %s %s: %s", thread, type(e).__name__, op.f, op.key, e)
            done = Op(process=op.process, type=INFO, f=op.f, key=op.key, value=op.value,
                      node=op.node, error=f"{type(e).__name__}: {e}")
        backoff = 0.0
        try:
            backoff = getattr(worker, "backoff_after", _no_backoff)(done)
            backoff = float(backoff) if backoff else 0.0
            if backoff < 0:
                backoff = 0.0
        except Exception as e:
            log.warning("thread %s: backoff_after failed: %s", thread, e)
            backoff = 0.0
        if done.type == INFO and is_client_thread(thread):
            _close(worker, thread)
            worker, process = None, None  # its process is retired
        return done, backoff, None, worker, process

    def _work(self, thread: Any, inbox: queue.SimpleQueue) -> None:
        worker, process = None, None
        records = self.records
        try:
            op = inbox.get()
            while op is not _EXIT:
                if op.type == SLEEP:
                    self.halt.wait(max(0.0, (op.value - (self.clock() - self.start)) / 1e9))
                    op, _ = self._settle(thread)
                else:
                    records.write()  # an invocation is on record before it is performed
                    done, backoff, fatal, worker, process = self._perform(thread, op, worker, process)
                    if fatal is not None:
                        self._settle_fatal(thread, fatal)
                        return
                    op, held = self._settle(thread, op, done, backoff)
                    if held:
                        records.write()  # and a completion before its thread waits
                        self.halt.wait(backoff)
                        op, _ = self._settle(thread)
                if op is None:
                    records.write()
                    op = inbox.get()
        finally:
            _close(worker, thread)

    # -- the coordinator ----------------------------------------------------------------------------
    def _wait(self, timeout: float | None) -> None:
        try:
            self.wakeups.get(timeout=timeout)
        except queue.Empty:
            return
        while not self.wakeups.empty():  # one look covers every poke so far
            self.wakeups.get()

    def coordinate(self) -> None:
        while True:
            with self.lock:
                now = self.clock() - self.start
                if self._halted(now):
                    break
                self._dispatch(now)
                if self.done:
                    break
                wake = self.next_wake
                if self.deadline_ns is not None and (wake is None or self.deadline_ns < wake):
                    wake = self.deadline_ns
                self.waiting_until = wake
                timeout = None if wake is None else max(1e-6, (wake - now) / 1e9)
            self._wait(timeout)
        # Wind down: nothing new; in-flight ops get grace_s to complete.
        end = _time.monotonic() + self.grace_s
        while True:
            with self.lock:
                self.stopping = True
                self.halt.set()
                if not self.in_flight:
                    break
            remaining = end - _time.monotonic()
            if remaining <= 0:
                break
            self._wait(remaining)

    def finish(self, clean: bool) -> RunSummary:
        locked = self.lock.acquire(timeout=CLOSE_WAIT_S)
        if not locked:
            log.warning("a worker thread holds the interpreter's lock; finishing without it")
        try:
            self.finished = self.stopping = True
            self.halt.set()
            unfinished = self.open_for_good + list(self.in_flight.values())
            abandoned = sorted(self.in_flight, key=str)
        finally:
            if locked:
                self.lock.release()
        for inbox in self.inboxes.values():
            inbox.put(_EXIT)
        if not self.records.write(timeout=CLOSE_WAIT_S * 5):
            log.warning("recording the history is still under way %.0f s after the run", CLOSE_WAIT_S * 5)
        if clean:
            close_end = _time.monotonic() + CLOSE_WAIT_S
            for thread, t in self.threads.items():
                if thread not in abandoned:
                    t.join(timeout=max(0.0, close_end - _time.monotonic()))
                    if t.is_alive():
                        abandoned.append(thread)
        for invoke in unfinished:
            # it may still take effect: its process is never used again
            self.sched.retire(self.sched.thread_of(invoke.process), invoke.process)
        summary = self.summary
        summary.unfinished, summary.abandoned_threads = unfinished, abandoned
        summary.processes = dict(self.sched.workers)
        summary.elapsed_s = (self.clock() - self.start) / 1e9
        if unfinished:
            log.warning("%d operation(s) still open after the %.1f s grace (they count as info): %s",
                        len(unfinished), self.grace_s,
                        ", ".join(f"{o.process}:{o.f}" for o in unfinished[:10]))
        return summary


def _no_backoff(completion: Op) -> float:
    return 0.0


def _watch(stop: threading.Event, wakeups: queue.SimpleQueue, finished: threading.Event) -> None:
    # Turns stop.set() into a wake-up of the coordinator's blocking wait; lives at most half a
    # second past the run.
    while not finished.is_set():
        if stop.wait(0.5):
            wakeups.put(_WAKE)
            return


def run(generator: Any, *, concurrency: int, workers: WorkerFactory,
        record: Callable[[Op], Any] | None = None, seed: int, stop: threading.Event | None = None,
        deadline_ns: int | None = None, clock: Callable[[], int] = _time.monotonic_ns,
        grace_s: float = 5.0, fatal: tuple = (), processes: dict | None = None,
        record_batch: Callable[[list], Any] | None = None) -> RunSummary:
    """Run `generator` until it is exhausted, `stop` is set or `deadline_ns` (ns after the start)
    passes. record(op) gets every invocation and completion, in the order they happen, one call
    at a time, never under the interpreter's lock; an invocation is on record before its worker
    performs it, and a completion before its thread performs anything else or waits. Or, instead,
    record_batch(ops) gets them a list at a time (the ops settled while the previous list was
    recorded), with the same guarantees: one write and flush per list, so a crash of the process
    loses at most the list being written. All calls have returned when run() returns. Workers
    must not change the invocation they are given (it is the recorded op).

    After stop or the deadline nothing new is dispatched; ops in flight get grace_s seconds to
    complete, and those that do not stay open in the history (which counts them as info). An
    exception of a class in `fatal` raised by a worker ends the run the same way and is then
    re-raised here, as is an exception of the generator or of record. `processes` (thread ->
    process, from a previous RunSummary) continues the process numbering of an earlier run."""
    state = _Run(generator, concurrency, workers, record, record_batch, seed,
                 stop if stop is not None else threading.Event(), deadline_ns, clock, grace_s,
                 fatal, processes)
    watcher_done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(state.stop, state.wakeups, watcher_done),
                               name="generator-stop", daemon=True)
    watcher.start()
    clean = False
    try:
        state.coordinate()
        clean = True
    finally:
        watcher_done.set()
        summary = state.finish(clean)
    if state.error is not None:
        raise state.error
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
