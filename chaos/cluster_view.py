"""The controller's view of the cluster: every node's status, polled through the DB's status
probe at least every 100 ms, and who leads, through the DB's Primaries capability.

Each poll is one line of status.jsonl ({"time": controller monotonic ns, "node", "status" or
null, "error"}), which the report turns into the leadership timeline. Nemeses ask the DB for the
leader with this view (chaos.nemesis.common.current_leader); the runner asks
`wait_stable_leader()` after healing.

One thread per node, so a paused node (whose polls hang until the timeout) does not slow down
the polls of the others. A DB without a status probe has no poll threads and no status.jsonl.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

from chaos.interfaces import Node, Primaries, StatusProbe, StatusView

log = logging.getLogger("splitbrain.view")

POLL_INTERVAL = 0.05     # seconds between the starts of two polls of one node
POLL_TIMEOUT = 0.5       # a node that does not answer within this is "unreachable" for the poll
FRESH_FOR = 1.0          # a status older than this no longer counts


class NodeState:
    __slots__ = ("status", "time", "error", "ok_time")

    def __init__(self):
        self.status: dict | None = None
        self.time = 0.0          # monotonic seconds of the last poll's answer (or failure)
        self.ok_time = 0.0       # monotonic seconds of the last successful poll
        self.error: str | None = None


class ClusterView(StatusView):
    def __init__(self, nodes: list[Node], status_path: str | None = None, db=None,
                 interval: float = POLL_INTERVAL, timeout: float = POLL_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic, probe: Callable | None = None):
        self.nodes = list(nodes)
        self.db = db
        if probe is None and isinstance(db, StatusProbe):
            probe = db.probe
        self.probe = probe
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.states = {n.id: NodeState() for n in self.nodes}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.out = open(status_path, "a", encoding="utf-8") if status_path and probe else None
        self.polls = 0

    # -- polling ---------------------------------------------------------------------------------
    def start(self) -> "ClusterView":
        if self.probe is None:
            return self
        for node in self.nodes:
            t = threading.Thread(target=self._poll_loop, args=(node,), name=f"status-{node.id}", daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def add_node(self, node: Node) -> None:
        """Poll a node added mid-run (membership) from now on."""
        with self.lock:
            if node.id in self.states:
                return
            self.nodes.append(node)
            self.states[node.id] = NodeState()
        if self.probe is not None and not self.stop_event.is_set():
            t = threading.Thread(target=self._poll_loop, args=(node,), name=f"status-{node.id}", daemon=True)
            t.start()
            self.threads.append(t)

    def remove_node(self, node_id: str) -> None:
        """Stop polling a retired node: it no longer counts for the leader or the summary."""
        with self.lock:
            self.nodes = [n for n in self.nodes if n.id != node_id]
            self.states.pop(node_id, None)

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
        while not self.stop_event.is_set() and node.id in self.states:
            started = self.clock()
            status, error = None, None
            probe = self.probe
            assert probe is not None, "a poller runs only with a probe (start)"
            try:
                status = probe(node, self.timeout)
                if status is None:
                    error = "no answer"
                elif not isinstance(status, dict):
                    status, error = None, "status is not a JSON object"
            except Exception as e:  # noqa: BLE001 - a probe that fails is a node that did not answer
                error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            self.record(node.id, status, error)
            delay = self.interval - (self.clock() - started)
            if delay > 0:
                self.stop_event.wait(delay)

    def record(self, node_id: str, status: dict | None, error: str | None) -> None:
        now = self.clock()
        line = {"time": time.monotonic_ns(), "node": node_id, "status": status}
        if error:
            line["error"] = error
        with self.lock:
            state = self.states.get(node_id)
            if state is None:
                return  # retired while its probe was under way
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
        """The node the system names as its leader now (None without the leader capability)."""
        if not isinstance(self.db, Primaries):
            return None
        leaders = self.db.primaries(self)
        return leaders[0] if leaders else None

    def wait_stable_leader(self, timeout: float, stable_for: float = 1.0,
                           stop: threading.Event | None = None) -> str | None:
        """Wait (bounded) until the same leader holds for `stable_for` seconds."""
        deadline = self.clock() + timeout
        candidate, since = None, 0.0
        while self.clock() < deadline:
            if stop is not None and stop.is_set():
                return None
            leader = self.leader()
            now = self.clock()
            if leader is not None and leader == candidate:
                if now - since >= stable_for:
                    return leader
            else:
                candidate, since = leader, now
            time.sleep(self.interval)
        return None

    def summary(self) -> dict[str, str]:
        """node -> short state for the progress display ("leader t3", "unreachable", ...)."""
        if self.probe is None:
            return {}
        now = self.clock()
        out = {}
        with self.lock:
            for nid, s in self.states.items():
                if s.status is not None and now - s.ok_time <= FRESH_FOR:
                    role, term = s.status.get("role"), s.status.get("term")
                    out[nid] = " ".join(str(x) for x in (role, f"t{term}" if term is not None else None) if x) or "up"
                else:
                    out[nid] = "unreachable"
        return out
