"""Nothing of a link fault outlives its run: a Ctrl-C ends the delay programs and removes the
rules, and `splitbrain clean` ends what a killed controller left (its delay programs, running on
the host, some inside containers' namespaces, with the rules, containers and node processes)."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from chaos.net.delay import records
from chaos.provision.base import process_start_ticks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIO = """name: {name}
nodes: 3
workload: register
time_limit: 120
concurrency: 3
schedule:
  - {{at: 0.5, f: slow, target: all, delay_ms: 30, jitter_ms: 10}}
  - {{at: 0.6, f: lossy, target: one, loss: 0.05}}
"""


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "node_image"), e.get("PYTHONPATH", "")])
    return e


def start_run(tmp_path, provisioner, *extra):
    scenario = tmp_path / "links.yaml"
    scenario.write_text(SCENARIO.format(name=f"links-{provisioner}"))
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-m", "chaos.cli", "run", "--scenario", str(scenario),
                             "--provisioner", provisioner, "--store", str(store), "--seed", "1", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT)
    deadline = time.monotonic() + 240
    log = store / "latest" / "controller.log"
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and "nemesis lossy" in log.read_text():
            run_dir = os.path.realpath(store / "latest")
            return proc, json.load(open(os.path.join(run_dir, "config.json")))["run_id"]
        time.sleep(0.2)
    proc.kill()
    _, err = proc.communicate()
    pytest.fail(f"the run never slowed its links (exit {proc.returncode}): {err[-3000:]}")


def programs_of(pid):
    return [r for r in records() if r["owner"] == pid]


def running(record) -> bool:
    """The recorded program still runs (its pid not recycled, and not a zombie waiting for init)."""
    if process_start_ticks(record["pid"]) != record["start"]:
        return False
    try:
        with open(f"/proc/{record['pid']}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def iptables_rules() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=60).stdout


def clean():
    out = subprocess.run([sys.executable, "-m", "chaos.cli", "clean", "--json"], capture_output=True, text=True,
                         env=env(), cwd=ROOT, timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _chain_of(run_id, pid):
    from chaos.provision.local import chain_name
    return chain_name(run_id, pid)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="link faults of the local provisioner need root")


@needs_root
@pytest.mark.root
@pytest.mark.timeout(300)
def test_ctrl_c_of_a_local_run_ends_its_delay_program_and_removes_its_rules(tmp_path):
    proc, run_id = start_run(tmp_path, "local")
    try:
        (program,) = programs_of(proc.pid)
        assert running(program)
        chain = _chain_of(run_id, proc.pid)
        assert "NFQUEUE" in subprocess.run(["iptables", "-w", "-S", chain], capture_output=True, text=True).stdout
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 255 and "SIGINT" in err, err[-3000:]
    assert not running(program) and programs_of(proc.pid) == []
    assert chain not in iptables_rules()


@needs_root
@pytest.mark.root
@pytest.mark.timeout(300)
def test_clean_ends_what_a_killed_local_controller_left(tmp_path):
    proc, run_id = start_run(tmp_path, "local")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    (program,) = programs_of(proc.pid)
    chain = _chain_of(run_id, proc.pid)
    assert running(program) and chain in iptables_rules()     # the crash left them
    removed = clean()
    assert f"{program['pid']} ({chain})" in removed["delay_programs"]
    assert not running(program) and programs_of(proc.pid) == []
    assert chain not in iptables_rules()


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_clean_ends_the_delay_programs_a_killed_docker_controller_left(node_image, tmp_path):
    subnet = f"10.{random.randrange(200, 250)}.{random.randrange(0, 250)}.0/24"
    proc, run_id = start_run(tmp_path, "docker", "--subnet", subnet, "--provisioner-option", "leader_timeout=90")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    left = programs_of(proc.pid)
    assert sorted(r["label"] for r in left) == ["n1", "n2", "n3"] and all(running(r) for r in left)
    removed = clean()
    assert sorted(removed["delay_programs"]) == sorted(f"{r['pid']} ({r['label']})" for r in left)
    assert not any(running(r) for r in left) and programs_of(proc.pid) == []
    ps = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label=splitbrain.run={run_id}"],
                        capture_output=True, text=True, timeout=60)
    assert ps.stdout.split() == []


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ctrl_c_of_a_docker_run_ends_the_delay_programs_it_ran_on_the_host(node_image, tmp_path):
    subnet = f"10.{random.randrange(200, 250)}.{random.randrange(0, 250)}.0/24"
    proc, run_id = start_run(tmp_path, "docker", "--subnet", subnet, "--provisioner-option", "leader_timeout=90")
    try:
        left = programs_of(proc.pid)
        assert sorted(r["label"] for r in left) == ["n1", "n2", "n3"] and all(running(r) for r in left)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 255 and "SIGINT" in err, err[-3000:]
    assert not any(running(r) for r in left) and programs_of(proc.pid) == []
