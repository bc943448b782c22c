"""Test helpers (not product code): an in-process fake of the node's HTTP API and a DB and
nemesis over it, so the runner, workloads and CLI can be tested in a second, without Raft.

FakeCluster: N HTTP servers on 127.0.0.1 sharing one linearizable map (a lock), with one
leader; followers answer 307 to the leader like the real node. Kill closes a node's socket
(connection refused), pause makes its handlers block, like SIGSTOP does to the real one.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from chaos.history import INFO, Op
from chaos.interfaces import DB, Exec, LogFiles, Nemesis, Node, Pause, Primaries, Process, StatusProbe
from systems.raftnode.client import CLIENTS
from systems.raftnode.db import StatusFetcher, leader_of


class FakeState:
    def __init__(self):
        self.lock = threading.Lock()
        self.data: dict = {}
        self.sessions: dict = {}
        self.writes = 0

    def apply(self, op: str, key: str, body: dict) -> tuple[int, dict]:
        with self.lock:
            cid, seq = body.get("client_id"), body.get("seq")
            if cid is not None and seq is not None:
                last = self.sessions.get(cid)
                if last is not None:
                    if seq < last[0]:
                        return 400, {"error": "stale_seq"}
                    if seq == last[0]:
                        return last[1], last[2]
            status, answer = self._execute(op, key, body)
            if cid is not None and seq is not None:
                self.sessions[cid] = (seq, status, answer)
            self.writes += 1
            return status, answer

    def _execute(self, op, key, body):
        if op == "put":
            self.data[key] = body["value"]
            return 200, {}
        if op == "delete":
            self.data.pop(key, None)
            return 200, {}
        current = self.data.get(key)
        if op == "cas":
            if current == body["expected"]:
                self.data[key] = body["value"]
                return 200, {"ok": True}
            return 409, {"ok": False, "value": current}
        if op == "append":
            new = (current or []) + [body["value"]]
            self.data[key] = new
            return 200, {"value": new}
        return 400, {"error": f"unknown op {op}"}


class FakeNode:
    def __init__(self, cluster: "FakeCluster", node_id: str, port: int = 0):
        self.cluster = cluster
        self.id = node_id
        self.port = port
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.running = threading.Event()   # cleared while paused
        self.running.set()
        self.term = 1
        self.conns: set = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        node = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                node.conns.add(self.connection)

            def finish(self):
                node.conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def _send(self, status, body, headers=None):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def _handle(self, method):
                node.running.wait()
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                if path == "/status":
                    return self._send(200, node.status())
                if not path.startswith("/kv/"):
                    return self._send(404, {"error": "no such route"})
                rest = path[len("/kv/"):]
                op = None
                if rest.endswith("/cas"):
                    rest, op = rest[:-4], "cas"
                elif rest.endswith("/append"):
                    rest, op = rest[:-7], "append"
                key = unquote(rest)
                leader = node.cluster.leader
                if leader is None:
                    return self._send(503, {"error": "no_leader"})
                if leader is not node:
                    return self._send(307, {"error": "not_leader", "leader": leader.id,
                                            "leader_url": leader.url},
                                      {"Location": leader.url + self.path})
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    return self._send(400, {"error": "bad_json"})
                if node.cluster.delay:
                    time.sleep(node.cluster.delay)
                state = node.cluster.state
                if method == "GET":
                    with state.lock:
                        if key in state.data:
                            return self._send(200, {"value": state.data[key]})
                    return self._send(404, {"error": "not_found"})
                if method == "PUT" and op is None:
                    return self._send(*state.apply("put", key, body))
                if method == "DELETE":
                    return self._send(*state.apply("delete", key, body))
                if method == "POST" and op:
                    return self._send(*state.apply(op, key, body))
                return self._send(400, {"error": "bad_request"})

            def do_GET(self):
                self._handle("GET")

            def do_PUT(self):
                self._handle("PUT")

            def do_POST(self):
                self._handle("POST")

            def do_DELETE(self):
                self._handle("DELETE")

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        # Like a killed process: open connections are reset too.
        import socket

        for conn in list(self.conns):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.running.set()

    def status(self) -> dict:
        leader = self.cluster.leader
        return {"id": self.id, "role": "leader" if leader is self else "follower",
                "term": self.cluster.term, "leader": leader.id if leader else None,
                "commit_index": self.cluster.state.writes, "last_applied": self.cluster.state.writes,
                "last_log_index": self.cluster.state.writes, "snapshot_index": 0,
                "voted_for": None, "peers": [n.id for n in self.cluster.nodes], "pid": 0,
                "wall_time": time.time(), "monotonic_time": time.monotonic()}


class FakeCluster:
    def __init__(self, count: int = 3, delay: float = 0.0):
        self.state = FakeState()
        self.delay = delay
        self.term = 1
        self.nodes = [FakeNode(self, f"n{i}") for i in range(1, count + 1)]
        self.leader: FakeNode | None = None
        self.down: set[str] = set()

    def start(self) -> "FakeCluster":
        for n in self.nodes:
            n.start()
        self.leader = self.nodes[0]
        return self

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def elect(self) -> None:
        """A live, unpaused node becomes leader in a new term."""
        for n in self.nodes:
            if n.id not in self.down and n.running.is_set():
                self.leader = n
                self.term += 1
                return
        self.leader = None


class FakeDB(DB, Process, Pause, StatusProbe, Primaries, LogFiles, Exec):
    """Speaks the bundled node's HTTP API, so the raftnode clients, status probe and leader
    lookup serve it (the framework sees only the DB's capabilities)."""

    name = "fake"

    def __init__(self, count_hint: int = 3, delay: float = 0.0):
        self.delay = delay
        self.cluster: FakeCluster | None = None
        self.torn_down = False
        self.logs_collected: list[str] = []
        self.nodes: list[Node] = []
        self._status = StatusFetcher()
        self.request_timeout = 1.0

    def probe(self, node: Node, timeout: float):
        return self._status.get(node, timeout)

    def primaries(self, view):
        statuses = view.fresh_statuses() if view is not None else {
            n.id: s for n in self.nodes if (s := self.probe(n, 0.5)) is not None}
        leader = leader_of(statuses)
        return [leader] if leader else []

    def client(self, workload: str, client_id: str):
        return CLIENTS[workload](client_id, self.request_timeout)

    def is_running(self, node: Node) -> bool:
        return self._fake(node).server is not None

    def setup(self, nodes: int) -> list[Node]:
        self.cluster = FakeCluster(nodes, self.delay).start()
        self.nodes = [Node(n.id, n.url, "127.0.0.1", client_port=n.port) for n in self.cluster.nodes]
        return self.nodes

    def _fake(self, node: Node) -> FakeNode:
        return next(n for n in self.cluster.nodes if n.id == node.id)

    def teardown(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        self.torn_down = True

    def start(self, node: Node) -> None:
        fake = self._fake(node)
        if fake.server is None:
            fake.start()
        self.cluster.down.discard(node.id)
        if self.cluster.leader is None:
            self.cluster.elect()

    def kill(self, node: Node) -> None:
        fake = self._fake(node)
        fake.stop()
        self.cluster.down.add(node.id)
        if self.cluster.leader is fake:
            self.cluster.elect()

    def pause(self, node: Node) -> None:
        fake = self._fake(node)
        fake.running.clear()
        if self.cluster.leader is fake:
            self.cluster.elect()

    def resume(self, node: Node) -> None:
        self._fake(node).running.set()
        if self.cluster.leader is None:
            self.cluster.elect()

    def exec(self, node, argv, check=True) -> str:
        return ""

    def collect_logs(self, node: Node, dest_dir: str) -> list[str]:
        import os

        path = os.path.join(dest_dir, "node.log")
        with open(path, "w") as f:
            f.write(json.dumps({"ts": time.time(), "mono": time.monotonic(), "node": node.id,
                                "event": "start"}) + "\n")
        self.logs_collected.append(node.id)
        return [path]


class FakeNemesis(Nemesis):
    """kill/start and pause/resume over FakeDB, targets resolved like the real nemesis."""

    fs = frozenset({"kill", "start", "pause", "resume"})

    def __init__(self, db: FakeDB, nodes: list[Node], view, rng):
        self.db, self.nodes, self.view, self.rng = db, nodes, view, rng
        self.killed: list[str] = []
        self.paused: list[str] = []

    def _targets(self, target) -> list[Node]:
        by_id = {n.id: n for n in self.nodes}
        if isinstance(target, list):
            return [by_id[t] for t in target]
        if target == "leader":
            leader = self.view.leader() if self.view else None
            return [by_id[leader]] if leader else []
        count = {"one": 1, "minority": (len(self.nodes) - 1) // 2, "majority": len(self.nodes) // 2 + 1,
                 "all": len(self.nodes)}[target]
        return self.rng.sample(self.nodes, count)

    def invoke(self, op: Op) -> Op:
        value = op.value or {}
        done_nodes: list[str] = []
        if op.f == "kill":
            for n in self._targets(value["target"]):
                self.db.kill(n)
                self.killed.append(n.id)
                done_nodes.append(n.id)
        elif op.f == "start":
            for nid in self.killed:
                self.db.start(next(n for n in self.nodes if n.id == nid))
                done_nodes.append(nid)
            self.killed = []
        elif op.f == "pause":
            for n in self._targets(value["target"]):
                self.db.pause(n)
                self.paused.append(n.id)
                done_nodes.append(n.id)
        elif op.f == "resume":
            for nid in self.paused:
                self.db.resume(next(n for n in self.nodes if n.id == nid))
                done_nodes.append(nid)
            self.paused = []
        else:
            raise ValueError(f"fake nemesis cannot {op.f}")
        return Op(process="nemesis", type=INFO, f=op.f, value={"nodes": done_nodes}, time=0)

    def heal_all(self) -> None:
        for f in ("resume", "start"):
            self.invoke(Op(process="nemesis", type="invoke", f=f))


def fake_nemesis_factory(faults, db, nodes, view, rng):
    return FakeNemesis(db, nodes, view, rng)


class StatusOnlyDB(DB, StatusProbe, Primaries):
    """A DB that only probes statuses and names the leader (for the status poller's tests)."""

    name = "status-only"

    def __init__(self, nodes: list[Node]):
        self.nodes = nodes
        self._status = StatusFetcher()

    def setup(self, count):
        return self.nodes

    def teardown(self):
        pass

    def probe(self, node: Node, timeout: float):
        return self._status.get(node, timeout)

    def primaries(self, view):
        leader = leader_of(view.fresh_statuses())
        return [leader] if leader else []
