"""The soak (bench/bench_raft.py --soak) writes over a bounded key space for its whole run, so the
node's memory it samples measures the node and not a state machine that grows by a key space a
chunk; the node's /status reports the size of its state (kv_keys, kv_sessions) so the bound can
be checked."""

import os
import shutil
import sys

import pytest

from raftnode.localcluster import LocalCluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_raft  # noqa: E402


@pytest.mark.timeout(60)
def test_status_reports_the_number_of_keys_and_sessions_on_every_replica():
    with LocalCluster(3) as cluster:
        cluster.write("/kv/a", {"value": 1})
        cluster.write("/kv/b", {"value": 2, "client_id": "c1", "seq": 1})
        cluster.write("/kv/c", {"value": 3, "client_id": "c2", "seq": 1})
        cluster.write("/kv/c", {"value": 4, "client_id": "c2", "seq": 2})  # same key, same session
        leader = cluster.wait_for_leader()
        assert cluster.request(leader, "DELETE", "/kv/a")[0] == 200
        target = cluster.status(leader)["commit_index"]
        cluster.wait_until(lambda: all((s := cluster.status(n)) and s["last_applied"] >= target
                                       for n in cluster.ids), what="every replica applied the writes")
        for node in cluster.ids:
            status = cluster.status(node)
            assert (node, status["kv_keys"], status["kv_sessions"]) == (node, 2, 2)


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("wrk") is None, reason="the soak's load generator wrk is not installed")
def test_every_soak_chunk_writes_the_same_keys_so_the_state_stays_bounded():
    keys = 10
    soak = bench_raft.bench_soak(seconds=3, clients=2, keys=keys, snapshot_every=200, interval=1)
    samples = soak["samples"]
    # Valid only if several chunks each went round the key space (a key space per chunk would
    # then have held keys x chunks).
    assert len(samples) >= 2, samples
    assert samples[0]["acked_writes"] > 2 * keys and samples[-1]["acked_writes"] > len(samples) * 2 * keys, samples
    for sample in samples:
        assert sample["kv_keys"] and max(sample["kv_keys"].values()) <= keys, sample
    assert max(samples[-1]["kv_keys"].values()) == keys, "every key of the space was written"
