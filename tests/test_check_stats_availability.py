"""Stats per operation kind, and availability inside and outside fault windows (contracts §1)."""

from chaos.history import Op
from checkers.stats import check_availability, check_stats, fault_windows


def ops_of(specs):
    return [Op(process=p, type=t, f=f, key="r0", value=v, time=tm, index=i) for i, (p, t, f, v, tm) in enumerate(specs)]


HISTORY = ops_of([
    (0, "invoke", "write", 1, 10), (0, "ok", "write", 1, 20),                         # before the fault
    ("nemesis", "invoke", "partition", {"topology": "halves"}, 30),
    ("nemesis", "info", "partition", {"groups": [["n1"], ["n2", "n3"]]}, 40),
    (1, "invoke", "write", 2, 35), (1, "ok", "write", 2, 36),                         # before the fault is active
    (0, "invoke", "read", None, 50), (0, "fail", "read", None, 60),                   # during
    (2, "invoke", "write", 3, 55), (2, "info", "write", 3, 70),                       # during
    ("nemesis", "invoke", "heal", None, 80), ("nemesis", "info", "heal", {"healed": "partition"}, 90),
    (0, "invoke", "read", None, 85), (0, "ok", "read", 3, 95),                         # outside (healing)
    ("nemesis", "invoke", "kill", {"target": "leader"}, 100), ("nemesis", "info", "kill", {"nodes": ["n1"]}, 110),
    (1, "invoke", "read", None, 120),                                                # during, never completed
])


def test_stats_count_ok_fail_info_per_f_and_unfinished_ops_count_as_info():
    s = check_stats(HISTORY)
    assert s["by_f"] == {"write": {"ok": 2, "fail": 0, "info": 1}, "read": {"ok": 1, "fail": 1, "info": 1}}
    assert s["valid"] is True and s["count"] == 6


def test_stats_are_invalid_when_an_operation_kind_never_succeeded():
    s = check_stats(ops_of([(0, "invoke", "read", None, 1), (0, "fail", "read", None, 2)]))
    assert s["valid"] is False and s["never_ok"] == ["read"]


def test_a_fault_is_active_from_its_completion_to_the_heal_invocation_or_the_end():
    w = fault_windows(HISTORY)
    assert [(x["f"], x["start"], x["end"]) for x in w] == [("partition", 40, 80), ("kill", 110, None)]


def test_availability_splits_operations_by_whether_a_fault_was_active_at_invocation():
    a = check_availability(HISTORY)
    during, outside = a["during_faults"], a["outside_faults"]
    assert (during["ops"], during["ok"], during["fail"], during["info"]) == (3, 0, 1, 2)
    assert (outside["ops"], outside["ok"]) == (3, 3)
    assert outside["availability"] == 1.0 and during["availability"] == 0.0
    assert [x["f"] for x in a["windows"]] == ["partition", "kill"]
