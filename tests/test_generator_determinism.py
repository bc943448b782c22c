"""For a seed, the same completions give the same operations: a generator's answer depends only
on its context, asking changes nothing, and a real threaded run replayed event by event through
a fresh Scheduler emits exactly the operations the run recorded. Plus the structural laws the
interpreter must keep under any timing: phases never overlap, limits and time limits hold,
reserved thread ranges hold, until_ok stops at the first ok, an info retires its process."""

import itertools
import random
import threading
import time
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.generator import (Context, Scheduler, Worker, WorkerFactory, clients, heal_generator,
                             limit, nemesis_and_clients, phases, random_nemesis, repeat, reserve,
                             run, simulate, stagger, then_keys, time_limit, until_ok)
from chaos.generator.interpreter import INVOKED
from chaos.history import Op, pair_ops
from workloads.register import register_final_generator, register_generator
from workloads.set import set_generator

MS = 1_000_000
CONFIG = SimpleNamespace(keys=3, ops_per_key=15, rate=None, final_read_timeout=5, elements_per_key=7)
FAULTS = ("partition", "kill", "pause", "clock")


def whole_test(seed, time_limit_s=0.5, rate=None):
    """Load (register ops and the random nemesis) for a while, heal, then the final reads."""
    cfg = SimpleNamespace(**{**vars(CONFIG), "rate": rate})
    load = time_limit(time_limit_s, nemesis_and_clients(random_nemesis(FAULTS, 0.05, seed, 5),
                                                        register_generator(cfg)))
    return phases(then_keys(load, lambda keys: register_final_generator(keys, cfg)), heal_generator(FAULTS))


def scripted(answers):
    """respond() for simulate: cycles through (type, latency ms, backoff s) answers."""
    it = itertools.cycle(answers)
    return lambda op: (lambda a: (a[0], op.value, a[1] * MS, a[2]))(next(it))


def fields(ops):
    return [(op.process, op.type, op.f, op.key, op.value, op.time, dict(op.extra)) for op in ops]


answer = st.tuples(st.sampled_from(["ok", "ok", "ok", "fail", "info"]), st.integers(1, 20),
                   st.sampled_from([0.0, 0.0, 0.0, 0.003]))
answers = st.lists(answer, min_size=1, max_size=30)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), concurrency=st.integers(1, 6), script=answers)
def test_the_same_seed_and_the_same_completions_give_the_same_operations(seed, concurrency, script):
    first = simulate(whole_test(seed), concurrency=concurrency, seed=seed, respond=scripted(script))
    again = simulate(whole_test(seed), concurrency=concurrency, seed=seed, respond=scripted(script))
    assert fields(first) == fields(again)
    assert any(op.f == "cas" for op in first) or len(first) < 200


def test_a_different_seed_gives_different_operations():
    a = simulate(whole_test(1), concurrency=3, seed=1)
    b = simulate(whole_test(2), concurrency=3, seed=2)
    assert fields(a) != fields(b)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), time_ms=st.integers(0, 10**6), free=st.sets(st.integers(0, 4)))
def test_asking_a_generator_twice_gives_the_same_answer(seed, time_ms, free):
    gen = whole_test(seed, rate=200)
    threads = (0, 1, 2, 3, 4, "nemesis")
    free_threads = tuple(t for t in threads if t in free or t == "nemesis")
    workers = {t: t for t in threads}

    def ask():
        ctx = Context(time_ms * MS, threads, free_threads, workers, 5, seed=seed, step=7)
        o, _ = gen.op(ctx)
        return o if not isinstance(o, Op) else fields([o])

    assert ask() == ask()


# -- a real threaded run, replayed --------------------------------------------------------------

class Jittery(Worker):
    """Answers at random (ok/fail/info) after a random sub-millisecond pause, so that threads
    complete in a different order each run."""

    def __init__(self, rng):
        self.rng = rng

    def invoke(self, op):
        time.sleep(self.rng.random() / 2000)
        kind = self.rng.choice(["ok", "ok", "ok", "fail", "info"])
        return Op(process=op.process, type=kind, f=op.f, key=op.key, value=op.value)


class JitteryFactory(WorkerFactory):
    def __init__(self, seed):
        self.seed = seed
        self.lock = threading.Lock()

    def open(self, thread, process):
        with self.lock:
            return Jittery(random.Random(f"{self.seed}:{thread}:{process}"))


def replay(gen, history, *, concurrency, seed, start_ns):
    """Feed a recorded history to a fresh Scheduler, in order, at the recorded times; return the
    invocations it emits."""
    sched = Scheduler(gen, concurrency=concurrency, seed=seed)
    emitted = []
    for op in history:
        now = op.time - start_ns
        if op.type == "invoke":
            kind, x = sched.next(now)
            assert kind == INVOKED, f"the replay wanted to {kind} where the run invoked {op}"
            emitted.append(x[1])
        else:
            event = Op(process=op.process, type=op.type, f=op.f, key=op.key, value=op.value, time=now)
            sched.complete(sched.thread_of(op.process), event, now)
    return emitted


@pytest.mark.timeout(120)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), concurrency=st.integers(1, 8))
def test_a_real_run_replayed_through_the_scheduler_emits_the_same_operations(seed, concurrency):
    def gen():
        cfg = SimpleNamespace(**{**vars(CONFIG), "rate": 3000})
        load = time_limit(0.15, nemesis_and_clients(random_nemesis(FAULTS, 0.01, seed, 5),
                                                    register_generator(cfg)))
        return phases(then_keys(load, lambda keys: register_final_generator(keys, cfg)), heal_generator(FAULTS))

    history = []
    summary = run(gen(), concurrency=concurrency, workers=JitteryFactory(seed), record=history.append,
                  seed=seed)
    assert summary.ended == "exhausted" and summary.invocations > 20
    recorded = [op for op in history if op.type == "invoke"]
    replayed = replay(gen(), history, concurrency=concurrency, seed=seed, start_ns=summary.start_ns)
    assert [(o.process, o.f, o.key, o.value, o.extra) for o in replayed] == \
        [(o.process, o.f, o.key, o.value, o.extra) for o in recorded]


# -- laws under any timing ------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(concurrency=st.integers(1, 6), script=answers, sizes=st.lists(st.integers(1, 12), min_size=2, max_size=4))
def test_phases_never_overlap(concurrency, script, sizes):
    gen = phases(*[clients(limit(n, repeat({"f": f"phase{i}"}))) for i, n in enumerate(sizes)])
    h = simulate(gen, concurrency=concurrency, seed=1, respond=scripted(script))
    for i in range(1, len(sizes)):
        last_done = max(op.time for op in h if op.f == f"phase{i - 1}" and op.type != "invoke")
        first_start = min(op.time for op in h if op.f == f"phase{i}" and op.type == "invoke")
        assert first_start >= last_done
        assert h.index(next(op for op in h if op.f == f"phase{i}")) > \
            max(j for j, op in enumerate(h) if op.f == f"phase{i - 1}")


@settings(max_examples=60, deadline=None)
@given(concurrency=st.integers(1, 6), script=answers, n=st.integers(0, 50), dt_ms=st.integers(1, 200))
def test_limit_and_time_limit_hold_under_any_timing(concurrency, script, n, dt_ms):
    h = simulate(clients(limit(n, repeat({"f": "r"}))), concurrency=concurrency, seed=1, respond=scripted(script))
    assert len([op for op in h if op.type == "invoke"]) == n
    h = simulate(time_limit(dt_ms / 1000, clients(stagger(0.002, repeat({"f": "r"})))), concurrency=concurrency,
                 seed=1, respond=scripted(script))
    times = [op.time for op in h if op.type == "invoke"]
    assert times and max(times) < times[0] + dt_ms * MS


@settings(max_examples=60, deadline=None)
@given(extra=st.integers(1, 5), script=answers, a=st.integers(1, 3), b=st.integers(1, 3))
def test_reserved_thread_ranges_hold_even_as_processes_retire(extra, script, a, b):
    concurrency = a + b + extra
    gen = clients(reserve(a, repeat({"f": "w"}), b, repeat({"f": "c"}), repeat({"f": "r"})))
    h = simulate(gen, concurrency=concurrency, seed=1, respond=scripted(script), until_ns=50 * MS)
    ranges = {"w": set(range(a)), "c": set(range(a, a + b)), "r": set(range(a + b, concurrency))}
    for op in h:
        if op.type == "invoke":
            assert op.process % concurrency in ranges[op.f]


@settings(max_examples=60, deadline=None)
@given(concurrency=st.integers(1, 5), script=answers)
def test_until_ok_stops_at_the_first_ok(concurrency, script):
    h = simulate(clients(until_ok(repeat({"f": "read"}))), concurrency=concurrency, seed=1,
                 respond=scripted(script), until_ns=10_000 * MS)
    oks = [i for i, op in enumerate(h) if op.type == "ok"]
    if not any(a[0] == "ok" for a in script):
        return  # never ok: until_ok keeps trying until the bound
    first_ok = oks[0]
    assert all(op.type != "invoke" for op in h[first_ok:])


@settings(max_examples=60, deadline=None)
@given(concurrency=st.integers(1, 5), script=answers, seed=st.integers(0, 1000))
def test_an_info_retires_its_process_for_good(concurrency, script, seed):
    h = simulate(clients(limit(60, set_generator(CONFIG))), concurrency=concurrency, seed=seed,
                 respond=scripted(script))
    pair_ops(h)  # every process runs one op at a time (raises otherwise)
    retired = set()
    for op in h:
        assert op.process not in retired
        if op.type == "info":
            retired.add(op.process)
    threads = {}
    for op in h:
        if op.type == "invoke":
            thread = op.process % concurrency
            assert op.process >= threads.get(thread, 0)
            threads[thread] = op.process
