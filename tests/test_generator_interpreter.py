"""The interpreter (chaos.generator.run): real worker threads, one coordinating thread. It records
every invocation and completion in order, retires a process after an info, turns a worker's
exception into an info (or re-raises a fatal one), holds a thread through its backoff, stops on
stop or a deadline, waits instead of polling, and never hangs on a worker that never answers."""

import itertools
import threading
import time

import pytest

from chaos.generator import (Generator, Worker, WorkerFactory, clients, fill_op, limit,
                             nemesis_and_clients, repeat, run, series, sleep, time_limit)
from chaos.history import Op, pair_ops

MS = 1_000_000


class Scripted(Worker):
    """Answers from `answer(op)` -> type (default ok), after `latency` seconds."""

    def __init__(self, factory, thread, process):
        self.factory, self.thread, self.process = factory, thread, process

    def invoke(self, op):
        f = self.factory
        if f.latency:
            time.sleep(f.latency)
        answer = f.answer(op)
        if isinstance(answer, BaseException):
            raise answer
        return Op(process=op.process, type=answer, f=op.f, key=op.key, value=op.value)

    def backoff_after(self, completion):
        return self.factory.backoff if completion.type == "fail" else 0.0

    def close(self):
        with self.factory.lock:
            self.factory.closed.append((self.thread, self.process))


class Factory(WorkerFactory):
    def __init__(self, answer=lambda op: "ok", latency=0.0, backoff=0.0):
        self.answer, self.latency, self.backoff = answer, latency, backoff
        self.lock = threading.Lock()
        self.opened, self.closed = [], []

    def open(self, thread, process):
        with self.lock:
            self.opened.append((thread, process))
        return Scripted(self, thread, process)


def go(gen, factory=None, concurrency=3, **kw):
    history = []
    factory = factory or Factory()
    summary = run(gen, concurrency=concurrency, workers=factory, record=history.append, seed=1, **kw)
    return history, summary, factory


@pytest.mark.timeout(30)
def test_every_invocation_and_completion_is_recorded_in_order_and_pairs_up():
    history, summary, _ = go(clients(limit(300, repeat({"f": "read", "key": "r0"}))), concurrency=4)
    assert summary.ended == "exhausted" and summary.invocations == summary.completions == 300
    pairs = pair_ops(history)
    assert len(pairs) == 300 and all(p.complete is not None for p in pairs)
    times = [op.time for op in history]
    assert times == sorted(times)  # the history's order is the order things happened
    assert times[0] >= summary.start_ns


@pytest.mark.timeout(30)
def test_the_nemesis_thread_gets_its_own_worker_opened_on_first_use():
    history, _, factory = go(nemesis_and_clients({"f": "partition"}, limit(5, repeat({"f": "read"}))))
    assert ("nemesis", "nemesis") in factory.opened
    assert [op.process for op in history if op.f == "partition"] == ["nemesis", "nemesis"]
    _, _, factory = go(clients(limit(5, repeat({"f": "read"}))))
    assert all(thread != "nemesis" for thread, _ in factory.opened)


@pytest.mark.timeout(30)
def test_an_info_retires_the_process_and_the_thread_goes_on_as_process_plus_concurrency():
    answers = iter(["info", "ok", "info", "ok"])
    factory = Factory(answer=lambda op: next(answers))
    history, summary, _ = go(clients(limit(4, repeat({"f": "write"}))), factory, concurrency=1)
    assert [op.process for op in history if op.type == "invoke"] == [0, 1, 1, 2]
    assert factory.opened == [(0, 0), (0, 1), (0, 2)]  # a fresh worker for every fresh process
    assert factory.closed[:2] == [(0, 0), (0, 1)]  # closed as soon as its process retired
    assert summary.processes[0] == 2


@pytest.mark.timeout(30)
def test_a_worker_exception_becomes_an_info_naming_the_error():
    factory = Factory(answer=lambda op: ConnectionResetError("peer went away"))
    history, _, _ = go(clients(limit(1, repeat({"f": "write"}))), factory, concurrency=1)
    done = history[1]
    assert (done.type, done.process) == ("info", 0)
    assert "ConnectionResetError: peer went away" in done.error


class ClientBug(Exception):
    pass


@pytest.mark.timeout(30)
def test_a_fatal_exception_ends_the_run_and_is_raised_with_its_op_left_open():
    factory = Factory(answer=lambda op: ClientBug("bad request body") if op.value == 20 else "ok")
    history = []
    gen = clients(limit(1000, series(lambda i: {"f": "w", "value": i})))
    with pytest.raises(ClientBug, match="bad request body"):
        run(gen, concurrency=2, workers=factory, record=history.append, seed=1, fatal=(ClientBug,))
    open_ops = [p for p in pair_ops(history) if p.complete is None]
    assert [p.invoke.value for p in open_ops] == [20]
    assert max(op.value for op in history) < 30  # nothing new after it


@pytest.mark.timeout(30)
def test_a_worker_that_cannot_be_opened_fails_the_op_it_was_opened_for():
    class Refusing(Factory):
        def open(self, thread, process):
            raise OSError("no route to host")

    history, _, _ = go(clients(limit(2, repeat({"f": "r"}))), Refusing(), concurrency=1)
    assert [op.type for op in history] == ["invoke", "fail", "invoke", "fail"]
    assert "could not open a worker: OSError: no route to host" in history[1].error


@pytest.mark.timeout(30)
def test_a_backoff_keeps_the_thread_busy_before_its_next_op():
    factory = Factory(answer=lambda op: "fail", backoff=0.2)
    history, _, _ = go(clients(limit(3, repeat({"f": "r"}))), factory, concurrency=1)
    invokes = [op.time for op in history if op.type == "invoke"]
    assert all(b - a >= 200 * MS for a, b in itertools.pairwise(invokes))


@pytest.mark.timeout(30)
def test_sleep_is_executed_by_waiting_and_never_reaches_a_worker_or_the_history():
    history, summary, factory = go(clients([sleep(0.2), {"f": "r"}]), concurrency=1)
    assert [op.type for op in history] == ["invoke", "ok"]
    assert history[0].time - summary.start_ns >= 200 * MS
    assert factory.opened == [(0, 0)]


@pytest.mark.timeout(30)
def test_stop_ends_the_run_promptly_even_while_waiting_for_a_far_future_op():
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    history, summary, _ = go(clients({"f": "late", "time": 60_000 * MS}), stop=stop)
    assert summary.ended == "stopped" and history == []
    assert time.monotonic() - t0 < 2


@pytest.mark.timeout(30)
def test_the_deadline_stops_new_ops_and_lets_in_flight_ones_complete():
    factory = Factory(latency=0.05)
    history, summary, _ = go(clients(repeat({"f": "r"})), factory, concurrency=3, deadline_ns=300 * MS)
    assert summary.ended == "deadline" and summary.unfinished == []
    assert all(p.complete is not None for p in pair_ops(history))
    assert max(op.time for op in history if op.type == "invoke") - summary.start_ns < 300 * MS


@pytest.mark.timeout(30)
def test_a_worker_that_never_answers_is_abandoned_after_the_grace_and_its_op_stays_open():
    release = threading.Event()
    factory = Factory(answer=lambda op: (release.wait(30), "ok")[1] if op.f == "stuck" else "ok")
    try:
        t0 = time.monotonic()
        history, summary, _ = go(nemesis_and_clients({"f": "stuck"}, repeat({"f": "r"})), factory,
                                 concurrency=2, deadline_ns=200 * MS, grace_s=0.5)
        elapsed = time.monotonic() - t0
        assert summary.ended == "deadline"
        assert [op.f for op in summary.unfinished] == ["stuck"] and summary.abandoned_threads == ["nemesis"]
        assert [p.invoke.f for p in pair_ops(history) if p.complete is None] == ["stuck"]
        assert elapsed < 0.2 + 0.5 + 2.5  # deadline + grace + closing the idle workers
    finally:
        release.set()


class CountingFutureOp(Generator):
    """One op at `at` ns; counts how often the interpreter asks."""

    def __init__(self, at, counter):
        self.at, self.counter = at, counter

    def op(self, ctx):
        self.counter.append(ctx.time)
        o = fill_op({"f": "timed", "time": self.at}, ctx)
        return o, limit(0, None)


@pytest.mark.timeout(30)
def test_the_interpreter_waits_for_an_ops_time_instead_of_polling():
    asked = []
    history, summary, _ = go(clients(CountingFutureOp(300 * MS, asked)), concurrency=1)
    assert [op.f for op in history] == ["timed", "timed"]
    assert history[0].time - summary.start_ns >= 300 * MS
    assert len(asked) <= 4  # asked, waited 300 ms, asked again (not thousands of times)


@pytest.mark.timeout(30)
def test_the_interpreter_waits_for_a_completion_instead_of_polling():
    asked = []

    class Counting(Generator):
        def __init__(self, gen):
            self.gen = gen

        def op(self, ctx):
            asked.append(ctx.time)
            o, rest = self.gen.op(ctx)
            return o, Counting(rest)

    go(clients(Counting(limit(2, repeat({"f": "r"})))), Factory(latency=0.3), concurrency=1)
    assert len(asked) <= 6


@pytest.mark.timeout(30)
def test_processes_continue_from_an_earlier_run():
    answers = iter(["info"])
    _, first, _ = go(clients({"f": "w"}), Factory(answer=lambda op: next(answers, "ok")), concurrency=2)
    assert first.processes[0] == 2
    history, _, _ = go(clients(limit(2, repeat({"f": "r"}))), concurrency=2, processes=first.processes)
    assert sorted(op.process for op in history if op.type == "invoke") == [1, 2]


@pytest.mark.timeout(30)
def test_a_time_limited_load_runs_about_as_long_as_its_limit():
    t0 = time.monotonic()
    history, summary, _ = go(time_limit(0.3, clients(repeat({"f": "r"}))), Factory(latency=0.001))
    assert summary.ended == "exhausted"
    assert 0.28 < time.monotonic() - t0 < 1.5
    assert len(history) > 100


@pytest.mark.timeout(30)
def test_a_history_that_cannot_be_written_ends_the_run_with_that_error():
    written = []

    def record(op):
        if len(written) == 10:
            raise OSError("No space left on device")
        written.append(op)

    with pytest.raises(OSError, match="No space left"):
        run(clients(repeat({"f": "r"})), concurrency=2, workers=Factory(), record=record, seed=1)
    assert len(written) == 10
