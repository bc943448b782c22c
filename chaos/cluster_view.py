"""The controller's view of the cluster: every node's /status polled at least every 100 ms.

Each poll is one line of status.jsonl ({"time": controller monotonic ns, "node", "status" or
null, "error"}), which the report turns into the Raft timeline next to the node logs. The
nemesis asks `leader()` to aim at the current leader; the runner asks `wait_stable_leader()`
after healing.

One thread per node, so a paused node (whose polls hang until the timeout) does not slow down
the polls of the others.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from typing import Callable
from urllib.parse import urlsplit

from chaos.interfaces import Node

log = logging.getLogger("splitbrain.view")

POLL_INTERVAL = 0.05     # seconds between the starts of two polls of one node
POLL_TIMEOUT = 0.5       # a node that does not answer within this is "unreachable" for the poll
FRESH_FOR = 1.0          # a status older than this no longer counts for leader()


class NodeState:
    __slots__ = ("status", "time", "error", "ok_time")

    def __init__(self):
        self.status: dict | None = None
        self.time = 0.0          # monotonic seconds of the last poll's answer (or failure)
        self.ok_time = 0.0       # monotonic seconds of the last successful poll
        self.error: str | None = None


class ClusterView:
    def __init__(self, nodes: list[Node], status_path: str | None = None,
                 interval: float = POLL_INTERVAL, timeout: float = POLL_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic):
        self.nodes = list(nodes)
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.states = {n.id: NodeState() for n in self.nodes}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.out = open(status_path, "a", encoding="utf-8") if status_path else None
        self.polls = 0

    # -- polling ---------------------------------------------------------------------------------
    def start(self) -> "ClusterView":
        for node in self.nodes:
            t = threading.Thread(target=self._poll_loop, args=(node,), name=f"status-{node.id}", daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=self.timeout + 1.0)
        self.threads = []
        with self.lock:
            if self.out is not None and not self.out.closed:
                self.out.flush()
                self.out.close()

    def _poll_loop(self, node: Node) -> None:
        parts = urlsplit(node.client_url)
        conn: http.client.HTTPConnection | None = None
        while not self.stop_event.is_set():
            started = self.clock()
            status, error = None, None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=self.timeout)
                conn.request("GET", "/status", headers={"Accept": "application/json"})
                response = conn.getresponse()
                body = response.read()
                if response.status == 200:
                    status = json.loads(body)
                    if not isinstance(status, dict):
                        status, error = None, "status is not a JSON object"
                else:
                    error = f"http {response.status}"
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, ValueError) as e:
                error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                if conn is not None:
                    conn.close()
                conn = None
            self.record(node.id, status, error)
            delay = self.interval - (self.clock() - started)
            if delay > 0:
                self.stop_event.wait(delay)
        if conn is not None:
            conn.close()

    def record(self, node_id: str, status: dict | None, error: str | None) -> None:
        now = self.clock()
        line = {"time": time.monotonic_ns(), "node": node_id, "status": status}
        if error:
            line["error"] = error
        with self.lock:
            state = self.states[node_id]
            state.time, state.error = now, error
            if status is not None:
                state.status, state.ok_time = status, now
            else:
                state.status = None
            self.polls += 1
            if self.out is not None and not self.out.closed:
                self.out.write(json.dumps(line, separators=(",", ":"), default=str) + "\n")

    # -- queries ---------------------------------------------------------------------------------
    def fresh_statuses(self) -> dict[str, dict]:
        now = self.clock()
        with self.lock:
            return {nid: s.status for nid, s in self.states.items()
                    if s.status is not None and now - s.ok_time <= FRESH_FOR}

    def leader(self) -> str | None:
        """The node that currently leads: a fresh status saying role=leader, the highest term
        winning when a deposed leader has not noticed yet; None when no node claims it."""
        best = None
        for nid, status in self.fresh_statuses().items():
            if status.get("role") == "leader":
                term = status.get("term") or 0
                if best is None or term > best[0]:
                    best = (term, nid)
        return best[1] if best else None

    def agreed_leader(self) -> str | None:
        """A leader that a majority of all nodes (itself included) answer is their leader in
        the leader's term: the cluster as a whole has converged on it."""
        statuses = self.fresh_statuses()
        leader = self.leader()
        if leader is None:
            return None
        term = statuses[leader].get("term")
        agree = sum(1 for s in statuses.values() if s.get("leader") == leader and s.get("term") == term)
        if statuses[leader].get("leader") != leader:
            agree += 1
        return leader if agree > len(self.nodes) // 2 else None

    def wait_stable_leader(self, timeout: float, stable_for: float = 1.0,
                           stop: threading.Event | None = None) -> str | None:
        """Wait (bounded) until the same agreed leader holds for `stable_for` seconds."""
        deadline = self.clock() + timeout
        candidate, since = None, 0.0
        while self.clock() < deadline:
            if stop is not None and stop.is_set():
                return None
            leader = self.agreed_leader()
            now = self.clock()
            if leader is not None and leader == candidate:
                if now - since >= stable_for:
                    return leader
            else:
                candidate, since = leader, now
            time.sleep(self.interval)
        return None

    def summary(self) -> dict[str, str]:
        """node -> short state for the progress display ("leader t3", "down", ...)."""
        now = self.clock()
        out = {}
        with self.lock:
            for nid, s in self.states.items():
                if s.status is not None and now - s.ok_time <= FRESH_FOR:
                    out[nid] = f"{s.status.get('role', '?')} t{s.status.get('term', '?')}"
                else:
                    out[nid] = "unreachable"
        return out
