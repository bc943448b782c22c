"""The porcupine drawing of an illegal key is found where results.json says (contracts §3).

Found in real runs (QA, board 00:50): the runner handed the run folder itself to the checker as
out_dir, so the drawings landed in <run>/porcupine/ and results.json pointed to
"<timestamp>/porcupine/<key>.html"; every invalid run's report said the visualization was
missing. The contract: the checker gets out_dir = <run>/report, and `visualization` is relative
to the run folder: "report/porcupine/<key>.html". This pins the checker's half of it on a real
invalid history (ack-before-commit, wrong cas answers).
"""

import os

import pytest

from checkers import check_history
from checkers import porcupine
from checkers.formats import load_history

HISTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "regressions",
                       "ack-before-commit-leader-kill.jsonl")


@pytest.fixture(scope="module")
def helper():
    try:
        return porcupine.ensure_binary()
    except porcupine.PorcupineUnavailable as e:
        pytest.skip(f"porcupine helper unavailable: {e}")


def test_the_drawing_of_an_illegal_key_is_under_report_porcupine_relative_to_the_run(tmp_path, helper):
    run_dir = tmp_path / "20261125T003206"
    report_dir = run_dir / "report"
    report_dir.mkdir(parents=True)
    ops, _ = load_history(HISTORY)
    result = check_history(ops, workload="register", out_dir=str(report_dir), time_budget_s=120)
    lin = result["checkers"]["linearizable"]
    key = lin["first_illegal_key"]
    assert result["valid"] is False and key == "r4"
    assert lin["keys"][key]["visualization"] == f"report/porcupine/{key}.html"
    assert (run_dir / lin["keys"][key]["visualization"]).is_file()
