"""Link faults and one-way partitions for local processes: measured from inside the nodes'
cgroups (where the rules see a process as the node), scoped to the nodes' cgroups and
addresses (never loopback or the host as a whole), and gone after heal.

Stand-in nodes: a LocalDB's addresses and cgroups without node processes, probes in their place.
"""

import os
import subprocess

import pytest

from chaos.interfaces import Node
from chaos.net import NetError, one_way
from chaos.net.delay import records
from chaos.net.iptables import CgroupNet
from chaos.net.links import LinkFault, both_ways
from systems.raftnode.db import RaftnodeLocal as LocalDB
from tests.netprobe import Probes

pytestmark = [pytest.mark.root, pytest.mark.timeout(120),
              pytest.mark.skipif(os.geteuid() != 0, reason="link faults of the local provisioner need root")]


def _address(slot: int) -> str:
    return f"127.{100 + os.getpid() % 100}.{slot}.11"


@pytest.fixture(scope="module")
def stand_ins():
    db = LocalDB(f"tlink-local-{os.getpid()}", nodes=3, base_address=_address(30))
    db.nodes = [Node(f"n{i + 1}", "", str(db.base_address + i)) for i in range(3)]
    net = CgroupNet(db.nodes, db.chain, db._cgroup_rel)
    try:
        net.install()
        if db.cgroup_root:
            for node in db.nodes:
                os.makedirs(os.path.join(db.cgroup_root, node.id), exist_ok=True)
        yield db, net, Probes.local(db)
    finally:
        net.close()
        db.teardown()
    listing = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
    assert db.chain not in listing  # chain, jump and conntrack rule: all gone


@pytest.fixture
def local(stand_ins):
    db, net, probe = stand_ins
    yield db, net, probe
    net.heal()


def _delay(net, pairs, delay, jitter=0.0):
    return net.shape([LinkFault(s, r, delay_ms=delay, jitter_ms=jitter) for s, r in both_ways(pairs)])


def test_a_delayed_link_adds_its_delay_both_ways_and_no_other_link_is_touched(local):
    db, net, probe = local
    n1, n2, n3 = db.nodes
    assert probe.rtt(n1, n2, 41001)["median_ms"] < 10
    _delay(net, [("n1", "n2")], 60)
    slow = probe.rtt(n1, n2, 41002)
    assert 115 <= slow["median_ms"] <= 160, slow   # 2 x 60 ms: each direction is delayed
    assert probe.rtt(n2, n3, 41003)["median_ms"] < 10   # n2-n3 is not
    # host safety: every rule names a node's cgroup (or address) and a node's address
    for rule in net.rules():
        assert (f"-d {n1.address}/32" in rule or f"-d {n2.address}/32" in rule) and "-i lo" not in rule
        assert "--path" in rule or "-s 127." in rule
    net.heal()
    assert net.rules() == [] and not [r for r in records() if r["label"] == db.chain]
    assert probe.rtt(n1, n2, 41004)["median_ms"] < 10


def test_lost_packets_match_the_asked_rate(local):
    db, net, probe = local
    n1, n2, _ = db.nodes
    net.shape([LinkFault("n2", "n1", loss=0.25)])
    delivered = probe.delivered(n2, n1, 41011, count=2000)
    assert 0.69 <= delivered <= 0.81, delivered  # 75 % +- 3 sigma of 2000 draws
    assert probe.delivered(n1, n2, 41012, count=500) == 1.0  # the other direction is whole
    net.heal()
    assert probe.delivered(n2, n1, 41013, count=500) == 1.0


def test_a_one_way_grudge_lets_the_deaf_nodes_own_connections_work(local):
    db, net, probe = local
    n1, n2, _ = db.nodes
    net.drop(one_way(["n1"], ["n2"], ["n1", "n2", "n3"]))  # n1 no longer hears n2
    # n1's connection to n2 works both ways (n2's answers are replies on it) ...
    assert probe.rtt(n1, n2, 41021, count=5)["median_ms"] < 50
    # ... while nothing n2 starts reaches n1: not a connection, not a datagram
    with pytest.raises(AssertionError, match="probe rtt on n2 failed"):
        probe.rtt(n2, n1, 41022, count=1, timeout=2)
    assert probe.delivered(n2, n1, 41023, count=200) == 0.0
    net.drop({})
    assert probe.rtt(n2, n1, 41024, count=5)["median_ms"] < 50


def test_bandwidth_caps_are_refused_here_with_the_reason(local):
    db, net, _ = local
    with pytest.raises(NetError, match="share the host's loopback"):
        net.shape([LinkFault("n1", "n2", rate_kbit=512)])
    assert "loopback" in db.unavailable()["bandwidth"]
    assert "bandwidth" not in db.capabilities()
