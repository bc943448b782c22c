"""End to end with the local provisioner: real raftnode processes on 127.0.x.y, real faults
(kill, pause), the real checker and report, through the `splitbrain` command line; then
`splitbrain reproduce` of that run hits the same nodes again. About 12 s per run.

The set workload here: its verdict rests on the final reads, so it stays meaningful however few
operations a slow shared CI machine completes (the register workload runs in the Docker test)."""

import json
import os
import random
import subprocess
import sys

import pytest

from chaos.history import pair_ops, read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def splitbrain(*argv, timeout=240):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "node_image"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "chaos.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def base_address():
    # A loopback range of our own, so that concurrent test runs do not collide on ports.
    return f"127.{random.randrange(100, 250)}.{random.randrange(0, 250)}.11"


def processes_on(address_prefix):
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "raftnode" in line and address_prefix in line]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("e2e-local") / "store")
    base = base_address()
    proc = splitbrain("run", "--provisioner", "local", "--nodes", "3", "--workload", "set", "--nemesis", "kill,pause",
                      "--nemesis-interval", "1.5", "--time-limit", "8", "--concurrency", "6", "--seed", "11",
                      "--store", store, "--provisioner-option", f"base_address={base}",
                      "--request-timeout", "2", "--election-timeout", "300-600",
                      "--provisioner-option", "leader_timeout=90")
    return proc, store, base


def test_a_local_run_is_valid_and_writes_history_status_logs_and_report(first_run):
    proc, store, base = first_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = proc.stdout.strip().splitlines()[-1]
    assert report.startswith("report: ") and os.path.exists(report[len("report: "):])
    run_dir = os.path.realpath(os.path.join(store, "latest"))
    ops = read_jsonl(os.path.join(run_dir, "history.jsonl"))
    pair_ops(ops)
    nemesis = [op for op in ops if op.process == "nemesis" and op.type == "info"]
    assert {"kill", "start", "pause", "resume"} <= {op.f for op in nemesis}
    assert any(op.f == "kill" and op.value and op.value.get("nodes") for op in nemesis)
    assert sum(1 for op in ops if op.type == "ok" and op.process != "nemesis") > 5
    assert any(op.extra.get("final") and op.type == "ok" for op in ops)
    results = json.load(open(os.path.join(run_dir, "results.json")))
    assert results["valid"] is True
    for node in ("n1", "n2", "n3"):
        assert os.path.getsize(os.path.join(run_dir, "nodes", node, "node.log")) > 0
    assert os.path.getsize(os.path.join(run_dir, "status.jsonl")) > 0
    assert not processes_on(base.rsplit(".", 1)[0] + ".")  # every node process is gone


def test_reproduce_replays_the_same_faults_on_the_same_nodes(first_run):
    proc, store, base = first_run
    assert proc.returncode == 0
    original = os.path.realpath(os.path.join(store, "latest"))
    # A fresh cluster on other addresses (the old ports may still be in TIME_WAIT).
    again = splitbrain("reproduce", original, "--store", store, "--provisioner-option",
                       f"base_address={base_address()}")
    assert again.returncode == 0, again.stderr[-4000:]
    replay_dir = os.path.realpath(os.path.join(store, "latest"))
    assert replay_dir != original
    first = json.load(open(os.path.join(original, "config.json")))
    second = json.load(open(os.path.join(replay_dir, "config.json")))
    assert second["seed"] == first["seed"] and second["reproduces"] == original

    def hits(config):
        return [(e["f"], sorted((e.get("result") or {}).get("nodes") or []))
                for e in config["schedule"] if not e.get("final") and e["f"] in ("kill", "pause")
                and (e.get("result") or {}).get("nodes")]

    assert hits(second) == hits(first)
