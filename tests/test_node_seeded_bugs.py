"""The node-level seeded bugs change behaviour only when switched on (--bug NAME)."""

from raftnode.localcluster import LocalCluster


def test_ack_before_commit_acknowledges_a_write_no_majority_has():
    with LocalCluster(3, extra_args=("--no-check-quorum", "--request-timeout", "600",
                                     "--bug", "ack-before-commit")) as cluster:
        leader = cluster.wait_for_leader()
        for node in cluster.ids:
            if node != leader:
                cluster.kill(node)
        assert cluster.request(leader, "PUT", "/kv/a", {"value": 1})[:2] == (200, {})


def test_stale_read_lets_a_follower_answer_from_its_own_state():
    with LocalCluster(3, extra_args=("--bug", "stale-read")) as cluster:
        leader = cluster.wait_for_leader()
        cluster.write("/kv/a", {"value": 1})
        follower = next(n for n in cluster.ids if n != leader)
        cluster.wait_until(lambda: cluster.status(follower)["last_applied"] >= 2, what="replication")
        assert cluster.request(follower, "GET", "/kv/a")[:2] == (200, {"value": 1})
        assert cluster.status(follower)["bugs"] == ["stale-read"]


def recovered_vote(bug: tuple) -> tuple:
    with LocalCluster(3, extra_args=bug) as cluster:
        leader = cluster.wait_for_leader()
        term = cluster.status(leader)["term"]
        assert cluster.status(leader)["voted_for"] == leader  # a leader voted for itself
        cluster.kill(leader)
        cluster.start(leader)
        start = cluster.wait_until(lambda: [e for e in cluster.log_events(leader) if e["event"] == "start"][1:],
                                   what="the restart's start line")[0]
        return term, start["term"], start["voted_for"], leader


def test_forget_vote_restarts_without_the_vote_it_cast():
    term, recovered_term, voted_for, _ = recovered_vote(("--bug", "forget-vote"))
    assert recovered_term == term and voted_for is None


def test_without_forget_vote_the_vote_is_recovered():
    term, recovered_term, voted_for, leader = recovered_vote(())
    assert recovered_term == term and voted_for == leader
