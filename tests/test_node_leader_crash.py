"""SIGKILL of the leader: a new leader takes over, every acknowledged write survives, and the
killed node rejoins from its own disk and catches up."""

from raftnode.localcluster import LocalCluster


def test_acknowledged_writes_survive_sigkill_of_the_leader_and_its_restart():
    with LocalCluster(3) as cluster:
        acked = {}
        for i in range(30):
            cluster.write(f"/kv/k{i}", {"value": i})
            acked[f"k{i}"] = i
        old = cluster.wait_for_leader()
        cluster.kill(old)  # SIGKILL
        survivors = [n for n in cluster.ids if n != old]
        new = cluster.wait_for_leader(among=survivors)
        assert new != old
        for i in range(30, 40):
            cluster.write(f"/kv/k{i}", {"value": i})
            acked[f"k{i}"] = i
        for key, value in acked.items():
            assert cluster.request(new, "GET", f"/kv/{key}")[:2] == (200, {"value": value}), key
        cluster.start(old)
        target = cluster.status(new)["commit_index"]
        caught_up = cluster.wait_until(lambda: (s := cluster.status(old)) and s["last_applied"] >= target and s,
                                       what=f"{old} catching up to {target}")
        assert caught_up["leader"] == new and caught_up["term"] >= cluster.status(new)["term"] - 1


def test_a_whole_cluster_killed_at_once_restarts_with_every_acknowledged_write():
    with LocalCluster(3) as cluster:
        for i in range(20):
            cluster.write(f"/kv/w{i}", {"value": i})
        cluster.write("/kv/list/append", {"value": "x"})
        for node in cluster.ids:
            cluster.kill(node)
        cluster.start_all()
        leader = cluster.wait_for_leader()
        for i in range(20):
            assert cluster.request(leader, "GET", f"/kv/w{i}")[:2] == (200, {"value": i})
        assert cluster.request(leader, "GET", "/kv/list")[:2] == (200, {"value": ["x"]})


def test_the_same_holds_with_fsync_on_the_event_loop_instead_of_the_storage_thread():
    with LocalCluster(3, extra_args=("--no-storage-thread", "--snapshot-every", "25")) as cluster:
        for i in range(60):
            cluster.write(f"/kv/k{i % 9}", {"value": i})
        old = cluster.wait_for_leader()
        cluster.kill(old)
        new = cluster.wait_for_leader(among=[n for n in cluster.ids if n != old])
        for k in range(9):
            last = max(i for i in range(60) if i % 9 == k)
            assert cluster.request(new, "GET", f"/kv/k{k}")[:2] == (200, {"value": last})
        assert cluster.status(new)["snapshot_index"] > 0
