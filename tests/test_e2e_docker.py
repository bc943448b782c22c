"""End to end on Docker: five node containers on the run's own --internal network, partitions
and kills, the real checker and report; and a Ctrl-C in the middle of a run leaves no
container, network or iptables rule behind.

Each test uses a subnet of its own so that it cannot collide with another run on the machine,
and election timeouts with room for a loaded 2-core CI machine (what is tested here is the
framework; the node's own timing is tested in the node's tests).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from chaos.history import pair_ops, read_jsonl

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABEL_RUN = "splitbrain.run"
SLACK = ["--election-timeout", "300-600", "--provisioner-option", "leader_timeout=90"]


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "node_image"), e.get("PYTHONPATH", "")])
    return e


def subnet():
    return f"10.{random.randrange(200, 250)}.{random.randrange(0, 250)}.0/24"


def docker_ids(kind, run_id):
    """Ids of containers ("ps") or networks ("network") carrying the run's label."""
    argv = ["docker", "ps", "-a", "-q"] if kind == "ps" else ["docker", "network", "ls", "-q"]
    out = subprocess.run(argv + ["--filter", f"label={LABEL_RUN}={run_id}"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def iptables_rules():
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=60)
    return out.stdout if out.returncode == 0 else ""


def wait_for_log(store, text, timeout, proc):
    deadline = time.monotonic() + timeout
    log = os.path.join(store, "latest", "controller.log")
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(log) and text in open(log).read():
            return os.path.realpath(os.path.join(store, "latest"))
        time.sleep(0.2)
    return None


def test_a_short_docker_run_with_partitions_and_kills_is_valid_and_reported(node_image, tmp_path):
    store = str(tmp_path / "store")
    proc = subprocess.run([sys.executable, "-m", "chaos.cli", "run", "--provisioner", "docker", "--nodes", "5",
                           "--nemesis", "partition,kill", "--nemesis-interval", "5", "--time-limit", "30",
                           "--seed", "2", "--store", store, "--subnet", subnet(), *SLACK],
                          capture_output=True, text=True, timeout=600, env=env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-5000:]
    report = proc.stdout.strip().splitlines()[-1]
    assert report.startswith("report: ") and os.path.exists(report[len("report: "):])
    run_dir = os.path.realpath(os.path.join(store, "latest"))
    config = json.load(open(os.path.join(run_dir, "config.json")))
    ops = read_jsonl(os.path.join(run_dir, "history.jsonl"))
    pair_ops(ops)
    nemesis = [op for op in ops if op.process == "nemesis" and op.type == "info" and not op.error]
    assert any(op.f == "partition" and op.value.get("groups") for op in nemesis)
    assert any(op.f == "kill" and op.value.get("nodes") for op in nemesis)
    assert json.load(open(os.path.join(run_dir, "results.json")))["valid"] is True
    for node in ("n1", "n2", "n3", "n4", "n5"):
        assert os.path.getsize(os.path.join(run_dir, "nodes", node, "node.log")) > 0
    assert docker_ids("ps", config["run_id"]) == []
    assert docker_ids("network", config["run_id"]) == []


def test_ctrl_c_in_the_middle_of_a_docker_run_leaves_no_container_network_or_rule(node_image, tmp_path):
    store = str(tmp_path / "store")
    proc = subprocess.Popen([sys.executable, "-m", "chaos.cli", "run", "--provisioner", "docker", "--nodes", "5",
                             "--nemesis", "partition,kill", "--nemesis-interval", "2", "--time-limit", "120",
                             "--seed", "3", "--store", store, "--subnet", subnet(), *SLACK],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT)
    try:
        run_dir = wait_for_log(store, "nemesis partition {'topology'", 300, proc)
        if run_dir is None:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the run never injected its first partition (exit {proc.returncode}): {err[-3000:]}")
        run_id = json.load(open(os.path.join(run_dir, "config.json")))["run_id"]
        networks = docker_ids("network", run_id)
        assert docker_ids("ps", run_id) and networks  # the cluster is up
        bridges = [f"br-{n[:12]}" for n in networks]
        assert any(b in iptables_rules() for b in bridges) or not iptables_rules()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 255, err[-3000:]
    assert "SIGINT" in err
    assert docker_ids("ps", run_id) == []
    assert docker_ids("network", run_id) == []
    rules = iptables_rules()
    assert not any(b in rules for b in bridges)
    results = json.load(open(os.path.join(run_dir, "results.json")))
    assert "interrupted" in results["reason"]
