"""The faults themselves, on a real 3-node Docker cluster: each one really happens, and heals.

One cluster serves the whole module (setting one up costs a few seconds); every test leaves it
healed, and the fixture checks that a leader is back before the next test. (Each clock mode is
checked from inside the nodes' environments in test_faults_clock.py.)
"""

import json
import os
import time
import urllib.request

import pytest

from chaos.net import symmetric
from systems.raftnode.db import RaftnodeDocker as DockerDB
from systems.raftnode.db import get_status, wait_for_leader
from tests.clock_probe import skews

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

SUBNET = "10.77.211.0/24"


@pytest.fixture(scope="module")
def cluster(node_image):
    db = DockerDB(f"tfaults-{os.getpid()}", 3, subnet=SUBNET, image=node_image)
    try:
        db.setup()
        yield db
    finally:
        db.teardown()


@pytest.fixture
def db(cluster):
    yield cluster
    cluster.net().heal()
    for node in cluster.nodes:
        cluster.resume(node)
        cluster.start(node)
        cluster.reset_clock(node)
    wait_for_leader(cluster.nodes, timeout=30)


def can_connect(db, node, address, port, timeout=1.0) -> bool:
    """A TCP connect from inside the node's network namespace."""
    script = ("import socket,sys\n"
              "try:\n"
              f"    socket.create_connection(({address!r}, {port}), timeout={timeout}).close(); print('ok')\n"
              "except OSError as e:\n"
              "    print('fail', e)\n")
    return db.exec(node, ["python3", "-c", script]).startswith("ok")


def http_json(method, url, body=None, timeout=5.0):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.loads(resp.read())


def answers_soon(node, timeout=15.0) -> bool:
    """The node's /status answers within timeout (a restarted process needs a moment to listen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get_status(node.client_url, timeout=1.0) is not None:
            return True
        time.sleep(0.1)
    return False


def cut(db, *pairs):
    """A symmetric partition of the given node pairs, through the DB's network layer."""
    db.net().drop(symmetric(pairs, [n.id for n in db.nodes]))


def rules(db, node):
    return db.net().rules(node)


def leader_node(db):
    leader = wait_for_leader(db.nodes, timeout=30)
    return db.node(leader)


def test_a_partitioned_node_cannot_reach_its_peers_and_heals(db):
    n1, n2, n3 = db.nodes
    assert can_connect(db, n1, n2.address, n2.peer_port)
    cut(db, ("n1", "n2"), ("n1", "n3"))
    assert not can_connect(db, n1, n2.address, n2.peer_port)
    assert not can_connect(db, n1, n3.address, n3.client_port)
    assert not can_connect(db, n2, n1.address, n1.peer_port)   # both directions
    assert can_connect(db, n2, n3.address, n3.peer_port)       # the majority still talks
    assert sorted(rules(db, n1)) == [f"-A SPLITBRAIN -s {n2.address}/32 -j DROP",
                                     f"-A SPLITBRAIN -s {n3.address}/32 -j DROP"]  # n1 hears neither
    db.kill(n1)                                                # a process restart keeps the netns
    db.start(n1)
    assert len(rules(db, n1)) == 2
    assert not can_connect(db, n1, n2.address, n2.peer_port)
    db.net().heal()
    assert rules(db, n1) == []
    assert can_connect(db, n1, n2.address, n2.peer_port)


def test_a_restarted_container_gets_its_partition_rules_back(db):
    n1, n2, n3 = db.nodes
    cut(db, ("n1", "n3"), ("n2", "n3"))
    container = db._container(n3)
    container.restart(timeout=1)         # a fresh network namespace: no rules, no node process
    assert rules(db, n3) == []
    db.start(n3)
    assert len(rules(db, n3)) == 2
    assert not can_connect(db, n3, n1.address, n1.peer_port)
    assert db.is_running(n3)
    db.net().heal()
    assert can_connect(db, n3, n1.address, n1.peer_port)


def test_a_paused_node_really_stops_answering_and_resumes(db):
    node = db.nodes[1]
    assert answers_soon(node)
    db.pause(node)
    assert get_status(node.client_url, timeout=1.0) is None
    assert db.is_running(node)  # stopped, not dead
    db.resume(node)
    assert answers_soon(node)


def test_a_killed_node_restarts_with_its_data(db):
    deadline = time.monotonic() + 20
    while True:  # a leader change between asking and writing answers 307/503: ask again
        leader = leader_node(db)
        try:
            http_json("PUT", f"{leader.client_url}/kv/durable", {"value": 41})
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    for node in db.nodes:                 # the whole cluster loses its memory, not its disks
        db.kill(node)
    assert all(get_status(n.client_url, timeout=0.5) is None for n in db.nodes)
    assert not any(db.is_running(n) for n in db.nodes)
    for node in db.nodes:
        db.start(node)
    leader = leader_node(db)
    deadline = time.monotonic() + 20
    while True:
        try:
            assert http_json("GET", f"{leader.client_url}/kv/durable") == {"value": 41}
            break
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_nemesis_isolates_the_leader_and_a_new_one_is_elected(db):
    import random

    from chaos.history import Op
    from chaos.nemesis import build_nemesis

    nemesis = build_nemesis(["partition"], db, db.nodes, None, random.Random(1))
    old = wait_for_leader(db.nodes, timeout=10)
    done = nemesis.invoke(Op(process="nemesis", type="invoke", f="partition", value={"topology": "isolate-leader"}))
    assert done.value["groups"][0] == [old]
    others = [n for n in db.nodes if n.id != old]
    new = wait_for_leader(others, timeout=20)
    assert new != old
    nemesis.heal_all()
    assert rules(db, db.node(old)) == []


def test_the_nemesis_kills_and_restarts_pauses_and_resumes_and_skews_through_the_history_ops(db):
    import random

    from chaos.history import Op
    from chaos.nemesis import build_nemesis

    def op(f, value=None):
        return nemesis.invoke(Op(process="nemesis", type="invoke", f=f, value=value)).value

    wait_for_leader(db.nodes, timeout=10)
    nemesis = build_nemesis(["kill", "pause", "clock"], db, db.nodes, None, random.Random(3))
    killed = op("kill", {"target": "leader"})["nodes"]
    assert len(killed) == 1 and not db.is_running(db.node(killed[0]))
    assert op("start", {"target": "killed"}) == {"nodes": killed}
    assert answers_soon(db.node(killed[0]))

    paused = op("pause", {"target": "minority"})["nodes"]
    assert len(paused) == 1 and get_status(db.node(paused[0]).client_url, timeout=0.5) is None
    assert op("resume") == {"nodes": paused}

    skewed = op("clock-skew", {"target": ["n2"], "mode": "bump", "delta": 60})
    assert skewed == {"nodes": {"n2": "+60 x1"}}
    assert abs(skews(db, db.node("n2"))[0] - 60) < 0.01   # as a process beside the node sees it
    assert op("clock-reset") == {"nodes": ["n2"]}
    mono, wall = skews(db, db.node("n2"))
    assert abs(wall) < 0.01 and abs(mono - 60) < 0.01   # the monotonic clock never goes back at a reset
