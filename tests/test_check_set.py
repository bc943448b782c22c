"""The set checker reports lost, duplicated, unexpected and recovered elements."""

from chaos.history import Op
from checkers import check_history
from checkers.set_checker import check_set


def history(adds, final, key="s0"):
    """adds: [(element, outcome)]; final: the final read's list (None: no final read)."""
    ops, t = [], 0
    for p, (el, outcome) in enumerate(adds):
        ops.append(Op(process=p, type="invoke", f="add", key=key, value=el, time=t))
        if outcome is not None:
            ops.append(Op(process=p, type=outcome, f="add", key=key, value=el, time=t + 1))
        t += 2
    if final is not None:
        ops.append(Op(process=999, type="invoke", f="read", key=key, value=None, time=t))
        done = Op(process=999, type="ok", f="read", key=key, value=final, time=t + 1)
        done.extra["final"] = True
        ops.append(done)
    for i, op in enumerate(ops):
        op.index = i
    return ops


def test_everything_acknowledged_is_present_is_valid():
    r = check_set(history([(1, "ok"), (2, "ok")], [1, 2]))
    assert r["valid"] is True and r["lost"] == [] and r["recovered"] == []


def test_acknowledged_element_missing_from_final_read_is_lost():
    r = check_set(history([(1, "ok"), (2, "ok")], [1]))
    assert r["valid"] is False and r["lost"] == [{"key": "s0", "element": 2}]


def test_element_present_twice_is_duplicated():
    r = check_set(history([(1, "ok")], [1, 1]))
    assert r["valid"] is False and r["duplicated"] == [{"key": "s0", "element": 1, "count": 2}]


def test_element_nobody_added_is_unexpected():
    r = check_set(history([(1, "ok")], [1, 7]))
    assert r["valid"] is False and r["unexpected"][0]["element"] == 7


def test_element_whose_add_failed_but_is_present_is_unexpected():
    r = check_set(history([(1, "ok"), (2, "fail")], [1, 2]))
    assert r["valid"] is False and r["unexpected"][0]["why"] == "add failed"


def test_indeterminate_add_that_made_it_is_recovered_not_an_error():
    r = check_set(history([(1, "ok"), (2, "info"), (3, None)], [1, 2, 3]))
    assert r["valid"] is True
    assert [x["element"] for x in r["recovered"]] == [2, 3]  # 3 never completed: it counts as info
    r = check_set(history([(1, "ok"), (2, "info")], [1]))
    assert r["valid"] is True and r["lost"] == []


def test_no_final_read_is_unknown():
    r = check_set(history([(1, "ok")], None))
    assert r["valid"] == "unknown" and r["keys_without_final_read"] == ["s0"]


def test_check_history_on_a_set_workload_combines_set_and_stats():
    r = check_history(history([(1, "ok"), (2, "ok")], [1]), workload="set")
    assert r["valid"] is False
    assert "lost 1" in r["reason"]
    assert set(r["checkers"]) == {"set", "stats", "availability"}
