"""A deterministic discrete-event simulation of a Raft cluster: cores, network, disks, clients.

Everything runs in one thread on simulated time (integer microseconds) driven by one seeded
random.Random, so a seed replays exactly. The nodes run the real RaftCore and KVStateMachine with
the same driver loop as the asyncio node (ready -> persist -> send -> apply -> advance), with:

  * a network with per-message delay (hence reordering), loss, duplication and partitions
    (directed cuts between nodes), checked when a message is delivered;
  * a disk per node (SimDisk) whose fsync takes time; messages that need persistence wait for it
    (the leader's AppendEntries do not); a crash loses whatever was not synced yet;
  * per-node clock rates: a node ticks every tick_ms * rate of simulated time (clock skew);
  * clients talking to nodes as the HTTP server would (redirects, 504 on unknown outcome,
    retries with the same (client_id, seq)), their answers checked against a model.

The Checker (raftnode.sim.checks) runs after every step; the first violation ends the run.
The seeded driver bugs are modelled here: no-fsync (no fsync is waited for; the OS writes back
every `writeback_ms`), forget-vote (voted_for is lost on restart), ack-before-commit (a write is
acknowledged once appended on the leader).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from ..core import RaftCore, SafetyViolation
from ..kv import KVStateMachine
from ..types import LEADER, Config, Entry, NotLeader, Ready
from .checks import ABSENT, Checker, Violation
from .disk import DiskError, SimDisk

US = 1_000_000

# Event kinds (small ints: the event loop dispatches on them).
TICK, DELIVER, SYNC, WRITEBACK, CLIENT_WAKE, ARRIVE, REPLY, TIMEOUT, CALL = range(9)


@dataclass
class NetConfig:
    delay_min_us: int = 200
    delay_max_us: int = 3000
    drop: float = 0.0
    duplicate: float = 0.0
    fsync_min_us: int = 100
    fsync_max_us: int = 2000


@dataclass
class Stats:
    messages: dict = field(default_factory=dict)   # kind -> count sent
    delivered: int = 0
    dropped: int = 0
    crashes: int = 0
    restarts: int = 0
    partitions: int = 0
    elections: int = 0
    writes_acked: int = 0
    writes_failed: int = 0
    reads_ok: int = 0
    reads_failed: int = 0
    snapshots: int = 0
    snapshot_installs: int = 0
    events: int = 0


class SimNode:
    def __init__(self, node_id: str, cluster: "Cluster"):
        self.id = node_id
        self.cluster = cluster
        self.disk = SimDisk()
        self.up = False
        self.incarnation = 0
        self.clock_rate = 1.0
        self.core: RaftCore | None = None
        self.kv: KVStateMachine | None = None
        self.fifo: list = []        # readies waiting for their fsync, in order
        self.sync_busy_until = 0
        self.pending_writes: dict[int, tuple] = {}  # index -> (term, request)
        self.pending_reads: list = []                # (index, request) waiting for apply
        self.sent: dict[str, int] = {}               # kind -> messages sent by this node


class Cluster:
    def __init__(self, n: int = 5, seed: int = 0, bugs=(), config_overrides: dict | None = None,
                 net: NetConfig | None = None, snapshot_every: int = 0, writeback_ms: int = 500,
                 trace: bool = False, check: bool = True):
        if not 1 <= n <= 9:
            raise ValueError(f"cluster size must be 1..9, got {n}")
        self.rng = random.Random(seed)
        self.seed = seed
        self.bugs = frozenset(bugs)
        self.ids = [f"n{i + 1}" for i in range(n)]
        self.config_overrides = dict(config_overrides or {})
        self.net = net or NetConfig()
        self.snapshot_every = snapshot_every
        self.writeback_us = writeback_ms * 1000
        self.now = 0
        self.queue: list = []
        self._seq = 0
        self.cut: set[tuple[str, str]] = set()   # directed links that drop everything
        self.nodes = {i: SimNode(i, self) for i in self.ids}
        self.checker = Checker() if check else None
        self.stats = Stats()
        self.trace_enabled = trace
        self.trace: list[str] = []
        self.clients: list = []
        self.violation: Violation | None = None
        self.ack_before_commit = "ack-before-commit" in self.bugs
        self.no_fsync = "no-fsync" in self.bugs
        # Scripted scenarios can watch every message sent and every core event:
        # send_hook(node, message) and event_hook(node, event), called before delivery.
        self.send_hook = None
        self.event_hook = None
        for node_id in self.ids:
            self.start(node_id)

    # -- time and events -----------------------------------------------------------------------
    def at(self, time_us: int, kind: int, a=None, b=None) -> None:
        self._seq += 1
        heapq.heappush(self.queue, (time_us, self._seq, kind, a, b))

    def call_at(self, time_us: int, fn, *args) -> None:
        self.at(time_us, CALL, fn, args)

    def run_until(self, time_us: int) -> None:
        """Process events up to time_us (raises Violation on the first broken invariant)."""
        queue = self.queue
        pop = heapq.heappop
        nodes = self.nodes
        stats = self.stats
        tick_us = self.tick_us
        try:
            while queue and queue[0][0] <= time_us:
                t, _, kind, a, b = pop(queue)
                self.now = t
                stats.events += 1
                if kind == TICK:
                    node = nodes[a]
                    if node.up and node.incarnation == b:
                        if node.core.tick():
                            self._process(node)
                        self._seq += 1
                        heapq.heappush(queue, (t + int(node.clock_rate * tick_us), self._seq, TICK, a, b))
                elif kind == DELIVER:
                    self._deliver(a)
                elif kind == SYNC:
                    node = nodes[a]
                    if node.up and node.incarnation == b:
                        self._sync_done(node)
                elif kind == ARRIVE:
                    self._client_arrive(a, b)
                elif kind == REPLY:
                    a.on_reply(b)
                elif kind == TIMEOUT:
                    a.on_timeout(b)
                elif kind == CLIENT_WAKE:
                    a.wake()
                elif kind == WRITEBACK:
                    node = nodes[a]
                    if node.incarnation == b:
                        node.disk.sync_all()
                        if node.up:
                            self.at(t + self.writeback_us, WRITEBACK, a, b)
                elif kind == CALL:
                    a(*b)
            self.now = max(self.now, time_us)
        except (SafetyViolation, DiskError) as exc:
            self._violate(Violation("safety", str(exc)))
        except Violation as exc:
            self._violate(exc)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + int(seconds * US))

    def _violate(self, exc: Violation):
        self.violation = exc
        self.log(f"VIOLATION {exc}")
        raise exc

    def log(self, text: str) -> None:
        if self.trace_enabled:
            self.trace.append(f"{self.now / US:9.4f}s {text}")

    # -- nodes -----------------------------------------------------------------------------------
    @property
    def tick_us(self) -> int:
        return self.config_overrides.get("tick_ms", 10) * 1000

    def make_config(self, node_id: str) -> Config:
        return Config(node_id=node_id, peers=list(self.ids), bugs=self.bugs, **self.config_overrides)

    def start(self, node_id: str) -> None:
        """(Re)start a node from what its disk holds."""
        node = self.nodes[node_id]
        if node.up:
            return
        state = node.disk.load(forget_vote="forget-vote" in self.bugs)
        node.core = RaftCore(self.make_config(node_id), state, random.Random(self.rng.random()))
        node.kv = KVStateMachine()
        if state.snapshot_data is not None:
            node.kv.restore(state.snapshot_data)
        node.up = True
        node.incarnation += 1
        node.fifo = []
        node.sync_busy_until = self.now
        node.pending_writes = {}
        node.pending_reads = []
        phase = self.rng.randrange(self.tick_us)
        self.at(self.now + phase, TICK, node_id, node.incarnation)
        if self.no_fsync:
            self.at(self.now + self.writeback_us, WRITEBACK, node_id, node.incarnation)
        if node.incarnation > 1:
            self.stats.restarts += 1
            self.log(f"restart {node_id} (term {node.core.term}, log {node.core.last_log_index}, "
                     f"snapshot {node.core.snapshot_index})")

    def crash(self, node_id: str) -> None:
        """Power loss: the process dies and unsynced writes are gone."""
        node = self.nodes[node_id]
        if not node.up:
            return
        node.up = False
        node.incarnation += 1
        node.disk.crash()
        node.core = None
        node.kv = None
        node.fifo = []
        node.pending_writes = {}
        node.pending_reads = []
        self.stats.crashes += 1
        self.log(f"crash {node_id}")

    def leader(self) -> str | None:
        """The live leader with the highest term, if any."""
        best = None
        for node in self.nodes.values():
            if node.up and node.core.role == LEADER and (best is None or node.core.term > best.core.term):
                best = node
        return best.id if best else None

    def up_nodes(self) -> list[str]:
        return [i for i in self.ids if self.nodes[i].up]

    # -- network ---------------------------------------------------------------------------------
    def partition(self, *groups) -> None:
        """Cut every link between nodes of different groups (nodes not listed form one group)."""
        groups = [set(g) for g in groups]
        rest = set(self.ids) - set().union(*groups)
        if rest:
            groups.append(rest)
        side = {n: i for i, g in enumerate(groups) for n in g}
        self.cut = {(a, b) for a in self.ids for b in self.ids if side[a] != side[b]}
        self.stats.partitions += 1
        self.log(f"partition {[sorted(g) for g in groups]}")

    def isolate(self, node_id: str) -> None:
        self.partition([node_id])

    def disconnect(self, node_id: str) -> None:
        """Cut one node off from all others (on top of existing cuts)."""
        for other in self.ids:
            if other != node_id:
                self.cut.add((node_id, other))
                self.cut.add((other, node_id))
        self.stats.partitions += 1
        self.log(f"disconnect {node_id}")

    def connect(self, node_id: str) -> None:
        """Undo disconnect(): restore every link of this node."""
        self.cut = {(a, b) for a, b in self.cut if node_id not in (a, b)}
        self.log(f"connect {node_id}")

    def heal(self) -> None:
        self.cut = set()
        self.log("heal")

    def _send(self, node: SimNode, msg) -> None:
        stats = self.stats
        kind = msg.kind
        if self.send_hook is not None:
            self.send_hook(node, msg)
        stats.messages[kind] = stats.messages.get(kind, 0) + 1
        node.sent[kind] = node.sent.get(kind, 0) + 1
        net = self.net
        rng = self.rng
        if net.drop and rng.random() < net.drop:
            stats.dropped += 1
            return
        lo, span = net.delay_min_us, net.delay_max_us - net.delay_min_us
        self._seq += 1
        heapq.heappush(self.queue, (self.now + lo + int(rng.random() * span), self._seq, DELIVER, msg, None))
        if net.duplicate and rng.random() < net.duplicate:
            self.at(self.now + lo + int(rng.random() * 2 * span), DELIVER, msg)

    def _deliver(self, msg) -> None:
        node = self.nodes[msg.dst]
        if not node.up or (msg.src, msg.dst) in self.cut:
            self.stats.dropped += 1
            return
        self.stats.delivered += 1
        node.core.step(msg)
        self._process(node)

    # -- the driver loop -------------------------------------------------------------------------
    def _process(self, node: SimNode) -> None:
        core = node.core
        while core.has_ready():
            rd = core.ready()
            self._handle_ready(node, rd)
            if not node.up:
                return

    def _handle_ready(self, node: SimNode, rd: Ready) -> None:
        core = node.core
        checker = self.checker
        if rd.events:
            self._events(node, rd)
        if checker is not None and rd.entries:
            first = rd.entries[0].index
            checker.entries_persisted(node.id, rd.entries, core.term_at(first - 1))
        marker = node.disk.write(rd) if rd.must_sync else 0
        no_wait = self.no_fsync or (not node.fifo and not rd.must_sync)
        # Like the asyncio driver: the leader's AppendEntries go out before its own fsync,
        # committed entries are applied at once (they are durable on a majority already), and
        # only messages that depend on this node's persisted state wait for the fsync.
        if no_wait:  # (with SEEDED BUG no-fsync every write is treated as durable at once)
            later = rd.messages
        else:
            later = []
            for msg in rd.messages:
                if msg.needs_persist:
                    later.append(msg)
                else:
                    self._send(node, msg)
        self._apply_ready(node, rd)
        if not node.up:
            return
        rd.messages = later
        if no_wait:
            self._finish(node, rd, 0)
            return
        net = self.net
        delay = (net.fsync_min_us + int(self.rng.random() * (net.fsync_max_us - net.fsync_min_us))
                 if rd.must_sync else 0)
        done = max(self.now, node.sync_busy_until) + delay
        node.sync_busy_until = done
        node.fifo.append((rd, marker))
        self.at(done, SYNC, node.id, node.incarnation)

    def _sync_done(self, node: SimNode) -> None:
        rd, marker = node.fifo.pop(0)
        self._finish(node, rd, marker)
        if node.up:
            self._process(node)

    def _apply_ready(self, node: SimNode, rd: Ready) -> None:
        kv = node.kv
        if rd.snapshot is not None:
            kv.restore(rd.snapshot.data)
            self.stats.snapshot_installs += 1
            self.log(f"{node.id} installed snapshot at {rd.snapshot.index}")
            # Writes waiting for entries the snapshot replaced have an unknown outcome now.
            for index in [i for i in node.pending_writes if i <= rd.snapshot.index]:
                _, request = node.pending_writes.pop(index)
                self._reply(request, ("unknown", None))
        if rd.committed:
            self._apply(node, rd.committed)
        if rd.read_states:
            for rs in rd.read_states:
                node.pending_reads.append((rs.index, rs.ctx))
        if rd.dropped_reads:
            for request in rd.dropped_reads:
                self._reply(request, ("redirect", node.core.leader_id))
        if node.pending_reads:
            self._serve_reads(node)

    def _finish(self, node: SimNode, rd: Ready, marker: int) -> None:
        """The Ready's fsync completed: send what waited for it and tell the core."""
        if marker:
            node.disk.sync_through(marker)
        for msg in rd.messages:
            self._send(node, msg)
        node.core.advance(rd)
        if node.core.role == LEADER and self.checker is not None:
            self.checker.leader_committed(node.id, node.core)

    def _apply(self, node: SimNode, entries: list[Entry]) -> None:
        kv = node.kv
        checker = self.checker
        pending = node.pending_writes
        for entry in entries:
            if entry.index <= kv.last_applied:
                continue  # covered by a snapshot restored in the meantime
            result = kv.apply(entry)
            if checker is not None:
                checker.applied(node.id, entry, result)
            if pending:
                waiting = pending.pop(entry.index, None)
                if waiting is not None:
                    term, request = waiting
                    if term == entry.term:
                        self._reply(request, ("ok", result, entry.index, entry.term))
                    else:
                        self._reply(request, ("unknown", None))
        if self.snapshot_every and kv.last_applied - node.core.snapshot_index >= self.snapshot_every:
            index = kv.last_applied
            data = kv.snapshot()
            node.disk.save_snapshot_now(index, node.core.term_at(index), data)
            node.core.compact(index, data)
            self.stats.snapshots += 1

    def _serve_reads(self, node: SimNode) -> None:
        applied = node.kv.last_applied
        keep = []
        for index, request in node.pending_reads:
            if index <= applied:
                key = request.command["key"]
                status, body = node.kv.get(key)
                value = body["value"] if status == 200 else ABSENT
                self._reply(request, ("read", value, applied))
            else:
                keep.append((index, request))
        node.pending_reads = keep

    def _events(self, node: SimNode, rd: Ready) -> None:
        for ev in rd.events:
            kind = ev.kind
            if self.event_hook is not None:
                self.event_hook(node, ev)
            if kind == "election_won":
                self.stats.elections += 1
                self.log(f"{node.id} won election term {ev.detail['term']} votes {ev.detail['votes']}")
                if self.checker is not None:
                    self.checker.election_won(node.id, ev.detail["term"], node.core)
            elif kind == "role" and ev.detail["role"] != LEADER and node.pending_writes:
                # Stepped down: the outcome of every write it appended is unknown (504).
                for _, request in node.pending_writes.values():
                    self._reply(request, ("unknown", None))
                node.pending_writes = {}
            elif kind == "step_down":
                self.log(f"{node.id} steps down ({ev.detail.get('reason')})")

    # -- clients ---------------------------------------------------------------------------------
    def _client_arrive(self, node_id: str, request) -> None:
        node = self.nodes[node_id]
        if not node.up:
            return  # the client times out
        core = node.core
        if request.is_read:
            try:
                core.read_index(request)
            except NotLeader as exc:
                self._reply(request, ("redirect", exc.leader))
                return
        else:
            try:
                index, term = core.propose(request.command)
            except NotLeader as exc:
                self._reply(request, ("redirect", exc.leader))
                return
            if self.ack_before_commit:  # SEEDED BUG ack-before-commit: answer once appended
                self._reply(request, ("ok", (200, {}), index, term))
            else:
                node.pending_writes[index] = (term, request)
        self._process(node)

    def _reply(self, request, answer) -> None:
        self.at(self.now + 100 + int(self.rng.random() * 900), REPLY, request.client, (request, answer))
