"""504 {"error": "timeout"} means "appended, outcome unknown": a write (or read) the leader could
not commit within the request timeout, or a write whose leader stepped down after appending."""

import time

from raftnode.localcluster import LocalCluster


def test_a_leader_without_a_majority_answers_504_after_the_request_timeout():
    with LocalCluster(3, extra_args=("--no-check-quorum", "--request-timeout", "600")) as cluster:
        leader = cluster.wait_for_leader()
        assert cluster.write("/kv/a", {"value": 1}) == (200, {})
        for node in cluster.ids:
            if node != leader:
                cluster.kill(node)
        started = time.monotonic()
        code, body, _ = cluster.request(leader, "PUT", "/kv/a", {"value": 2})
        elapsed = time.monotonic() - started
        assert (code, body["error"]) == (504, "timeout")
        assert elapsed >= 0.5
        code, body, _ = cluster.request(leader, "GET", "/kv/a")
        assert (code, body["error"]) == (504, "timeout"), "a read must not be served without a quorum"


def test_a_write_whose_leader_steps_down_after_appending_gets_504_not_503():
    # Long election timeouts: check-quorum deposes the isolated leader only after ~1 s, well after
    # the write below was appended; the request timeout is longer still.
    with LocalCluster(3, election_timeout="1000-1200", extra_args=("--request-timeout", "8000")) as cluster:
        leader = cluster.wait_for_leader()
        assert cluster.write("/kv/a", {"value": 1}) == (200, {})
        for node in cluster.ids:
            if node != leader:
                cluster.kill(node)
        started = time.monotonic()
        code, body, _ = cluster.request(leader, "PUT", "/kv/a", {"value": 2}, timeout=10)
        assert (code, body["error"]) == (504, "timeout"), body
        assert time.monotonic() - started < 6, "answered at step-down, not at the request deadline"
        status = cluster.status(leader)
        assert status["role"] != "leader"
        # Now nothing can be appended: 503, which means "not appended".
        assert cluster.request(leader, "PUT", "/kv/a", {"value": 3})[:2] == (503, {"error": "no_leader"})
