"""Membership faults end to end on local processes (issue 12): a run shrinks, grows, replaces
a node and moves the leadership while it partitions and kills; it is valid on the correct node,
every membership op is in the history with its outcome, the nemesis's view agrees with the
cluster's configuration at the end, nodes added mid-run are partitioned and read like the
others, their logs and the retired nodes' logs are collected, and nothing is left afterwards."""

import json
import os
import subprocess
import sys
import time

import pytest

from chaos.history import read_jsonl
from chaos.provision.base import is_zombie
from test_e2e_local import ROOT, base_address, processes_on, splitbrain

SCENARIO = """\
name: membership-local
nodes: 4
workload: register
time_limit: 14
concurrency: 6
schedule:
  - {at: 1, f: membership, change: grow}
  - {at: 3, f: membership, change: shrink, node: leader}
  - {at: 5, f: partition, topology: isolate-one}
  - {at: 7, f: heal}
  - {at: 7.5, f: membership, change: transfer}
  - {at: 8.5, f: membership, change: replace}
  - {at: 11, f: kill, target: one}
  - {at: 12, f: start}
"""


@pytest.fixture(scope="module")
def membership_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("membership-local")
    scenario = folder / "membership.yaml"
    scenario.write_text(SCENARIO)
    store = str(folder / "store")
    base = base_address()
    proc = splitbrain("run", "--scenario", str(scenario), "--provisioner", "local", "--store", store,
                      "--provisioner-option", f"base_address={base}", "--seed", "5", timeout=150)
    return proc, os.path.realpath(os.path.join(store, "latest")), base


@pytest.mark.timeout(180)
def test_a_run_with_membership_changes_is_valid_and_records_every_change(membership_run):
    proc, run_dir, _ = membership_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    ops = read_jsonl(os.path.join(run_dir, "history.jsonl"))
    changes = [op for op in ops if op.process == "nemesis" and op.type == "info" and op.f == "membership"]
    assert [op.value["change"] for op in changes] == ["grow", "shrink", "transfer", "replace"]
    for op in changes:
        assert op.value["outcome"] in ("ok", "fail", "unknown", "skipped")
        assert all(step["outcome"] in ("ok", "fail", "unknown") for step in op.value["steps"])
    grow = changes[0].value
    assert grow["outcome"] == "ok" and grow["nodes"] == ["n5"] and "n5" in grow["voters"]
    assert [s["op"] for s in grow["steps"]] == ["provision", "add-learner", "promote"]
    shrink = changes[1].value
    assert shrink["nodes"][0] not in shrink["voters"]
    settle = next(op for op in ops if op.process == "nemesis" and op.type == "info" and op.f == "settle")
    assert settle.value["agrees"] is True, settle.value


@pytest.mark.timeout(180)
def test_nodes_added_mid_run_are_partitioned_logged_and_reported(membership_run):
    proc, run_dir, _ = membership_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    ops = read_jsonl(os.path.join(run_dir, "history.jsonl"))
    partition = next(op for op in ops if op.process == "nemesis" and op.type == "info" and op.f == "partition")
    in_groups = {n for g in partition.value["groups"] for n in g}
    retired = next(op for op in ops if op.f == "membership" and op.type == "info"
                   and op.value["change"] == "shrink").value["nodes"][0]
    # the node added at 1 s is in the partition, the one retired at 3 s is not
    assert in_groups == {"n1", "n2", "n3", "n4", "n5"} - {retired}
    collected = set(os.listdir(os.path.join(run_dir, "nodes")))
    assert {"n5", retired} <= collected
    assert os.path.getsize(os.path.join(run_dir, "nodes", "n5", "node.log")) > 0
    report = open(os.path.join(run_dir, "report", "index.html"), encoding="utf-8").read()
    assert 'id="membership"' in report and "add-learner n5: ok" in report


@pytest.mark.timeout(180)
def test_nothing_is_left_after_a_run_that_added_nodes(membership_run):
    proc, run_dir, base = membership_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    prefix = base.rsplit(".", 1)[0] + "."
    assert processes_on(prefix) == []
    config = json.load(open(os.path.join(run_dir, "config.json")))
    state = os.path.join(__import__("tempfile").gettempdir(), "splitbrain-local", f"{config['run_id']}.json")
    assert not os.path.exists(state)
    chains = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout if os.geteuid() == 0 else ""
    assert config["run_id"] not in chains


def test_membership_faults_are_refused_on_a_system_without_them():
    # the Redis example (one local process) has no Membership capability: refused before anything starts
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "node_image"), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "chaos.cli", "run", "--db", "redis", "--provisioner", "local",
                           "--nemesis", "membership", "--time-limit", "1"], capture_output=True, text=True,
                          timeout=60, env=env, cwd=ROOT)
    assert proc.returncode == 255
    assert "the membership fault needs the 'membership' capability" in proc.stderr, proc.stderr[-2000:]


CONTROLLER = """
import json, sys, time
from systems.raftnode.db import RaftnodeLocal
db = RaftnodeLocal(sys.argv[1], 3, base_address=sys.argv[2])
db.setup(3)
node = db.provision_node()
print(json.dumps({n.id: db.procs[n.id].pid for n in db.nodes}), flush=True)
time.sleep(120)
"""


@pytest.mark.timeout(90)
def test_clean_removes_a_node_added_by_a_controller_that_crashed():
    from chaos.provision.base import process_start_ticks
    from chaos.provision.cleanup import clean_local

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "node_image"), env.get("PYTHONPATH", "")])
    run_id = f"t-membership-clean-{os.getpid()}"
    controller = subprocess.Popen([sys.executable, "-c", CONTROLLER, run_id, base_address()], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True)
    pids, starts = {}, {}
    try:
        pids = json.loads(controller.stdout.readline())
        starts = {node: process_start_ticks(pid) for node, pid in pids.items()}
        assert sorted(pids) == ["n1", "n2", "n3", "n4"]
    finally:
        controller.kill()  # the controller dies without tearing down; its nodes run on
        controller.wait(10)

    def alive(node):  # the same process (start time), not a zombie
        pid = pids[node]
        return process_start_ticks(pid) == starts[node] and not is_zombie(pid)

    try:
        assert run_id in clean_local()["local_runs"]
        deadline = time.monotonic() + 5
        while any(alive(n) for n in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [n for n in pids if alive(n)] == []
    finally:
        for node, pid in pids.items():  # only if clean missed one, and only that very process
            if alive(node):
                os.kill(pid, 9)
