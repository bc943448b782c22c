"""Fault schedules: a seeded, bounded random schedule (leader-aimed faults only for a DB that can
name its leader); the executed schedule turned into a replay naming the nodes. (The workloads'
op mixes are specified in test_generator_workloads.py.)"""

from chaos.config import FAULT_OPS, FAULTS
from chaos.faults import aims_at_leader
from chaos.generator import active_after, random_schedule, replayable_step
from chaos.scenario import validate_steps
from chaos.config import RunConfig


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


def test_without_a_leader_capability_no_random_fault_aims_at_the_leader():
    for seed in range(40):
        steps = random_schedule(list(FAULTS), 120, 2, seed=seed, nodes=5, leader=False)
        assert not any(aims_at_leader(s["value"]) for s in steps)
    with_leader = [s for seed in range(40) for s in random_schedule(list(FAULTS), 120, 2, seed=seed, nodes=5)]
    assert any(aims_at_leader(s["value"]) for s in with_leader)


def test_on_a_single_node_no_random_fault_targets_nobody():
    for seed in range(40):
        for step in random_schedule(["kill", "pause", "clock"], 120, 2, seed=seed, nodes=1, leader=False):
            assert (step["value"] or {}).get("target") != "minority"
