"""The local provisioner: nodes as processes on 127.0.0.x, with kill, pause, clock and (as root)
partition faults, and nothing left behind."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from chaos.config import RunConfig
from chaos.interfaces import Node
from chaos.net import symmetric
from chaos.net.iptables import CgroupNet
from chaos.provision import make_db
from chaos.provision import clockshim
from chaos.provision.local import STATE_DIR, read_states
from systems.raftnode.db import RaftnodeLocal as LocalDB
from systems.raftnode.db import get_status, wait_for_leader
from tests.clock_probe import skews

pytestmark = pytest.mark.timeout(120)


def base_address(slot: int) -> str:
    # distinct per test session and per test, so parallel sessions never share addresses
    return f"127.{100 + os.getpid() % 100}.{slot}.11"


@pytest.fixture(scope="module")
def cluster():
    db = LocalDB(f"tlocal-{os.getpid()}", 3, base_address=base_address(1))
    try:
        db.setup()
        yield db
    finally:
        db.teardown()


def answered_status(node, timeout=15.0) -> dict:
    """The node's /status, waiting (bounded) while a loaded machine or a restart delays it."""
    deadline = time.monotonic() + timeout
    while True:
        status = get_status(node.client_url, timeout=2.0)
        if status is not None or time.monotonic() > deadline:
            assert status is not None, f"{node.id} did not answer /status within {timeout} s"
            return status
        time.sleep(0.1)


def put(url, key, value):
    req = urllib.request.Request(f"{url}/kv/{key}", data=json.dumps({"value": value}).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status


def get(url, key):
    with urllib.request.urlopen(f"{url}/kv/{key}", timeout=5) as resp:
        return json.loads(resp.read())


def test_local_nodes_run_on_their_own_loopback_addresses_and_elect_a_leader(cluster):
    assert [n.address for n in cluster.nodes] == [base_address(1)[:-2] + str(i) for i in (11, 12, 13)]
    leader = wait_for_leader(cluster.nodes)
    deadline = time.monotonic() + 15  # a majority agreed; the last node learns from heartbeats
    while True:
        seen = {(get_status(n.client_url) or {}).get("leader") for n in cluster.nodes}
        if seen == {leader} or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert seen == {leader}
    assert {"kill", "pause", "leader", "status", "logs"} <= cluster.capabilities()
    assert os.path.exists(cluster.state_file)


def test_a_killed_local_node_restarts_with_its_data(cluster):
    deadline = time.monotonic() + 20
    while True:  # a leader change between asking and writing answers 307/503: ask again
        leader = cluster.node(wait_for_leader(cluster.nodes))
        try:
            assert put(leader.client_url, "k", 7) == 200
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    for node in cluster.nodes:
        cluster.kill(node)
    assert not any(cluster.is_running(n) for n in cluster.nodes)
    for node in cluster.nodes:
        cluster.start(node)
    leader = cluster.node(wait_for_leader(cluster.nodes))
    deadline = time.monotonic() + 20
    while True:
        try:
            assert get(leader.client_url, "k") == {"value": 7}
            break
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_paused_local_node_stops_answering_until_resumed(cluster):
    node = cluster.nodes[0]
    cluster.pause(node)
    try:
        assert get_status(node.client_url, timeout=0.5) is None
    finally:
        cluster.resume(node)
    assert answered_status(node)


@pytest.mark.skipif(clockshim.unavailable_reason() is not None, reason=str(clockshim.unavailable_reason()))
def test_a_local_nodes_clocks_move_while_it_runs(cluster):
    node = cluster.nodes[1]
    pid = answered_status(node)["pid"]
    cluster.set_skew(node, 300.0)
    try:
        mono, wall = skews(cluster, node, sys.executable)   # a probe under the node's clock file
        assert abs(mono - 300) < 0.01 and abs(wall - 300) < 0.01
    finally:
        cluster.reset_clock(node)
    mono, wall = skews(cluster, node, sys.executable)
    assert abs(wall) < 0.01 and abs(mono - 300) < 0.01   # the monotonic clock never goes back at a reset
    assert answered_status(node)["pid"] == pid


def test_teardown_leaves_no_process_state_file_or_data():
    db = LocalDB(f"tlocal-td-{os.getpid()}", nodes=3, base_address=base_address(2), wait_ready=False)
    db.setup()
    pids = [p.pid for p in db.procs.values()]
    data_root, state_file = db.data_root, db.state_file
    db.teardown()
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert not os.path.exists(data_root) and not os.path.exists(state_file)
    db.teardown()  # idempotent


def test_a_port_in_use_is_a_clear_error():
    address = base_address(3)
    with socket.socket() as busy:
        busy.bind((address, 8000))
        busy.listen()
        db = LocalDB(f"tlocal-busy-{os.getpid()}", nodes=3, base_address=address)
        with pytest.raises(Exception, match=f"{address}:8000 is in use"):
            db.setup()
    assert not os.path.exists(db.state_file)


def test_bad_local_settings_are_refused():
    with pytest.raises(ValueError, match="not an IPv4 address"):
        LocalDB("x", base_address="localhost")
    with pytest.raises(ValueError, match="inside 127.0.0.0/8"):
        LocalDB("x", base_address="10.0.0.1")
    with pytest.raises(ValueError, match="raftnode runs on the provisioners docker, local, ssh, not 'k8s'"):
        make_db(RunConfig(provisioner="k8s"), "x")


def _connects(db, src_node, dst, port) -> bool:
    """A TCP connect as node `src_node` would make it: from inside its cgroup when the
    provisioner uses cgroups, else from a socket bound to its address."""
    script = ("import socket,sys\n"
              "s = socket.socket(); s.settimeout(0.5)\n"
              "if sys.argv[1]: s.bind((sys.argv[1], 0))\n"
              "try:\n"
              "    s.connect((sys.argv[2], int(sys.argv[3]))); print('ok')\n"
              "except OSError: print('fail')\n")
    argv = [sys.executable, "-c", script, "" if db.cgroup_root else src_node.address, dst, str(port)]
    if db.cgroup_root:
        procs = os.path.join(db.cgroup_root, src_node.id, "cgroup.procs")
        argv = ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh"] + argv
    return subprocess.run(argv, capture_output=True, text=True).stdout.strip() == "ok"


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="partitions of the local provisioner need root (iptables)")
def test_local_partition_rules_cut_two_nodes_apart_both_ways_and_heal():
    # Stand-in listeners in place of nodes; connects made the way the provisioner's rules see nodes.
    db = LocalDB(f"tlocal-part-{os.getpid()}", nodes=3, base_address=base_address(4))
    a, b, c = (str(db.base_address + i) for i in range(3))
    db.nodes = n1, n2, n3 = [Node(f"n{i + 1}", f"http://{addr}:8000", addr) for i, addr in enumerate((a, b, c))]
    listeners = []
    try:
        for addr in (a, b, c):
            s = socket.socket()
            s.bind((addr, 0))
            s.listen(8)
            listeners.append(s)
        port = {addr: s.getsockname()[1] for addr, s in zip((a, b, c), listeners, strict=True)}
        net = CgroupNet(db.nodes, db.chain, db._cgroup_rel)
        net.install()
        if db.cgroup_root:
            for node in db.nodes:
                os.makedirs(os.path.join(db.cgroup_root, node.id), exist_ok=True)
        net.drop(symmetric([("n1", "n2")], ["n1", "n2", "n3"]))
        assert len(net.rules()) == 2
        assert not _connects(db, n1, b, port[b]) and not _connects(db, n2, a, port[a])
        assert _connects(db, n1, c, port[c]) and _connects(db, n3, b, port[b])
        net.heal()
        assert net.rules() == [] and _connects(db, n1, b, port[b])
    finally:
        for s in listeners:
            s.close()
        db.teardown()
    listing = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
    assert db.chain not in listing
    assert not db.cgroup_root or not os.path.exists(db.cgroup_root)


def test_local_state_files_name_the_owner_and_the_node_pids(cluster):
    (state,) = [s for s in read_states() if s["run"] == cluster.run_id]
    assert state["splitbrain.owner-pid"] == os.getpid()
    assert sorted(n["pid"] for n in state["nodes"]) == sorted(p.pid for p in cluster.procs.values())
    assert state["_path"].startswith(STATE_DIR)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="partitions of the local provisioner need root (iptables)")
def test_local_partition_support_is_claimed_only_when_it_really_cuts_the_leader_off(cluster):
    # Address rules work only if nodes dial their peers from their own address; setup checks
    # the live sockets and otherwise withdraws "partition" with the reason.
    if "partition" not in cluster.capabilities():
        assert not cluster.cgroup_root and "peer connections leave from" in cluster.partition_note
        return
    old = wait_for_leader(cluster.nodes)
    others = [n for n in cluster.nodes if n.id != old]
    cluster.net().drop(symmetric([(old, n.id) for n in others], [n.id for n in cluster.nodes]))
    try:
        probe = ("import socket,sys\ntry:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.5)"
                 "\n    print('ok')\nexcept OSError:\n    print('fail')\n")
        peer = others[0]
        reached = cluster.exec(cluster.node(old), [sys.executable, "-c", probe, peer.address, str(peer.peer_port)])
        assert reached == "fail\n"
        assert cluster.exec(others[1], [sys.executable, "-c", probe, peer.address, str(peer.peer_port)]) == "ok\n"
        deadline = time.monotonic() + 20
        while wait_for_leader(others, timeout=20) == old and time.monotonic() < deadline:
            time.sleep(0.2)
        assert wait_for_leader(others, timeout=5) != old
    finally:
        cluster.net().heal()


def test_make_db_names_an_option_the_provisioner_does_not_have():
    config = RunConfig(provisioner="local", nodes=3, provisioner_options={"subnet": "10.77.0.0/24"})
    with pytest.raises(ValueError, match=r"the local provisioner has no option 'subnet' \(its options: .*base_address"):
        make_db(config, "x")


def test_without_clock_faults_nodes_run_without_the_clock_shim_and_clock_is_not_offered():
    # the shim looks at its spec file every millisecond; a run without clock faults must not pay
    # it, and must not claim a clock fault it could not deliver.
    db = LocalDB(f"tlocal-noclock-{os.getpid()}", 3, clock=False, base_address=base_address(5),
                 wait_ready=False)
    try:
        db.setup()
        assert "clock" not in db.capabilities()
        assert "only into runs that ask for clock faults" in db.unavailable()["clock"]
        for proc in db.procs.values():
            with open(f"/proc/{proc.pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            assert not any(item.startswith(b"LD_PRELOAD=") for item in env)
    finally:
        db.teardown()


@pytest.mark.skipif(clockshim.unavailable_reason() is not None, reason=str(clockshim.unavailable_reason()))
def test_each_node_runs_under_the_clock_shim_reading_its_own_spec_file(cluster):
    files = set()
    for node in cluster.nodes:
        with open(f"/proc/{cluster.procs[node.id].pid}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        assert env[b"LD_PRELOAD"].decode().split(":")[0] == clockshim.ensure_library()
        files.add(env[clockshim.SPEC_ENV.encode()])
        assert cluster.clock_loaded(node) is True
    assert len(files) == 3


def test_a_setup_that_fails_leaves_the_node_logs_where_the_runner_asked(tmp_path):
    # nodes that die at start never elect a leader: setup tears down, but the logs that say why
    # are copied out first
    from chaos.provision.base import ProvisionError

    class BrokenNode(LocalDB):
        def command(self, node, nodes):
            return super().command(node, nodes) + ["--no-such-flag"]

    db = BrokenNode(f"tlocal-salvage-{os.getpid()}", 3, base_address=base_address(6), ready_timeout=3.0)
    db.failed_setup_log_dir = lambda node_id: str(tmp_path / node_id)
    with pytest.raises(ProvisionError):
        db.setup()
    for node_id in ("n1", "n2", "n3"):
        stderr = (tmp_path / node_id / "stderr.log").read_text()
        assert "--no-such-flag" in stderr
    assert not os.path.exists(db.state_file)
