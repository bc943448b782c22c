"""The Redis example (examples/redis): Debian's redis-server plugged in through the splitbrain.dbs
entry point, run by `splitbrain run` as a real local process under real SIGKILLs.

The durability property it measures: with the append-only file (appendfsync always) every write
Redis acknowledged is still there after a kill and a restart; without it (appendonly=no, RDB
snapshots off) a kill loses them, and the final reads after the restart show it. The scenario
(examples/redis/kill.yaml) kills the server every 4 s while clients write, so every kill lands
right after acknowledged writes."""

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from importlib import metadata

import pytest

from chaos.history import FAIL, INFO, INVOKE, OK, Op, read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIO = os.path.join(ROOT, "examples", "redis", "kill.yaml")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def redis_plugin():
    """redis-server installed and the example's entry point registered (bootstrap.sh does both).
    Missing in CI fails the test; on a developer's machine it is skipped, saying what to do."""
    problems = []
    if shutil.which("redis-server") is None:
        problems.append("redis-server is not installed (apt-get install redis-server)")
    if "redis" not in {ep.name for ep in metadata.entry_points(group="splitbrain.dbs")}:
        problems.append("the redis example is not installed (pip install -e examples/redis)")
    if problems:
        message = "; ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(message + " (bootstrap.sh installs both)")
        pytest.skip(message)


def splitbrain(*argv, timeout=180):
    return subprocess.run([sys.executable, "-m", "chaos.cli", *argv], capture_output=True, text=True,
                          check=False, timeout=timeout, cwd=ROOT)


def kill_run(store, *options, seed=1):
    """The kill scenario, 15 s at a bounded rate (a short history checks in a second or two)."""
    address = f"127.{random.randrange(100, 250)}.{random.randrange(0, 250)}.11"
    proc = splitbrain("run", "--scenario", SCENARIO, "--store", str(store), "--seed", str(seed),
                      "--concurrency", "5", "--rate", "400", "--provisioner-option", f"base_address={address}",
                      *options)
    run_dir = os.path.realpath(os.path.join(str(store), "latest"))
    return proc, run_dir, address


def nemesis_completions(ops, f):
    return [op for op in ops if op.is_nemesis and op.type == INFO and op.f == f]


def acknowledged_writes_just_before_kills(ops, window_ns=50_000_000):
    """Kills with a write or cas that Redis acknowledged in the 50 ms before it."""
    acked = sorted(op.time for op in ops if not op.is_nemesis and op.type == OK and op.f in ("write", "cas"))
    kills = [op.time for op in ops if op.is_nemesis and op.type == INVOKE and op.f == "kill"]
    return [k for k in kills if any(k - window_ns <= t <= k for t in acked)]


def redis_processes_on(address):
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout
    return [line for line in out.splitlines() if "redis-server" in line and address in line]


@pytest.mark.timeout(150)
def test_with_appendfsync_always_acknowledged_writes_survive_kills(redis_plugin, tmp_path):
    proc, run_dir, address = kill_run(tmp_path / "store", "--node-option", "fsync=always")
    assert proc.returncode == 0, proc.stderr[-4000:]
    ops = read_jsonl(os.path.join(run_dir, "history.jsonl"))
    kills = nemesis_completions(ops, "kill")
    assert len(kills) >= 3 and all(op.value == {"nodes": ["n1"]} for op in kills)
    assert len(acknowledged_writes_just_before_kills(ops)) >= 3
    assert sum(1 for op in ops if op.type == OK and op.f in ("write", "cas") and not op.extra.get("final")) > 500
    assert any(op.type == OK and op.extra.get("final") and op.value is not None for op in ops)
    results = read_json(os.path.join(run_dir, "results.json"))
    assert results["valid"] is True, results.get("reason")
    config = read_json(os.path.join(run_dir, "config.json"))
    assert config["db_info"]["name"] == "redis"
    assert config["db_info"]["node options"] == {"appendonly": "yes", "fsync": "always"}
    assert "Ready to accept connections" in read_text(os.path.join(run_dir, "nodes", "n1", "stderr.log"))
    assert not redis_processes_on(address)


@pytest.mark.timeout(150)
def test_without_the_append_only_file_a_kill_loses_acknowledged_writes(redis_plugin, tmp_path):
    proc, run_dir, address = kill_run(tmp_path / "store", "--node-option", "appendonly=no")
    assert proc.returncode == 1, proc.stderr[-4000:]
    results = read_json(os.path.join(run_dir, "results.json"))
    assert results["valid"] is False
    assert "not linearizable" in results["reason"]
    # the evidence: after a restart, a key whose write Redis had acknowledged reads as empty
    ops = read_jsonl(os.path.join(run_dir, "history.jsonl"))
    first_kill = min(op.time for op in ops if op.is_nemesis and op.f == "kill")
    written_before = {op.key for op in ops if op.type == OK and op.f == "write" and op.time < first_kill}
    assert any(op.type == OK and op.f == "read" and op.value is None and op.key in written_before
               and op.time > first_kill for op in ops)
    assert not redis_processes_on(address)


def test_node_options_and_node_count_are_checked_before_anything_starts(redis_plugin, tmp_path):
    proc = splitbrain("run", "--scenario", SCENARIO, "--store", str(tmp_path), "--node-option", "fsync=sometimes")
    assert proc.returncode == 255
    assert "node option fsync must be one of always, everysec, no, got 'sometimes'" in proc.stderr
    proc = splitbrain("run", "--scenario", SCENARIO, "--store", str(tmp_path), "--node-option", "maxmemory=1")
    assert proc.returncode == 255 and "redis has no node option 'maxmemory'" in proc.stderr
    proc = splitbrain("run", "--scenario", SCENARIO, "--store", str(tmp_path), "--nodes", "3")
    assert proc.returncode == 255 and "this system runs with 1 nodes, got 3" in proc.stderr


@pytest.mark.parametrize("fault, reason", [
    ("partition", "a single redis-server has no peers to cut off"),
])
def test_faults_it_cannot_take_are_refused_with_the_reason(redis_plugin, tmp_path, fault, reason):
    proc = splitbrain("run", "--db", "redis", "--provisioner", "local", "--nodes", "1", "--nemesis", fault,
                      "--time-limit", "1", "--store", str(tmp_path))
    assert proc.returncode == 255
    assert f"the {fault} fault needs the '{fault}' capability, which 'redis' lacks: {reason}" in proc.stderr
    assert not os.path.exists(os.path.join(str(tmp_path), "latest"))  # refused before anything started


# -- the client's outcome rules, against a socket that misbehaves on purpose ---------------------

class OneShotServer:
    """Accepts one connection, reads one request, then answers `reply` (or closes on None)."""

    def __init__(self, reply: bytes | None):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            if self.reply is not None:
                conn.sendall(self.reply)

    def close(self):
        self.thread.join(timeout=5)
        self.sock.close()


def invoke(port, f, value=None, reply=b"+OK\r\n", timeout=2.0):
    from splitbrain_redis.client import RegisterClient

    from chaos.interfaces import Node

    client = RegisterClient(timeout).open([], Node(id="n1", client_url="", address="127.0.0.1", client_port=port))
    try:
        return client.invoke(Op(process=0, type=INVOKE, f=f, key="r0", value=value))
    finally:
        client.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("f, value, reply, expected", [
    ("write", 3, b"+OK\r\n", OK),
    ("write", 3, None, INFO),                                    # sent, connection closed: unknown
    ("cas", [3, 4], None, INFO),
    ("read", None, None, FAIL),                                  # a read changes nothing
    ("read", None, b"$1\r\n7\r\n", OK),
    ("cas", [3, 4], b":0\r\n", FAIL),                            # expected value differs
    ("write", 3, b"-LOADING Redis is loading the dataset in memory\r\n", FAIL),
])
def test_outcomes_follow_jepsens_rules(redis_plugin, f, value, reply, expected):
    server = OneShotServer(reply)
    try:
        done = invoke(server.port, f, value)
    finally:
        server.close()
    assert done.type == expected, done
    if f == "read" and expected == OK:
        assert done.value == 7


def test_a_refused_connection_is_a_fail_and_the_worker_backs_off(redis_plugin):
    from splitbrain_redis.client import RegisterClient

    done = invoke(free_port(), "write", 3)
    assert done.type == FAIL and done.error.startswith("refused")
    client = RegisterClient(1.0)
    assert [client.backoff_after(done) for _ in range(6)] == [0.02, 0.04, 0.08, 0.16, 0.32, 0.5]


def test_an_error_reply_we_caused_aborts_the_run_as_a_client_bug(redis_plugin):
    from chaos.interfaces import ClientBug

    server = OneShotServer(b"-ERR wrong number of arguments for 'set' command\r\n")
    try:
        with pytest.raises(ClientBug, match="wrong number of arguments"):
            invoke(server.port, "write", 3)
    finally:
        server.close()


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def redis_time(port_host: tuple[str, int]) -> float:
    """Redis's own clock: the TIME command (seconds and microseconds, from its gettimeofday)."""
    with socket.create_connection(port_host, timeout=5) as sock:
        sock.sendall(b"TIME\r\n")
        data = b""
        while data.count(b"\r\n") < 5:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    fields = data.split(b"\r\n")   # *2, $n, seconds, $n, microseconds
    return int(fields[2]) + int(fields[4]) / 1e6


@pytest.mark.timeout(60)
def test_clock_faults_reach_redis_through_the_clock_shim(redis_plugin):
    from chaos.provision import clockshim
    from splitbrain_redis.db import RedisDB

    if clockshim.unavailable_reason():
        pytest.fail(clockshim.unavailable_reason())
    db = RedisDB(f"tredisclock-{os.getpid()}", 1, clock=True,
                 base_address=f"127.{100 + os.getpid() % 100}.201.11")
    assert "clock" not in db.unavailable()
    try:
        db.setup()
        node = db.nodes[0]
        address = (node.address, node.client_port)
        assert abs(redis_time(address) - time.time()) < 5
        db.set_skew(node, 1000.0)
        # the shim reads the spec file again at most every CHECK_INTERVAL_NS of its clock
        assert wait_for(lambda: 990 < redis_time(address) - time.time() < 1010, 5.0)
        db.reset_clock(node)
        assert wait_for(lambda: abs(redis_time(address) - time.time()) < 5, 5.0)
    finally:
        db.teardown()
