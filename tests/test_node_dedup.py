"""A write retried with the same (client_id, seq) is applied once and answers its original result,
also when the retry goes to a new leader after the old one died."""

from raftnode.localcluster import LocalCluster


def test_a_retried_append_is_applied_once_and_a_lower_seq_is_stale():
    with LocalCluster(3) as cluster:
        leader = cluster.wait_for_leader()
        first = cluster.request(leader, "POST", "/kv/s/append", {"value": "a", "client_id": "c1", "seq": 1})
        assert first[:2] == (200, {"value": ["a"]})
        # another client appends in between
        assert cluster.request(leader, "POST", "/kv/s/append", {"value": "b", "client_id": "c2", "seq": 1})[0] == 200
        retry = cluster.request(leader, "POST", "/kv/s/append", {"value": "a", "client_id": "c1", "seq": 1})
        assert retry[:2] == (200, {"value": ["a"]}), "the original answer, not a second append"
        assert cluster.request(leader, "GET", "/kv/s")[:2] == (200, {"value": ["a", "b"]})
        stale = cluster.request(leader, "POST", "/kv/s/append", {"value": "z", "client_id": "c1", "seq": 0})
        assert stale[0] == 400 and stale[1]["error"] == "stale_seq"
        nxt = cluster.request(leader, "POST", "/kv/s/append", {"value": "c", "client_id": "c1", "seq": 2})
        assert nxt[:2] == (200, {"value": ["a", "b", "c"]})


def test_deduplication_survives_a_leader_change():
    with LocalCluster(3) as cluster:
        leader = cluster.wait_for_leader()
        assert cluster.request(leader, "POST", "/kv/r/cas", {"expected": None, "value": 1,
                                                             "client_id": "c", "seq": 5})[:2] == (200, {"ok": True})
        cluster.kill(leader)
        survivors = [n for n in cluster.ids if n != leader]
        new_leader = cluster.wait_for_leader(among=survivors)
        assert new_leader != leader
        # The retry would now fail (value is 1, not null) if it were applied again.
        again = cluster.write("/kv/r/cas", {"expected": None, "value": 1, "client_id": "c", "seq": 5})
        assert again == (200, {"ok": True})
        assert cluster.request(new_leader, "GET", "/kv/r")[:2] == (200, {"value": 1})
