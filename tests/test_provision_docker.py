"""The Docker provisioner and `clean`: clusters come up, are labelled, and leave nothing behind."""

import json
import os
import subprocess
import sys
import time

import pytest

from chaos.provision.base import LABEL_OWNER, LABEL_RUN, ProvisionError, docker_client
from chaos.provision.cleanup import clean_docker, run_resources
from systems.raftnode.db import RaftnodeDocker as DockerDB
from systems.raftnode.db import get_status

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


def run_id(name):
    return f"tprov-{os.getpid()}-{name}"


def test_the_image_has_python_iptables_iproute_and_the_node(node_image):
    client = docker_client()
    script = ("import raftnode, shutil; "
              "print(all(shutil.which(c) for c in ('iptables', 'iptables-restore', 'ip', 'tini')))")
    out = client.containers.run(node_image, ["python3", "-c", script], remove=True, network_mode="none")
    assert out.decode().split() == ["True"]


def test_a_five_node_cluster_comes_up_elects_a_leader_and_tears_down_to_nothing(node_image):
    client = docker_client()
    db = DockerDB(run_id("five"), 5, subnet="10.77.221.0/24", image=node_image)
    try:
        nodes = db.setup()
        assert [n.id for n in nodes] == ["n1", "n2", "n3", "n4", "n5"]
        assert [n.address for n in nodes] == [f"10.77.221.{i}" for i in range(11, 16)]
        # setup returned once a majority agreed; the rest learn the leader from its heartbeats
        deadline = time.monotonic() + 15
        while True:
            statuses = [get_status(n.client_url) for n in nodes]
            leaders = {s["leader"] if s else "no answer" for s in statuses}
            if (len(leaders) == 1 and None not in leaders) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(leaders) == 1 and None not in leaders, statuses

        network = client.networks.get(db.network_name)
        assert network.attrs["Internal"] is True
        assert network.attrs["IPAM"]["Config"][0]["Subnet"] == "10.77.221.0/24"
        assert network.attrs["Labels"][LABEL_RUN] == db.run_id
        container = client.containers.get(db.container_name("n1"))
        host = container.attrs["HostConfig"]
        assert host["Privileged"] is False and host["CapAdd"] == ["NET_ADMIN"]
        assert container.labels["splitbrain"] == "1" and container.labels[LABEL_OWNER] == str(os.getpid())
        # tini is PID 1; the node is a process beside it, not the container's main process
        assert "tini" in db.exec(nodes[0], ["cat", "/proc/1/cmdline"])
        assert statuses[0]["pid"] != 1

        logs = db.collect_logs(nodes[0], str(os.path.join(os.environ.get("TMPDIR", "/tmp"), db.run_id)))
        node_log = [p for p in logs if p.endswith("node.log")][0]
        events = [json.loads(line)["event"] for line in open(node_log)]
        assert events[0] == "start" and "role" in events
        db.pause(nodes[1])  # a stopped process must not hold teardown up
    finally:
        db.teardown()
    assert run_resources(db.run_id, client) == []
    db.teardown()  # idempotent


def test_a_taken_subnet_is_a_clear_error_and_leaves_nothing(node_image):
    client = docker_client()
    first = DockerDB(run_id("first"), nodes=3, subnet="10.77.222.0/24", image=node_image, wait_ready=False)
    second = DockerDB(run_id("second"), nodes=3, subnet="10.77.222.0/24", image=node_image)
    try:
        first._create_network()
        with pytest.raises(ProvisionError, match="subnet 10.77.222.0/24 is already used"):
            second.setup()
        assert run_resources(second.run_id, client) == []
    finally:
        first.teardown()
        second.teardown()


def test_a_missing_image_says_how_to_build_it(docker_engine):
    db = DockerDB(run_id("noimage"), nodes=3, subnet="10.77.223.0/24", image="splitbrain-node:does-not-exist")
    with pytest.raises(ProvisionError, match="splitbrain image build"):
        db.setup()
    assert run_resources(db.run_id, docker_client()) == []


def test_a_cluster_that_elects_no_leader_fails_with_the_nodes_stderr_and_leaves_nothing(node_image):
    # an option the node rejects: every process exits at once, so no leader can ever appear
    class BrokenNode(DockerDB):
        def command(self, node, nodes):
            return super().command(node, nodes) + ["--no-such-flag"]

    db = BrokenNode(run_id("noleader"), 3, subnet="10.77.228.0/24", image=node_image, ready_timeout=3)
    with pytest.raises(ProvisionError) as err:
        db.setup()
    assert "--no-such-flag" in str(err.value)
    assert run_resources(db.run_id, docker_client()) == []


@pytest.mark.parametrize("bad, problem", [({"subnet": "10.77.0.0/33"}, "not a network"),
                                          ({"subnet": "8.8.8.0/24"}, "private IPv4"),
                                          ({"subnet": "10.77.0.0/29"}, "too small"),
                                          ({"nodes": 0}, "at least one node")])
def test_bad_settings_are_refused_before_anything_starts(bad, problem):
    with pytest.raises(ValueError, match=problem):
        DockerDB("x", **bad)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leftover(client, image, run, owner, subnet):
    labels = {"splitbrain": "1", LABEL_RUN: run, LABEL_OWNER: str(owner)}
    import docker.types
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
    client.networks.create(f"splitbrain-{run}", internal=True, ipam=ipam, labels=labels)
    client.containers.run(image, name=f"splitbrain-{run}-n1", labels=labels, detach=True,
                          network=f"splitbrain-{run}")


def test_clean_removes_a_dead_runs_leftovers_but_not_a_live_or_detached_one(node_image):
    client = docker_client()
    dead, live, detached = run_id("dead"), run_id("live"), run_id("detached")
    try:
        _leftover(client, node_image, dead, _dead_pid(), "10.77.224.0/24")
        _leftover(client, node_image, live, os.getpid(), "10.77.225.0/24")
        _leftover(client, node_image, detached, 0, "10.77.226.0/24")
        removed = clean_docker()
        assert f"splitbrain-{dead}-n1" in removed["containers"]
        assert f"splitbrain-{dead}" in removed["networks"]
        assert run_resources(dead, client) == []
        assert len(run_resources(live, client)) == 2
        assert len(run_resources(detached, client)) == 2
    finally:
        for run in (dead, live, detached):
            DockerDB(run, nodes=3, subnet="10.77.227.0/24").teardown()
