"""A node killed in the middle of a log append restarts: the torn tail is detected, truncated
(logged as a recovery event), and the node catches up from the leader."""

import glob
import os

from raftnode.localcluster import LocalCluster
from raftnode.storage import encode_batch
from raftnode.types import COMMAND, Entry


def test_a_torn_record_at_the_end_of_the_log_is_truncated_and_the_node_catches_up():
    with LocalCluster(3) as cluster:
        for i in range(10):
            cluster.write(f"/kv/k{i}", {"value": i})
        leader = cluster.wait_for_leader()
        victim = next(n for n in cluster.ids if n != leader)
        cluster.wait_until(lambda: cluster.status(victim)["last_applied"] >= 11, what="replication")
        cluster.kill(victim)
        segment = sorted(glob.glob(os.path.join(cluster.data_dir(victim), "log-*.seg")))[-1]
        size_before = os.path.getsize(segment)
        # Half of a record that was being written when the process died.
        record = encode_batch(None, [Entry(999, 99, COMMAND, {"op": "put", "key": "torn", "value": "x" * 100})])
        with open(segment, "ab") as f:
            f.write(record[:len(record) // 2])
        for i in range(10, 15):
            cluster.write(f"/kv/k{i}", {"value": i})
        cluster.start(victim)
        target = cluster.status(leader)["commit_index"]
        cluster.wait_until(lambda: (s := cluster.status(victim)) and s["last_applied"] >= target,
                           what="the restarted node catching up")
        recovery = [e for e in cluster.log_events(victim) if e["event"] == "recovery"]
        assert len(recovery) == 1 and "torn tail" in recovery[0]["detail"] and segment in recovery[0]["detail"]
        assert os.path.getsize(segment) >= size_before  # truncated back, then appended to
        # The torn entry (index 999, term 99) was never applied anywhere: the victim agrees with
        # the leader on every key once it becomes the leader itself.
        cluster.kill(leader)
        new = cluster.wait_for_leader(among=[n for n in cluster.ids if n != leader])
        for i in range(15):
            assert cluster.request(new, "GET", f"/kv/k{i}")[:2] == (200, {"value": i})
        assert cluster.request(new, "GET", "/kv/torn")[0] == 404
