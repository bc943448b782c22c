"""Clock faults as a node sees them: a probe started beside the node's service, in its container
or cgroup and under the same clock environment (tests/clock_probe.py), reads its monotonic and
wall clocks and times its waits, for each mode: bump, rate, strobe, and the reset. Then no
fault survives the run's heal (real time and real speed again, timers included), a Ctrl-C
(local and docker) or a crashed controller's `splitbrain clean` (local and docker), and a service
that does not load the shim is refused instead of silently unfaulted.

One 3-node cluster per provisioner serves the mode tests (each leaves its clocks real)."""

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from chaos.faults import fault_kind
from chaos.history import INVOKE, NEMESIS, Op
from chaos.nemesis import build_nemesis
from chaos.provision import clockshim
from chaos.provision.base import ProvisionError
from chaos.provision.local import destroy_state, read_states
from systems.raftnode.db import (
    RaftnodeDocker,
    RaftnodeLocal,
    get_status,
    wait_for_leader,
)
from tests.clock_probe import run_probe, skews

pytestmark = pytest.mark.timeout(300)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBNET = "10.77.232.0/24"


def local_address(slot: int) -> str:
    return f"127.{100 + os.getpid() % 100}.{150 + slot}.11"


@pytest.fixture(scope="module", params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def cluster(request):
    if clockshim.unavailable_reason():
        pytest.skip(clockshim.unavailable_reason())
    if request.param == "local":
        db, python = RaftnodeLocal(f"tclock-{os.getpid()}", 3, base_address=local_address(1)), sys.executable
    else:
        image = request.getfixturevalue("node_image")
        db, python = RaftnodeDocker(f"tclock-{os.getpid()}", 3, subnet=SUBNET, image=image), "python3"
    try:
        db.setup()
        yield db, python
    finally:
        db.teardown()


@pytest.fixture
def db(cluster):
    db, _ = cluster
    pids = {n.id: status(n)["pid"] for n in db.nodes}
    yield cluster
    for node in db.nodes:
        db.reset_clock(node)
    # every mode leaves the node running: the same process answers, and a leader is back
    assert {n.id: status(n)["pid"] for n in db.nodes} == pids
    wait_for_leader(db.nodes, timeout=30)


def status(node, timeout=15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = get_status(node.client_url, timeout=2.0)
        if answer is not None:
            return answer
        time.sleep(0.1)
    raise AssertionError(f"{node.id} did not answer /status within {timeout} s")


def test_a_bump_moves_the_monotonic_and_the_wall_clock_and_reset_undoes_it_without_going_back(db):
    db, python = db
    node = db.nodes[2]
    assert max(map(abs, skews(db, node, python))) < 0.01
    db.set_skew(node, 120.0)
    mono, wall = skews(db, node, python)
    assert abs(mono - 120) < 0.01 and abs(wall - 120) < 0.01
    db.set_skew(node, -45.0)
    mono, wall = skews(db, node, python)
    assert abs(mono + 45) < 0.01 and abs(wall + 45) < 0.01
    db.set_skew(node, 0.0)
    assert max(map(abs, skews(db, node, python))) < 0.01
    db.set_skew(node, 30.0)
    db.reset_clock(node)    # the wall clock returns; the monotonic one does not step back 30 s
    mono, wall = skews(db, node, python)
    assert abs(wall) < 0.01 and abs(mono - 30) < 0.01


def test_a_rate_change_is_continuous_and_stretches_every_timed_wait(db):
    db, python = db
    node = db.nodes[0]
    samples = []
    reader = threading.Thread(target=lambda: samples.extend(run_probe(db, node, "series", 150, 0.01,
                                                                      python=python)))
    reader.start()
    time.sleep(0.8)
    db.set_skew(node, 0.0, 0.5)
    reader.join(timeout=60)
    mono = [s["mono"] for s in samples]
    # The spec reaches the shim within a millisecond: its clock never steps back at the change.
    steps = [b - a for a, b in itertools.pairwise(mono)]
    assert min(steps) > -0.002, min(steps)
    late = [s for s in samples if s["mono_skew"] < -0.05]
    assert late, "the rate never took effect during the series"
    slope = (late[-1]["mono"] - late[0]["mono"]) / (late[-1]["real_mono"] - late[0]["real_mono"])
    assert abs(slope - 0.5) < 0.02
    for name, took in run_probe(db, node, "waits", 0.3, python=python).items():
        assert 0.58 < took["real"] < 0.9, (name, took)   # 0.3 s of its clock, 0.6 s of ours
        assert took["cpu"] < 0.1, (name, took)           # waited, not spun


def test_a_50_ms_strobe_flips_on_time_inside_the_nodes_environment(db):
    db, python = db
    node = db.nodes[1]
    db.strobe_clock(node, 2.0, 0.05, 40)
    spec = db.clock_state(node)
    samples = run_probe(db, node, "series", 300, 0.003, python=python)
    flips = [spec.strobe_start + 0.05 * k for k in range(40)]
    up = down = 0
    for s in samples:
        t = s["real_mono"]
        if min(abs(t - f) for f in flips) > 0.001:   # not the microseconds around a flip
            assert abs(s["mono_skew"] - spec.skew_at(t)) < 0.001
            assert abs(s["wall_skew"] - spec.skew_at(t)) < 0.001
            up, down = up + spec.strobe_up(t), down + (not spec.strobe_up(t))
    assert up > 20 and down > 20


def test_the_nemesis_ops_reach_the_probe_and_clock_reset_puts_every_node_back(db):
    db, python = db
    nemesis = build_nemesis(["clock"], db, db.nodes, None, random.Random(5))

    def op(f, value=None):
        return nemesis.invoke(Op(process=NEMESIS, type=INVOKE, f=f, value=value, time=time.monotonic_ns())).value

    ahead = skews(db, db.node("n1"), python)[0]   # earlier resets may have left it ahead
    assert op("clock-skew", {"target": ["n1"], "mode": "bump", "delta": 60}) == {"nodes": {"n1": "+60 x1"}}
    assert op("clock-skew", {"target": ["n2"], "mode": "rate", "rate": 0.25}) == {"nodes": {"n2": "+0 x0.25"}}
    assert op("clock-skew", {"target": ["n3"], "mode": "strobe", "delta": -5, "period": 0.05, "count": 200}) \
        == {"nodes": {"n3": "+0 x1 (strobe -5 s every 0.05 s, 200 flips)"}}
    assert abs(skews(db, db.node("n1"), python)[0] - ahead - 60) < 0.01
    first, last = run_probe(db, db.node("n2"), "series", 2, 0.4, python=python)
    assert abs((last["mono"] - first["mono"]) / (last["real_mono"] - first["real_mono"]) - 0.25) < 0.02
    assert op("clock-reset") == {"nodes": ["n1", "n2", "n3"]}
    # Real time again: wall clocks real, real speed, no strobe. The monotonic clocks did not go
    # back: n1's stays ahead by a constant; a slowed or strobed one caught up at once.
    assert abs(db.clock_state(db.node("n1")).mono_offset - ahead - 60) < 0.01
    for node in db.nodes:
        spec = db.clock_state(node)
        assert spec.is_real_time and spec.mono_offset >= 0
        first, last = run_probe(db, node, "series", 2, 0.2, python=python)
        for sample in (first, last):
            assert abs(sample["wall_skew"]) < 0.01 and abs(sample["mono_skew"] - spec.mono_offset) < 0.01


def test_the_runs_heal_puts_slowed_and_bumped_nodes_back_to_real_time_and_speed(db):
    # what the heal phase does at the end of a run that ends inside clock faults: the clock kind's
    # heal op, then every nemesis's heal_all
    db, python = db
    nemesis = build_nemesis(["clock"], db, db.nodes, None, random.Random(7))
    kind = fault_kind("clock")

    def op(f, value=None):
        return nemesis.invoke(Op(process=NEMESIS, type=INVOKE, f=f, value=value, time=time.monotonic_ns())).value

    slow, bumped = db.node("n1"), db.node("n2")
    ahead = skews(db, slow, python)[0]   # earlier resets may have left its monotonic clock ahead
    op("clock-skew", {"target": ["n1"], "mode": "rate", "rate": 0.05})
    op("clock-skew", {"target": ["n2"], "mode": "bump", "delta": -20})
    time.sleep(1.0)
    assert skews(db, slow, python)[0] - ahead < -0.9 and skews(db, bumped, python)[1] < -19.9
    assert op(kind.heal, kind.heal_value) == {"nodes": ["n1", "n2"]}
    nemesis.heal_all()
    for node in db.nodes:
        spec = db.clock_state(node)
        assert spec.is_real_time, (node.id, spec.text())
        first, last = run_probe(db, node, "series", 2, 0.3, python=python)
        assert abs((last["mono"] - first["mono"]) / (last["real_mono"] - first["real_mono"]) - 1) < 0.02
        assert abs(last["wall_skew"]) < 0.01
    for name, took in run_probe(db, slow, "waits", 0.2, python=python).items():
        assert took["real"] < 0.35, (name, took)   # its timers run at real speed again


def test_a_service_that_does_not_load_the_shim_is_refused_a_clock_fault():
    # as a statically linked (Go) binary would: the fault would silently not happen
    if clockshim.unavailable_reason():
        pytest.skip(clockshim.unavailable_reason())

    class NoPreload(RaftnodeLocal):
        def command(self, node, nodes):
            return ["env", "-u", "LD_PRELOAD", *super().command(node, nodes)]

    db = NoPreload(f"tclock-nopreload-{os.getpid()}", 1, base_address=local_address(2))
    try:
        db.setup()
        node = db.nodes[0]
        assert db.clock_loaded(node) is False
        with pytest.raises(ProvisionError, match="n1: the clock shim is not loaded in its service process"):
            db.set_skew(node, 5.0)
        db.set_skew(node, 0.0)   # putting it back to real time needs no shim
    finally:
        db.teardown()


def clock_processes(marker: str) -> list[int]:
    """Pids of processes running under a clock file whose path contains marker."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if any(item.startswith(clockshim.SPEC_ENV.encode() + b"=") and marker.encode() in item for item in env):
            pids.append(int(pid))
    return pids


def test_ctrl_c_in_the_middle_of_a_strobe_leaves_no_process_under_a_clock_fault(tmp_path):
    if clockshim.unavailable_reason():
        pytest.skip(clockshim.unavailable_reason())
    scenario = tmp_path / "strobe.yaml"
    scenario.write_text(textwrap.dedent("""
        nodes: 3
        workload: register
        time_limit: 60
        concurrency: 3
        schedule:
          - {at: 1, f: clock-skew, target: all, mode: strobe, delta: 3, period: 0.5}
    """))
    store = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "node_image")]))
    proc = subprocess.Popen([sys.executable, "-m", "chaos.cli", "run", "--scenario", str(scenario), "--provisioner",
                             "local", "--store", str(store), "--provisioner-option",
                             f"base_address={local_address(3)}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        data_roots = []
        while time.monotonic() < deadline and proc.poll() is None:
            log = store / "latest" / "controller.log"
            if log.exists() and "nemesis clock-skew" in log.read_text():
                data_roots = [state["data_root"] for state in read_states()
                              if any(local_address(3) in node.get("url", "") for node in state.get("nodes", []))]
                break
            time.sleep(0.1)
        assert data_roots, f"the run never strobed its clocks: {proc.stderr.read()[-3000:] if proc.poll() else ''}"
        assert len(clock_processes(data_roots[0])) == 3   # three nodes under the strobe
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 255 and "SIGINT" in err, err[-3000:]
    assert clock_processes(data_roots[0]) == []
    assert not os.path.exists(data_roots[0])


CRASHING_CONTROLLER = textwrap.dedent("""
    import sys
    sys.path[:0] = [{root!r}, {root!r} + "/node_image"]
    from systems.raftnode.db import RaftnodeDocker
    db = RaftnodeDocker({run!r}, 3, subnet={subnet!r}, image={image!r})
    db.setup()
    db.strobe_clock(db.nodes[0], 2.0, 0.05, 200)
    db.set_skew(db.nodes[1], 0.0, 0.1)
    print("faulted", flush=True)
    sys.stdin.read()   # until killed
""")


@pytest.mark.docker
def test_clean_removes_a_crashed_controllers_clock_faults_with_its_containers(node_image):
    if clockshim.unavailable_reason():
        pytest.skip(clockshim.unavailable_reason())
    import docker

    from chaos.provision.cleanup import clean

    run = f"tclock-crash-{os.getpid()}"
    script = CRASHING_CONTROLLER.format(root=ROOT, run=run, subnet="10.77.233.0/24", image=node_image)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    client = docker.from_env()
    label = {"label": f"splitbrain.run={run}"}
    try:
        assert proc.stdout.readline().strip() == "faulted"
        proc.kill()
        proc.wait(timeout=10)
        # the crash left the cluster and its faulted clocks behind
        containers = client.containers.list(filters=label)
        assert len(containers) == 3 and os.path.isdir(clockshim.run_dir(run))
        removed = clean(local=False)
        assert run in removed["clock_dirs"]
        assert client.containers.list(all=True, filters=label) == []
        assert not os.path.exists(clockshim.run_dir(run))
    finally:
        if proc.poll() is None:
            proc.kill()
        for container in client.containers.list(all=True, filters=label):
            container.remove(force=True)
        for network in client.networks.list(filters=label):
            network.remove()
        clockshim.remove_run_dir(run)


@pytest.mark.docker
def test_ctrl_c_of_a_docker_run_under_a_slowed_clock_leaves_no_clock_folder_or_container(node_image, tmp_path):
    if clockshim.unavailable_reason():
        pytest.skip(clockshim.unavailable_reason())
    import docker

    scenario = tmp_path / "slow.yaml"
    scenario.write_text(textwrap.dedent("""
        nodes: 3
        workload: register
        time_limit: 60
        concurrency: 3
        schedule:
          - {at: 1, f: clock-skew, target: all, mode: rate, rate: 0.05}
    """))
    store = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "node_image")]))
    proc = subprocess.Popen([sys.executable, "-m", "chaos.cli", "run", "--scenario", str(scenario), "--provisioner",
                             "docker", "--store", str(store), "--subnet", "10.77.234.0/24",
                             "--provisioner-option", f"image={node_image}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    client = docker.from_env()
    run = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            log = store / "latest" / "controller.log"
            if log.exists() and "nemesis clock-skew" in log.read_text():
                run = json.load(open(store / "latest" / "config.json"))["run_id"]
                break
            time.sleep(0.1)
        assert run, f"the run never slowed its clocks: {proc.stderr.read()[-3000:] if proc.poll() else ''}"
        specs = sorted(os.listdir(clockshim.run_dir(run)))
        assert specs, "no clock folder for the run's nodes"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if run:
            for container in client.containers.list(all=True, filters={"label": f"splitbrain.run={run}"}):
                container.remove(force=True)
    assert proc.returncode == 255 and "SIGINT" in err, err[-3000:]
    assert client.containers.list(all=True, filters={"label": f"splitbrain.run={run}"}) == []
    assert not os.path.exists(clockshim.run_dir(run))


CRASHING_LOCAL_CONTROLLER = textwrap.dedent("""
    import sys
    sys.path[:0] = [{root!r}, {root!r} + "/node_image"]
    from systems.raftnode.db import RaftnodeLocal
    db = RaftnodeLocal({run!r}, 3, base_address={address!r})
    db.setup()
    db.set_skew(db.nodes[0], 0.0, 0.05)
    db.strobe_clock(db.nodes[1], 2.0, 0.05, 200)
    print("faulted", flush=True)
    sys.stdin.read()   # until killed
""")


def test_clean_ends_a_crashed_local_controllers_nodes_and_their_clock_files():
    if clockshim.unavailable_reason():
        pytest.skip(clockshim.unavailable_reason())
    from chaos.provision.cleanup import clean

    run, address = f"tclock-lcrash-{os.getpid()}", local_address(4)
    script = CRASHING_LOCAL_CONTROLLER.format(root=ROOT, run=run, address=address)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    data_root = None
    try:
        assert proc.stdout.readline().strip() == "faulted"
        data_root = next(state["data_root"] for state in read_states() if state.get("run") == run)
        proc.kill()
        proc.wait(timeout=10)
        # the crash left the nodes running under their faulted clocks
        assert len(clock_processes(data_root)) == 3
        removed = clean(docker=False)
        assert run in removed["local_runs"]
        deadline = time.monotonic() + 10
        while clock_processes(data_root) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert clock_processes(data_root) == []
        assert not os.path.exists(data_root)
    finally:
        if proc.poll() is None:
            proc.kill()
        for state in read_states():
            if state.get("run") == run:
                destroy_state(state)
