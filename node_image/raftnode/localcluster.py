"""Run a cluster of real `python -m raftnode` processes on loopback (for tests and benchmarks).

    with LocalCluster(3) as cluster:
        leader = cluster.wait_for_leader()
        status, body, headers = cluster.request(leader, "PUT", "/kv/a", {"value": 1})
        cluster.kill(leader)            # SIGKILL, by pid
        cluster.start(leader)           # same data directory and ports

The default election timeout (300-600 ms) is relaxed so that a loaded CI machine does not cause
spurious elections in tests that do not measure them; benchmarks pass their own.
Ports are picked free on 127.0.0.1; data directories live in a temporary directory that is
removed on exit; every process this object started is killed by its pid on exit (never by name).
Each cluster gets its own generated peer secret (`cluster.peer_secret`, in a 0600 file passed as
--peer-secret-file), so tests can speak the peer protocol as a member and no two clusters of a
test run can exchange frames.

Membership (issue 12): `start_joining("n4")` starts a new node with --join (fresh ports, an empty
data directory, the same secret); `admin(path, body)` sends an admin request to the leader,
following redirects and retrying what is refused only for now; `add_learner("n4")` does both
steps of adding a node (its incarnation read from its own /status).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import IO, Any

NODE_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalCluster:
    def __init__(self, size: int = 3, extra_args: tuple = (), base_dir: str | None = None,
                 python: str = sys.executable, election_timeout: str = "300-600",
                 node_args: dict | None = None, profile_dir: str | None = None,
                 peer_secret: bytes | None = None, spare_members: int = 0):
        self.size = size
        self.ids = [f"n{i + 1}" for i in range(size)]
        # Members that are in --cluster but never started: a test can speak the peer protocol
        # as one of them without a real process fighting over its connections (they count
        # towards the quorum, so every started node is then needed).
        self.spare_ids = [f"n{i + 1}" for i in range(size, size + spare_members)]
        members = self.ids + self.spare_ids
        ports = free_ports(2 * len(members))
        self.peer_ports = dict(zip(members, ports[:len(members)], strict=True))
        self.client_ports = dict(zip(members, ports[len(members):], strict=True))
        self.cluster_spec = ",".join(f"{n}=127.0.0.1:{self.peer_ports[n]}/127.0.0.1:{self.client_ports[n]}"
                                     for n in members)
        self._own_dir = base_dir is None
        self.base_dir = base_dir or tempfile.mkdtemp(prefix="raftnode-cluster-")
        self.extra_args = list(extra_args)
        self.node_args = node_args or {}
        self.election_timeout = election_timeout
        self.python = python
        self.profile_dir = profile_dir  # run each node under cProfile, writing <dir>/<id>.prof at exit
        self.procs: dict[str, subprocess.Popen] = {}
        self.joining: set[str] = set()   # nodes started with --join
        self._stderr_files: dict[str, IO[bytes]] = {}
        self.peer_secret = peer_secret or secrets.token_hex(32).encode()
        self.peer_secret_file = os.path.join(self.base_dir, "peer-secret")
        fd = os.open(self.peer_secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.peer_secret + b"\n")

    # -- paths -----------------------------------------------------------------------------------
    def data_dir(self, node: str) -> str:
        return os.path.join(self.base_dir, node, "data")

    def log_path(self, node: str) -> str:
        return os.path.join(self.base_dir, node, "node.log")

    def stderr_path(self, node: str) -> str:
        return os.path.join(self.base_dir, node, "stderr.txt")

    def url(self, node: str) -> str:
        return f"http://127.0.0.1:{self.client_ports[node]}"

    def command(self, node: str) -> list[str]:
        runner = [self.python]
        if self.profile_dir:
            os.makedirs(self.profile_dir, exist_ok=True)
            runner += ["-m", "cProfile", "-o", os.path.join(self.profile_dir, f"{node}.prof")]
        if node in self.joining:
            start = ["--join", f"127.0.0.1:{self.peer_ports[node]}/127.0.0.1:{self.client_ports[node]}"]
        else:
            start = ["--cluster", self.cluster_spec]
        return [*runner, "-m", "raftnode", "--id", node, *start,
                "--client-listen", f"127.0.0.1:{self.client_ports[node]}",
                "--peer-listen", f"127.0.0.1:{self.peer_ports[node]}",
                "--data-dir", self.data_dir(node), "--log-file", self.log_path(node),
                "--election-timeout", self.election_timeout, "--quiet",
                "--peer-secret-file", self.peer_secret_file,
                *self.extra_args, *self.node_args.get(node, ())]

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "LocalCluster":
        try:
            self.start_all()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start_all(self) -> None:
        for node in self.ids:
            self.start(node)

    def start(self, node: str) -> subprocess.Popen:
        if node in self.procs and self.procs[node].poll() is None:
            raise RuntimeError(f"{node} is already running (pid {self.procs[node].pid})")
        os.makedirs(os.path.dirname(self.data_dir(node)), exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = NODE_PACKAGE_PARENT + os.pathsep + env.get("PYTHONPATH", "")
        stderr = open(self.stderr_path(node), "ab")
        old = self._stderr_files.pop(node, None)
        if old:
            old.close()
        self._stderr_files[node] = stderr
        proc = subprocess.Popen(self.command(node), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr, env=env, start_new_session=True)
        self.procs[node] = proc
        return proc

    def running(self, node: str) -> bool:
        proc = self.procs.get(node)
        return proc is not None and proc.poll() is None

    def kill(self, node: str, sig: int = signal.SIGKILL, wait: float = 10.0) -> int | None:
        proc = self.procs.get(node)
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(sig)
        try:
            return proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(wait)

    def pause(self, node: str) -> None:
        self.procs[node].send_signal(signal.SIGSTOP)

    def resume(self, node: str) -> None:
        self.procs[node].send_signal(signal.SIGCONT)

    def close(self) -> None:
        for proc in list(self.procs.values()):
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGCONT)
                    proc.kill()
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        for f in self._stderr_files.values():
            f.close()
        self._stderr_files = {}
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- membership ------------------------------------------------------------------------------
    def start_joining(self, node: str) -> subprocess.Popen:
        """Start `node` with --join: fresh ports (the first time), an empty data directory, the
        cluster's secret. It is not a member until it is added (add_learner)."""
        if node not in self.client_ports:
            peer, client = free_ports(2)
            self.peer_ports[node], self.client_ports[node] = peer, client
            self.ids.append(node)
        self.joining.add(node)
        return self.start(node)

    def current_leader(self) -> str | None:
        """The running node that says it leads, in the newest term (None if none does)."""
        best = None
        for node in self.ids:
            status = self.status(node, timeout=1.0) if self.running(node) else None
            if status and status["role"] == "leader" and (best is None or status["term"] > best["term"]):
                best = status
        return best["id"] if best else None

    ADMIN_RETRY = {(409, "change_in_progress"), (409, "leader_not_ready"), (409, "not_caught_up"),
                   (503, "no_leader"), (503, "transferring")}

    def admin(self, path: str, body: dict | None = None, timeout: float = 15.0, node: str | None = None):
        """POST an admin request (GET for /cluster) to the leader: redirects followed, answers
        that mean "not now" retried until `timeout`. Returns (status, body) of the last answer."""
        deadline = time.monotonic() + timeout
        target, last = node, None
        while time.monotonic() < deadline:
            target = target or self.current_leader()
            if target is None:
                time.sleep(0.05)
                continue
            try:
                code, resp, _ = self.request(target, "GET" if path == "/cluster" else "POST", path, body,
                                             timeout=max(0.5, deadline - time.monotonic()))
            except OSError as exc:
                last, target = (None, str(exc)), None
                time.sleep(0.05)
                continue
            last = (code, resp)
            if code == 307:
                target = resp["leader"]
                continue
            if (code, (resp or {}).get("error")) in self.ADMIN_RETRY:
                target = None
                time.sleep(0.1)
                continue
            return code, resp
        return last

    def add_learner(self, node: str, timeout: float = 15.0):
        """Start `node` with --join and add it as a learner; returns the admin answer."""
        if not self.running(node):
            self.start_joining(node)
        status = self.wait_until(lambda: self.status(node), timeout, what=f"{node} answering /status")
        return self.admin("/cluster/learners", {
            "id": node, "peer": f"127.0.0.1:{self.peer_ports[node]}",
            "client": f"127.0.0.1:{self.client_ports[node]}", "incarnation": status["incarnation"]},
            timeout=timeout)

    # -- client ----------------------------------------------------------------------------------
    def request(self, node: str, method: str, path: str, body=None, timeout: float = 5.0,
                raw_body: bytes | None = None):
        """One HTTP request (redirects are NOT followed). Returns (status, json body, headers)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.client_ports[node], timeout=timeout)
        try:
            payload = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            try:
                parsed = json.loads(data) if data else None
            except ValueError:
                parsed = data
            return resp.status, parsed, {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def status(self, node: str, timeout: float = 2.0) -> dict | None:
        try:
            code, body, _ = self.request(node, "GET", "/status", timeout=timeout)
        except OSError:
            return None
        return body if code == 200 else None

    def wait_for_leader(self, timeout: float = 15.0, among: list[str] | None = None) -> str:
        """The id of a leader that every running node in `among` agrees on."""
        deadline = time.monotonic() + timeout
        among = among or [n for n in self.ids if self.running(n)]
        last = None
        while time.monotonic() < deadline:
            statuses = [self.status(n) for n in among]
            last = statuses
            answered = [s for s in statuses if s]
            leaders = {s["leader"] for s in answered}
            if len(answered) == len(statuses) and len(leaders) == 1 and None not in leaders:
                leader = leaders.pop()
                if any(s["id"] == leader and s["role"] == "leader" for s in answered):
                    return leader
            time.sleep(0.05)
        raise TimeoutError(f"no agreed leader among {among} within {timeout}s; last statuses: {last}")

    def wait_until(self, predicate, timeout: float = 15.0, interval: float = 0.05, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"{what} not reached within {timeout}s")

    def write(self, path: str, body: dict, timeout: float = 10.0, node: str | None = None):
        """A write through the current leader, retrying 307/503 until it is answered 200/409."""
        deadline = time.monotonic() + timeout
        target = node
        last: OSError | tuple[int, Any] | None = None  # the last failure or answer, for the timeout's message
        while time.monotonic() < deadline:
            target = target or self.wait_for_leader(max(0.1, deadline - time.monotonic()))
            method = "PUT" if not path.endswith(("/cas", "/append")) else "POST"
            try:
                code, resp, headers = self.request(target, method, path, body)
            except OSError as exc:
                last = exc
                target = None
                time.sleep(0.05)
                continue
            last = (code, resp)
            if code in (200, 409):
                return code, resp
            if code == 307:
                target = resp["leader"]
                continue
            target = None
            time.sleep(0.05)
        raise TimeoutError(f"write {path} not acknowledged within {timeout}s; last answer {last}")

    def log_events(self, node: str) -> list[dict]:
        try:
            with open(self.log_path(node), encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []
