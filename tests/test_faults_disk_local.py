"""The disk faults on real local node processes: lose-unsynced really drops what a node had not
fsynced (and nothing it had), corrupt really changes its files and the node refuses to start
naming the damage, and no disk fault outlives a heal, a teardown or a crashed controller."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from chaos import lazydisk
from chaos.faults import fault_kind
from chaos.history import INVOKE, NEMESIS, Op
from chaos.interfaces import Unsupported
from chaos.provision.cleanup import clean
from systems.raftnode.db import RaftnodeLocal, wait_for_leader

pytestmark = pytest.mark.timeout(180)

REASON = lazydisk.unavailable_reason()
if REASON and os.environ.get("CI"):
    pytest.fail(f"lazy disk tests cannot run in CI: {REASON}", pytrace=False)
if REASON:
    pytest.skip(REASON, allow_module_level=True)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cluster(name, base, **options):
    db = RaftnodeLocal(f"{name}-{os.getpid()}", 3, options, base_address=base, lazy_disk=True, clock=False)
    db.setup()
    return db


@pytest.fixture
def db():
    db = cluster("tdisk", "127.0.0.71")
    try:
        yield db
    finally:
        db.teardown()
    assert not [m for m in lazydisk.mounts() if m.get("run") == db.run_id]


def nemesis(db, kind):
    return fault_kind(kind).make_nemesis(db, db.nodes, None, random.Random(1))


def invoke(nem, f, value=None):
    return nem.invoke(Op(process=NEMESIS, type=INVOKE, f=f, value=value)).value


def inside(db, node, code):
    """Run Python in the node's own environment (its cgroup, its data directory)."""
    return db.exec(node, [sys.executable, "-c", code]).strip()


def listing(db, node):
    script = f"import os, json; print(json.dumps(sorted(os.listdir({db.data_dir(node)!r}))))"
    return json.loads(inside(db, node, script))


def put(db, key, value):
    leader = wait_for_leader(db.nodes, timeout=30)
    url = db.node(leader).client_url + f"/kv/{key}"
    request = urllib.request.Request(url, data=json.dumps({"value": value}).encode(), method="PUT")
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200


def get(db, key):
    leader = wait_for_leader(db.nodes, timeout=30)
    try:
        with urllib.request.urlopen(db.node(leader).client_url + f"/kv/{key}", timeout=5) as resp:
            return json.loads(resp.read()).get("value")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def test_lose_unsynced_drops_exactly_what_the_node_had_not_fsynced(db):
    n1 = db.node("n1")
    data = db.data_dir(n1)
    inside(db, n1, f"""
import os
fd = os.open({data!r} + '/probe-synced', os.O_WRONLY | os.O_CREAT); os.write(fd, b'kept'); os.fsync(fd); os.close(fd)
dfd = os.open({data!r}, os.O_RDONLY); os.fsync(dfd); os.close(dfd)
fd = os.open({data!r} + '/probe-unsynced', os.O_WRONLY | os.O_CREAT); os.write(fd, b'lost'); os.close(fd)
""")
    assert {"probe-synced", "probe-unsynced"} <= set(listing(db, n1))
    nem = nemesis(db, "lose-unsynced")
    done = invoke(nem, "lose-unsynced", {"target": ["n1"]})
    assert done["nodes"] == ["n1"] and "4 unsynced bytes" in done["lost"]["n1"]
    assert not db.is_running(n1)
    files = listing(db, n1)
    assert "probe-synced" in files and "probe-unsynced" not in files
    assert "hardstate.json" in files and any(f.endswith(".seg") for f in files)  # the node's own, fsynced
    back = invoke(nem, "restart-lost")
    assert back == {"nodes": ["n1"]} and db.is_running(n1)


def test_the_correct_node_keeps_every_acknowledged_write_when_the_whole_cluster_loses_power(db):
    for i in range(20):
        put(db, f"k{i}", i)
    nem = nemesis(db, "lose-unsynced")
    invoke(nem, "lose-unsynced", {"target": "all", "tear": True})
    assert invoke(nem, "restart-lost") == {"nodes": ["n1", "n2", "n3"]}
    assert [get(db, f"k{i}") for i in range(20)] == list(range(20))


def test_the_no_fsync_node_loses_its_acknowledged_writes_and_restarts_empty():
    db = cluster("tnofsync", "127.0.0.75", bug="no-fsync")
    try:
        for i in range(10):
            put(db, f"k{i}", i)
        nem = nemesis(db, "lose-unsynced")
        invoke(nem, "lose-unsynced", {"target": "all"})
        assert all(listing(db, n) == [] for n in db.nodes)  # nothing was ever fsynced
        back = invoke(nem, "restart-lost")
        assert "down" not in back  # an empty data directory is a fresh node: it starts
        assert [get(db, f"k{i}") for i in range(10)] == [None] * 10
    finally:
        db.teardown()


def read_bytes(db, node, name):
    return bytes.fromhex(inside(db, node, f"print(open({db.data_dir(node)!r} + '/{name}', 'rb').read().hex())"))


def test_a_bit_flip_in_the_hard_state_is_refused_and_counted_as_expected(db):
    n2 = db.node("n2")
    before = read_bytes(db, n2, "hardstate.json")
    nem = nemesis(db, "corrupt")
    done = invoke(nem, "corrupt", {"target": ["n2"], "mode": "bitflip", "file": "hardstate.json"})
    assert done["files"]["n2"].startswith("hardstate.json")
    after = read_bytes(db, n2, "hardstate.json")
    assert len(after) == len(before) and sum(bin(a ^ b).count("1") for a, b in zip(before, after, strict=True)) == 1
    back = invoke(nem, "restart-corrupted")
    assert back["expected_down"] == ["n2"]
    assert "hardstate.json: corrupt file at byte offset" in back["down"]["n2"]
    assert not db.is_running(n2)
    nem.heal_all()
    from chaos.nemesis.common import down_nodes
    assert down_nodes(db, db.nodes, bound=2) == {}  # held down for good: no later heal counts it


def test_truncating_the_newest_log_segment_changes_its_size_and_the_node_reports_what_it_did(db):
    nem = nemesis(db, "corrupt")
    n3 = db.node("n3")
    segment = sorted(f for f in listing(db, n3) if f.endswith(".seg"))[-1]
    size = len(read_bytes(db, n3, segment))
    done = invoke(nem, "corrupt", {"target": ["n3"], "mode": "truncate", "file": segment, "bytes": 5})
    assert done["files"]["n3"] == f"{segment}: cut 5 of {size} bytes off the end (now {size - 5})"
    assert len(read_bytes(db, n3, segment)) == size - 5
    back = invoke(nem, "restart-corrupted")
    # a cut inside the last record is a torn tail: the node truncates it and starts
    assert "down" not in back and db.is_running(n3)


def test_corrupt_values_are_checked_with_the_valid_choices():
    from chaos.nemesis.disk import corruption_spec
    with pytest.raises(ValueError, match="unknown mode 'melt' \\(valid: bitflip, truncate\\)"):
        corruption_spec({"mode": "melt"})
    with pytest.raises(ValueError, match="relative to the data directory"):
        corruption_spec({"file": "../etc/passwd"})
    with pytest.raises(ValueError, match="flips must be an integer"):
        corruption_spec({"flips": 0})


def test_without_a_lazy_disk_lose_unsynced_is_refused_with_the_reason():
    db = RaftnodeLocal(f"tnolazy-{os.getpid()}", 3, {}, base_address="127.0.0.79", clock=False)
    with pytest.raises(Unsupported, match="mounted only in runs that use lose-unsynced"):
        fault_kind("lose-unsynced").make_nemesis(db, [], None, random.Random(0))


CRASHING_CONTROLLER = """
import os, signal, sys
sys.path[:0] = [{repo!r}, {repo!r} + '/node_image']
from systems.raftnode.db import RaftnodeLocal
db = RaftnodeLocal('tcrash-' + str(os.getpid()), 3, {{}}, base_address='127.0.0.81', lazy_disk=True, clock=False)
db.setup()
print(db.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_splitbrain_clean_unmounts_the_disks_of_a_crashed_controller():
    proc = subprocess.run([sys.executable, "-c", CRASHING_CONTROLLER.format(repo=REPO)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run_id = proc.stdout.strip()
    left = [m for m in lazydisk.mounts() if m.get("run") == run_id]
    assert len(left) == 3
    removed = clean(docker=False)
    assert sorted(removed["lazy_disks"]) == sorted(m["mountpoint"] for m in left)
    assert run_id in removed["local_runs"]
    assert not [m for m in lazydisk.mounts() if m.get("run") == run_id]
    time.sleep(0.2)
    assert not [m for m in left if m.get("daemon") and os.path.exists(f"/proc/{m['daemon']}")
                and lazydisk._is_daemon(int(m["daemon"]))]


def test_a_ctrl_c_in_the_middle_of_a_run_leaves_no_disk_mounted(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.path.join(REPO, "node_image"))
    proc = subprocess.Popen([sys.executable, "-m", "chaos.cli", "run",
                             "--scenario", "scenarios/lost-unsynced-writes.yaml", "--provisioner", "local",
                             "--provisioner-option", "base_address=127.0.0.85", "--store", str(tmp_path),
                             "--time-limit", "20"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not [m for m in lazydisk.mounts() if m.get("owner") == str(proc.pid)]:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.1)
        time.sleep(4)  # into the load, past the first lose-unsynced
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not [m for m in lazydisk.mounts() if m.get("owner") == str(proc.pid)]
