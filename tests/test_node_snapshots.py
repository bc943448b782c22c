"""Log compaction on real nodes: snapshots every N entries, restart from snapshot + log, and a
follower that missed compacted entries catches up through InstallSnapshot."""

import glob
import os

from raftnode.localcluster import LocalCluster


def test_nodes_snapshot_compact_and_restart_from_the_snapshot():
    with LocalCluster(3, extra_args=("--snapshot-every", "40")) as cluster:
        for i in range(120):
            cluster.write(f"/kv/k{i % 7}", {"value": i})
        cluster.write("/kv/list/append", {"value": "a", "client_id": "c", "seq": 1})
        leader = cluster.wait_for_leader()
        status = cluster.wait_until(lambda: (s := cluster.status(leader)) and s["snapshot_index"] >= 80 and s,
                                    what="a snapshot")
        assert status["snapshot_index"] <= status["last_applied"]
        assert os.path.exists(os.path.join(cluster.data_dir(leader), "snapshot.bin"))
        for node in cluster.ids:
            cluster.kill(node)
        cluster.start_all()
        leader = cluster.wait_for_leader()
        for k in range(7):
            last = max(i for i in range(120) if i % 7 == k)
            assert cluster.request(leader, "GET", f"/kv/k{k}")[:2] == (200, {"value": last})
        # the session survived the snapshot: the retry answers the original result
        assert cluster.write("/kv/list/append", {"value": "a", "client_id": "c", "seq": 1}) == (200, {"value": ["a"]})


def test_a_follower_behind_the_snapshot_catches_up_by_install_snapshot():
    with LocalCluster(3, extra_args=("--snapshot-every", "30")) as cluster:
        leader = cluster.wait_for_leader()
        lagging = next(n for n in cluster.ids if n != leader)
        cluster.kill(lagging)
        for i in range(150):
            cluster.write(f"/kv/k{i % 5}", {"value": i})
        assert cluster.status(leader)["snapshot_index"] > 0
        cluster.start(lagging)
        target = cluster.status(leader)["commit_index"]
        status = cluster.wait_until(lambda: (s := cluster.status(lagging)) and s["last_applied"] >= target and s,
                                    what="the lagging follower catching up")
        assert status["snapshot_index"] > 0
        assert any(e["event"] == "snapshot_installed" for e in cluster.log_events(lagging))
        # it now serves as leader with the right state
        cluster.kill(leader)
        new = cluster.wait_for_leader(among=[n for n in cluster.ids if n != leader])
        for k in range(5):
            assert cluster.request(new, "GET", f"/kv/k{k}")[:2] == (200, {"value": 145 + k})
        assert len(glob.glob(os.path.join(cluster.data_dir(lagging), "log-*.seg"))) >= 1
