"""`clean` of local runs: a crashed controller's node processes, data and chains go; a live
run's stay."""

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from chaos.provision.base import process_start_ticks
from chaos.provision.cleanup import clean_local
from chaos.provision.local import STATE_DIR, chain_name, iptables


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_state(run, owner, owner_start, node_pid, data_root):
    os.makedirs(STATE_DIR, exist_ok=True)
    path = os.path.join(STATE_DIR, f"{run}.json")
    with open(path, "w") as f:
        json.dump({"run": run, "splitbrain.owner-pid": owner, "owner_start": owner_start,
                   "data_root": data_root, "own_data_root": True, "chain": None,
                   "nodes": [{"id": "n1", "pid": node_pid, "start": process_start_ticks(node_pid)}]}, f)
    return path


def test_clean_kills_a_dead_runs_nodes_and_removes_its_data_but_spares_a_live_run():
    sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    dead_dir, live_dir = tempfile.mkdtemp(), tempfile.mkdtemp()
    dead_run, live_run = f"tclean-dead-{os.getpid()}", f"tclean-live-{os.getpid()}"
    dead_state = _write_state(dead_run, _dead_pid(), None, sleepers[0].pid, dead_dir)
    live_state = _write_state(live_run, os.getpid(), process_start_ticks(os.getpid()), sleepers[1].pid, live_dir)
    try:
        removed = clean_local()
        assert dead_run in removed["local_runs"] and live_run not in removed["local_runs"]
        assert sleepers[0].wait(timeout=5) == -9
        assert sleepers[1].poll() is None
        assert not os.path.exists(dead_dir) and not os.path.exists(dead_state)
        assert os.path.exists(live_dir) and os.path.exists(live_state)
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
        for path in (dead_state, live_state):
            if os.path.exists(path):
                os.remove(path)
        subprocess.run(["rm", "-rf", dead_dir, live_dir])


def test_a_recycled_owner_pid_does_not_keep_a_run_alive():
    # our own pid, but with another start time: the owner that wrote it is gone
    sleeper = subprocess.Popen(["sleep", "60"])
    run = f"tclean-recycled-{os.getpid()}"
    path = _write_state(run, os.getpid(), "1", sleeper.pid, tempfile.mkdtemp())
    try:
        assert run in clean_local()["local_runs"]
        assert sleeper.wait(timeout=5) == -9
    finally:
        sleeper.kill()
        sleeper.wait()
        if os.path.exists(path):
            os.remove(path)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="iptables chains need root")
def test_clean_removes_stray_chains_of_dead_owners_only():
    dead, live = chain_name("tclean-chain", _dead_pid()), chain_name(f"tclean-chain-{os.getpid()}")
    for chain in (dead, live):
        iptables("-N", chain, check=False)
        iptables("-I", "OUTPUT", "1", "-j", chain)
    try:
        removed = clean_local()
        assert dead in removed["chains"] and live not in removed["chains"]
        listing = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
        assert f"-N {dead}" not in listing and f"-N {live}" in listing
        assert f"-j {dead}" not in listing
    finally:
        from chaos.provision.local import remove_chain
        remove_chain(dead)
        remove_chain(live)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")
def test_clean_empties_and_removes_node_cgroups_of_dead_runs_only():
    from chaos.provision.local import cgroup2_root

    mount = cgroup2_root()
    if mount is None:
        pytest.skip("no cgroup v2 hierarchy on this host")
    dead, live = chain_name("tclean-cg", _dead_pid()), chain_name(f"tclean-cg-{os.getpid()}")
    dirs = {name: os.path.join(mount, "splitbrain", name, "n1") for name in (dead, live)}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    # a leftover node of the dead run, still inside its cgroup
    orphan = subprocess.Popen(["sh", "-c", f'echo $$ > "{dirs[dead]}/cgroup.procs" && exec sleep 60'])
    try:
        deadline = time.monotonic() + 5
        while not open(f"{dirs[dead]}/cgroup.procs").read().strip():
            assert time.monotonic() < deadline
        removed = clean_local()
        assert dead in removed["cgroups"] and live not in removed["cgroups"]
        assert orphan.wait(timeout=5) == -9
        assert not os.path.exists(os.path.dirname(dirs[dead])) and os.path.isdir(dirs[live])
    finally:
        orphan.kill()
        orphan.wait()
        from chaos.provision.local import remove_cgroups
        for d in dirs.values():
            remove_cgroups(os.path.dirname(d))
