"""Requests to a node that is not the leader: 307 to the leader, or 503 when no leader is known."""

import time

from raftnode.localcluster import LocalCluster


def test_a_follower_redirects_reads_and_writes_to_the_leader_with_307():
    with LocalCluster(3) as cluster:
        leader = cluster.wait_for_leader()
        follower = next(n for n in cluster.ids if n != leader)
        for method, path, body in (("PUT", "/kv/a", {"value": 1}), ("GET", "/kv/a?x=1", None),
                                   ("POST", "/kv/a/cas", {"expected": 1, "value": 2}),
                                   ("POST", "/kv/l/append", {"value": 1}), ("DELETE", "/kv/a", None)):
            code, resp, headers = cluster.request(follower, method, path, body)
            assert code == 307, (method, path, code, resp)
            assert resp == {"error": "not_leader", "leader": leader, "leader_url": cluster.url(leader)}
            assert headers["location"] == cluster.url(leader) + path
        # nothing was appended by the redirected write
        assert cluster.request(leader, "GET", "/kv/a")[0] == 404


def test_without_a_leader_requests_get_503_no_leader():
    with LocalCluster(3) as cluster:
        # Only one node of three runs: it can never win an election.
        for node in cluster.ids[1:]:
            cluster.kill(node)
        lonely = cluster.ids[0]
        cluster.wait_until(lambda: cluster.status(lonely), what="the node answers")
        time.sleep(0.5)
        assert cluster.status(lonely)["leader"] is None
        assert cluster.request(lonely, "PUT", "/kv/a", {"value": 1})[:2] == (503, {"error": "no_leader"})
        assert cluster.request(lonely, "GET", "/kv/a")[:2] == (503, {"error": "no_leader"})
