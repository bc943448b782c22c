"""The peer port under fuzzing (issue 9): garbage before and after the handshake, and frames
authenticated as a member with extreme fields (terms 0 and 2^63-1 and beyond, indexes past the
log, empty and huge entries, snapshot chunks at odd offsets, a wrong src). After each batch every
node is alive and the cluster serves a write and a linearizable read. (See tests/node_fuzz.py
for what a member is trusted with and therefore not sent.)"""

import random

import pytest

import node_fuzz
from raftnode.localcluster import LocalCluster


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(3, spare_members=1) as c:
        c.wait_for_leader()
        yield c


@pytest.mark.timeout(150)
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_hostile_peer_input_never_stops_a_node_and_the_cluster_keeps_serving(cluster, seed):
    stats = node_fuzz.FuzzStats()
    node_fuzz.peer_batch(cluster, random.Random(seed), count=80, stats=stats)
    print(seed, stats.summary())
    assert stats.peer_frames > 0
    node_fuzz.check_cluster_serves(cluster, f"peer batch {seed}")
    garbage = [e for n in cluster.ids for e in cluster.log_events(n) if e["event"] == "peer_garbage"]
    assert garbage  # the bad half of the input was recognised as such
