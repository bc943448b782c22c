"""The asyncio driver: all I/O around the pure RaftCore (ticks, disk, peers, HTTP clients).

One event loop thread, plus a storage thread (log writes and fdatasync, which release the GIL)
and a snapshot thread. The driver loop repeatedly

  1. feeds the core everything that arrived since the last round: peer messages first, then the
     elapsed ticks (a stall counts as at most one heartbeat interval), client proposals (many per
     round) and read requests;
  2. takes `core.ready()` and handles it in the order Raft requires:
       - messages that do not depend on this Ready's state (the leader's AppendEntries,
         heartbeats) go out at once, so followers write to their disks while the leader writes
         to its own, and heartbeats never wait for a disk;
       - hard state, a truncation and the new entries are encoded here and queued for the
         storage thread: one job (one fdatasync) carries every Ready queued while the previous
         job ran (group commit across rounds and across client requests);
       - committed entries are applied to the KV state machine in order; the client waiting on
         an entry is answered from that entry only if its (index, term) is the one it proposed;
       - reads whose ReadIndex is applied are served;
  3. when a Ready's fsync and every earlier one are complete: sends the messages that depend on
     them (vote grants, append acks) and calls `core.advance(rd)`, strictly in order.

Applying at hand-out, before the Ready's own fsync, is safe: a follower's committed entries are
already durable on a majority, and the leader commits only entries it has persisted itself
(advance), so no client hears of an entry that is not on the leader's disk.

Answers (issue 2): 307 not_leader / 503 no_leader mean nothing was appended; once an entry is
appended the client gets 200 (its entry applied) or 504 timeout (deadline, a different entry at
its index, or this node stepped down): outcome unknown.

Membership (issue 12): the admin API (GET /cluster, POST /cluster/learners, /cluster/promote,
/cluster/remove, /cluster/transfer-leader; docs/contracts.md §2) proposes configuration changes
with the same answers (200 once the configuration entry is applied here, 504 unknown, 307/503
nothing appended, 409 refused as illegal now). The peer transport follows the configuration in
force (links to its members, admission by id and incarnation); a node started with --join has no
configuration until the leader's log gives it one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import heapq
import json
import os
import random
import signal
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import unquote

from . import core as _core
from . import http as httpmod
from .codec import PreEncoded
from .jsonenc import compact_encoder
from .kv import MAX_NESTING, KVStateMachine, nesting_depth
from .membership import (ADD_LEARNER, PROMOTE, REMOVE, ChangeRefused, ConfChange, pack_snapshot,
                         unpack_snapshot)
from .nodelog import NodeLog
from .storage import Storage, ready_ops
from .transport import PeerTransport
from .types import CONFIG, LEADER, Config, NotLeader, ProposalDropped, TransferInProgress

MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 64 * 1024
GC_FREEZE_INTERVAL_S = 1.0
CONNECTION_SWEEP_S = 1.0  # how often idle client connections are looked for
STALL_REPORT_S = 0.1
KNOWN_BUGS = tuple(sorted(_core.KNOWN_BUGS))  # the seeded bugs (core.py lists them once)

_WRITE_FIELDS = {
    "put": ({"value"}, {"value", "client_id", "seq"}),
    "delete": (set(), {"client_id", "seq"}),
    "cas": ({"expected", "value"}, {"expected", "value", "client_id", "seq"}),
    "append": ({"value"}, {"value", "client_id", "seq"}),
}
_json_decode = json.JSONDecoder().decode


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class _NotFinite(ValueError):
    """A number literal too large for a float (1e400): Python would read it as infinity."""


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan, and nan != 0
        raise _NotFinite(text[:40])
    return value


# Python's decoder accepts NaN and Infinity and reads 1e400 as infinity; JSON (and our encoder,
# and every answer that would show the value) has no such numbers.
_json_decode_strict = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float).decode
_json_encode = compact_encoder()
_json_encode_ascii = compact_encoder(ensure_ascii=True)
_NON_FINITE = object()


def _field_with_non_finite(text: str) -> str:
    """Which field of a refused body holds the non-finite number (the error path only)."""
    def mark(literal: str):
        value = float(literal)
        return _NON_FINITE if value - value != 0.0 else value
    try:
        doc = json.JSONDecoder(parse_float=mark).decode(text)
    except (ValueError, RecursionError):
        return "a field"
    for name, value in (doc.items() if isinstance(doc, dict) else ()):
        stack = [value]
        while stack:
            item = stack.pop()
            if item is _NON_FINITE:
                return f"field {name[:100]!r}"
            if isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
    return "the body"


@dataclass
class Member:
    id: str
    peer_host: str
    peer_port: int
    client_host: str
    client_port: int

    @property
    def peer(self) -> str:
        return _hostport_text(self.peer_host, self.peer_port)

    @property
    def client(self) -> str:
        return _hostport_text(self.client_host, self.client_port)

    @classmethod
    def from_addresses(cls, node_id: str, peer: str, client: str) -> "Member":
        ph, pp = _split_hostport(peer, f"peer address of {node_id}")
        ch, cp = _split_hostport(client, f"client address of {node_id}")
        return cls(node_id, ph, pp, ch, cp)

    @property
    def client_url(self) -> str:
        host = self.client_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.client_port}"


def _hostport_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _split_hostport(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} {text!r} is not host:port")
    return host.strip("[]"), int(port)


def parse_cluster(spec: str) -> dict[str, Member]:
    """`id=peer_host:peer_port/client_host:client_port,...` (docs/contracts.md §2)."""
    members: dict[str, Member] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        node_id, sep, addrs = item.partition("=")
        if not sep or not node_id:
            raise ValueError(f"cluster member {item!r} is not id=peer_host:port/client_host:port")
        peer, sep, client = addrs.partition("/")
        if not sep:
            raise ValueError(f"cluster member {item!r} lacks the /client_host:port part")
        if node_id in members:
            raise ValueError(f"node id {node_id!r} appears twice in the cluster")
        ph, pp = _split_hostport(peer, f"peer address of {node_id}")
        ch, cp = _split_hostport(client, f"client address of {node_id}")
        members[node_id] = Member(node_id, ph, pp, ch, cp)
    if not members:
        raise ValueError("the cluster is empty")
    return members


@dataclass
class NodeOptions:
    node_id: str
    cluster: dict[str, Member]        # the bootstrap voters; empty for a node that joins
    client_listen: tuple[str, int]
    peer_listen: tuple[str, int]
    data_dir: str
    log_file: str | None = None
    join: Member | None = None        # a joining node's own advertised addresses (cluster is {})
    election_timeout_ms: tuple[int, int] = (150, 300)
    heartbeat_ms: int = 50
    tick_ms: int = 10
    request_timeout_ms: int = 2000
    pre_vote: bool = True
    check_quorum: bool = True
    snapshot_every: int = 0
    bugs: frozenset = frozenset()
    seed: int | None = None
    log_stderr: bool = True
    max_entries_per_append: int = 512
    storage_thread: bool = True  # fsync on a storage thread, pipelined with the next round
    peer_secret: bytes | None = None  # the cluster's peer secret (None only with insecure_peers)
    insecure_peers: bool = False      # accept peer connections without a secret: explicit only
    max_client_connections: int = httpmod.MAX_OPEN_CONNECTIONS
    client_idle_timeout_s: float = httpmod.IDLE_TIMEOUT_S


def parse_write_body(op: str, key: str, body: bytes):
    """(command, None) or (None, 400 body). The command carries its own JSON encoding (`wire`):
    the compact re-encoding of {op, key, ...fields}, so what goes into the log and to the
    followers is bounded by the value limits, whatever whitespace the client sent."""
    required, allowed = _WRITE_FIELDS[op]
    body = body.strip()
    if body:
        try:
            text = body.decode("utf-8")
            doc = _json_decode_strict(text)
        except _NotFinite as exc:
            return None, {"error": "bad_number",
                          "detail": f"{_field_with_non_finite(text)} holds the number {exc}, which is out of "
                                    "range: JSON numbers must be finite"}
        except RecursionError:
            return None, {"error": "too_deep",
                          "detail": f"request body is nested too deeply (values nest at most {MAX_NESTING} levels)"}
        except (ValueError, UnicodeDecodeError) as exc:
            return None, {"error": "bad_json", "detail": f"request body is not valid JSON: {str(exc)[:200]}"}
        if not isinstance(doc, dict):
            return None, {"error": "bad_json", "detail": "request body must be a JSON object"}
    else:
        doc = {}
    for name in doc:
        if name not in allowed:
            return None, {"error": "unknown_field",
                          "detail": f"unknown field {name[:100]!r} for {op} (allowed: {', '.join(sorted(allowed))})"}
    for name in required:
        if name not in doc:
            return None, {"error": "missing_field", "detail": f"{op} needs field {name!r}"}
    client_id, seq = doc.get("client_id"), doc.get("seq")
    if (client_id is None) != (seq is None):
        return None, {"error": "bad_session", "detail": "client_id and seq must be given together"}
    if client_id is not None:
        if not isinstance(client_id, str) or not client_id or len(client_id) > 256:
            return None, {"error": "bad_session",
                          "detail": "client_id must be a non-empty string of at most 256 characters"}
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or seq >= 2 ** 63:
            return None, {"error": "bad_session", "detail": "seq must be a non-negative integer below 2^63"}
    command = PreEncoded(op=op, key=key)
    command.update(doc)
    try:
        wire = _json_encode(command)
    except RecursionError:
        return None, {"error": "too_deep",
                      "detail": f"request body is nested too deeply (values nest at most {MAX_NESTING} levels)"}
    try:
        raw = wire.encode("utf-8")
    except UnicodeEncodeError:
        raw = _json_encode_ascii(command).encode("ascii")  # a lone surrogate: escape it
    # Every level of nesting writes a bracket: few brackets prove shallow values cheaply.
    if raw.count(b"[") + raw.count(b"{") > MAX_NESTING + 1:
        for name in ("value", "expected"):
            if name in doc and nesting_depth(doc[name]) > MAX_NESTING:
                return None, {"error": "too_deep",
                              "detail": f"{name} is nested more than {MAX_NESTING} levels deep"}
    if len(raw) > MAX_VALUE_BYTES:  # the command bounds each value: measure them only then
        for name in ("value", "expected"):
            if name in doc:
                text = _json_encode(doc[name])
                size = len(text.encode("utf-8", "surrogatepass"))
                if size > MAX_VALUE_BYTES:
                    return None, {"error": "value_too_large",
                                  "detail": f"{name} is {size} bytes encoded; the limit is {MAX_VALUE_BYTES}"}
    command.wire = raw
    return command, None


def _admin_body(body: bytes, required: set, optional: set):
    """(fields, None) or (None, 400 body): a JSON object with string fields only."""
    body = body.strip()
    if not body:
        doc = {}
    else:
        try:
            doc = _json_decode_strict(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return None, {"error": "bad_json", "detail": f"request body is not valid JSON: {str(exc)[:200]}"}
        if not isinstance(doc, dict):
            return None, {"error": "bad_json", "detail": "request body must be a JSON object"}
    allowed = required | optional
    for name in doc:
        if name not in allowed:
            return None, {"error": "unknown_field",
                          "detail": f"unknown field {name[:100]!r} (allowed: {', '.join(sorted(allowed)) or 'none'})"}
    for name in sorted(required):
        if name not in doc:
            return None, {"error": "missing_field", "detail": f"field {name!r} is required"}
    for name, value in doc.items():
        if not isinstance(value, str) or not value or len(value) > 300:
            return None, {"error": "bad_field",
                          "detail": f"{name} must be a non-empty string of at most 300 characters"}
    return doc, None


class Pending:
    """A client request waiting for the driver; answered exactly once."""

    __slots__ = ("conn", "deadline", "done", "term", "key", "command", "path", "admin")

    def __init__(self, conn, deadline: float, path: str):
        self.conn = conn
        self.deadline = deadline
        self.done = False
        self.term = 0
        self.key: str | None = None  # a read's key
        self.command = None
        self.path = path
        self.admin: str | None = None   # a configuration change: answered from its entry (see _apply)

    def answer(self, status: int, body, headers: dict | None = None) -> None:
        if not self.done:
            self.done = True
            self.conn.respond(status, body, headers)


class RaftNode:
    def __init__(self, opts: NodeOptions, core_factory=None):
        self.opts = opts
        self.id = opts.node_id
        if opts.cluster and opts.join is not None:
            raise ValueError("a node either bootstraps with a cluster or joins one, not both")
        if not opts.cluster and opts.join is None:
            raise ValueError("no cluster: give the bootstrap members, or join with this node's addresses")
        if opts.cluster and self.id not in opts.cluster:
            raise ValueError(f"node id {self.id!r} is not in the cluster ({', '.join(opts.cluster)})")
        me = opts.cluster.get(self.id) or opts.join
        assert me is not None  # checked above: bootstrap members holding this id, or join's addresses
        self.me = me
        unknown = set(opts.bugs) - set(KNOWN_BUGS)
        if unknown:
            raise ValueError(f"unknown seeded bug(s): {', '.join(sorted(unknown))}")
        if not opts.peer_secret and not opts.insecure_peers:
            raise ValueError("no peer secret: peers authenticate with a cluster secret "
                             "(peer_secret), or insecure_peers must be chosen explicitly")
        self.log = NodeLog(self.id, opts.log_file, stderr=opts.log_stderr)
        self.storage = Storage(opts.data_dir, bugs=opts.bugs)
        # Drawn once, on the empty disk: the configuration admits this incarnation of the id.
        self.incarnation = self.storage.identity(self.id, os.urandom(16).hex())
        state = self.storage.load()
        self.kv = KVStateMachine()
        if state.snapshot_data is not None:
            self.kv.restore(unpack_snapshot(state.snapshot_data)[1])
        self.last_applied = state.snapshot_index
        # Every member's addresses ever seen (bootstrap, configurations): redirects and links.
        self.addresses: dict[str, Member] = dict(opts.cluster)
        self.addresses[self.id] = self.me
        self.config = Config(node_id=self.id, peers=list(opts.cluster),
                             members={m.id: {"peer": m.peer, "client": m.client} for m in opts.cluster.values()},
                             tick_ms=opts.tick_ms,
                             election_timeout_min_ms=opts.election_timeout_ms[0],
                             election_timeout_max_ms=opts.election_timeout_ms[1],
                             heartbeat_ms=opts.heartbeat_ms, pre_vote=opts.pre_vote,
                             check_quorum=opts.check_quorum, bugs=frozenset(opts.bugs),
                             max_entries_per_append=opts.max_entries_per_append)
        seed = opts.seed if opts.seed is not None else int.from_bytes(os.urandom(8), "big")
        if core_factory is None:
            from .core import RaftCore
            core_factory = RaftCore
        self.core = core_factory(self.config, state, random.Random(seed))
        # What start-up recovered, for the start line (not the entries: the core has those).
        self._recovered_summary = {
            "term": state.hard_state.term, "voted_for": state.hard_state.voted_for,
            "last_log_index": state.entries[-1].index if state.entries else state.snapshot_index,
            "snapshot_index": state.snapshot_index,
            # above last_log_index: the log went backwards, and the node does not vote until caught up
            "acked": state.hard_state.acked}
        del state
        self.transport = PeerTransport(
            self.id, {}, self._on_peer_message, self._on_peer_garbage, secret=opts.peer_secret or b"",
            on_event=self.log.event, current_term=lambda: self.core.term, incarnation=self.incarnation,
            advertise=self.me.peer, admit=lambda src, incarnation: self.core.admission_problem(src, incarnation))
        self._follow_configuration()
        self.request_timeout = opts.request_timeout_ms / 1000.0
        self.ack_before_commit = "ack-before-commit" in opts.bugs
        self.stale_read = "stale-read" in opts.bugs
        # inputs queued for the next round
        self._inbox: list = []
        self._proposals: list[Pending] = []
        self._reads: list[Pending] = []
        self._ticks_due = 0
        self._max_ticks_per_round = max(1, opts.heartbeat_ms // opts.tick_ms)
        self._wake = asyncio.Event()
        # requests in flight
        self._write_waiters: dict[int, Pending] = {}
        self._read_waiters: dict[int, Pending] = {}
        self._reads_ready: list = []  # heap of (index, ctx)
        self._ack_after_persist: list[Pending] = []
        self._deadlines: deque[Pending] = deque()
        self._transfer_waiters: list = []  # [pending, target, term when asked]
        self._next_ctx = 1
        self._was_leader = False
        self._stopping = False
        self.exit_code = 0  # 3 when the node stopped itself on an internal failure
        self._stopped = asyncio.Event()
        self._http_server: asyncio.Server | None = None
        self._connections = httpmod.ClientConnections(opts.max_client_connections, opts.client_idle_timeout_s,
                                                      on_event=self.log.event)
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._last_tick = 0.0
        self._last_gc_freeze = 0.0
        self._tick_handle: asyncio.TimerHandle | None = None
        self.started_mono = time.monotonic()
        # Ready objects handed out but not yet advanced: [rd, messages after fsync, bug acks, durable]
        self._unadvanced: deque = deque()
        self._storage_pool = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raft-storage")
                              if opts.storage_thread else None)
        self._storage_ops: list = []  # queued while a storage job runs; they form the next one
        self._storage_busy = False
        self._installs_pending = 0  # snapshots from the leader queued for the storage, not yet done
        self._snapshot_pending = 0
        self._driver_rng = random.Random(seed ^ 0x5EED)
        self._snapshot_slack = (self._driver_rng.randrange(max(1, opts.snapshot_every // 4))
                                if opts.snapshot_every > 0 else 0)
        self._snapshot_pool = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raft-snapshot")
                               if opts.storage_thread else None)
        self.stats = {"rounds": 0, "proposals": 0, "fsync_rounds": 0}
        self.peer_received: dict[str, dict[str, int]] = {}  # sender -> message kind -> count

    # ------------------------------------------------------------------ core state accessors

    def _status(self) -> dict:
        core = self.core
        leader = core.leader
        member = self.addresses.get(leader) if leader else None
        conf = core.configuration
        return {
            "id": self.id, "role": core.role, "term": core.term, "leader": leader,
            "leader_url": member.client_url if member else None,
            "commit_index": core.commit_index, "last_applied": self.last_applied,
            "last_log_index": core.last_log_index, "snapshot_index": self.storage.snapshot_index,
            "voted_for": core.voted_for, "peers": [m for m in sorted(conf.members) if m != self.id],
            "cluster": {i: {"client_url": self._client_url(i), "peer": m.peer, "role": m.role}
                        for i, m in sorted(conf.members.items())},
            "incarnation": self.incarnation, "member_role": conf.role(self.id),
            "configuration": {"index": core.conf_index, "committed": core.conf_committed,
                              "voters": sorted(conf.voters), "learners": sorted(conf.learners)},
            "transferring_to": core.transferring_to if core.role == LEADER else None,
            "pid": os.getpid(), "wall_time": time.time(), "monotonic_time": time.monotonic(),
            "uptime_s": round(time.monotonic() - self.started_mono, 3),
            "bugs": sorted(self.opts.bugs), "pre_vote": self.opts.pre_vote, "check_quorum": self.opts.check_quorum,
            "fsyncs": self.storage.fsyncs, "disk_bytes": self._disk_bytes(),
            # The state machine's size: tells a soak's legitimate state growth from a leak.
            "kv_keys": len(self.kv.data), "kv_sessions": len(self.kv.sessions),
            "pending_writes": len(self._write_waiters), "pending_reads": len(self._read_waiters),
            "peer_messages_dropped": {pid: link.dropped for pid, link in self.transport.links.items()},
            "peer_messages_received": {src: dict(kinds) for src, kinds in self.peer_received.items()},
            "peer_encode_errors": self.transport.encode_errors,
            "peer_auth": "insecure" if not self.opts.peer_secret else "secret",
            "client_connections": {"open": len(self._connections.open), "limit": self._connections.max_open,
                                   "refused": self._connections.refused,
                                   "idle_closed": self._connections.timed_out},
        }

    def _disk_bytes(self) -> int | None:
        try:
            return self.storage.disk_bytes()
        except OSError:  # a segment deleted by compaction while it was being measured
            return None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        for note in self.storage.recovery_notes:
            self.log.event("recovery", detail=note)
        self.log.event("start", **self._recovered_summary, pid=os.getpid(),
                       bugs=sorted(self.opts.bugs), cluster=list(self.opts.cluster),
                       join=self.opts.join is not None, incarnation=self.incarnation)
        await self.transport.start(*self.opts.peer_listen)
        self._http_server = await loop.create_server(
            lambda: httpmod.HttpConnection(self._handle_http, self._connections, self._on_http_error),
            self.opts.client_listen[0], self.opts.client_listen[1], reuse_address=True, backlog=1024)
        self._sweep_handle = loop.call_later(CONNECTION_SWEEP_S, self._sweep_connections)
        self._last_tick = time.monotonic()
        self._tick_handle = loop.call_later(self.opts.tick_ms / 1000.0, self._on_tick)
        self._loop_task = loop.create_task(self._driver_loop(), name="raft-driver")

    async def serve_forever(self) -> None:
        await self._stopped.wait()

    def stop(self, reason: str = "requested") -> None:
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self._http_server is not None:
            self._http_server.close()
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
        self._connections.close_all()
        self.transport.close()
        self.log.flush_commit()
        self.log.event("stop", reason=reason, term=self.core.term, commit_index=self.core.commit_index,
                       last_applied=self.last_applied)
        if self._storage_pool is not None:
            self._storage_pool.shutdown(wait=True)  # let the write in flight finish
        if self._snapshot_pool is not None:  # (both exist, or neither: opts.storage_thread)
            self._snapshot_pool.shutdown(wait=True)
        self.storage.close()
        self.log.close()
        self._stopped.set()

    # ------------------------------------------------------------------ inputs

    def _on_tick(self) -> None:
        if self._stopping:
            return
        now = time.monotonic()
        tick_s = self.opts.tick_ms / 1000.0
        if now - self._last_tick > STALL_REPORT_S:
            # The event loop was blocked (GC, a big snapshot, a starved CPU, SIGSTOP): worth a
            # line, because it explains elections that a timeline would otherwise not.
            self.log.event("loop_stall", ms=round((now - self._last_tick) * 1000, 1))
        elapsed = int((now - self._last_tick) / tick_s)
        if elapsed > 0:
            self._ticks_due += elapsed
            self._last_tick += elapsed * tick_s
            self._wake.set()
        self._expire(now)
        self.log.flush_commit_if_due(now)
        if now - self._last_gc_freeze >= GC_FREEZE_INTERVAL_S:
            # The log, the KV map and the sessions are long-lived and free of reference cycles:
            # moving them to the permanent generation keeps full collections (which otherwise scan
            # every entry: 200+ ms at 100k entries, enough to miss heartbeats) short. Frozen
            # objects are still freed by reference counting when compaction drops them.
            gc.freeze()
            self._last_gc_freeze = now
        self._tick_handle = asyncio.get_running_loop().call_at(
            asyncio.get_running_loop().time() + tick_s - (now - self._last_tick), self._on_tick)

    def _expire(self, now: float) -> None:
        deadlines = self._deadlines
        while deadlines and (deadlines[0].done or deadlines[0].deadline <= now):
            pending = deadlines.popleft()
            if not pending.done:
                pending.answer(504, {"error": "timeout"})

    def _on_peer_message(self, msg) -> None:
        # per sender and kind, for /status: shows which messages arrive under a one-way partition
        by_kind = self.peer_received.setdefault(msg.src, {})
        by_kind[msg.kind] = by_kind.get(msg.kind, 0) + 1
        self._inbox.append(msg)
        self._wake.set()

    def _on_peer_garbage(self, peer: str, error: str) -> None:
        self.log.event("peer_garbage", peer=peer, error=error)

    def _sweep_connections(self) -> None:
        """Close idle client connections (they would otherwise hold file descriptors forever)."""
        if self._stopping:
            return
        self._connections.sweep()
        self._sweep_handle = asyncio.get_running_loop().call_later(CONNECTION_SWEEP_S, self._sweep_connections)

    def _on_http_error(self, exc: Exception, req) -> None:
        """A request that raised was answered 500; the node goes on. Log it with its stack."""
        import traceback
        where = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-4))
        self.log.event("http_error", method=getattr(req, "method", None),
                       target=getattr(req, "target", "")[:200] if req else None,
                       error=f"{type(exc).__name__}: {str(exc)[:300]}", traceback=where[-2000:])

    # ------------------------------------------------------------------ HTTP API

    def _handle_http(self, req: httpmod.Request, conn) -> None:
        path, _, _query = req.target.partition("?")
        method = req.method
        if path == "/status":
            if method != "GET":
                conn.respond(405, {"error": "method_not_allowed", "detail": "use GET /status"}, {"Allow": "GET"})
                return
            conn.respond(200, self._status())
            return
        if path == "/cluster" or path.startswith("/cluster/"):
            self._handle_admin(req, conn, path)
            return
        if not path.startswith("/kv/"):
            conn.respond(404, {"error": "no_such_endpoint", "detail": f"no endpoint {path[:100]!r}"})
            return
        rest = path[4:]
        op = None
        if method == "GET":
            op = "get"
        elif method == "PUT":
            op = "put"
        elif method == "DELETE":
            op = "delete"
        elif method == "POST":
            if rest.endswith("/cas"):
                op, rest = "cas", rest[:-4]
            elif rest.endswith("/append"):
                op, rest = "append", rest[:-7]
            else:
                # /kv/<key> exists; POST is not one of its methods
                conn.respond(405, {"error": "method_not_allowed",
                                   "detail": "POST goes to /kv/<key>/cas or /kv/<key>/append"},
                             {"Allow": "GET, PUT, DELETE"})
                return
        else:
            conn.respond(405, {"error": "method_not_allowed", "detail": f"{method[:20]} is not supported on /kv/"},
                         {"Allow": ("GET, PUT, DELETE, POST" if rest.endswith(("/cas", "/append"))
                                    else "GET, PUT, DELETE")})
            return
        key = unquote(rest) if "%" in rest else rest
        if not key:
            conn.respond(400, {"error": "bad_key", "detail": "the key is empty"})
            return
        if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            conn.respond(400, {"error": "key_too_large", "detail": f"keys are limited to {MAX_KEY_BYTES} bytes"})
            return
        pending = Pending(conn, time.monotonic() + self.request_timeout, req.target)
        if op == "get":
            pending.key = key
            self._submit_read(pending)
            return
        command, problem = parse_write_body(op, key, req.body)
        if problem is not None:
            pending.answer(400, problem)
            return
        pending.command = command
        if self._stopping:
            pending.answer(503, {"error": "no_leader", "detail": "node is shutting down"})
            return
        if self.core.role != LEADER:
            self._answer_not_leader(pending)
            return
        self._proposals.append(pending)
        self._deadlines.append(pending)
        self._wake.set()

    def _answer_not_leader(self, pending: Pending) -> None:
        leader = self.core.leader
        member = self.addresses.get(leader) if leader and leader != self.id else None
        if member is None:
            pending.answer(503, {"error": "no_leader"})
        else:
            pending.answer(307, {"error": "not_leader", "leader": leader, "leader_url": member.client_url},
                           {"Location": member.client_url + pending.path})

    def _submit_read(self, pending: Pending) -> None:
        if self._stopping:
            pending.answer(503, {"error": "no_leader", "detail": "node is shutting down"})
            return
        # SEEDED BUG stale-read lives in the core (it answers read_index on any node at once).
        if self.core.role != LEADER and not self.stale_read:
            self._answer_not_leader(pending)
            return
        self._reads.append(pending)
        self._deadlines.append(pending)
        self._wake.set()

    # ------------------------------------------------------------------ the driver loop

    async def _driver_loop(self) -> None:
        wake = self._wake
        try:
            while not self._stopping:
                await wake.wait()
                wake.clear()
                while not self._stopping:
                    self._feed_core()
                    rd = self.core.ready()
                    if rd.is_empty():
                        break
                    self._handle_ready(rd)
        except Exception as exc:  # a driver bug must stop the node loudly, not leave it half alive
            self.log.event("fatal", error=f"{type(exc).__name__}: {exc}")
            import traceback
            traceback.print_exc()
            self.exit_code = 3
            self.stop("driver crashed")

    def _feed_core(self) -> None:
        core = self.core
        # Messages first: after a stall (GC, a snapshot, a starved CPU) the leader's heartbeats
        # are already here and must reset the election timer before the stalled ticks count.
        if self._inbox:
            inbox, self._inbox = self._inbox, []
            for msg in inbox:
                core.step(msg)
        # A stall longer than a heartbeat interval counts as one heartbeat interval: elections
        # are driven by silence from the leader, not by our own event loop being busy. (Slower
        # perceived time can only delay an election; no safety property depends on it.)
        ticks, self._ticks_due = min(self._ticks_due, self._max_ticks_per_round), 0
        for _ in range(ticks):
            core.tick()
        if self._proposals:
            proposals, self._proposals = self._proposals, []
            for pending in proposals:
                if pending.done:
                    continue
                try:
                    index, term = core.propose(pending.command)
                except NotLeader:
                    self._answer_not_leader(pending)
                    continue
                except ProposalDropped as exc:
                    # Followers are not keeping up: refuse rather than grow the log without
                    # bound. Nothing was appended, so the client may retry.
                    pending.answer(503, {"error": "overloaded", "detail": str(exc)})
                    continue
                except TransferInProgress as exc:
                    pending.answer(503, {"error": "transferring", "detail": str(exc)})
                    continue
                pending.term = term
                self._write_waiters[index] = pending
                if self.ack_before_commit:
                    self._ack_after_persist.append(pending)
            self.stats["proposals"] += len(proposals)
        if self._reads:
            reads, self._reads = self._reads, []
            for pending in reads:
                if pending.done:
                    continue
                ctx = self._next_ctx
                self._next_ctx += 1
                try:
                    core.read_index(ctx)
                except NotLeader:
                    self._answer_not_leader(pending)
                    continue
                self._read_waiters[ctx] = pending

    def _handle_ready(self, rd) -> None:
        self.stats["rounds"] += 1
        send = self.transport.send
        configuration_changed = False
        for event in rd.events:
            self._log_event(event)
            if event.kind in ("config", "config_committed"):
                configuration_changed = True
        if configuration_changed:
            # Before this Ready's messages: a new member's first append needs its link.
            self._follow_configuration()
        later = []
        for msg in rd.messages:
            if msg.needs_persist:
                later.append(msg)  # after this Ready's fsync AND every earlier one
            else:
                send(msg)  # e.g. the leader's AppendEntries: followers write while we do
        acks, self._ack_after_persist = self._ack_after_persist, []
        item = [rd, later, acks, False]
        self._unadvanced.append(item)
        if rd.snapshot is not None:
            self._install_snapshot(rd.snapshot)
        if rd.must_sync:
            # Encode here; the storage thread only writes and fdatasyncs (both release the GIL),
            # so this loop keeps sending heartbeats and taking requests and acknowledgements
            # meanwhile. Records of Readies that arrive during an fsync share the next one.
            # ready_ops puts a snapshot's install between the hard state and the log record.
            self._storage_ops.extend(ready_ops(rd, item))
            self._flush_storage_ops()
            self.stats["fsync_rounds"] += 1
        else:
            item[3] = True
        # Committed entries are committed on a majority already; applying them does not wait for
        # our own fsync (the leader only commits what it has persisted, so its clients never hear
        # of an entry before it is on its disk).
        if rd.committed:
            self._apply(rd.committed)
        for rs in rd.read_states:
            if rs.index <= self.last_applied:
                self._serve_read(rs.ctx)
            else:
                heapq.heappush(self._reads_ready, (rs.index, rs.ctx))
        for ctx in rd.dropped_reads:
            pending = self._read_waiters.pop(ctx, None)
            if pending is not None:
                self._answer_not_leader(pending)
        is_leader = self.core.role == LEADER
        if self._was_leader and not is_leader:
            self._lost_leadership()
        self._was_leader = is_leader
        if self._transfer_waiters:
            self._settle_transfers()
        if rd.committed:
            self._maybe_snapshot()
        self._advance_persisted()

    def _submit_storage(self, op: tuple) -> None:
        """Run a storage operation (Storage.run_ops: e.g. ("compact", index)) in order with the
        log writes."""
        self._storage_ops.append(op)
        self._flush_storage_ops()

    def _flush_storage_ops(self) -> None:
        """Hand every queued storage operation to the storage thread as one job, unless a job is
        running: then they wait for it and go together (group commit: one fdatasync)."""
        if self._storage_busy or not self._storage_ops:
            return
        ops, self._storage_ops = self._storage_ops, []
        if self._storage_pool is None:
            self._run_storage_ops(ops)
            self._storage_finished(ops, None)
            return
        self._storage_busy = True
        loop = asyncio.get_running_loop()
        future = self._storage_pool.submit(self._run_storage_ops, ops)
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._storage_done, f, ops))

    def _run_storage_ops(self, ops) -> None:
        """On the storage thread: consecutive log records are written and fsynced together (the
        simulator runs the same Storage.run_ops)."""
        self.storage.run_ops(ops)

    def _storage_done(self, future, ops) -> None:
        self._storage_busy = False
        self._storage_finished(ops, future.exception())

    def _storage_finished(self, ops, exc) -> None:
        if exc is not None:
            # The disk refused a write we were about to acknowledge: continuing could lose
            # acknowledged data, so the node stops (a restart recovers from what is on disk).
            self.log.event("fatal", error=f"storage: {type(exc).__name__}: {exc}")
            self.exit_code = 3
            self.stop(f"storage failure: {exc}")
            return
        for op in ops:
            if op[0] == "log":
                if op[1] is not None:
                    op[1][3] = True
            elif op[0] == "install":
                self._installs_pending -= 1
        self._flush_storage_ops()
        self._advance_persisted()
        self._wake.set()

    def _advance_persisted(self) -> None:
        """Advance every Ready, in order, whose own and earlier fsyncs are complete."""
        queue = self._unadvanced
        send = self.transport.send
        while queue and queue[0][3]:
            rd, later, acks, _ = queue.popleft()
            if self._stopping:
                continue
            for msg in later:
                send(msg)
            if acks:
                self._bug_ack_appended(acks)
            self.core.advance(rd)

    def _install_snapshot(self, snap) -> None:
        """A snapshot from the leader replaces our state machine (and our log: ready_ops queues
        the storage's atomic install, see SnapshotInstall)."""
        self._installs_pending += 1
        self.kv.restore(unpack_snapshot(snap.data)[1])
        self.last_applied = snap.index
        # Appended writes at or below it were decided elsewhere; their outcome is unknown here.
        for index in [i for i in self._write_waiters if i <= snap.index]:
            self._write_waiters.pop(index).answer(504, {"error": "timeout", "detail": "superseded by a snapshot"})
        self.log.event("snapshot_installed", index=snap.index, term=snap.term, bytes=len(snap.data))

    def _maybe_snapshot(self) -> None:
        """Log compaction: snapshot the state machine every `snapshot_every` applied entries.

        A forked child serializes the state as of now and writes the file; the snapshot thread
        waits for it and moves the file into place (so neither the event loop nor the log's
        fsyncs, and with them the acknowledgements, wait for a big state); then the core drops
        the covered entries and the log segments they were in are deleted, in order with the log
        writes. Each node adds its own random slack to the interval so that the replicas do not
        all snapshot at the same moment.
        """
        every = self.opts.snapshot_every
        # Not while an installed snapshot is on its way to the disk: a snapshot of our own,
        # adopted before the install's log restart, would sit on top of the old, replaced log.
        if every <= 0 or self._snapshot_pending or self._installs_pending:
            return
        if self.last_applied - self.storage.snapshot_index < every + self._snapshot_slack:
            return
        index = self.last_applied
        term = self.core.term_at(index)
        if term is None:
            return
        self._snapshot_pending = index
        self._snapshot_slack = self._driver_rng.randrange(max(1, every // 4))
        conf = self.core.configuration_at(index)   # the snapshot carries it beside the state
        if self._snapshot_pool is not None and hasattr(os, "fork"):
            # Serialize in a forked child (copy-on-write: the parent's state is frozen for it at
            # this instant), like Redis's BGSAVE: the event loop does not stall for a big state.
            path = self.storage.snapshot_temp_path(index)
            sync = self.storage.sync_enabled
            pid = os.fork()
            if pid == 0:  # child: no asyncio, no logging, no flushing of inherited buffers
                try:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                    Storage.write_snapshot_file(path, index, term, pack_snapshot(conf, self.kv.snapshot()),
                                                sync, self.storage.files)
                    os._exit(0)
                except BaseException:
                    os._exit(1)
            loop = asyncio.get_running_loop()
            future = self._snapshot_pool.submit(self._collect_forked_snapshot, pid, path, index, term)
            future.add_done_callback(lambda f: loop.call_soon_threadsafe(
                self._snapshot_saved, index, f.exception(), None if f.exception() else f.result()))
            return
        data = pack_snapshot(conf, self.kv.snapshot())
        self.storage.save_snapshot(index, term, data)
        self._snapshot_saved(index, None, data)

    def _collect_forked_snapshot(self, pid: int, path: str, index: int, term: int) -> bytes | None:
        """On the snapshot thread: wait for the child, then put its file in place."""
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            self.storage.discard_snapshot_file(path)
            raise RuntimeError(f"snapshot process {pid} exited with {code}")
        return self.storage.adopt_snapshot_file(path, index, term)

    def _snapshot_saved(self, index: int, exc, data: bytes | None) -> None:
        self._snapshot_pending = 0
        if exc is not None:
            self.log.event("fatal", error=f"snapshot: {type(exc).__name__}: {exc}")
            self.exit_code = 3
            self.stop(f"snapshot failure: {exc}")
            return
        if data is None or self._stopping:
            return  # superseded by a newer (installed) snapshot
        self.core.compact(index, data)  # the leader sends `data` to followers that fall behind it
        self.log.event("snapshot", index=index, term=self.storage.snapshot_term, bytes=len(data))
        self._submit_storage(("compact", min(index, self.storage.snapshot_index)))

    def _apply(self, committed) -> None:
        kv = self.kv
        waiters = self._write_waiters
        for entry in committed:
            result = kv.apply(entry)
            if waiters:
                pending = waiters.pop(entry.index, None)
                if pending is not None and not pending.done:
                    if entry.term == pending.term and result is not None:
                        pending.answer(*result)
                    elif entry.term == pending.term and pending.admin is not None and entry.kind == CONFIG:
                        pending.answer(200, {"index": entry.index, "term": entry.term,
                                             "configuration": self._configuration_view(entry.data)})
                    else:
                        pending.answer(504, {"error": "timeout",
                                             "detail": "a different entry was committed at this index"})
        last = committed[-1]
        self.last_applied = last.index
        self.log.commit(last.index, last.term)
        heap = self._reads_ready
        while heap and heap[0][0] <= self.last_applied:
            _, ctx = heapq.heappop(heap)
            self._serve_read(ctx)

    def _serve_read(self, ctx) -> None:
        pending = self._read_waiters.pop(ctx, None)
        if pending is not None and not pending.done:
            assert pending.key is not None  # a read's pending names its key
            pending.answer(*self.kv.get(pending.key))

    def _lost_leadership(self) -> None:
        """Stepped down: appended writes have an unknown outcome, reads cannot be confirmed."""
        waiters, self._write_waiters = self._write_waiters, {}
        for pending in waiters.values():
            pending.answer(504, {"error": "timeout", "detail": "leadership lost after the write was appended"})
        reads, self._read_waiters = self._read_waiters, {}
        self._reads_ready = []
        for pending in reads.values():
            self._answer_not_leader(pending)
        self._ack_after_persist = []

    def _bug_ack_appended(self, acks) -> None:
        # SEEDED BUG ack-before-commit: answer writes once the leader's own log has them, before
        # any follower does. The answer is computed against the current state (best guess).
        for pending in acks:
            if pending.done:
                continue
            command = pending.command
            op = command["op"]
            if op == "cas":
                status, body = self.kv.get(command["key"])
                current = body.get("value") if status == 200 else None
                pending.answer(200 if current == command["expected"] else 409,
                               {"ok": True} if current == command["expected"] else {"ok": False, "value": current})
            elif op == "append":
                status, body = self.kv.get(command["key"])
                value = body.get("value") if status == 200 else None
                current = value if isinstance(value, list) else []
                pending.answer(200, {"value": current + [command["value"]]})
            else:
                pending.answer(200, {})

    # ------------------------------------------------------------------ membership

    def _client_url(self, node_id: str) -> str | None:
        member = self.addresses.get(node_id)
        return member.client_url if member else None

    def _follow_configuration(self) -> None:
        """Learn the addresses the configuration carries and point the peer links at its
        members (and, on a leader, at a member being removed until that commits)."""
        core = self.core
        for node_id, m in core.configuration.members.items():
            if m.peer and m.client and node_id != self.id:
                try:
                    self.addresses[node_id] = Member.from_addresses(node_id, m.peer, m.client)
                except ValueError:
                    pass  # membership.address_problem admitted it; our parser did not: no link
        # A node replaying older configurations may not know its leader's address (a member
        # added later): it answers at the address the leader's handshake announced.
        self.transport.learn_addresses = True
        self.transport.set_peers({i: (self.addresses[i].peer_host, self.addresses[i].peer_port)
                                  for i in core.peer_ids() if i in self.addresses})

    def _configuration_view(self, doc: dict | None = None) -> dict:
        """A configuration as GET /cluster shows it (the one in force, or an entry's)."""
        core = self.core
        if doc is None:
            conf_doc = core.configuration.to_json()
            head = {"index": core.conf_index, "committed": core.conf_committed}
        else:
            conf_doc, head = doc, {}
        members = {}
        for node_id, m in conf_doc["members"].items():
            client = m.get("client")
            url = self._client_url(node_id)
            if url is None and client:
                url = f"http://{client}"
            members[node_id] = {**m, "client_url": url}
        return {**head, "voters": sorted(i for i, m in members.items() if m["role"] == "voter"),
                "learners": sorted(i for i, m in members.items() if m["role"] == "learner"),
                "members": members, "retired": conf_doc.get("retired", []),
                "change": conf_doc.get("change")}

    def _cluster_view(self) -> dict:
        core = self.core
        leader = core.leader
        return {"id": self.id, "role": core.role, "term": core.term, "leader": leader,
                "leader_url": self._client_url(leader) if leader else None,
                "incarnation": self.incarnation, "member_role": core.configuration.role(self.id),
                "configuration": self._configuration_view(),
                "transferring_to": core.transferring_to if core.role == LEADER else None,
                "progress": core.progress_report()}

    _ADMIN_FIELDS = {
        "learners": ({"id", "peer", "client", "incarnation"}, set()),
        "promote": ({"id"}, set()),
        "remove": ({"id"}, set()),
        "transfer-leader": (set(), {"to"}),
    }

    def _handle_admin(self, req, conn, path: str) -> None:
        if path == "/cluster":
            if req.method != "GET":
                conn.respond(405, {"error": "method_not_allowed", "detail": "use GET /cluster"}, {"Allow": "GET"})
                return
            conn.respond(200, self._cluster_view())
            return
        action = path[len("/cluster/"):]
        if action not in self._ADMIN_FIELDS:
            conn.respond(404, {"error": "no_such_endpoint", "detail": f"no endpoint {path[:100]!r}"})
            return
        if req.method != "POST":
            conn.respond(405, {"error": "method_not_allowed", "detail": f"use POST {path}"}, {"Allow": "POST"})
            return
        required, optional = self._ADMIN_FIELDS[action]
        doc, problem = _admin_body(req.body, required, optional)
        pending = Pending(conn, time.monotonic() + self.request_timeout, req.target)
        if problem is not None:
            pending.answer(400, problem)
            return
        if self._stopping:
            pending.answer(503, {"error": "no_leader", "detail": "node is shutting down"})
            return
        core = self.core
        try:
            if action == "transfer-leader":
                target = core.transfer_leadership(doc.get("to"))
                self._transfer_waiters.append([pending, target, core.term])
            else:
                if action == "learners":
                    change = ConfChange(ADD_LEARNER, doc["id"], doc["peer"], doc["client"], doc["incarnation"])
                else:
                    change = ConfChange(PROMOTE if action == "promote" else REMOVE, doc["id"])
                known = self.transport.incarnations()
                known[self.id] = self.incarnation
                index, term = core.propose_conf_change(change, known)
                pending.term = term
                pending.admin = action
                self._write_waiters[index] = pending
        except NotLeader:
            self._answer_not_leader(pending)
            return
        except TransferInProgress as exc:
            pending.answer(503, {"error": "transferring", "detail": str(exc)})
            return
        except ChangeRefused as exc:
            # A malformed change (an id or address that cannot be) is a bad request; anything
            # else is a legal request that is illegal now.
            pending.answer(400 if exc.code == "bad_change" else 409, {"error": exc.code, "detail": exc.detail})
            return
        self._deadlines.append(pending)
        self._wake.set()

    def _settle_transfers(self) -> None:
        """Answer transfer requests whose outcome is known: 200 once the target leads a later
        term, 504 once the transfer ended otherwise (aborted, or someone else leads)."""
        core = self.core
        keep = []
        for item in self._transfer_waiters:
            pending, target, term = item
            if pending.done:
                continue
            if core.leader == target and core.term > term:
                pending.answer(200, {"leader": target, "term": core.term,
                                     "leader_url": self._client_url(target)})
            elif core.role == LEADER and core.transferring_to != target:
                pending.answer(504, {"error": "timeout", "detail": f"the transfer to {target} did not "
                                     "complete within an election timeout (it may still take over)"})
            elif core.leader is not None and core.leader not in (target, self.id):
                pending.answer(504, {"error": "timeout", "detail": f"{core.leader} leads term {core.term}, "
                                     f"not {target}"})
            else:
                keep.append(item)
        self._transfer_waiters = keep

    def _log_event(self, event) -> None:
        kind = event.kind
        if kind == "commit":
            return  # derived from applied entries and rate-limited by NodeLog.commit
        detail = dict(event.detail)
        if kind == "role":
            detail.setdefault("role", self.core.role)
            detail.setdefault("term", self.core.term)
            detail.setdefault("leader", self.core.leader)
        elif kind == "term":
            detail.setdefault("term", self.core.term)
        self.log.event(kind, **detail)


async def run_node(opts: NodeOptions) -> int:
    node = RaftNode(opts)
    loop = asyncio.get_running_loop()
    await node.start()
    for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
        try:
            loop.add_signal_handler(sig, node.stop, name)
        except (NotImplementedError, RuntimeError):
            pass
    await node.serve_forever()
    return node.exit_code
