"""The generator: seeded op mixes with unique values per key and rotating keys; a seeded,
bounded random fault schedule; the executed schedule turned into a replay naming the nodes."""

import threading
import time

import pytest

from chaos.config import FAULT_OPS, FAULTS
from chaos.generator import (RateLimiter, RegisterGenerator, SetGenerator, active_after,
                             client_generator, random_schedule, replayable_step)
from chaos.scenario import validate_steps
from chaos.config import RunConfig


def drain(gen, n):
    return [gen.next_op(0) for _ in range(n)]


def test_register_ops_are_seeded():
    assert drain(RegisterGenerator(3), 500) == drain(RegisterGenerator(3), 500)
    assert drain(RegisterGenerator(3), 500) != drain(RegisterGenerator(4), 500)


def test_register_mix_has_reads_writes_and_cas_with_unique_values_per_key():
    ops = drain(RegisterGenerator(1, keys=3, ops_per_key=1000), 3000)
    assert {f for f, _, _ in ops} == {"read", "write", "cas"}
    per_key = {}
    for f, key, value in ops:
        if f == "write":
            per_key.setdefault(key, []).append(value)
        elif f == "cas":
            expected, new = value
            assert expected < new
            per_key.setdefault(key, []).append(new)
    for values in per_key.values():
        assert len(values) == len(set(values))


def test_register_cas_never_comes_before_a_write_on_a_fresh_key():
    gen = RegisterGenerator(5, keys=1, ops_per_key=1000)
    first = next(op for op in drain(gen, 100) if op[0] != "read")
    assert first[0] == "write" and first[2] == 1


def test_register_keys_get_a_bounded_number_of_ops_then_rotate():
    gen = RegisterGenerator(2, keys=5, ops_per_key=200)
    ops = drain(gen, 5000)
    counts = {}
    for _, key, _ in ops:
        counts[key] = counts.get(key, 0) + 1
    assert max(counts.values()) <= 200
    assert len(counts) >= 25
    assert gen.keys_used() == sorted(counts, key=lambda k: int(k[1:]))


def test_set_adds_unique_elements_and_changes_key_every_100():
    gen = SetGenerator(0)
    ops = drain(gen, 250)
    assert all(f == "add" for f, _, _ in ops)
    assert [v for _, _, v in ops] == list(range(250))
    assert [k for k, *_ in [(op[1],) for op in ops[:100]]] == ["s0"] * 100
    assert ops[100][1] == "s1" and ops[249][1] == "s2"
    assert gen.keys_used() == ["s0", "s1", "s2"]


def test_generators_are_bounded_by_count():
    gen = client_generator("register", 1, limit=10)
    assert len([op for op in drain(gen, 20) if op]) == 10
    assert gen.next_op(0) is None


def test_generator_is_safe_under_concurrent_workers():
    gen = SetGenerator(0, elements_per_key=1000)
    seen = []
    lock = threading.Lock()

    def worker():
        for _ in range(500):
            op = gen.next_op(0)
            with lock:
                seen.append(op[2])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(4000))


def test_unknown_workload_is_refused():
    with pytest.raises(ValueError, match="unknown workload 'queue'"):
        client_generator("queue", 1)


def test_rate_limiter_paces_callers():
    limiter = RateLimiter(200)
    start = time.monotonic()
    for _ in range(41):
        limiter.wait()
    assert time.monotonic() - start >= 0.19


def test_rate_limiter_stops_waiting_when_told():
    limiter = RateLimiter(0.5)
    stop = threading.Event()
    limiter.wait(stop)
    stop.set()
    start = time.monotonic()
    assert limiter.wait(stop) is False
    assert time.monotonic() - start < 1


def test_random_schedule_is_seeded_and_bounded():
    a = random_schedule(list(FAULTS), 60, 5, seed=1, nodes=5)
    assert a == random_schedule(list(FAULTS), 60, 5, seed=1, nodes=5)
    assert a != random_schedule(list(FAULTS), 60, 5, seed=2, nodes=5)
    assert all(0 < s["at"] < 60 for s in a)
    assert 8 <= len(a) <= 16
    assert [s["at"] for s in a] == sorted(s["at"] for s in a)


def test_random_schedule_alternates_start_and_heal_with_at_most_two_faults_at_once():
    for seed in range(30):
        active = set()
        for step in random_schedule(list(FAULTS), 120, 3, seed=seed, nodes=5):
            kind = next(k for k, ops in FAULT_OPS.items() if step["f"] in ops)
            if step["f"] == FAULT_OPS[kind][0]:
                assert kind not in active
                active.add(kind)
                assert len(active) <= 2
            else:
                assert kind in active
                active.discard(kind)


def test_random_schedule_uses_only_the_chosen_faults_and_valid_steps():
    cfg = RunConfig(nodes=5, time_limit=60)
    steps = random_schedule(["partition", "clock"], 60, 2, seed=5, nodes=5)
    assert {s["f"] for s in steps} <= {"partition", "heal", "clock-skew", "clock-reset"}
    assert validate_steps(steps, cfg)  # every generated step passes the scenario validation
    assert random_schedule([], 60, 2, seed=5, nodes=5) == []


def test_executed_steps_replay_with_the_nodes_they_hit():
    cfg = RunConfig(nodes=5, time_limit=60)
    executed = [
        {"at": 1.0, "f": "partition", "value": {"topology": "isolate-leader"},
         "result": {"topology": "isolate-leader", "groups": [["n3"], ["n1", "n2", "n4", "n5"]]}},
        {"at": 5.0, "f": "heal", "value": None, "result": {"healed": "partition"}},
        {"at": 6.0, "f": "kill", "value": {"target": "leader"}, "result": {"nodes": ["n2"]}},
        {"at": 7.0, "f": "clock-skew", "value": {"target": "minority", "mode": "bump", "delta": 5},
         "result": {"nodes": {"n4": "+5 x1", "n1": "+5 x1"}}},
    ]
    replay = [replayable_step(e) for e in executed]
    assert replay[0]["value"] == {"topology": "groups", "groups": [["n3"], ["n1", "n2", "n4", "n5"]]}
    assert replay[1]["value"] is None
    assert replay[2]["value"] == {"target": ["n2"]}
    assert replay[3]["value"] == {"target": ["n1", "n4"], "mode": "bump", "delta": 5}
    assert len(validate_steps(replay, cfg)) == 4
    assert active_after(replay) == {"kill", "clock"}


def test_a_fault_that_hit_no_node_is_not_replayed():
    entry = {"at": 3.0, "f": "pause", "value": {"target": "majority"}, "result": {"nodes": []}}
    assert replayable_step(entry) is None
