"""Fault schedules as nemesis generators: a scenario compiles to one (its explicit schedule, or
the seeded random schedule), the ops run no earlier than their `at`, the random schedule does
not depend on how client ops interleave, and the nemesis ops a run executed turn back into the
schedule `reproduce` replays."""

import glob
import os

import pytest

from chaos.config import FAULTS, RunConfig
from chaos.generator import (clients, executed_schedule, heal_generator, nemesis_and_clients,
                             phases, random_nemesis, random_schedule, repeat, replay_schedule,
                             schedule_generator, simulate, time_limit)
from chaos.scenario import compile_nemesis, load_scenario, parse_scenario, validate_steps

MS = 1_000_000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = sorted(p for p in glob.glob(os.path.join(ROOT, "scenarios", "*.yaml")) if "matrix" not in p)


def nemesis_steps(history):
    return [{"at": round(op.time / 1e9, 3), "f": op.f, "value": op.value}
            for op in history if op.type == "invoke" and op.process == "nemesis"]


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_every_shipped_scenario_compiles_to_the_schedule_it_validated_to(path):
    cfg = load_scenario(path)
    history = simulate(compile_nemesis(cfg), concurrency=2, seed=cfg.seed)
    expected = cfg.schedule if cfg.schedule is not None else \
        random_schedule(cfg.nemesis, cfg.time_limit, cfg.nemesis_interval, cfg.seed, cfg.nodes)
    assert nemesis_steps(history) == [{"at": s["at"], "f": s["f"], "value": s["value"]} for s in expected]
    assert expected


def test_a_repeating_schedule_compiles_cycle_by_cycle_up_to_the_time_limit():
    cfg = parse_scenario("time_limit: 40\nschedule:\n  start: 5\n  period: 15\n  steps:\n"
                         "    - {at: 0, f: kill, target: leader}\n    - {at: 8, f: start}\n")
    steps = nemesis_steps(simulate(compile_nemesis(cfg), concurrency=1, seed=1))
    assert [(s["at"], s["f"]) for s in steps] == [(5, "kill"), (13, "start"), (20, "kill"), (28, "start"),
                                                   (35, "kill")]


def test_a_scenario_without_faults_compiles_to_nothing():
    cfg = parse_scenario("nemesis: none\n")
    assert simulate(compile_nemesis(cfg), concurrency=1, seed=1) == []


def test_the_random_nemesis_emits_exactly_the_random_schedule():
    for seed in range(5):
        plan = random_schedule(list(FAULTS), 60, 3, seed, 5)
        cfg = RunConfig(nodes=5, time_limit=60, nemesis=list(FAULTS), nemesis_interval=3, seed=seed)
        assert nemesis_steps(simulate(compile_nemesis(cfg), concurrency=1, seed=seed)) == plan


def test_the_random_schedule_does_not_depend_on_the_client_ops():
    def faults(concurrency, latency_ms):
        gen = time_limit(30, nemesis_and_clients(random_nemesis(FAULTS, 2, 7, 5), repeat({"f": "read"})))
        h = simulate(gen, concurrency=concurrency, seed=concurrency,
                     respond=lambda op: ("info", None, latency_ms * MS))
        return nemesis_steps(h)

    assert faults(1, 3) == faults(8, 17) and len(faults(1, 3)) >= 10


def test_a_slow_fault_delays_the_next_step_but_drops_none():
    steps = [{"at": 1.0, "f": "kill", "value": {"target": "leader"}},
             {"at": 1.5, "f": "start", "value": {"target": "killed"}},
             {"at": 9.0, "f": "pause", "value": {"target": "one"}}]
    h = simulate(schedule_generator(steps), concurrency=1, seed=1,
                 respond=lambda op: ("info", None, 2000 * MS if op.f == "kill" else MS))
    assert [(s["at"], s["f"]) for s in nemesis_steps(h)] == [(1.0, "kill"), (3.0, "start"), (9.0, "pause")]


def test_the_load_phase_ends_without_waiting_for_the_next_scheduled_fault():
    late = schedule_generator([{"at": 100.0, "f": "kill", "value": {"target": "one"}}])
    gen = phases(time_limit(1, nemesis_and_clients(late, repeat({"f": "read"}))), clients({"f": "after"}))
    h = simulate(gen, concurrency=2, seed=1)
    after = next(op for op in h if op.f == "after")
    assert after.time < 1100 * MS and not any(op.f == "kill" for op in h)


def test_the_final_heal_heals_every_fault_kind_and_is_marked_final():
    h = simulate(heal_generator(FAULTS), concurrency=1, seed=1)
    invokes = [op for op in h if op.type == "invoke"]
    # the network first (partitions, then link faults), then processes, then clocks
    assert [op.f for op in invokes] == ["heal", "fast", "lossless", "resume", "start", "clock-reset"]
    assert all(op.process == "nemesis" and op.extra == {"final": True} for op in invokes)
    assert invokes[4].value == {"target": "killed"}


def test_executed_nemesis_ops_turn_into_the_replay_naming_the_nodes_hit():
    results = {"partition": {"topology": "isolate-leader", "groups": [["n3"], ["n1", "n2", "n4", "n5"]]},
               "kill": {"nodes": ["n2"]}, "pause": {"nodes": []}, "heal": {"healed": "partition"}}
    steps = [{"at": 1.0, "f": "partition", "value": {"topology": "isolate-leader"}},
             {"at": 2.0, "f": "kill", "value": {"target": "leader"}},
             {"at": 3.0, "f": "pause", "value": {"target": "majority"}},  # hit nothing: not replayed
             {"at": 4.0, "f": "heal", "value": None}]

    def respond(op):
        return "info", results.get(op.f), MS

    gen = phases(schedule_generator(steps), heal_generator(["kill"]))
    history = simulate(gen, concurrency=1, seed=1, respond=respond)
    executed = executed_schedule(history, start_ns=0)
    assert [e["f"] for e in executed] == ["partition", "kill", "pause", "heal", "start"]
    assert executed[-1]["final"] is True
    replay = replay_schedule(history, start_ns=0, time_limit=60)
    assert replay == [
        {"at": 1.0, "f": "partition", "value": {"topology": "groups", "groups": [["n3"], ["n1", "n2", "n4", "n5"]]}},
        {"at": 2.0, "f": "kill", "value": {"target": ["n2"]}},
        {"at": 4.0, "f": "heal", "value": None},
    ]
    assert len(validate_steps(replay, RunConfig(nodes=5, time_limit=60))) == 3


def test_a_fault_that_failed_or_never_completed_is_not_replayed():
    from chaos.history import Op

    ops = [Op(process="nemesis", type="invoke", f="kill", value={"target": "one"}, time=1 * 10**9),
           Op(process="nemesis", type="info", f="kill", value=None, time=2 * 10**9, error="RuntimeError: no"),
           Op(process="nemesis", type="invoke", f="pause", value={"target": "one"}, time=3 * 10**9)]
    assert replay_schedule(ops, start_ns=0) == []
    assert executed_schedule(ops, start_ns=0)[1]["completed"] is False


def test_schedule_steps_must_name_at_and_f():
    from chaos.generator import GeneratorError

    with pytest.raises(GeneratorError, match="schedule step 0 must be a mapping with at and f"):
        schedule_generator([{"f": "kill"}])
    with pytest.raises(GeneratorError, match="unknown fault kind 'explode'"):
        random_nemesis(["explode"], 5, 1, 5)


def test_random_nemesis_uses_only_the_chosen_faults():
    h = simulate(time_limit(60, random_nemesis(["partition", "clock"], 2, 5, 5)), concurrency=1, seed=1)
    assert {op.f for op in h} <= {"partition", "heal", "clock-skew", "clock-reset"}
    assert len([op for op in h if op.type == "invoke"]) >= 20
