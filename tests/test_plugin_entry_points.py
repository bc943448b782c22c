"""A plug-in that lives in its own package, outside this tree, works through entry points alone:
`splitbrain run`, `reproduce` and `nightly` find its DB (splitbrain.dbs), its workload
(splitbrain.workloads) and its fault kind (splitbrain.faults).

The package is written into a temporary directory: a toy key-value server run as a local process
(durable: it appends every write to a file before answering), its DB and client, a register
workload named "toyreg", a no-op fault "noise", and a *.dist-info declaring the entry points.
Every command runs in a subprocess whose PYTHONPATH holds that directory, as an installed
package's would."""

import json
import os
import random
import re
import subprocess
import sys
import textwrap

import pytest

from chaos.history import INFO, OK, read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()

SERVER = '''
"""toykv: a key-value server, one line per request and per answer (GET k, SET k v, CAS k old new).
Every write is appended to DATA_DIR/writes.log before it is answered, so a kill loses nothing
acknowledged."""
import os, socketserver, sys, threading

address, port, data_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lock, data = threading.Lock(), {}
path = os.path.join(data_dir, "writes.log")
if os.path.exists(path):
    for line in open(path):
        if line.endswith("\\n"):  # a torn last line was never acknowledged
            key, value = line.split()
            data[key] = value
log = open(path, "a")


def put(key, value):
    data[key] = value
    log.write(f"{key} {value}\\n")
    log.flush()


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            words = line.decode().split()
            with lock:
                if words[0] == "GET":
                    answer = f"VALUE {data[words[1]]}" if words[1] in data else "NIL"
                elif words[0] == "SET":
                    put(words[1], words[2])
                    answer = "OK"
                elif data.get(words[1]) == words[2]:
                    put(words[1], words[3])
                    answer = "OK"
                else:
                    answer = "DIFF"
            self.wfile.write(answer.encode() + b"\\n")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = daemon_threads = True


print(f"toykv serving on {address}:{port}", file=sys.stderr, flush=True)
Server((address, port), Handler).serve_forever()
'''

PLUGIN = '''
"""The toy system as a splitbrain plug-in: its DB, client, workload and a fault kind."""
import socket
import sys
import time

from chaos.faults import FaultKind
from workloads.register import register_generator
from chaos.history import FAIL, INFO, OK, Op
from chaos.interfaces import Client, Nemesis
from chaos.provision.local import ProcessDB
from workloads.base import Workload


class ToyDB(ProcessDB):
    name = "toykv"
    client_port = peer_port = 7400

    def command(self, node, nodes):
        return [sys.executable, "-m", "toykv.server", node.address, str(self.client_port), self.data_dir(node)]

    def describe(self):
        return {"system": "toykv (a test plug-in)"}


def make_db(config, run_id):
    return ToyDB(run_id, config.nodes, config.node_options, **config.provisioner_options)


class ToyClient(Client):
    def open(self, nodes, node):
        self.node, self.sock = node, None
        return self

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def invoke(self, op):
        def done(type_, value=op.value, error=None):
            return Op(process=op.process, type=type_, f=op.f, key=op.key, value=value,
                      time=time.monotonic_ns(), node=self.node.id, error=error)
        if self.sock is None:
            try:
                self.sock = socket.create_connection((self.node.address, self.node.client_port), 2.0)
                self.reader = self.sock.makefile("rb")
            except OSError as e:
                return done(FAIL, error=f"refused: {e}")
        request = {"read": f"GET {op.key}", "write": f"SET {op.key} {op.value}"}.get(op.f)
        if op.f == "cas":
            request = f"CAS {op.key} {op.value[0]} {op.value[1]}"
        try:
            self.sock.sendall(request.encode() + b"\\n")
            answer = self.reader.readline().decode().split()
            if not answer:
                raise ConnectionResetError("closed")
        except OSError as e:
            self.close()
            return done(FAIL if op.f == "read" else INFO, error=f"connection: {e}")
        if op.f == "read":
            return done(OK, int(answer[1]) if answer[0] == "VALUE" else None)
        return done(OK if answer[0] == "OK" else FAIL)

    def backoff_after(self, completion):
        return 0.05 if (completion.error or "").startswith("refused") else 0.0


class ToyRegister(Workload):
    name = "toyreg"
    checker_workload = "register"

    def generator(self):
        return register_generator(self.config)

    def client(self, db, client_id):
        return ToyClient()


class NoiseNemesis(Nemesis):
    """Does nothing to the nodes; says what it would have done."""
    fs = frozenset({"noise", "quiet"})

    def __init__(self, nodes):
        self.nodes = [n.id for n in nodes]

    def invoke(self, op):
        if op.f == "noise":
            value = {"level": op.value["level"], "nodes": self.nodes}
        else:
            value = {"quiet": self.nodes}
        return Op(process="nemesis", type=INFO, f=op.f, value=value, time=time.monotonic_ns())


NOISE = FaultKind("noise", "noise", "quiet", frozenset(), lambda db, nodes, view, rng: NoiseNemesis(nodes),
                  lambda rng, count, leader: {"level": rng.randint(1, 9)},
                  params={"noise": {"level": True}, "quiet": {}}, description="a fault that does nothing")
'''

ENTRY_POINTS = """
[splitbrain.dbs]
toykv = toykv.plugin:make_db

[splitbrain.workloads]
toyreg = toykv.plugin:ToyRegister

[splitbrain.faults]
noise = toykv.plugin:NOISE
"""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    """A directory holding the plug-in package and its distribution metadata."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "toykv").mkdir()
    (root / "toykv" / "__init__.py").write_text("")
    (root / "toykv" / "server.py").write_text(textwrap.dedent(SERVER))
    (root / "toykv" / "plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "toykv_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toykv-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return str(root)


def splitbrain(plugin_path, *argv, timeout=180):
    env = dict(os.environ)
    paths = ([plugin_path] if plugin_path else []) + [ROOT, os.path.join(ROOT, "node_image")]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run([sys.executable, "-m", "chaos.cli", *argv], capture_output=True, text=True,
                          check=False, timeout=timeout, env=env, cwd=ROOT)


def base_address():
    return f"127.{random.randrange(100, 250)}.{random.randrange(0, 250)}.11"


def toy_run(plugin_path, store, nemesis, seed=7):
    return splitbrain(plugin_path, "run", "--db", "toykv", "--workload", "toyreg", "--provisioner", "local",
                      "--nodes", "1", "--nemesis", nemesis, "--nemesis-interval", "1.2", "--time-limit", "5",
                      "--concurrency", "4", "--rate", "200", "--seed", str(seed), "--store", str(store),
                      "--provisioner-option", f"base_address={base_address()}")


def latest(store):
    return os.path.realpath(os.path.join(str(store), "latest"))


def toykv_processes():
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout
    return [line for line in out.splitlines() if "toykv.server" in line]


def hits(config, fs=("kill", "start")):
    return [(e["f"], sorted((e.get("result") or {}).get("nodes") or []))
            for e in config["schedule"] if not e.get("final") and e["f"] in fs]


@pytest.fixture(scope="module")
def kill_run(plugin_path, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    return toy_run(plugin_path, store, "kill"), store


@pytest.mark.timeout(200)
def test_run_uses_the_plugins_db_and_workload(kill_run):
    proc, store = kill_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    run_dir = latest(store)
    config = read_json(os.path.join(run_dir, "config.json"))
    assert config["db"] == "toykv" and config["workload"] == "toyreg"
    assert config["db_info"]["name"] == "toykv" and config["db_info"]["system"] == "toykv (a test plug-in)"
    assert "kill" in config["db_info"]["capabilities"]
    assert ("kill", ["n1"]) in hits(config)
    assert "toykv serving on" in read_text(os.path.join(run_dir, "nodes", "n1", "stderr.log"))
    ops = read_jsonl(os.path.join(run_dir, "history.jsonl"))
    assert sum(1 for op in ops if op.type == OK and op.f == "write") > 20
    assert read_json(os.path.join(run_dir, "results.json"))["valid"] is True
    assert not toykv_processes()


@pytest.mark.timeout(200)
def test_reproduce_rebuilds_the_plugins_db_and_replays_its_faults(plugin_path, kill_run):
    proc, store = kill_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    original = latest(store)
    again = splitbrain(plugin_path, "reproduce", original, "--provisioner-option", f"base_address={base_address()}")
    assert again.returncode == 0, again.stderr[-4000:]
    replay = latest(store)
    assert replay != original
    first, second = (read_json(os.path.join(d, "config.json")) for d in (original, replay))
    assert second["reproduces"] == original and second["db_info"]["name"] == "toykv"
    assert second["workload"] == "toyreg" and hits(second) == hits(first)


@pytest.mark.timeout(200)
def test_nightly_runs_a_matrix_naming_the_plugin(plugin_path, tmp_path):
    store = tmp_path / "nightly"
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(f"store: {store}\nruns:\n  - {{name: toy-nightly, db: toykv, workload: toyreg, "
                      f"provisioner: local, nodes: 1, nemesis: kill, time_limit: 3, rate: 200, concurrency: 3, "
                      f"provisioner_options: {{base_address: {base_address()}}}, seeds: [5]}}\n")
    proc = splitbrain(plugin_path, "nightly", str(matrix))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "valid    toy-nightly seed 5" in proc.stdout
    (run,) = os.listdir(store / "toy-nightly")
    config = read_json(store / "toy-nightly" / run / "config.json")
    assert config["db_info"]["name"] == "toykv" and config["workload"] == "toyreg"


@pytest.mark.timeout(200)
def test_the_plugins_fault_is_a_nemesis_choice_and_runs(plugin_path, tmp_path):
    wrong = splitbrain(plugin_path, "run", "--db", "toykv", "--nemesis", "nosie")
    assert wrong.returncode == 255
    # the built-in kinds first, then the plugin's
    assert re.search(r"unknown nemesis 'nosie' \(valid: partition, kill, pause, clock, [a-z, -]*noise, all, none\)",
                     wrong.stderr), wrong.stderr
    proc = toy_run(plugin_path, tmp_path, "noise")
    assert proc.returncode == 0, proc.stderr[-4000:]
    ops = read_jsonl(os.path.join(latest(tmp_path), "history.jsonl"))
    noise = [op for op in ops if op.is_nemesis and op.type == INFO and op.f == "noise"]
    assert noise and all(op.value["nodes"] == ["n1"] and 1 <= op.value["level"] <= 9 for op in noise)
    assert any(op.is_nemesis and op.f == "quiet" and op.value == {"quiet": ["n1"]} for op in ops)


def test_without_the_plugin_on_the_path_its_names_are_unknown(tmp_path):
    proc = splitbrain(None, "run", "--db", "toykv", "--provisioner", "local", "--nodes", "1", "--store", str(tmp_path))
    assert proc.returncode == 255 and "unknown db 'toykv' (valid: " in proc.stderr


# -- a plugin's fault kind through the scenario reader: reproduce and nightly ---------------------


@pytest.mark.timeout(200)
def test_reproduce_replays_a_plugin_fault(plugin_path, tmp_path):
    assert toy_run(plugin_path, tmp_path, "noise").returncode == 0
    again = splitbrain(plugin_path, "reproduce", latest(tmp_path), "--provisioner-option",
                       f"base_address={base_address()}")
    assert again.returncode == 0, again.stderr[-2000:]


@pytest.mark.timeout(200)
def test_nightly_accepts_a_plugin_fault(plugin_path, tmp_path):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(f"store: {tmp_path / 'store'}\nruns:\n  - {{name: noisy, db: toykv, workload: toyreg, "
                      "provisioner: local, nodes: 1, nemesis: noise, time_limit: 2, seeds: [1]}\n")
    proc = splitbrain(plugin_path, "nightly", "--dry-run", str(matrix))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
