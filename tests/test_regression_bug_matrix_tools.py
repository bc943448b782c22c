"""The tools behind the regression files: bench/bug_matrix.py trims a run to the flagged key and
reads election evidence from node logs."""

import json
import os
import sys

import pytest

from checkers import check_history
from checkers.formats import load_history

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bug_matrix  # noqa: E402

DATA = os.path.join(ROOT, "tests", "data", "regressions")


def _fake_run(tmp_path, history_file, extra_lines=()):
    """A run folder whose history is a regression file plus some other key's operations."""
    run = tmp_path / "run"
    run.mkdir()
    with open(os.path.join(DATA, history_file)) as f:
        lines = [json.loads(line) for line in f]
    lines += list(extra_lines)
    with open(run / "history.jsonl", "w") as f:
        for i, op in enumerate(lines):
            op["index"] = i
            f.write(json.dumps(op) + "\n")
    ops, _ = load_history(str(run / "history.jsonl"))
    with open(run / "results.json", "w") as f:
        json.dump(check_history(ops, workload="register"), f)
    return run


def test_trimming_keeps_the_flagged_key_and_the_faults_and_the_verdict(tmp_path):
    other_key = [
        {"process": 900, "type": "invoke", "f": "write", "key": "zz", "value": 1, "time": 1},
        {"process": 900, "type": "ok", "f": "write", "key": "zz", "value": 1, "time": 2},
    ]
    run = _fake_run(tmp_path, "stale-read-paused-follower.jsonl", other_key)
    out = tmp_path / "trimmed.jsonl"
    summary = bug_matrix.trim_history(str(run), str(out))
    assert summary["keys"] == ["r0"]
    ops, _ = load_history(str(out))
    assert {op.key for op in ops if op.process != "nemesis"} == {"r0"}
    assert any(op.process == "nemesis" for op in ops)
    assert [op.index for op in ops] == list(range(len(ops)))
    assert check_history(ops, workload="register")["valid"] is False


def test_trimming_a_valid_run_names_the_problem(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"valid": True, "reason": "Valid", "checkers": {}}))
    (run / "history.jsonl").write_text("")
    with pytest.raises(SystemExit, match="no key was found invalid"):
        bug_matrix.trim_history(str(run), str(tmp_path / "out.jsonl"))


def _log(path, events):
    path.parent.mkdir(parents=True, exist_ok=True)
    # A str is written as it is: a torn line, as a killed node leaves at the end of its log.
    path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in events))


def test_node_log_evidence_finds_two_leaders_in_a_term_and_a_double_vote(tmp_path):
    _log(tmp_path / "nodes" / "n1" / "node.log", [
        {"node": "n1", "event": "election_won", "term": 4},
        {"node": "n1", "event": "vote", "candidate": "n2", "term": 7, "granted": True},
        {"node": "n1", "event": "vote", "candidate": "n3", "term": 7, "granted": True},
        {"node": "n1", "event": "vote", "candidate": "n3", "term": 8, "granted": False},
    ])
    _log(tmp_path / "nodes" / "n2" / "node.log", [
        {"node": "n2", "event": "election_won", "term": 4},
        {"node": "n2", "event": "election_won", "term": 5},
        {"node": "n2", "event": "fatal", "error": "SafetyViolation: truncate committed"},
    ])
    _log(tmp_path / "nodes" / "n3" / "node.log", [
        {"node": "n3", "event": "role", "role": "candidate", "term": 9, "leader": None},
        {"node": "n3", "event": "vote", "candidate": "n1", "term": 9, "granted": True},
    ])
    ev = bug_matrix.node_log_evidence(str(tmp_path))
    assert ev["terms_with_two_leaders"] == {4: ["n1", "n2"]}
    # n1 granted two candidates in term 7; n3 voted for itself and then for n1 in term 9.
    assert ev["double_votes"] == ["n1 t7: ['n2', 'n3']", "n3 t9: ['n1', 'n3']"]
    assert ev["fatal"] == ["n2: SafetyViolation: truncate committed"]
    assert ev["elections"] == 3


def test_one_leader_per_term_and_single_votes_are_no_evidence(tmp_path):
    _log(tmp_path / "nodes" / "n1" / "node.log", [
        {"node": "n1", "event": "election_won", "term": 2},
        {"node": "n1", "event": "vote", "candidate": "n2", "term": 3, "granted": True},
        {"node": "n1", "event": "vote", "candidate": "n2", "term": 3, "granted": True},
        '{"node": "n1", "event": "vote", "candidate": "n3", "term": 3, "gra',
    ])
    ev = bug_matrix.node_log_evidence(str(tmp_path))
    assert ev["terms_with_two_leaders"] == {} and ev["double_votes"] == [] and ev["fatal"] == []


def test_unknown_cells_are_refused_with_the_valid_names(capsys):
    with pytest.raises(SystemExit):
        bug_matrix.main(["--cells", "stale-reed"])
    assert "unknown cell(s) ['stale-reed']" in capsys.readouterr().err


def test_the_matrix_scenarios_are_valid_scenario_files(tmp_path, capsys):
    from chaos.scenario import load_scenario
    assert bug_matrix.main(["--write-scenarios", str(tmp_path)]) == 0
    written = capsys.readouterr().out.split()
    assert sorted(os.path.basename(w) for w in written) == sorted(f"{n}.yaml" for n in bug_matrix.EXTRA_SCENARIOS)
    for path in written:
        config = load_scenario(path)
        assert config.schedule or config.faults_in_use, path
