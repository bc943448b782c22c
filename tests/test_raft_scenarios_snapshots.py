"""Log compaction and InstallSnapshot (6.5840 lab 3D style)."""

import pytest

from raftnode.sim.lab import Lab
from raftnode.types import SNAPSHOT


def _snapshot_lab(**kwargs):
    return Lab(3, seed=kwargs.pop("seed", 4), snapshot_every=10,
               config_overrides={"snapshot_chunk_bytes": 64}, **kwargs)


def test_the_log_is_compacted_every_n_entries_and_stays_bounded():
    lab = _snapshot_lab()
    for _ in range(60):
        lab.one(lab.token(), 3)
    for i in lab.ids:
        core = lab.nodes[i].core
        assert core.snapshot_index >= 50
        assert len(core.log) <= 12
        storage = lab.nodes[i].storage   # what the node's files hold
        assert storage.snapshot_index >= 50 and storage.last_index - storage.snapshot_index <= 12


@pytest.mark.parametrize("fault", ["disconnect", "crash"])
def test_a_follower_that_missed_compacted_entries_gets_a_snapshot_in_chunks(fault):
    lab = _snapshot_lab()
    lab.one(lab.token(), 3)
    leader = lab.check_one_leader()
    victim = next(i for i in lab.ids if i != leader)
    (lab.disconnect if fault == "disconnect" else lab.crash)(victim)
    for _ in range(40):
        lab.one(lab.token(), 2)
    (lab.connect if fault == "disconnect" else lab.start)(victim)
    index = lab.one(lab.token(), 3)
    assert lab.nodes[leader].sent.get(SNAPSHOT, 0) > 1, "expected a chunked InstallSnapshot"
    assert lab.stats.snapshot_installs >= 1
    assert lab.nodes[victim].kv.data == lab.nodes[leader].kv.data
    assert lab.nodes[victim].kv.last_applied == index


def test_snapshot_install_on_an_unreliable_network():
    lab = _snapshot_lab(seed=6, reliable=False)
    for _round in range(4):
        leader = lab.check_one_leader(timeout=10)
        victim = next(i for i in lab.ids if i != leader)
        lab.disconnect(victim)
        for _ in range(25):
            lab.one(lab.token(), 2, timeout=20)
        lab.connect(victim)
    lab.set_unreliable(False)
    lab.one(lab.token(), 3)
    assert lab.stats.snapshot_installs >= 1
    lab.checker.final()


def test_snapshots_survive_all_servers_crashing():
    lab = _snapshot_lab(seed=7)
    for _round in range(5):
        for _ in range(15):
            lab.one(lab.token(), 3)
        for i in lab.ids:
            lab.crash(i)
        for i in lab.ids:
            lab.start(i)
            assert lab.nodes[i].core.snapshot_index > 0
            assert lab.nodes[i].kv.last_applied == lab.nodes[i].core.snapshot_index
    index = lab.one(lab.token(), 3)
    assert all(lab.nodes[i].kv.last_applied == index for i in lab.ids)
