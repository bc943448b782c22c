"""Election safety from the bundled node's logs: one leader per term, one vote per voter per term."""

import json

from checkers.node_health import add_checks
from systems.raftnode.election_safety import check_node_logs


def add_to_results(results, run_dir):
    return add_checks(results, [check_node_logs(run_dir)])


def write_logs(run_dir, events_by_node, torn=None):
    for node, events in events_by_node.items():
        folder = run_dir / "nodes" / node
        folder.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"ts": 0.0, "mono": 0.0, "node": node, **ev}) for ev in events]
        text = "\n".join(lines) + "\n"
        if torn and node in torn:
            text += '{"ts": 1.0, "node": "' + node + '", "event": "vote", "cand'  # SIGKILL mid-line
        (folder / "node.log").write_text(text)


def vote(candidate, term, granted=True):
    return {"event": "vote", "candidate": candidate, "term": term, "granted": granted}


def role(name, term, leader=None):
    return {"event": "role", "role": name, "term": term, "leader": leader}


HEALTHY = {
    "n1": [role("candidate", 1), {"event": "election_won", "term": 1, "votes": ["n1", "n2"]},
           role("leader", 1, "n1"), {"event": "commit", "index": 1, "term": 1}],
    "n2": [vote("n1", 1), role("follower", 1, "n1"), role("candidate", 2), vote("n3", 2, granted=False)],
    "n3": [vote("n1", 1), role("pre-candidate", 1)],
}


def test_a_run_without_node_logs_has_no_election_safety_result(tmp_path):
    assert check_node_logs(str(tmp_path)) is None
    results = {"valid": True, "checkers": {}}
    assert add_to_results(results, str(tmp_path)) == {"valid": True, "checkers": {}}


def test_one_leader_per_term_and_one_vote_per_voter_is_valid(tmp_path):
    write_logs(tmp_path, HEALTHY)
    result = check_node_logs(str(tmp_path))
    assert result["valid"] is True
    assert result["node_logs"] == 3 and result["terms_with_a_leader"] == 1


def test_two_leaders_in_one_term_is_invalid(tmp_path):
    logs = dict(HEALTHY)
    logs["n3"] = HEALTHY["n3"] + [{"event": "election_won", "term": 1, "votes": ["n3", "n2"]}]
    write_logs(tmp_path, logs)
    result = check_node_logs(str(tmp_path))
    assert result["valid"] is False
    assert result["terms_with_two_leaders"] == [{"term": 1, "leaders": ["n1", "n3"]}]
    assert result["reason"] == "two leaders in term 1: n1 and n3"


def test_a_voter_granting_two_candidates_in_one_term_is_invalid_even_across_a_restart(tmp_path):
    # what the forget-vote bug does: n2 grants n1, restarts without its vote, grants n3 in term 1
    logs = dict(HEALTHY)
    logs["n2"] = [vote("n1", 1), {"event": "start"}, vote("n3", 1)]
    write_logs(tmp_path, logs)
    result = check_node_logs(str(tmp_path))
    assert result["valid"] is False
    assert result["double_votes"] == [{"voter": "n2", "term": 1, "candidates": ["n1", "n3"]}]
    assert "n2 voted for n1 and n3 in term 1" in result["reason"]


def test_a_candidate_granting_another_candidate_its_own_term_is_a_double_vote(tmp_path):
    logs = dict(HEALTHY)
    logs["n3"] = [role("candidate", 1), vote("n1", 1)]
    write_logs(tmp_path, logs)
    result = check_node_logs(str(tmp_path))
    assert result["double_votes"] == [{"voter": "n3", "term": 1, "candidates": ["n1", "n3"]}]


def test_refused_votes_and_pre_candidacy_are_not_votes(tmp_path):
    logs = dict(HEALTHY)
    logs["n3"] = [vote("n1", 1), vote("n2", 1, granted=False), role("pre-candidate", 1)]
    write_logs(tmp_path, logs)
    assert check_node_logs(str(tmp_path))["valid"] is True


def test_a_torn_last_line_is_counted_and_skipped(tmp_path):
    write_logs(tmp_path, HEALTHY, torn={"n2"})
    result = check_node_logs(str(tmp_path))
    assert result["valid"] is True and result["unreadable_lines"] == 1


def test_a_violation_makes_the_combined_verdict_invalid_with_its_reason(tmp_path):
    logs = dict(HEALTHY)
    logs["n2"] = [vote("n1", 1), vote("n3", 1)]
    write_logs(tmp_path, logs)
    results = add_to_results({"valid": True, "reason": "Valid.", "checkers": {}}, str(tmp_path))
    assert results["valid"] is False
    assert results["reason"].startswith("election-safety: n2 voted for n1 and n3 in term 1")
    assert results["checkers"]["election-safety"]["valid"] is False
    # an earlier invalid verdict keeps its own reason
    kept = add_to_results({"valid": False, "reason": "Key r1 is not linearizable.", "checkers": {}},
                          str(tmp_path))
    assert kept["reason"] == "Key r1 is not linearizable." and kept["valid"] is False
