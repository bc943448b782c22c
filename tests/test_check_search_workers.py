"""The search's worker processes: bounded, with a deadline for every job, never hanging, and
SIGKILLed and reaped when the work is over (early or not)."""

import os
import time

import pytest

import checkers
from checkers import workers
from checkers.generate import register_history
from checkers.workers import DIED, DONE, LATE, WorkerError, run_jobs


def children_of_this_process() -> set[int]:
    """Our child processes, zombies included (a zombie is a child that was not reaped), except
    multiprocessing's resource tracker: the first spawn starts it, and it lives as long as we do."""
    me, found = os.getpid(), set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: the fields follow the last ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == me and b"multiprocessing.resource_tracker" not in cmdline:
            found.add(int(name))
    return found


def many_keys_with_large_payloads(n_keys=40, key_bytes=200_000, ops_per_key=150):
    """Every key illegal (a read of a value nobody wrote), values repeated so only the search can
    decide; each key's name is large, so every job and every result exceeds a pipe's buffer."""
    ops = register_history(12, n_ops=ops_per_key * n_keys, processes=6, keys=n_keys,
                           unique_values=False, value_domain=3)
    names = {}
    for op in ops:
        if op.key is not None:
            op.key = names.setdefault(op.key, op.key + "-" + "k" * key_bytes)
        if op.type == "ok" and op.f == "read":
            op.value = 99
    return ops


@pytest.mark.timeout(60)
def test_stopping_at_the_first_illegal_key_never_hangs_however_large_the_jobs(monkeypatch):
    # With multiprocessing.Pool this hung in about one round of six: Pool.terminate() killed a
    # worker holding the shared result queue's lock, then waited for that lock forever.
    ops = many_keys_with_large_payloads()
    before = children_of_this_process()
    monkeypatch.setattr(checkers, "PROBE_S", 0.0)  # every key goes to the worker processes
    for _ in range(40):
        r = checkers.check_linearizable(ops, checker="python", workers=2)
        assert r["valid"] is False
        verdicts = [k["valid"] for k in r["keys"].values()]
        assert verdicts.count(False) >= 1
        assert all(k.get("skipped") for k in r["keys"].values() if k["valid"] == "unknown")
        assert children_of_this_process() == before, "a worker process was left running or unreaped"


def echo_pid(x):
    return x, os.getpid()


def sleep_then_pid(seconds):
    time.sleep(seconds)
    return os.getpid()


def ignore_the_deadline(_):
    time.sleep(3600)


def die_hard(_):
    os._exit(3)


def raise_a_bug(_):
    raise KeyError("no such thing")


@pytest.mark.timeout(60)
def test_no_more_jobs_are_taken_than_there_are_workers_free():
    taken = []

    def jobs():
        for i in range(20):
            taken.append(i)
            yield i, (0.05,), time.monotonic() + 30

    gen = run_jobs(sleep_then_pid, jobs(), workers=3, method="fork")
    done = 0
    for _, outcome in gen:
        assert outcome.status == DONE
        done += 1
        # a job is taken from the iterator only when a worker is free to start it
        assert len(taken) - done <= 3
    assert done == 20


@pytest.mark.timeout(60)
def test_every_worker_is_killed_and_reaped_when_the_caller_stops_early():
    before = children_of_this_process()
    t = time.monotonic()
    jobs = ((i, (0.0 if i == 0 else 30.0,), time.monotonic() + 60) for i in range(3))
    gen = run_jobs(sleep_then_pid, jobs, workers=2, method="fork")
    job_id, first = next(gen)
    assert job_id == 0 and first.status == DONE
    started = children_of_this_process() - before
    assert len(started) == 2 and first.value in started  # one now idle, one 30 s into job 1
    gen.close()
    assert children_of_this_process() == before
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert time.monotonic() - t < 10, "a running job was awaited instead of killed"


@pytest.mark.timeout(60)
def test_a_job_that_ignores_its_deadline_is_late_and_its_worker_killed(monkeypatch):
    monkeypatch.setattr(workers, "GRACE_S", 0.2)
    before = children_of_this_process()
    t = time.monotonic()
    jobs = [("stuck", (None,), time.monotonic() + 0.3)]
    [(job_id, outcome)] = list(run_jobs(ignore_the_deadline, iter(jobs), workers=1, method="fork"))
    assert job_id == "stuck" and outcome.status == LATE and "killed" in outcome.detail
    assert time.monotonic() - t < 5
    assert children_of_this_process() == before


@pytest.mark.timeout(60)
def test_a_worker_that_dies_costs_only_its_own_job():
    jobs = [("dies", (None,), time.monotonic() + 30)]
    [(job_id, outcome)] = list(run_jobs(die_hard, iter(jobs), workers=1, method="fork"))
    assert (job_id, outcome.status) == ("dies", DIED) and "exited with status 3" in outcome.detail
    # ...and the others still run, on a new worker
    mixed = [(i, (i,), time.monotonic() + 30) for i in range(5)]
    results = dict(run_jobs(echo_pid, iter(mixed), workers=2, method="fork"))
    assert sorted(results) == [0, 1, 2, 3, 4] and all(o.status == DONE for o in results.values())


@pytest.mark.timeout(60)
def test_a_job_that_raises_is_a_bug_reported_with_its_traceback():
    before = children_of_this_process()
    with pytest.raises(WorkerError, match="KeyError: 'no such thing'"):
        list(run_jobs(raise_a_bug, iter([(0, (None,), time.monotonic() + 30)]), workers=1, method="fork"))
    assert children_of_this_process() == before


TEST_PROCESS = os.getpid()


def search_that_hangs_in_a_worker(kh, mode, deadline, t0):
    if os.getpid() == TEST_PROCESS:  # the short probe in this process: out of time at once
        return {"valid": "unknown", "method": "search", "ops": len(kh.ops), "reason": "time budget exhausted"}
    time.sleep(3600)


@pytest.mark.timeout(60)
def test_a_search_still_running_past_its_deadline_makes_its_key_unknown_never_a_pass(monkeypatch):
    ops = many_keys_with_large_payloads(n_keys=4, key_bytes=10)
    monkeypatch.setattr(checkers, "PROBE_S", 0.0)
    monkeypatch.setattr(workers, "GRACE_S", 0.2)
    # the workers are forked, so they run this stand-in for a search that hangs
    monkeypatch.setattr(workers, "start_method", lambda: "fork")
    monkeypatch.setattr(checkers, "_search_key", search_that_hangs_in_a_worker)
    before = children_of_this_process()
    t = time.monotonic()
    r = checkers.check_linearizable(ops, checker="python", workers=2, time_budget_s=1.0, all_keys=True)
    assert time.monotonic() - t < 10
    assert r["valid"] == "unknown"
    assert [k["valid"] for k in r["keys"].values()] == ["unknown"] * 4
    assert all("killed" in k["reason"] for k in r["keys"].values())
    assert children_of_this_process() == before


@pytest.mark.timeout(120)
def test_spawned_workers_as_under_the_threaded_controller_give_the_same_verdicts(monkeypatch):
    # The runner has threads, so its searches run in spawned (not forked) workers.
    ops = many_keys_with_large_payloads(n_keys=6, key_bytes=10)
    monkeypatch.setattr(checkers, "PROBE_S", 0.0)
    sequential = checkers.check_linearizable(ops, checker="python", all_keys=True, workers=1)
    monkeypatch.setattr(workers, "start_method", lambda: "spawn")
    before = children_of_this_process()
    spawned = checkers.check_linearizable(ops, checker="python", all_keys=True, workers=2)
    assert {k: r["valid"] for k, r in spawned["keys"].items()} == \
           {k: r["valid"] for k, r in sequential["keys"].items()} == {k: False for k in sequential["keys"]}
    assert children_of_this_process() == before
