"""The SSH provisioner against real sshd hosts (network namespaces of our own, tests/ssh_hosts.py):
the bundled node uploaded over SFTP and run on each host, faults checked from inside the hosts
(iptables rules in the host's namespace, the pid gone or stopped), the controller's own SSH
connection never cut, a chaos run through `splitbrain run --provisioner ssh` with thousands of
ok operations, a seeded bug found, and nothing of ours left on any host afterwards."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

import ssh_hosts
from chaos.history import read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(ssh_hosts.unavailable() is not None and not os.environ.get("CI"),
                                reason=f"SSH hosts: {ssh_hosts.unavailable()}")


def splitbrain(*argv, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}  # no agent, ever
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "node_image"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "chaos.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    with ssh_hosts.SSHHosts(3, tmp_path_factory.mktemp("ssh-hosts")) as h:
        yield h


def leftovers(hosts, run_id=None):
    """What of ours is on the hosts: node processes, chains, files."""
    found = []
    for i in range(hosts.count):
        rules = hosts.netns_exec(i, "iptables -w -S")
        found += [f"host {i + 1}: {line}" for line in rules.splitlines() if "SBS" in line]
        pids = subprocess.run(["ip", "netns", "pids", hosts.namespaces[i]],
                              capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "raftnode" in cmdline:
                found.append(f"host {i + 1}: process {pid} {cmdline[:80]}")
    if os.path.exists(hosts.remote_dir):
        names = os.listdir(hosts.remote_dir)
        found += [f"dir {hosts.remote_dir}/{n}" for n in names if run_id is None or n == run_id]
    return found


def stat_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.timeout(240)
def test_faults_are_applied_inside_the_hosts_and_never_cut_the_controller(hosts):
    from systems.raftnode.db import RaftnodeSSH

    db = RaftnodeSSH(f"tssh-{os.getpid()}", 3, inventory=hosts.inventory(), clock=True)
    try:
        nodes = db.setup(3)
        assert [n.address for n in nodes] == hosts.addresses
        # one connection per host, reused by every command so far
        for i in range(3):
            established = hosts.netns_exec(i, f"ss -Htn state established '( sport = :{hosts.port} )'")
            assert len(established.splitlines()) == 1, established

        # a partition: n1 cut off from n2 and n3, in n1's namespace by their addresses only,
        # after the ACCEPT of the controller's SSH connection
        db.net().drop({"n1": {"n2", "n3"}, "n2": {"n1"}, "n3": {"n1"}})
        rules = hosts.netns_exec(0, "iptables -w -S")
        input_rules = [line for line in rules.splitlines() if line.startswith("-A INPUT")]
        assert input_rules[0] == f"-A INPUT -j {db.chain}K"   # the guard comes first
        assert f"-A {db.chain}K -s {hosts.controller_address}/32 -p tcp -m tcp --dport {hosts.port} -j ACCEPT" in rules
        drops = sorted(line for line in rules.splitlines() if line.startswith(f"-A {db.chain} ") and "DROP" in line)
        assert drops == [f"-A {db.chain} -s {hosts.addresses[1]}/32 -j DROP",
                         f"-A {db.chain} -s {hosts.addresses[2]}/32 -j DROP"]
        assert f"-s {hosts.controller_address}/32" not in "".join(drops)
        # the controller still reaches every host and every node's client port
        for node in nodes:
            assert db.exec(node, ["echo", "still here"]).strip() == "still here"
            assert db.probe(node, 2.0) is not None
        # and the cut is real: n1 cannot reach n2's peer port from inside its namespace
        connect = f"import socket; socket.create_connection(('{hosts.addresses[0]}', 9000), 1)"
        assert subprocess.run(["ip", "netns", "exec", hosts.namespaces[1], "timeout", "3", "python3", "-c", connect],
                              capture_output=True).returncode != 0
        db.net().heal()
        assert not [line for line in hosts.netns_exec(0, "iptables -w -S").splitlines()
                    if line.startswith(f"-A {db.chain} ")]

        # kill: the pid is gone on the host; start brings a new one
        pid = db.pid(nodes[1])
        assert os.path.exists(f"/proc/{pid}") and stat_state(pid) != "Z"
        db.kill(nodes[1])
        assert not os.path.exists(f"/proc/{pid}") or stat_state(pid) == "Z"
        db.start(nodes[1])
        assert db.pid(nodes[1]) != pid and db.is_running(nodes[1])

        # pause: stopped (T) on the host, running again after resume
        pid = db.pid(nodes[2])
        db.pause(nodes[2])
        assert stat_state(pid) == "T"
        db.resume(nodes[2])
        assert stat_state(pid) in ("S", "R")

        # clock: the node's own clock moves by the skew, the host's does not
        db.set_skew(nodes[0], 30.0)
        status = db.probe(nodes[0], 2.0)
        assert status["wall_time"] - time.time() == pytest.approx(30.0, abs=3.0)
        assert abs(float(hosts.netns_exec(0, "date +%s.%N")) - time.time()) < 3.0

        logs = db.collect_logs(nodes[0], str(hosts.dir) + "/collected")
        assert {"node.log", "stderr.log"} <= {os.path.basename(p) for p in logs}
    finally:
        db.teardown()
    assert leftovers(hosts, db.run_id) == []


@pytest.mark.timeout(420)
def test_a_chaos_run_over_ssh_is_valid_with_thousands_of_ok_operations(hosts, tmp_path):
    store = str(tmp_path / "store")
    proc = splitbrain("run", "--provisioner", "ssh", "--provisioner-option", f"inventory={hosts.inventory()}",
                      "--nodes", "3", "--nemesis", "partition,kill,pause", "--nemesis-interval", "3",
                      "--time-limit", "25", "--seed", "5", "--store", store, "--test-name", "ssh-valid",
                      "--election-timeout", "300-600")
    assert proc.returncode == 0, proc.stderr[-4000:]
    run_dir = os.path.realpath(os.path.join(store, "latest"))
    ops = read_jsonl(os.path.join(run_dir, "history.jsonl"))
    ok = sum(1 for op in ops if op.type == "ok" and op.process != "nemesis")
    assert ok >= 2000, ok
    done = {op.f for op in ops if op.process == "nemesis" and op.type == "info" and not op.error}
    assert {"partition", "kill", "pause"} <= done
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["provisioner"] == "ssh" and config["db_info"]["name"] == "raftnode"
    for node in ("n1", "n2", "n3"):
        assert os.path.getsize(os.path.join(run_dir, "nodes", node, "node.log")) > 0
    assert leftovers(hosts) == []


@pytest.mark.timeout(420)
def test_a_seeded_stale_read_over_ssh_comes_out_invalid(hosts, tmp_path):
    scenario = tmp_path / "isolate-follower.yaml"
    scenario.write_text("name: ssh-stale-read\nnodes: 3\nworkload: register\n"
                        "schedule:\n  start: 2\n  period: 7\n  steps:\n"
                        "    - {at: 0, f: partition, topology: isolate-one}\n    - {at: 5, f: heal}\n")
    store = str(tmp_path / "store")
    proc = splitbrain("run", "--scenario", str(scenario), "--provisioner", "ssh",
                      "--provisioner-option", f"inventory={hosts.inventory()}", "--bug", "stale-read",
                      "--time-limit", "20", "--seed", "3", "--store", store)
    assert proc.returncode == 1, proc.stderr[-4000:]
    results = json.load(open(os.path.join(os.path.realpath(os.path.join(store, "latest")), "results.json")))
    assert results["valid"] is False
    assert results["checkers"]["linearizable"]["valid"] is False
    assert leftovers(hosts) == []


@pytest.mark.timeout(300)
def test_a_crashed_controller_leaves_nothing_after_clean_ssh(hosts, tmp_path):
    inventory = hosts.inventory()
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "node_image"), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, "-m", "chaos.cli", "run", "--provisioner", "ssh",
                             "--provisioner-option", f"inventory={inventory}", "--nodes", "3",
                             "--nemesis", "partition", "--nemesis-interval", "1", "--time-limit", "60",
                             "--store", str(tmp_path / "store"), "--test-name", "ssh-crash"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        # wait until the load runs with a partition in force on some host
        while not any(re.search(r"-A SBS[0-9a-f]{8} .*DROP", hosts.netns_exec(i, "iptables -w -S"))
                      for i in range(3)):
            assert proc.poll() is None and time.monotonic() < deadline, \
                proc.stdout.read()[-3000:] if proc.poll() else ""
            time.sleep(0.5)
        proc.kill()  # a crash: no teardown at all
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert leftovers(hosts), "the killed controller should have left its nodes behind"
    cleaned = splitbrain("clean", "--ssh", inventory, "--json")
    assert cleaned.returncode == 0, cleaned.stderr
    report = json.loads(cleaned.stdout)
    assert len(report["ssh"]) == 3 and all(not h["errors"] for h in report["ssh"]), report
    assert sum(len(h["processes"]) for h in report["ssh"]) == 3
    assert leftovers(hosts) == []


@pytest.mark.timeout(300)
def test_ctrl_c_tears_the_ssh_cluster_down(hosts, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "node_image"), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, "-m", "chaos.cli", "run", "--provisioner", "ssh",
                             "--provisioner-option", f"inventory={hosts.inventory()}", "--nodes", "3",
                             "--nemesis", "partition,pause", "--nemesis-interval", "1", "--time-limit", "60",
                             "--store", str(tmp_path / "store"), "--test-name", "ssh-sigint"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(tmp_path / "store" / "latest" / "history.jsonl") or \
                os.path.getsize(tmp_path / "store" / "latest" / "history.jsonl") < 2000:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.3)
        proc.send_signal(2)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 255, out[-3000:]
    assert leftovers(hosts) == []


@pytest.mark.timeout(420)
def test_a_cluster_left_running_takes_another_run_and_goes_with_cluster_down(hosts, tmp_path, monkeypatch):
    state_dir = tmp_path / "state"
    monkeypatch.setenv("SPLITBRAIN_STATE_DIR", str(state_dir))
    store = str(tmp_path / "store")
    first = splitbrain("run", "--provisioner", "ssh", "--provisioner-option", f"inventory={hosts.inventory()}",
                       "--nodes", "3", "--nemesis", "kill", "--time-limit", "6", "--store", store,
                       "--test-name", "ssh-kept", "--leave-db-running")
    assert first.returncode == 0, first.stderr[-3000:]
    name = first.stderr.split("cluster left running: splitbrain cluster down --name ")[1].split()[0]
    kept = [line for line in leftovers(hosts) if "process" in line]
    assert len(kept) == 3  # still up after the run
    again = splitbrain("run", "--cluster", name, "--nemesis", "partition,kill", "--time-limit", "6",
                       "--store", store, "--test-name", "ssh-attached")
    # Not the verdict: the kept cluster still holds the first run's values, which the second
    # run's history cannot explain (attached runs need keys of their own: not done yet).
    assert again.returncode in (0, 1), again.stderr[-3000:]
    attached = os.path.realpath(os.path.join(store, "latest"))
    config = json.load(open(os.path.join(attached, "config.json")))
    assert [n["address"] for n in config["nodes_detail"]] == hosts.addresses
    ops = read_jsonl(os.path.join(attached, "history.jsonl"))
    assert any(op.process == "nemesis" and op.type == "info" and not op.error for op in ops)
    assert sum(1 for op in ops if op.type == "ok" and op.process != "nemesis") > 100
    assert [line for line in leftovers(hosts) if "process" in line] != []  # an attached run leaves it up
    down = splitbrain("cluster", "down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert leftovers(hosts) == []
