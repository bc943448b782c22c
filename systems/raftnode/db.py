"""The bundled Raft node as a DB: its command line, its /status, who leads, its log checkers.

It plugs in exactly as another system would: RaftnodeDocker is a chaos.provision.docker
ContainerDB, RaftnodeLocal a chaos.provision.local ProcessDB and RaftnodeSSH a
chaos.provision.ssh SSHHostDB, each filled in with what is
specific to our node (this module is the only place that knows its flags):

    --node-option election-timeout=150-300  heartbeat=50  pre-vote=false  check-quorum=false
                  snapshot-every=50  request-timeout=2000  tick=10  bug=<seeded bug>

`make_db(config, run_id)` is the registry's entry (splitbrain.dbs: raftnode).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import sys
import threading
import time

from chaos.interfaces import (CHANGE_FAIL, CHANGE_OK, CHANGE_UNKNOWN, Client, Membership, Node, Primaries,
                              StatusProbe, StatusView, Unsupported)
from raftnode.core import KNOWN_BUGS
from chaos.provision.base import ProvisionError, db_factory, wait_until
from chaos.provision.docker import ContainerDB
from chaos.provision.local import ProcessDB
from chaos.provision.ssh import SSHHostDB

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE_PATH = os.path.join(REPO_ROOT, "node_image")

# The node's seeded bugs, from the node itself (raftnode.core lists them once).
SEEDED_BUGS = tuple(sorted(KNOWN_BUGS))

NODE_OPTION_HELP = {
    "election-timeout": "randomized election timeout range MIN-MAX in ms (default 150-300)",
    "heartbeat": "heartbeat interval in ms (default 50)",
    "tick": "logical clock tick in ms (default 10)",
    "pre-vote": "true/false: the pre-vote phase (default true)",
    "check-quorum": "true/false: a leader steps down without a quorum (default true)",
    "snapshot-every": "snapshot and compact the log every N applied entries (default 10000, 0 off)",
    "request-timeout": "the node's client request deadline in ms (default 2000)",
    "bug": f"a seeded bug: {', '.join(SEEDED_BUGS)}",
}


def _bool(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"node option {name} must be true or false, got {value!r}")


def _int(name: str, value, minimum: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"node option {name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"node option {name} must be at least {minimum}, got {number}")
    return number


def _range(name: str, value) -> str:
    text = str(value).strip()
    low, sep, high = text.partition("-")
    try:
        lo, hi = int(low), int(high if sep else low)
    except ValueError:
        raise ValueError(f"node option {name} must look like MIN-MAX in ms (e.g. 150-300), got {value!r}") from None
    if not 0 < lo <= hi:
        raise ValueError(f"node option {name} needs 0 < MIN <= MAX, got {value!r}")
    return f"{lo}-{hi}"


def node_flags(options: dict) -> list[str]:
    """The node's command-line flags for the given node options (validated; raises ValueError)."""
    argv: list[str] = []
    for name, value in sorted(options.items()):
        if name == "election-timeout":
            argv += ["--election-timeout", _range(name, value)]
        elif name in ("heartbeat", "tick", "request-timeout"):
            argv += [f"--{name}", str(_int(name, value, 1))]
        elif name == "snapshot-every":
            argv += ["--snapshot-every", str(_int(name, value, 0))]
        elif name == "pre-vote":
            argv += [] if _bool(name, value) else ["--no-pre-vote"]
        elif name == "check-quorum":
            argv += [] if _bool(name, value) else ["--no-check-quorum"]
        elif name == "bug":
            if value in (None, ""):
                continue
            if value not in SEEDED_BUGS:
                raise ValueError(f"unknown seeded bug {value!r} (valid: {', '.join(SEEDED_BUGS)})")
            argv += ["--bug", str(value)]
        else:
            raise ValueError(f"raftnode has no node option {name!r} (valid: {', '.join(NODE_OPTION_HELP)})")
    election = _range("election-timeout", options.get("election-timeout", "150-300"))
    heartbeat = _int("heartbeat", options.get("heartbeat", 50), 1)
    if heartbeat >= int(election.split("-")[0]):
        raise ValueError(f"node option heartbeat ({heartbeat} ms) must be below the election timeout's "
                         f"minimum ({election})")
    return argv


def cluster_arg(nodes: list[Node]) -> str:
    """The node's --cluster value: id=peer_host:peer_port/client_host:client_port,..."""
    return ",".join(f"{n.id}={n.address}:{n.peer_port}/{n.address}:{n.client_port}" for n in nodes)


class StatusFetcher:
    """GET /status over one kept-alive connection per node (the poller asks 20 times a second)."""

    def __init__(self):
        self._conns: dict[str, http.client.HTTPConnection] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, node: Node, timeout: float) -> dict | None:
        with self._guard:
            lock = self._locks.setdefault(node.id, threading.Lock())
        with lock:
            conn = self._conns.get(node.id)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(node.address, node.client_port, timeout=timeout)
                    self._conns[node.id] = conn
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                conn.request("GET", "/status", headers={"Accept": "application/json"})
                response = conn.getresponse()
                body = response.read()
                if response.will_close:
                    conn.close()
                    self._conns.pop(node.id, None)
                if response.status != 200:
                    return None
                status = json.loads(body)
                return status if isinstance(status, dict) else None
            except (OSError, http.client.HTTPException, ValueError):
                if conn is not None:
                    conn.close()
                self._conns.pop(node.id, None)
                return None

    def close(self) -> None:
        with self._guard:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()


def leader_of(statuses: dict[str, dict]) -> str | None:
    """The node that leads: a status saying role=leader, the highest term winning when a
    deposed leader has not noticed yet."""
    best = None
    for nid, status in statuses.items():
        if status.get("role") == "leader":
            term = status.get("term") or 0
            if best is None or term > best[0]:
                best = (term, nid)
    return best[1] if best else None


def get_status(url: str, timeout: float = 1.0) -> dict | None:
    """GET <url>/status of one node; None when it does not answer (for tools and tests)."""
    import urllib.error
    import urllib.request
    # Nodes are on loopback or our own internal networks: never through a proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url.rstrip("/") + "/status", timeout=timeout) as resp:
            status = json.loads(resp.read().decode("utf-8"))
            return status if isinstance(status, dict) else None
    except (OSError, ValueError, urllib.error.URLError):
        return None


def wait_for_leader(nodes: list[Node], timeout: float = 30.0, status=None) -> str:
    """Poll every node's status until a majority agree on one leader that says it leads (and
    no other node says it leads); return its id. ProvisionError naming each node's state."""
    status = status or (lambda node, t: get_status(node.client_url, t))
    last: dict = {}

    def agreed() -> str | None:
        nonlocal last
        last = {n.id: status(n, 1.0) for n in nodes}
        leader = leader_of({k: v for k, v in last.items() if v})
        if leader is None or sum(1 for s in last.values() if s and s.get("leader") == leader) <= len(nodes) // 2:
            return None
        return leader if [nid for nid, s in last.items() if s and s.get("role") == "leader"] == [leader] else None

    found: list[str] = []
    if wait_until(lambda: bool(found.append(agreed()) or found[-1]), timeout, interval=0.1):
        return found[-1]
    summary = ", ".join(f"{nid}: " + (f"{st.get('role')} term {st.get('term')} leader {st.get('leader')}"
                                       if st else "no answer") for nid, st in last.items())
    raise ProvisionError(f"no leader elected within {timeout:.0f} s ({summary})")


class Raftnode(StatusProbe, Primaries):
    """What is specific to our node, shared by its docker and local DBs."""

    name = "raftnode"
    node_option_help = NODE_OPTION_HELP
    seeded_bugs = SEEDED_BUGS
    client_port = 8000
    peer_port = 9000
    #: a node that logged one of these stopped itself on an internal failure, or crashed
    fatal_log_patterns = (r'"event":\s*"fatal"', r"^Traceback \(most recent call last\)",
                          r"raftnode: fatal:")
    request_timeout = 3.0

    def _raftnode_init(self) -> None:
        node_flags(self.node_options)  # validate now: nothing has started yet
        self._status = StatusFetcher()
        # Peer connections are authenticated with a secret per cluster (the node refuses to
        # start without one): only members of this run's cluster can speak the peer protocol.
        self.peer_secret = secrets.token_hex(32)

    def peer_environment(self) -> dict[str, str]:
        return {"RAFTNODE_PEER_SECRET": self.peer_secret}

    def node_argv(self, node: Node, nodes: list[Node], python: str, data_dir: str, log_file: str) -> list[str]:
        if node.meta.get("joined"):
            # added mid-run: no configuration of its own until the cluster adds it (--join)
            start = ["--join", f"{node.address}:{node.peer_port}/{node.address}:{node.client_port}"]
        else:
            # The bootstrap members, as at setup: a member restarted after changes keeps the
            # same flags (its configuration comes from its disk).
            if getattr(self, "_bootstrap_cluster", None) is None:
                self._bootstrap_cluster = cluster_arg(nodes)
            start = ["--cluster", self._bootstrap_cluster]
        return [python, "-m", "raftnode", "--id", node.id, *start,
                "--client-listen", f"{node.address}:{node.client_port}",
                "--peer-listen", f"{node.address}:{node.peer_port}",
                "--data-dir", data_dir, "--log-file", log_file] + node_flags(self.node_options)

    # -- status, leader, readiness ---------------------------------------------------------------
    def probe(self, node: Node, timeout: float) -> dict | None:
        return self._status.get(node, timeout)

    def primaries(self, view: StatusView | None) -> list[str]:
        if view is not None:
            statuses = view.fresh_statuses()
        else:
            statuses = {n.id: s for n in self.nodes if (s := self.probe(n, 0.5)) is not None}
        leader = leader_of(statuses)
        return [leader] if leader else []

    def wait_ready(self, nodes: list[Node], timeout: float) -> None:
        """Until a majority of the nodes agree on one leader that says it leads."""
        wait_for_leader(nodes, timeout, status=self.probe)

    # -- clients, checkers, report ------------------------------------------------------------------
    def client(self, workload: str, client_id: str) -> Client:
        from systems.raftnode.client import CLIENTS
        if workload not in CLIENTS:
            raise Unsupported(f"raftnode has no client for the {workload!r} workload "
                              f"(it has: {', '.join(CLIENTS)})")
        return CLIENTS[workload](client_id, self.request_timeout)

    def node_log_checkers(self):
        from systems.raftnode.election_safety import check_node_logs
        return [check_node_logs]

    def describe(self) -> dict:
        options = {"election-timeout": "150-300", "heartbeat": "50", **self.node_options}
        return {"system": "raftnode (the bundled Raft node)",
                "node options": {k: str(v) for k, v in sorted(options.items())}}


#: refusals that mean "not now" (a change in flight, a learner still catching up, no leader yet)
RETRYABLE_ERRORS = ("change_in_progress", "leader_not_ready", "not_caught_up", "no_leader", "transferring",
                    "transfer_in_progress")
MAX_ADMIN_REDIRECTS = 3
# A change sent without waiting: long enough for a refusal or a redirect to come back at once,
# far shorter than a commit that may never come.
NO_WAIT_TIMEOUT_S = 0.5


class RaftnodeMembership(Membership):
    """The membership capability through the node's admin API (GET /cluster, POST
    /cluster/learners|promote|remove|transfer-leader): 200 = ok (committed); 504, a timeout or a
    connection lost after sending = unknown; 307 past the redirect limit, 503, 409, 400 and a
    refused connection = fail (nothing appended). "retry": True marks refusals that mean
    "not now". The provisioner (add_node, retire_node) starts and retires the processes."""

    admin_timeout = 5.0

    def provision_node(self) -> Node:
        node = self.add_node()
        if not wait_until(lambda: self.probe(node, 1.0) is not None, self.ready_timeout, interval=0.1):
            raise ProvisionError(f"{node.id} (joining) did not answer /status within {self.ready_timeout:.0f} s")
        return node

    def add_learner(self, node: Node) -> dict:
        status = self.probe(node, 2.0)
        if status is None or not status.get("incarnation"):
            return {"outcome": CHANGE_FAIL, "detail": f"{node.id} does not answer /status with its incarnation"}
        return self._admin("/cluster/learners", {"id": node.id, "peer": f"{node.address}:{node.peer_port}",
                                                 "client": f"{node.address}:{node.client_port}",
                                                 "incarnation": status["incarnation"]})

    def promote(self, node_id: str, wait: bool = True) -> dict:
        return self._admin("/cluster/promote", {"id": node_id},
                           timeout=None if wait else NO_WAIT_TIMEOUT_S)

    def remove(self, node_id: str) -> dict:
        return self._admin("/cluster/remove", {"id": node_id})

    def transfer_leadership(self, to: str | None = None) -> dict:
        result = self._admin("/cluster/transfer-leader", {"to": to} if to else {})
        if result["outcome"] == CHANGE_OK:
            result["leader"] = (result.get("answer") or {}).get("leader")
        return result

    def configuration(self) -> dict | None:
        for node in self._leaders_first():
            try:
                code, body = self._request(node, "GET", "/cluster", None)
            except (OSError, http.client.HTTPException, ValueError):
                continue
            if code == 200 and isinstance(body, dict) and body.get("role") == "leader":
                conf = body.get("configuration") or {}
                return {"voters": sorted(conf.get("voters", [])), "learners": sorted(conf.get("learners", [])),
                        "committed": bool(conf.get("committed")), "index": conf.get("index"),
                        "leader": body.get("id"), "term": body.get("term")}
        return None

    # -- HTTP ------------------------------------------------------------------------------------
    def _leaders_first(self) -> list[Node]:
        statuses = {n.id: s for n in self.nodes if (s := self.probe(n, 0.5)) is not None}
        leader = leader_of(statuses)
        return sorted((n for n in self.nodes if n.id in statuses), key=lambda n: n.id != leader)

    def _request(self, node: Node, method: str, path: str, body,
                 timeout: float | None = None) -> tuple[int, dict | None]:
        conn = http.client.HTTPConnection(node.address, node.client_port,
                                          timeout=self.admin_timeout if timeout is None else timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=payload,
                         headers={"Content-Type": "application/json"} if payload is not None else {})
            response = conn.getresponse()
            data = response.read()
            parsed = json.loads(data) if data else None
            return response.status, parsed if isinstance(parsed, dict) else None
        finally:
            conn.close()

    def _admin(self, path: str, body: dict, timeout: float | None = None) -> dict:
        """One admin request to the leader (redirects followed), mapped onto an outcome;
        `timeout` (default admin_timeout) is how long an answer is waited for."""
        candidates = self._leaders_first()
        if not candidates:
            return {"outcome": CHANGE_FAIL, "detail": "no node answers /status", "retry": True}
        by_id = {n.id: n for n in self.nodes}
        node, hops = candidates[0], 0
        t0 = time.monotonic()
        while True:
            try:
                code, answer = self._request(node, "POST", path, body, timeout)
            except ConnectionRefusedError as e:
                return {"outcome": CHANGE_FAIL, "detail": f"{node.id}: {e}", "retry": True}
            except (OSError, http.client.HTTPException, ValueError) as e:
                # sent (or maybe sent) and no answer: the change may have been appended
                return {"outcome": CHANGE_UNKNOWN, "detail": f"{node.id}: {type(e).__name__}: {e}", "via": node.id}
            error = (answer or {}).get("error")
            result = {"via": node.id, "status": code, "ms": round((time.monotonic() - t0) * 1000, 1)}
            if code == 307 and hops < MAX_ADMIN_REDIRECTS and (answer or {}).get("leader") in by_id:
                node, hops = by_id[answer["leader"]], hops + 1
                continue
            if code == 200:
                return {**result, "outcome": CHANGE_OK, "detail": "committed", "answer": answer}
            if code == 504:
                return {**result, "outcome": CHANGE_UNKNOWN, "detail": (answer or {}).get("detail", "timeout")}
            return {**result, "outcome": CHANGE_FAIL, "error": error,
                    "detail": (answer or {}).get("detail") or f"HTTP {code}",
                    "retry": code in (307, 503) or error in RETRYABLE_ERRORS}


class RaftnodeDocker(Raftnode, ContainerDB, RaftnodeMembership):
    data_dir = "/var/lib/raftnode"
    log_dir = "/var/log/raftnode"
    process_match = "raftnode"

    def __init__(self, run_id: str, nodes: int = 3, node_options: dict | None = None, **kw):
        super().__init__(run_id, nodes, node_options, **kw)
        self._raftnode_init()

    def image_tag(self) -> str:
        if self.image:
            return self.image
        from systems.raftnode.image import build_node_image
        return build_node_image()

    def command(self, node: Node, nodes: list[Node]) -> list[str]:
        return self.node_argv(node, nodes, "python3", self.data_dir, f"{self.log_dir}/node.log")

    def environment(self, node: Node) -> dict[str, str]:
        return self.peer_environment()


class RaftnodeLocal(Raftnode, ProcessDB, RaftnodeMembership):
    def __init__(self, run_id: str, nodes: int = 3, node_options: dict | None = None,
                 python: str = sys.executable, **kw):
        super().__init__(run_id, nodes, node_options, **kw)
        self.python = python
        self._raftnode_init()

    def command(self, node: Node, nodes: list[Node]) -> list[str]:
        return self.node_argv(node, nodes, self.python, self.data_dir(node),
                              os.path.join(self.log_dir(node), "node.log"))

    def environment(self, node: Node) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH")
        return {"PYTHONPATH": NODE_PATH + (os.pathsep + path if path else ""), "PYTHONUNBUFFERED": "1",
                **self.peer_environment()}


class RaftnodeSSH(Raftnode, SSHHostDB):
    """The node on SSH hosts: its package uploaded from node_image/ and run by the host's
    python3 (standard library only); the peer secret in a file only the user can read, never
    on a command line or in an environment other users of the host can see."""

    process_match = "raftnode"

    def __init__(self, run_id: str, nodes: int = 3, node_options: dict | None = None, **kw):
        super().__init__(run_id, nodes, node_options, **kw)
        self._raftnode_init()

    def uploads(self, node: Node) -> list[tuple[str, str]]:
        return [(os.path.join(NODE_PATH, "raftnode"), "pkg/raftnode")]

    def files(self, node: Node) -> dict[str, tuple[str, int]]:
        return {"peer-secret": (self.peer_secret, 0o600)}

    def command(self, node: Node, nodes: list[Node]) -> list[str]:
        return self.node_argv(node, nodes, "python3", self.data_dir(node), f"{self.log_dir(node)}/node.log") + [
            "--peer-secret-file", f"{self.node_dir(node)}/peer-secret"]

    def environment(self, node: Node) -> dict[str, str]:
        return {"PYTHONPATH": self.package_dir(node), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


make_db = db_factory(RaftnodeDocker, RaftnodeLocal, RaftnodeSSH)


def build_images(force: bool = False) -> list[str]:
    from systems.raftnode.image import build_images as build
    return build(force=force)


make_db.build_images = build_images  # `splitbrain image build --db raftnode`
