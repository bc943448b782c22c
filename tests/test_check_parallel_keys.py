"""Keys that need a long search are checked in parallel processes, with the same verdicts."""

import random

import checkers
from checkers.generate import inject_stale_read, register_history


def test_parallel_search_gives_the_same_per_key_verdicts_as_sequential(monkeypatch):
    ops = register_history(11, n_ops=400, processes=6, keys=4, unique_values=False, value_domain=3, p_info=0.2)
    broken = inject_stale_read(ops, random.Random(1)) or ops
    sequential = checkers.check_linearizable(broken, checker="python", all_keys=True, workers=1)
    monkeypatch.setattr(checkers, "PROBE_S", 0.0)  # every key goes to the worker processes
    parallel = checkers.check_linearizable(broken, checker="python", all_keys=True, workers=2)
    assert {k: r["valid"] for k, r in parallel["keys"].items()} == \
           {k: r["valid"] for k, r in sequential["keys"].items()}
    assert parallel["valid"] == sequential["valid"]


def test_parallel_search_stops_at_the_first_illegal_key_and_marks_the_rest_skipped(monkeypatch):
    ops = register_history(12, n_ops=600, processes=6, keys=6, unique_values=False, value_domain=3)
    for op in ops:  # every key gets an impossible read
        if op.type == "ok" and op.f == "read":
            op.value = 99
    monkeypatch.setattr(checkers, "PROBE_S", 0.0)
    r = checkers.check_linearizable(ops, checker="python", workers=2)
    assert r["valid"] is False and r["first_illegal_key"] is not None
    verdicts = [k["valid"] for k in r["keys"].values()]
    assert all(v is False or v == "unknown" for v in verdicts)
    assert all(k.get("skipped") for k in r["keys"].values() if k["valid"] == "unknown")
