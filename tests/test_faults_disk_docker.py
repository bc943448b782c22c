"""The disk faults on a real Docker cluster: the lazy disk is mounted on the host and bound into
each container as its data directory (the container keeps only NET_ADMIN), lose-unsynced drops
what the node had not fsynced as seen from inside the container, corrupt changes the file the
container sees, and `splitbrain clean` removes what a crashed controller left."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys

import pytest

from chaos import lazydisk
from chaos.faults import fault_kind
from chaos.history import INVOKE, NEMESIS, Op
from chaos.provision.base import docker_client
from chaos.provision.cleanup import clean, run_resources
from systems.raftnode.db import RaftnodeDocker, wait_for_leader

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

SUBNET = "10.77.213.0/24"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = RaftnodeDocker.data_dir

if lazydisk.unavailable_reason():
    pytest.fail(f"lazy disk tests cannot run: {lazydisk.unavailable_reason()}", pytrace=False) \
        if os.environ.get("CI") else pytest.skip(lazydisk.unavailable_reason(), allow_module_level=True)


@pytest.fixture(scope="module")
def db(node_image):
    db = RaftnodeDocker(f"tdiskd-{os.getpid()}", 3, subnet=SUBNET, image=node_image, lazy_disk=True, clock=False)
    try:
        db.setup()
        yield db
    finally:
        db.teardown()
        assert not [m for m in lazydisk.mounts() if m.get("run") == db.run_id]


def invoke(nem, f, value=None):
    return nem.invoke(Op(process=NEMESIS, type=INVOKE, f=f, value=value)).value


def inside(db, node, script):
    return db.exec(node, ["sh", "-c", script]).strip()


def test_the_container_stays_unprivileged_and_gets_the_hosts_lazy_disk_as_its_data_dir(db):
    for node in db.nodes:
        attrs = db.docker.api.inspect_container(db.container_name(node.id))
        host = attrs["HostConfig"]
        assert host["CapAdd"] == ["NET_ADMIN"] and not host["Privileged"] and not host.get("Devices")
        binds = [m for m in attrs["Mounts"] if m["Destination"] == DATA]
        assert len(binds) == 1 and binds[0]["Type"] == "bind" and binds[0]["Source"] == node.meta["lazy_disk"]
        assert lazydisk.is_mounted(binds[0]["Source"])
        # /dev/fuse is not in the container: the file system is served from the host
        assert inside(db, node, "test -e /dev/fuse && echo yes || echo no") == "no"


def test_lose_unsynced_drops_what_the_node_had_not_fsynced_as_the_container_sees_it(db):
    n1 = db.node("n1")
    db.exec(n1, ["python3", "-c", f"import os; fd = os.open('{DATA}/probe-synced', os.O_WRONLY | os.O_CREAT); "
                 f"os.write(fd, b'kept'); os.fsync(fd); os.close(fd); d = os.open('{DATA}', os.O_RDONLY); "
                 f"os.fsync(d); os.close(d)"])
    inside(db, n1, f"echo lost > {DATA}/probe-unsynced")  # neither its data nor its name fsynced
    nem = fault_kind("lose-unsynced").make_nemesis(db, db.nodes, None, random.Random(1))
    done = invoke(nem, "lose-unsynced", {"target": ["n1"]})
    assert done["nodes"] == ["n1"] and "5 unsynced bytes" in done["lost"]["n1"]
    files = inside(db, n1, f"ls {DATA}").split()
    assert "probe-synced" in files and "probe-unsynced" not in files and "hardstate.json" in files
    assert invoke(nem, "restart-lost") == {"nodes": ["n1"]}
    wait_for_leader(db.nodes, timeout=30)


def test_a_bit_flip_changes_the_file_the_container_reads_and_the_node_names_it(db):
    n3 = db.node("n3")
    nem = fault_kind("corrupt").make_nemesis(db, db.nodes, None, random.Random(2))
    before = inside(db, n3, f"cat {DATA}/hardstate.json | od -An -tx1 | tr -d ' \\n'")
    host_file = os.path.join(db.data_path(n3), "hardstate.json")
    with open(host_file, "rb") as f:
        original = f.read()
    done = invoke(nem, "corrupt", {"target": ["n3"], "mode": "bitflip", "file": "hardstate.json"})
    after = inside(db, n3, f"cat {DATA}/hardstate.json | od -An -tx1 | tr -d ' \\n'")
    assert done["files"]["n3"].startswith("hardstate.json") and before != after and len(before) == len(after)
    back = invoke(nem, "restart-corrupted")
    assert back["expected_down"] == ["n3"] and "hardstate.json: corrupt file at byte offset" in back["down"]["n3"]
    # repaired by hand for the next test: the original bytes back (fsynced), then the node starts
    fd = os.open(host_file, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, original)
    os.fsync(fd)
    os.close(fd)
    nem.state.damaged.discard("n3")
    db.start(n3)
    wait_for_leader(db.nodes, timeout=30)


CRASHING_CONTROLLER = """
import os, signal, sys
sys.path[:0] = [{repo!r}, {repo!r} + '/node_image']
from systems.raftnode.db import RaftnodeDocker
db = RaftnodeDocker('tdcrash-' + str(os.getpid()), 2, subnet='10.77.214.0/24', image={image!r}, lazy_disk=True,
                    clock=False, wait_ready=False)
db.setup()
print(db.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_splitbrain_clean_removes_a_crashed_controllers_containers_and_disks(node_image):
    proc = subprocess.run([sys.executable, "-c", CRASHING_CONTROLLER.format(repo=REPO, image=node_image)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run_id = proc.stdout.strip()
    assert len([m for m in lazydisk.mounts() if m.get("run") == run_id]) == 2
    clean(local=False)
    assert not [m for m in lazydisk.mounts() if m.get("run") == run_id]
    assert run_resources(run_id, docker_client()) == []
    assert not os.path.exists(os.path.join("/tmp", "splitbrain-lazydisk", run_id))
