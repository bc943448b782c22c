"""Histories of real runs of the node with a seeded bug stay invalid for the checker.

Each file in tests/data/regressions/ is a `splitbrain run --bug NAME` history (5 nodes, real
processes or containers, real faults; see docs/seeded-bugs.md for the command), trimmed by
`python bench/bug_matrix.py --trim RUN_DIR OUT` to the key the checker flagged plus the nemesis
operations. Besides the verdict, each case says which operations the bug corrupts, and the
checker must blame those: the anomaly is about such an operation, and with their answers
neutralized (a read that failed never happened; a write whose answer is unknown may or may not
have happened) the rest of the key is linearizable.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import pytest

from checkers import check_history
from checkers import porcupine
from checkers.formats import load_history

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "regressions")


@dataclass(frozen=True)
class Case:
    file: str
    bug: str
    key: str
    anomaly: str          # the anomaly kind the checker reports
    corrupted: str        # "reads" or "writes": what the bug makes wrong

    def __str__(self):
        return self.file


CASES = [
    Case("stale-read-paused-follower.jsonl", "stale-read", "r0", "stale-read", "reads"),
    Case("stale-read-isolated-follower.jsonl", "stale-read", "r1", "stale-read", "reads"),
    # The isolated leader, paused while the others elected a new leader and wrote, resumes and
    # answers reads on the lease it measured before the pause (its stalled ticks count as one
    # heartbeat interval).
    Case("lease-read-isolated-paused-leader.jsonl", "lease-read", "r4", "stale-read", "reads"),
    # The bug answers a cas against the applied state before the log's earlier writes apply: a
    # cas reported failed took effect, and a later cas found the value it wrote.
    Case("ack-before-commit-leader-kill.jsonl", "ack-before-commit", "r4", "cas-unwritten", "writes"),
]

# Set histories: adds acknowledged by a leader that never replicated them, lost by the final read.
SET_CASES = [
    Case("ack-before-commit-set-leader-isolated.jsonl", "ack-before-commit", "s2", "lost", "writes"),
]


def _load(case: Case):
    ops, _ = load_history(os.path.join(DATA, case.file))
    return ops


def _neutralize(ops, what: str):
    """A copy where every successful read becomes a fail ("reads"), or every answered write,
    cas or add becomes info ("writes": the answer is not trusted, the operation may or may not
    have happened). Final reads are kept: they are how a set shows what it holds."""
    out = copy.deepcopy(ops)
    for op in out:
        if op.process == "nemesis" or op.type == "invoke":
            continue
        if what == "reads" and op.f == "read" and op.type == "ok" and not op.extra.get("final"):
            op.type = "fail"
        elif what == "writes" and op.f in ("write", "cas", "add") and op.type in ("ok", "fail"):
            op.type = "info"
            op.error = None
    return out


def test_every_case_file_is_there_and_every_regression_file_has_a_case():
    files = {f for f in os.listdir(DATA) if f.endswith(".jsonl")}
    seeded = {c.file for c in CASES + SET_CASES}
    assert seeded <= files
    # Files of other regression tests (test_regression_<name>.py) start with their own name.
    assert {f for f in files if f.startswith(tuple(c.bug for c in CASES + SET_CASES))} == seeded


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_recorded_history_of_the_seeded_bug_is_invalid(case):
    result = check_history(_load(case), workload="register")
    lin = result["checkers"]["linearizable"]
    assert result["valid"] is False, result["reason"]
    assert lin["first_illegal_key"] == case.key
    assert lin["keys"][case.key]["anomaly"]["kind"] == case.anomaly


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_checker_blames_the_operations_the_bug_corrupts(case):
    ops = _load(case)
    anomaly = check_history(ops, workload="register")["checkers"]["linearizable"]["keys"][case.key]["anomaly"]
    # The operation the anomaly is about (its first) is of the kind the bug corrupts...
    flagged = ops[anomaly["ops"][0]]
    assert flagged.f in (("read",) if case.corrupted == "reads" else ("write", "cas")), flagged
    # ...and without that kind's answers the rest of the history is linearizable. (Only the
    # linearizability verdict: the stats checker rightly complains that no read succeeded.)
    assert _linearizable(_neutralize(ops, case.corrupted)) is True


def _linearizable(ops):
    return check_history(ops, workload="register")["checkers"]["linearizable"]["valid"]


@pytest.mark.parametrize("case", SET_CASES, ids=str)
def test_the_recorded_set_history_of_the_seeded_bug_loses_acknowledged_adds(case):
    ops = _load(case)
    result = check_history(ops, workload="set")
    assert result["valid"] is False, result["reason"]
    lost = result["checkers"]["set"]["lost"]
    assert lost and {e["key"] for e in lost} == {case.key}
    acknowledged = {op.value for op in ops if op.f == "add" and op.type == "ok"}
    assert {e["element"] for e in lost} <= acknowledged
    # Without trusting the acknowledgements, the same final read is a valid outcome.
    assert check_history(_neutralize(ops, "writes"), workload="set")["checkers"]["set"]["valid"] is True


@pytest.fixture(scope="module")
def porcupine_helper():
    try:
        return porcupine.ensure_binary()
    except porcupine.PorcupineUnavailable as e:
        pytest.skip(f"porcupine helper unavailable: {e}")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_porcupine_agrees_that_the_history_is_invalid(case, porcupine_helper):
    result = check_history(_load(case), workload="register", checker="porcupine", time_budget_s=120)
    assert result["valid"] is False, result["reason"]
    assert result["checkers"]["linearizable"]["first_illegal_key"] == case.key
