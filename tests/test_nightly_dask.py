"""`splitbrain nightly` on a Dask cluster: a `dask scheduler` on 127.0.0.1 (dashboard off, ports
chosen free) and two `dask worker` processes run a small matrix with a seeded bug to the same
verdicts as sequential runs, two runs at once on this one host without colliding (each its own
local addresses and chains), one store with the controller's latest and index; a worker killed
with its whole process group mid-run: its run cleaned up, kept as crashed, and retried once on
the other worker; Ctrl-C of a controller with an embedded cluster cancels every run and leaves no
process or chain. Local provisioner runs of the bundled node, 3 nodes."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from chaos.provision.base import LABEL_OWNER

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)

pytestmark = pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"),
                                reason="local partitions need root")


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "node_image"), e.get("PYTHONPATH", "")])
    e["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = "1"
    return e


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def matrix(tmp_path, store, runs, time_limit=8):
    path = tmp_path / "matrix.yaml"
    path.write_text(f"store: {store}\ndefaults: {{provisioner: local, nodes: 3, time_limit: {time_limit}, "
                    "concurrency: 4, election_timeout: 300-600, recovery_timeout: 20}\nruns:\n" + runs)
    return str(path)


def nightly(*argv, timeout=400):
    return subprocess.run([sys.executable, "-m", "chaos.cli", "nightly", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env(), cwd=ROOT)


def verdicts(store):
    out = {}
    for results in glob.glob(os.path.join(store, "*", "*", "results.json")):
        run_dir = os.path.dirname(results)
        config = json.load(open(os.path.join(run_dir, "config.json")))
        out[(config["test_name"], config["seed"], os.path.basename(run_dir).endswith("-retry"))] = \
            json.load(open(results))["valid"]
    return out


class DaskCluster:
    """`dask scheduler` and two `dask worker` processes, each in a process group of its own."""

    def __init__(self, tmp_path, workers=2):
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs = []
        self.logs = tmp_path
        self.start(workers)

    def _spawn(self, name, argv):
        log = open(self.logs / f"{name}.log", "wb")
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env(), cwd=ROOT,
                                    start_new_session=True)
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def start(self, workers):
        self._spawn("scheduler", [os.path.join(BIN, "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                                  str(self.port), "--no-dashboard"])
        self.workers = [self._spawn(f"worker{i}", [os.path.join(BIN, "dask"), "worker", self.address,
                                                   "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                                   "--host", "127.0.0.1", "--name", f"w{i}"])
                        for i in range(workers)]
        from distributed import Client
        deadline = time.monotonic() + 90
        while True:
            try:
                with Client(self.address, timeout="5s") as client:
                    if len(client.scheduler_info()["workers"]) == workers:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "the Dask cluster did not come up"
            time.sleep(0.5)

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def dask_cluster(tmp_path):
    cluster = DaskCluster(tmp_path)
    yield cluster
    cluster.stop()


def local_runs_of(test_names):
    from chaos.provision.local import read_states
    return [s for s in read_states() if any(s.get("run", "").startswith(n) for n in test_names)]


def chains_of(chains):
    listing = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
    return [c for c in chains if f"-N {c}" in listing]


RUNS = ("  - {name: dk-kill, nemesis: kill, seeds: [1]}\n"
        "  - {name: dk-stale, bug: stale-read, seeds: [2], schedule: {start: 1, period: 4, steps: "
        "[{at: 0, f: partition, topology: isolate-one}, {at: 3, f: heal}]}}\n"
        "  - {name: dk-pause, nemesis: pause, seeds: [3]}\n")


@pytest.mark.timeout(900)
def test_a_matrix_on_two_workers_has_the_verdicts_of_sequential_runs(dask_cluster, tmp_path):
    store = str(tmp_path / "dask-store")
    proc = nightly(matrix(tmp_path, store, RUNS, time_limit=12), "--scheduler", dask_cluster.address)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    on_dask = verdicts(store)
    assert on_dask == {("dk-kill", 1, False): True, ("dk-stale", 2, False): False, ("dk-pause", 3, False): True}
    # named at dispatch, in one store; the controller pointed latest and wrote the index
    names = sorted(os.path.basename(d) for d in glob.glob(os.path.join(store, "dk-*", "*")))
    assert len(set(n.rsplit("-", 1)[0] for n in names)) == 1 and [n[-3:] for n in names] == ["001", "002", "003"]
    assert os.path.islink(os.path.join(store, "latest")) and os.path.exists(os.path.join(store, "index.html"))
    config = json.load(open(os.path.join(store, "dk-kill", names[0], "config.json")))
    assert config["command"] == f"splitbrain reproduce {os.path.join(store, 'dk-kill', names[0])}"
    # both workers ran runs, two at once, on addresses of their own
    workers = {line.split(" on ")[-1].split()[0] for line in proc.stdout.splitlines() if ": exit " in line}
    assert len(workers) == 2, proc.stdout
    runs = []
    for run_dir in glob.glob(os.path.join(store, "dk-*", "*")):
        c = json.load(open(os.path.join(run_dir, "config.json")))
        log = open(os.path.join(run_dir, "controller.log")).read().splitlines()
        runs.append((log[0][:23], log[-1][:23], tuple(n["address"] for n in c["nodes_detail"])))
    overlapping = [(a, b) for i, a in enumerate(runs) for b in runs[i + 1:] if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, runs  # two ran at once on this host ...
    assert all(a[2] != b[2] for a, b in overlapping), overlapping  # ... each on addresses of its own

    sequential_store = str(tmp_path / "sequential-store")
    seq = nightly(matrix(tmp_path, sequential_store, RUNS, time_limit=12), "--sequential")
    assert seq.returncode == 1, seq.stdout[-3000:]
    assert verdicts(sequential_store) == on_dask


@pytest.mark.timeout(900)
def test_a_worker_killed_mid_run_is_cleaned_up_and_its_run_retried_once_elsewhere(dask_cluster, tmp_path):
    store = str(tmp_path / "store")
    controller = subprocess.Popen([sys.executable, "-m", "chaos.cli", "nightly",
                                   matrix(tmp_path, store, "  - {name: dk-retry, nemesis: kill, seeds: [4]}\n",
                                          time_limit=25), "--scheduler", dask_cluster.address],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(), cwd=ROOT)
    try:
        # the worker whose group holds the run's subprocess
        deadline = time.monotonic() + 120
        victim = None
        while victim is None:
            assert time.monotonic() < deadline and controller.poll() is None
            for state in local_runs_of(["dk-retry"]):
                if not state.get("nodes"):
                    continue
                # the run's controller (the state's owner) is in its worker's process group
                try:
                    group = os.getpgid(int(state[LABEL_OWNER]))
                except ProcessLookupError:
                    continue
                victim = next(((w, state) for w in dask_cluster.workers if w.pid == group), None)
            time.sleep(0.5)
        worker, state = victim
        node_pids = [n["pid"] for n in state["nodes"]]
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its run, at once: no teardown
        out, _ = controller.communicate(timeout=600)
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()
    assert controller.returncode == 0, out[-4000:]
    assert "retried after worker" in out
    found = verdicts(store)
    assert found[("dk-retry", 4, True)] is True            # the retry, on the other worker
    assert found[("dk-retry", 4, False)] == "unknown"      # the crashed attempt, kept and marked
    crashed = glob.glob(os.path.join(store, "dk-retry", "*[0-9]", "results.json"))
    assert json.load(open(crashed[0]))["crashed"] is True
    # the killed run's nodes and state went with the retry's clean-up
    assert not [p for p in node_pids if os.path.exists(f"/proc/{p}")
                and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
    assert local_runs_of(["dk-retry"]) == []
    assert chains_of([state["chain"]] if state.get("chain") else []) == []


@pytest.mark.timeout(600)
def test_ctrl_c_of_the_controller_cancels_every_run_and_leaves_nothing(tmp_path):
    store = str(tmp_path / "store")
    path = matrix(tmp_path, store, "  - {name: dk-cancel, seeds: [1, 2], schedule: {start: 1, period: 2, steps: "
                  "[{at: 0, f: partition, topology: isolate-one}, {at: 1, f: heal}]}}\n",
                  time_limit=120)
    controller = subprocess.Popen([sys.executable, "-m", "chaos.cli", "nightly", path, "--concurrency", "2"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(), cwd=ROOT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while len([s for s in local_runs_of(["dk-cancel"]) if s.get("nodes")]) < 2:
            assert time.monotonic() < deadline and controller.poll() is None
            time.sleep(0.5)
        time.sleep(2)
        states = local_runs_of(["dk-cancel"])
        chains = [s["chain"] for s in states if s.get("chain")]
        node_pids = [n["pid"] for s in states for n in s["nodes"]]
        assert len(chains) == 2 and len(set(chains)) == 2
        os.killpg(controller.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        out, _ = controller.communicate(timeout=300)
    finally:
        if controller.poll() is None:
            os.killpg(controller.pid, signal.SIGKILL)
            controller.wait()
    assert controller.returncode == 255, out[-4000:]
    assert "cancel" in out
    assert local_runs_of(["dk-cancel"]) == []
    assert chains_of(chains) == []
    assert not [p for p in node_pids if os.path.exists(f"/proc/{p}")
                and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
