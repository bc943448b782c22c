"""Packet faults and one-way partitions on a real 3-node Docker cluster, each measured from inside
the nodes' network namespaces (probes entered with nsenter from the host) against what was
asked, and gone after the heal.

One cluster serves the module; every test leaves it healed. Its nodes run without check-quorum,
so that a leader that hears nobody stays leader and keeps sending (the one-way test watches
its AppendEntries arrive).
"""

import os
import random
import signal
import time

import pytest

from chaos.history import Op
from chaos.nemesis import build_nemesis
from chaos.net.delay import records
from systems.raftnode.db import RaftnodeDocker as DockerDB
from systems.raftnode.db import get_status, wait_for_leader
from tests.netprobe import Probes

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

SUBNET = "10.77.212.0/24"
FAULTS = ["partition", "loss", "delay", "bandwidth"]


@pytest.fixture(scope="module")
def cluster(node_image):
    db = DockerDB(f"tlinks-{os.getpid()}", 3, {"check-quorum": "false"}, subnet=SUBNET, image=node_image)
    try:
        db.setup()
        yield db
    finally:
        db.teardown()
    assert not [r for r in records() if r["owner"] == os.getpid()]  # teardown ended every program


@pytest.fixture
def db(cluster):
    nemesis = build_nemesis(FAULTS, cluster, cluster.nodes, None, random.Random(5))
    cluster.test_nemesis = nemesis
    yield cluster
    nemesis.heal_all()
    for node in cluster.nodes:
        cluster.start(node)
    assert all(cluster.net().rules(n) == [] for n in cluster.nodes)
    wait_for_leader(cluster.nodes, timeout=30)


def op(db, f, value=None):
    return db.test_nemesis.invoke(Op(process="nemesis", type="invoke", f=f, value=value)).value


def programs(db):
    """The delay programs this run has, by node."""
    return {r["label"]: r for r in records() if r["owner"] == os.getpid() and r["label"] in {n.id for n in db.nodes}}


def qdisc(db, node):
    return db.exec(node, ["tc", "qdisc", "show", "dev", "eth0"])


def test_a_slowed_node_answers_its_peers_late_by_the_asked_delay_and_heals(db):
    n1, n2, n3 = db.nodes
    probe = Probes.docker(db)
    assert probe.rtt(n1, n2, 42001)["median_ms"] < 20
    done = op(db, "slow", {"target": ["n1"], "delay_ms": 80})
    assert done["nodes"] == ["n1"] and ["n1", "n2"] in done["links"] and ["n3", "n1"] in done["links"]
    slow = probe.rtt(n1, n2, 42002)
    assert 155 <= slow["median_ms"] <= 200, slow        # 80 ms each way
    assert probe.rtt(n2, n3, 42003)["median_ms"] < 20   # a link without n1 is untouched
    assert sorted(programs(db)) == ["n1", "n2", "n3"]   # each receiver holds its own packets
    assert any("NFQUEUE" in rule and "--queue-bypass" in rule for rule in db.net().rules(n1))
    assert op(db, "fast")["healed"] == "delay"
    assert programs(db) == {} and db.net().rules(n1) == []
    assert probe.rtt(n1, n2, 42004)["median_ms"] < 20


def test_jitter_spreads_the_round_trips_around_the_delay(db):
    n1, n2, _ = db.nodes
    probe = Probes.docker(db)
    op(db, "slow", {"links": [["n1", "n2"]], "delay_ms": 60, "jitter_ms": 40})
    rtt = probe.rtt(n1, n2, 42011, count=40)
    assert 95 <= rtt["median_ms"] <= 150, rtt          # 2 x 60 ms on average
    assert rtt["p90_ms"] - rtt["p10_ms"] >= 30, rtt     # each way anywhere in 20..100 ms
    assert rtt["min_ms"] >= 35, rtt


def test_a_killed_delay_program_lets_traffic_through_instead_of_dropping_it(db):
    n1, n2, _ = db.nodes
    probe = Probes.docker(db)
    op(db, "slow", {"target": ["n1"], "delay_ms": 150})
    assert probe.rtt(n1, n2, 42021, count=5)["median_ms"] >= 290
    for record in programs(db).values():
        os.kill(record["pid"], signal.SIGKILL)          # mid-fault
    time.sleep(0.2)
    after = probe.rtt(n1, n2, 42022, count=10)
    assert after["median_ms"] < 20, after               # --queue-bypass: no program, no delay, no loss
    assert probe.delivered(n2, n1, 42023, count=1000) == 1.0


def test_a_delay_loses_nothing_even_when_the_program_cannot_keep_up(db):
    n1, n2, _ = db.nodes
    probe = Probes.docker(db)
    op(db, "slow", {"target": ["n1"], "delay_ms": 50, "jitter_ms": 25})
    assert probe.delivered(n2, n1, 42031, count=3000) == 1.0
    pid = programs(db)["n1"]["pid"]
    os.kill(pid, signal.SIGSTOP)                        # it reads nothing: the kernel's queue fills
    try:
        # more packets than the kernel queue holds (8192): fail-open accepts the rest at once,
        # and what it holds goes on once the program reads again
        assert probe.delivered(n2, n1, 42032, count=12000, gap_s=0.00005,
                               sent=lambda: os.kill(pid, signal.SIGCONT)) == 1.0
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_lossy_node_loses_the_asked_share_of_packets(db):
    n1, n2, n3 = db.nodes
    probe = Probes.docker(db)
    done = op(db, "lossy", {"target": ["n1"], "loss": 0.3})
    assert done["loss"] == 0.3
    delivered = probe.delivered(n2, n1, 42041, count=2000)
    assert 0.63 <= delivered <= 0.77, delivered          # 70 % +- 3 sigma
    assert probe.delivered(n2, n3, 42042, count=500) == 1.0
    assert op(db, "lossless")["healed"] == "loss"
    assert probe.delivered(n2, n1, 42043, count=500) == 1.0


def test_a_throttled_link_carries_the_asked_bandwidth_and_no_more(db):
    n1, n2, n3 = db.nodes
    probe = Probes.docker(db)
    op(db, "throttle", {"links": [["n1", "n2"]], "rate_kbit": 2048})
    assert "htb" in qdisc(db, n1) and "htb" in qdisc(db, n2)
    capped = probe.throughput(n1, n2, 42051)
    assert 0.8 * 2048 <= capped <= 1.05 * 2048, capped
    assert probe.throughput(n1, n3, 42052, seconds=2.0) > 10 * 2048   # n1 -> n3 is not capped
    op(db, "unthrottle")
    assert "htb" not in qdisc(db, n1) and "htb" not in qdisc(db, n2)


def test_a_restarted_container_gets_its_link_faults_back(db):
    _, n2, n3 = db.nodes
    probe = Probes.docker(db)
    op(db, "slow", {"target": ["n3"], "delay_ms": 70})
    op(db, "throttle", {"target": ["n3"], "rate_kbit": 4096})
    old = programs(db)["n3"]["pid"]
    db._container(n3).restart(timeout=1)                 # a fresh namespace: no rules, no qdisc
    db.start(n3)
    assert programs(db)["n3"]["pid"] != old and "htb" in qdisc(db, n3)
    assert 130 <= probe.rtt(n3, n2, 42061)["median_ms"] <= 180


def _received(status, src):
    return status.get("peer_messages_received", {}).get(src, {})


def test_a_deaf_leader_still_reaches_its_followers_and_hears_none_of_them(db):
    leader = db.node(wait_for_leader(db.nodes, timeout=30))
    follower = next(n for n in db.nodes if n.id != leader.id)
    done = op(db, "partition", {"topology": "leader-deaf"})
    assert done["one_way"] == sorted([n.id, leader.id] for n in db.nodes if n.id != leader.id)
    time.sleep(1.0)  # messages in flight when the rules went in have landed
    heard, sent = get_status(leader.client_url), get_status(follower.client_url)
    time.sleep(2.0)
    heard2, sent2 = get_status(leader.client_url), get_status(follower.client_url)
    appends = _received(sent2, leader.id).get("AppendEntries", 0) - _received(sent, leader.id).get("AppendEntries", 0)
    assert appends >= 20, (sent, sent2)                  # heartbeats every 50 ms still arrive
    assert _received(heard2, follower.id) == _received(heard, follower.id)  # and not one answer
    assert heard2["role"] == "leader" and sent2["leader"] == leader.id


def test_a_mute_leader_hears_the_new_leader_that_its_followers_elected(db):
    old = db.node(wait_for_leader(db.nodes, timeout=30))
    op(db, "partition", {"topology": "leader-mute"})
    others = [n for n in db.nodes if n.id != old.id]
    new = wait_for_leader(others, timeout=20)
    assert new != old.id
    deadline = time.monotonic() + 10
    while (status := get_status(old.client_url)) and status["leader"] != new and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status["role"] == "follower" and status["leader"] == new   # it heard the new leader
    before = _received(get_status(db.node(new).client_url), old.id)
    time.sleep(1.0)
    assert _received(get_status(db.node(new).client_url), old.id) == before  # its answers never arrive
