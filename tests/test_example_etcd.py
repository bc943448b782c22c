"""The shipped example examples/etcd: etcd 3.4 (Debian's etcd-server) plugged in from a package
of its own, found through the `splitbrain.dbs` entry point, and run by `splitbrain run --db etcd`.

- with linearizable reads, etcd stays linearizable while its leader is isolated, killed and
  paused; every scheduled fault ran, and each fault aimed at the leader hit the node that etcd
  itself named as leader at that moment;
- with serializable reads, isolating a follower that workers are bound to gives stale reads;
- clock faults are refused before anything starts (etcd is Go: the clock shim cannot reach it).

Each run uses a subnet of its own and must leave no container and no network behind.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from chaos.faults import aims_at_leader
from chaos.history import NEMESIS, pair_ops, read_jsonl

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "etcd")


def _unavailable(message):
    print(message)
    if os.environ.get("CI"):
        pytest.fail(message + " (bootstrap.sh installs etcd-server and the example)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def etcd_image(docker_engine):
    from chaos.registry import names

    if "etcd" not in names("splitbrain.dbs"):
        _unavailable("the etcd example is not installed: pip install -e examples/etcd")
    if shutil.which("etcd") is None and not os.path.isfile("/usr/bin/etcd"):
        _unavailable("etcd is not installed on this host: apt-get install etcd-server")
    from chaos.registry import load

    return load("splitbrain.dbs", "etcd").build_images()[0]


def splitbrain_run(store, subnet, *args, timeout=200):
    """`splitbrain run --db etcd ...` in a subprocess; (exit code, run dir, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "chaos.cli", "run", "--db", "etcd", "--store", str(store),
                           "--subnet", subnet, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          check=False)
    latest = os.path.join(str(store), "latest")
    return proc.returncode, os.path.realpath(latest) if os.path.exists(latest) else None, proc.stderr


def read_json(run_dir, name):
    with open(os.path.join(run_dir, name), encoding="utf-8") as f:
        return json.load(f)


def status_lines(run_dir):
    with open(os.path.join(run_dir, "status.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def assert_nothing_left(run_dir, subnet):
    run_id = read_json(run_dir, "config.json")["run_id"] if run_dir else None
    for argv in (["docker", "ps", "-a", "-q"], ["docker", "network", "ls", "-q"]) if run_id else ():
        out = subprocess.run(argv + ["--filter", f"label=splitbrain.run={run_id}"], capture_output=True,
                             text=True, timeout=60, check=False)
        assert out.returncode == 0 and out.stdout.split() == [], f"{argv[1]} left behind: {out.stdout}"
    inspect = subprocess.run("docker network inspect $(docker network ls -q) --format '{{range .IPAM.Config}}"
                             "{{.Subnet}} {{end}}'", shell=True, capture_output=True, text=True, timeout=60,
                             check=False)
    assert subnet not in inspect.stdout


def statuses_before(statuses, t_ns, window_ns=1_000_000_000):
    """node -> its latest status answered within window_ns before t_ns."""
    latest = {}
    for line in statuses:
        if t_ns - window_ns <= line["time"] <= t_ns and line.get("status"):
            latest[line["node"]] = line["status"]
    return latest


def etcd_leader(statuses):
    """The node whose own answer from etcd says it is the leader (leader == its member id),
    the highest raft term winning over a deposed leader that has not noticed yet."""
    claims = [(s["term"], node) for node, s in statuses.items()
              if s.get("leader_id") and s["leader_id"] == s["member_id"]]
    return max(claims)[1] if claims else None


def stale_reads(ops, node, start, end):
    """Reads that node answered ok, invoked between start and end, of a value that a write
    acknowledged before the read began had certainly replaced: the write of the value read
    (unique per key) had completed before that later write was invoked, or the read saw
    nothing at all."""
    writes = {}  # key -> [(invoked, completed, value written)]
    for p in pair_ops(ops):
        if p.invoke.process != NEMESIS and p.type == "ok" and p.invoke.f in ("write", "cas"):
            value = p.invoke.value if p.invoke.f == "write" else p.invoke.value[1]
            writes.setdefault(p.invoke.key, []).append((p.invoke.time, p.complete.time, value))
    stale = []
    for p in pair_ops(ops):
        read = p.complete
        if p.invoke.f != "read" or p.type != "ok" or read.node != node or not start < p.invoke.time < end:
            continue
        done_before = [w for w in writes.get(p.invoke.key, []) if w[1] < p.invoke.time]
        of_value = [w for w in writes.get(p.invoke.key, []) if w[2] == read.value]
        if done_before and (read.value is None or any(r[1] < w[0] for r in of_value for w in done_before)):
            stale.append(read)
    return stale


def hit_nodes(op):
    if op.f == "partition":
        return [g[0] for g in op.value["groups"] if len(g) == 1]
    return op.value["nodes"]


@pytest.mark.timeout(240)
def test_linearizable_etcd_survives_faults_aimed_at_its_leader(etcd_image, tmp_path):
    subnet = "10.77.241.0/24"
    code, run_dir, stderr = splitbrain_run(tmp_path / "store", subnet, "--scenario",
                                           os.path.join(EXAMPLE, "leader-faults.yaml"), "--seed", "3")
    assert run_dir is not None, stderr[-3000:]
    try:
        assert code == 0, stderr[-5000:]
        results = read_json(run_dir, "results.json")
        assert results["valid"] is True, results
        ops = read_jsonl(os.path.join(run_dir, "history.jsonl"))
        assert sum(1 for op in ops if op.type == "ok" and op.process != NEMESIS) >= 3000

        config = read_json(run_dir, "config.json")
        executed = [s for s in config["schedule"] if not s.get("final")]
        assert [s["f"] for s in executed] == ["partition", "heal", "kill", "start", "pause", "resume",
                                              "partition", "heal"]
        assert [s for s in executed if s.get("error")] == []
        assert {s["f"] for s in executed if s["result"]} >= {"partition", "kill", "pause"}

        statuses = status_lines(run_dir)
        aimed = [(p.invoke, p.complete) for p in pair_ops(ops)
                 if p.invoke.process == NEMESIS and aims_at_leader(p.invoke.value)]
        assert [op.f for op, _ in aimed] == ["partition", "kill", "pause"]
        for op, done in aimed:
            named = etcd_leader(statuses_before(statuses, done.time))
            assert named is not None and hit_nodes(done) == [named], (op.f, done.value, named)
    finally:
        assert_nothing_left(run_dir, subnet)


@pytest.mark.timeout(240)
def test_serializable_reads_from_an_isolated_follower_are_stale(etcd_image, tmp_path):
    subnet = "10.77.242.0/24"
    code, run_dir, stderr = splitbrain_run(tmp_path / "store", subnet, "--scenario",
                                           os.path.join(EXAMPLE, "follower-isolation.yaml"),
                                           "--node-option", "read-mode=serializable", "--seed", "1")
    assert run_dir is not None, stderr[-3000:]
    try:
        assert code == 1, stderr[-5000:]
        results = read_json(run_dir, "results.json")
        assert results["valid"] is False and results["checkers"]["linearizable"]["valid"] is False, results
        ops = read_jsonl(os.path.join(run_dir, "history.jsonl"))
        statuses = status_lines(run_dir)
        cuts = [op for op in ops if op.process == NEMESIS and op.type == "info"][:4]
        assert [(op.f, hit_nodes(op) if op.f == "partition" else None) for op in cuts] == \
            [("partition", ["n3"]), ("heal", None)] * 2
        # n3 was a follower (leader=n1 moved etcd's leadership there) when it was first cut off ...
        assert etcd_leader(statuses_before(statuses, cuts[0].time)) == "n1"
        # ... and answered reads from its own copy while cut off: stale ones among them
        stale = [r for cut, healed in (cuts[:2], cuts[2:]) for r in stale_reads(ops, "n3", cut.time, healed.time)]
        assert stale, "no stale read from n3 while it was cut off"
    finally:
        assert_nothing_left(run_dir, subnet)


@pytest.mark.timeout(60)
def test_clock_faults_on_etcd_are_refused_before_anything_starts(etcd_image, tmp_path):
    subnet = "10.77.243.0/24"
    code, run_dir, stderr = splitbrain_run(tmp_path / "store", subnet, "--nodes", "3", "--nemesis", "clock,kill",
                                           "--time-limit", "5", timeout=60)
    assert code == 255
    assert "the clock fault needs the 'clock' capability, which 'etcd' lacks: etcd does not read its " \
           "clock through libc" in stderr
    assert run_dir is None  # refused before anything started: not even a run directory
    assert_nothing_left(run_dir, subnet)
