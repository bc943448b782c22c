"""How the linearizability checkers read a history: fail, info, time, keys, budgets, anomalies."""

import pytest

from chaos.history import Op
from checkers import check_history, check_linearizable, porcupine

CHECKERS = ["python", "porcupine"]


def h(*specs):
    """specs: (process, type, f, value, time[, key]) tuples."""
    ops = []
    for i, s in enumerate(specs):
        p, t, f, v, time = s[:5]
        ops.append(Op(process=p, type=t, f=f, key=s[5] if len(s) > 5 else "r0", value=v, time=time, index=i))
    return ops


@pytest.fixture(params=CHECKERS)
def checker(request):
    if request.param == "porcupine" and not porcupine.available():
        pytest.skip("porcupine helper unavailable")
    return request.param


def lin(ops, checker, **kw):
    return check_linearizable(ops, checker=checker, **kw)


def test_stale_read_is_illegal_and_described_with_times_processes_and_op_indexes():
    ops = h((2, "invoke", "write", 3, 1_000_000_000), (2, "ok", "write", 3, 1_500_000_000),
            (2, "invoke", "write", 5, 11_900_000_000), (2, "ok", "write", 5, 12_020_000_000),
            (7, "invoke", "read", None, 12_410_000_000), (7, "ok", "read", 3, 12_430_000_000))
    r = check_linearizable(ops, checker="python")
    key = r["keys"]["r0"]
    assert r["valid"] is False and r["first_illegal_key"] == "r0"
    words = key["anomaly"]["description"]
    assert "read of 3 by process 7 (op 4, 11.41" in words and "overwritten" in words
    assert "write of 5 by process 2 (op 2" in words
    assert {2, 4} <= set(key["anomaly"]["ops"])


def test_failed_write_is_dropped(checker):
    ops = h((0, "invoke", "write", 1, 0), (0, "fail", "write", 1, 1),
            (1, "invoke", "read", None, 2), (1, "ok", "read", None, 3))
    assert lin(ops, checker)["valid"] is True
    assert lin(ops, checker)["dropped_fail"] == 1


def test_info_read_is_dropped_even_with_an_impossible_value(checker):
    ops = h((0, "invoke", "read", None, 0), (0, "info", "read", 99, 1))
    r = lin(ops, checker)
    assert r["valid"] is True and r["dropped_info_reads"] == 1


def test_info_write_may_take_effect_long_after_it_was_invoked(checker):
    # write 1 crashed at t=1; the read at t=10..11 sees it: legal, it is pending to the end.
    ops = h((0, "invoke", "write", 1, 0), (0, "info", "write", 1, 1),
            (1, "invoke", "read", None, 10), (1, "ok", "read", None, 11),
            (1, "invoke", "read", None, 20), (1, "ok", "read", 1, 21))
    assert lin(ops, checker)["valid"] is True


def test_info_write_cannot_take_effect_before_it_was_invoked(checker):
    ops = h((1, "invoke", "read", None, 0), (1, "ok", "read", 1, 1),
            (0, "invoke", "write", 1, 5), (0, "info", "write", 1, 6))
    assert lin(ops, checker)["valid"] is False


def test_invocation_without_completion_counts_as_info(checker):
    ops = h((0, "invoke", "write", 1, 0), (1, "invoke", "read", None, 10), (1, "ok", "read", 1, 11))
    assert lin(ops, checker)["valid"] is True


def test_cas_must_find_its_expected_value(checker):
    ok = h((0, "invoke", "write", 1, 0), (0, "ok", "write", 1, 1),
           (0, "invoke", "cas", [1, 2], 2), (0, "ok", "cas", [1, 2], 3),
           (1, "invoke", "read", None, 4), (1, "ok", "read", 2, 5))
    assert lin(ok, checker)["valid"] is True
    bad = h((0, "invoke", "write", 1, 0), (0, "ok", "write", 1, 1),
            (0, "invoke", "cas", [7, 2], 2), (0, "ok", "cas", [7, 2], 3))
    assert lin(bad, checker)["valid"] is False


def test_equal_times_are_concurrent_as_closed_intervals(checker):
    # the write returns at the instant the read is invoked: they overlap, so the read may miss it
    ops = h((0, "invoke", "write", 1, 0), (0, "ok", "write", 1, 5),
            (1, "invoke", "read", None, 5), (1, "ok", "read", None, 6))
    assert lin(ops, checker)["valid"] is True


def test_keys_are_independent_and_first_illegal_key_stops_the_rest():
    good = [(0, "invoke", "write", 1, 0, "a"), (0, "ok", "write", 1, 1, "a")]
    bad = [(1, "invoke", "write", 1, 2, "b"), (1, "ok", "write", 1, 3, "b"),
           (1, "invoke", "read", None, 4, "b"), (1, "ok", "read", 2, 5, "b")]
    nonunique = [(2, "invoke", "write", 1, 6, "c"), (2, "ok", "write", 1, 7, "c"),
                 (2, "invoke", "write", 1, 8, "c"), (2, "ok", "write", 1, 9, "c")]
    ops = h(*(good + bad + nonunique))
    r = check_linearizable(ops, checker="python")
    assert r["valid"] is False and r["first_illegal_key"] == "b"
    assert r["keys"]["a"]["valid"] is True
    assert r["keys"]["c"].get("skipped") is True
    r = check_linearizable(ops, checker="python", all_keys=True)
    assert r["keys"]["c"]["valid"] is True


def test_over_the_time_budget_is_unknown_never_a_pass():
    from checkers.generate import register_history
    ops = register_history(3, n_ops=300, processes=12, unique_values=False, value_domain=2, p_info=0.3)
    r = check_linearizable(ops, checker="python", time_budget_s=1e-6)
    assert r["valid"] == "unknown"
    assert "time budget" in check_history(ops, checker="python", time_budget_s=1e-6)["reason"]


def test_register_model_rejects_kv_operations_with_the_line():
    from chaos.history import HistoryError
    ops = h((0, "invoke", "append", "x", 0), (0, "ok", "append", "x", 1))
    with pytest.raises(HistoryError, match="not part of the register model"):
        check_linearizable(ops)


def test_kv_append_extends_a_list_for_our_node(checker):
    ops = h((0, "invoke", "append", 1, 0), (0, "ok", "append", [1], 1),
            (0, "invoke", "append", 2, 2), (0, "ok", "append", [1, 2], 3),
            (1, "invoke", "read", None, 4), (1, "ok", "read", [1, 2], 5))
    r = lin(ops, checker, model="kv")
    assert r["append_mode"] == "list" and r["valid"] is True
    ops[5].value = [2, 1]
    assert lin(ops, checker, model="kv")["valid"] is False


def test_kv_append_concatenates_strings_for_jepsen_data(checker):
    ops = h((0, "invoke", "append", "x 0 0 y", 0), (0, "ok", "append", "x 0 0 y", 1),
            (1, "invoke", "append", "x 1 0 y", 2), (1, "ok", "append", "x 1 0 y", 3),
            (2, "invoke", "get", None, 4), (2, "ok", "get", "x 0 0 yx 1 0 y", 5))
    r = lin(ops, checker, model="kv")
    assert r["append_mode"] == "concat" and r["valid"] is True
    ops[5].value = "x 1 0 yx 0 0 y"
    assert lin(ops, checker, model="kv")["valid"] is False


def test_illegal_key_gets_porcupine_visualization_in_the_report_folder(tmp_path):
    if not porcupine.available():
        pytest.skip("porcupine helper unavailable")
    ops = h((0, "invoke", "write", 1, 0), (0, "ok", "write", 1, 1),
            (1, "invoke", "read", None, 2), (1, "ok", "read", 2, 3))
    for checker in ("python", "porcupine"):
        out = tmp_path / checker / "report"
        r = check_history(ops, checker=checker, out_dir=str(out))
        key = r["checkers"]["linearizable"]["keys"]["r0"]
        assert key["visualization"] == "report/porcupine/r0.html"
        html = (out / "porcupine" / "r0.html").read_text()
        assert "<html" in html.lower() and len(html) > 1000


def test_combined_verdict_has_a_reason_and_jepsen_precedence():
    ops = h((0, "invoke", "write", 1, 0), (0, "ok", "write", 1, 1),
            (1, "invoke", "read", None, 2), (1, "ok", "read", 1, 3))
    r = check_history(ops, checker="python")
    assert r["valid"] is True and r["reason"].startswith("Valid")
    assert set(r["checkers"]) == {"linearizable", "stats", "availability"}


def test_kv_delete_and_cas_for_our_node(checker):
    ops = h((0, "invoke", "write", "a", 0), (0, "ok", "write", "a", 1),
            (0, "invoke", "cas", ["a", "b"], 2), (0, "ok", "cas", ["a", "b"], 3),
            (0, "invoke", "delete", None, 4), (0, "ok", "delete", None, 5),
            (1, "invoke", "read", None, 6), (1, "ok", "read", None, 7))
    assert lin(ops, checker, model="kv")["valid"] is True
    ops[7].value = "b"  # read after the delete completed still sees the value
    assert lin(ops, checker, model="kv")["valid"] is False


def test_checker_interface_for_the_runner(tmp_path):
    from checkers import HistoryChecker
    ops = h((0, "invoke", "write", 1, 0), (0, "ok", "write", 1, 1),
            (1, "invoke", "read", None, 2), (1, "ok", "read", 2, 3))
    r = HistoryChecker(checker="python").check(ops, {"out_dir": str(tmp_path / "report")})
    assert r["valid"] is False and r["checkers"]["linearizable"]["first_illegal_key"] == "r0"
