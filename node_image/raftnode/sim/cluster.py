"""A deterministic discrete-event simulation of a Raft cluster: cores, network, disks, clients.

Everything runs in one thread on simulated time (integer microseconds) driven by one seeded
random.Random, so a seed replays exactly. The nodes run the real RaftCore and KVStateMachine with
the same driver loop as the asyncio node (ready -> persist -> send -> apply -> advance), with:

  * a network with per-message delay (hence reordering), loss, duplication and partitions
    (directed cuts between nodes), checked when a message is delivered;
  * the real raftnode.storage.Storage per node, over a simulated file system (sim.files.SimFiles)
    that at a crash keeps only what was synced plus a random part of the rest (torn writes,
    lost creations, renames and unlinks). The node persists exactly as server.py does: Readies
    become storage operations (storage.ready_ops, snapshot installs included) queued for one
    storage job at a time, run by Storage.run_ops, and a job takes simulated time (its fsync);
    messages that need persistence and core.advance wait for it (the leader's AppendEntries do
    not). Snapshots of the node's own state are written and adopted by a job of their own, as
    the forked child and the snapshot thread do. A crash during a job lets a random number of
    its file operations happen first, and restarting runs the storage's own recovery;
  * per-node clock rates: a node ticks every tick_ms * rate of simulated time (clock skew);
  * clients talking to nodes as the HTTP server would (redirects, 504 on unknown outcome,
    retries with the same (client_id, seq)), their answers checked against a model;
  * membership (issue 12): nodes that join (add_node: an empty disk, no configuration),
    changes proposed to the leader as the admin API does (change, transfer), removed nodes
    retired, and the peer transport's admission rule (a node takes messages only from the
    members its configuration admits, by id and incarnation: see core.admission_problem).

The Checker (raftnode.sim.checks) runs after every step; the first violation ends the run, and
so does a node that cannot restart from its files. The seeded storage bugs are the storage's
own (no-fsync: Storage skips every fsync and the file system writes back only every
`writeback_ms`; forget-vote: Storage never persists voted_for); ack-before-commit (a write is
acknowledged once appended on the leader) is modelled here.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field

from ..core import RaftCore, SafetyViolation
from ..kv import KVStateMachine
from ..membership import ADD_LEARNER, ChangeRefused, ConfChange, pack_snapshot, unpack_snapshot
from ..storage import DEFAULT_SEGMENT_BYTES, Storage, StorageCorruption, ready_ops
from ..types import LEADER, Config, Entry, NotLeader, Ready, TransferInProgress
from .checks import ABSENT, Checker, Violation
from .files import SimFiles, SimulatedCrash

US = 1_000_000

# Event kinds (small ints: the event loop dispatches on them).
TICK, DELIVER, STORAGE_DONE, WRITEBACK, CLIENT_WAKE, ARRIVE, REPLY, TIMEOUT, CALL, SNAPSHOT_DONE = range(10)

# A crash during a storage job lets each of its file operations happen with this probability,
# given the one before it happened (so every crash point is reachable, early ones more often).
CRASH_OP_CONTINUES = 0.8


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
    changes: int = 0        # configuration changes appended by a leader
    transfers: int = 0      # leadership transfers started
    refused: int = 0        # messages a receiver's configuration did not admit


class SimNode:
    def __init__(self, node_id: str, cluster: "Cluster", bootstrap: bool = True):
        self.id = node_id
        self.cluster = cluster
        self.files = SimFiles()      # the node's disk: survives its crashes
        self.data_dir = f"/sim/{node_id}/data"
        self.files.makedirs(self.data_dir)
        self.bootstrap = bootstrap   # in the initial cluster (else it joined: no configuration)
        self.wipes = 0
        self.retired = False         # removed from the cluster and stopped for good
        self.storage: Storage | None = None
        self.up = False
        self.incarnation = 0         # counts (re)starts: events of an earlier process are stale
        self.clock_rate = 1.0
        self.core: RaftCore | None = None
        self.kv: KVStateMachine | None = None
        self._reset_driver()
        self.sent: dict[str, int] = {}               # kind -> messages sent by this node

    @property
    def disk_id(self) -> str:
        """The incarnation (membership's word) the node drew on its empty disk, as the real
        node's identity file: a wiped disk draws another. Derived, not drawn from the seed's
        generator, so that runs without membership changes replay as before."""
        return f"{self.id}.{self.cluster.seed}.{self.wipes}"

    @property
    def address(self) -> tuple[str, str]:
        return f"{self.id}.sim:9000", f"{self.id}.sim:8000"

    def _reset_driver(self) -> None:
        """The driver's volatile state (lost with the process)."""
        self.unadvanced: deque = deque()  # [rd, messages after its fsync, durable] in Ready order
        self.storage_ops: list = []       # queued while a storage job runs: the next job
        self.storage_job: tuple | None = None   # (ops, started_us) in flight
        self.snapshot_job: tuple | None = None  # (index, term, data, started_us) in flight
        self.installs_pending = 0         # leader snapshots queued for the storage, not yet done
        self.crash_armed: str | None = None     # crash_during_io: the kind of job to crash in
        self.pending_writes: dict[int, tuple] = {}  # index -> (term, request)
        self.pending_reads: list = []                # (index, request) waiting for apply


class Cluster:
    def __init__(self, n: int = 5, seed: int = 0, bugs=(), config_overrides: dict | None = None,
                 net: NetConfig | None = None, snapshot_every: int = 0, writeback_ms: int = 5000,
                 trace: bool = False, check: bool = True, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 install_crash_rate: float = 0.0, admission: bool = True):
        if not 1 <= n <= 9:
            raise ValueError(f"cluster size must be 1..9, got {n}")
        self.rng = random.Random(seed)
        self.seed = seed
        self.bugs = frozenset(bugs)
        self.ids = [f"n{i + 1}" for i in range(n)]   # every node ever started, in order
        self.bootstrap_ids = list(self.ids)
        self.config_overrides = dict(config_overrides or {})
        self.net = net or NetConfig()
        self.snapshot_every = snapshot_every
        self.writeback_us = writeback_ms * 1000  # the kernel's flush of dirty data (ext4: 5 s)
        self.segment_bytes = segment_bytes
        self.install_crash_rate = install_crash_rate  # chance to crash a node while it installs
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
        # The transport's admission rule (see _deliver); checked only once membership changed,
        # before which every node admits exactly the bootstrap members.
        self.admission = admission
        self.membership_changed = False
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
                elif kind == STORAGE_DONE:
                    node = nodes[a]
                    if node.up and node.incarnation == b:
                        self._storage_done(node)
                elif kind == SNAPSHOT_DONE:
                    node = nodes[a]
                    if node.up and node.incarnation == b:
                        self._snapshot_done(node)
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
                    if node.up and node.incarnation == b:
                        node.files.writeback()
                        self.at(t + self.writeback_us, WRITEBACK, a, b)
                elif kind == CALL:
                    a(*b)
            self.now = max(self.now, time_us)
        except SafetyViolation as exc:
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
        node = self.nodes[node_id]
        members = {}
        for i in self.bootstrap_ids:
            peer, client = self.nodes[i].address
            members[i] = {"peer": peer, "client": client}
        return Config(node_id=node_id, peers=list(self.bootstrap_ids) if node.bootstrap else [],
                      members=members, bugs=self.bugs, **self.config_overrides)

    def start(self, node_id: str) -> None:
        """(Re)start a node from what its files hold, as the real node does: Storage.load().
        A node that cannot restart (corrupt files, a log the core refuses) is a violation."""
        node = self.nodes[node_id]
        if node.up or node.retired:
            return
        # The acked mark is raised after every log fsync: the storage reads no clock here, so a
        # seed replays exactly.
        storage = Storage(node.data_dir, bugs=self.bugs, segment_bytes=self.segment_bytes,
                          files=node.files, acked_mark_interval=0.0, clock=lambda: 0.0)
        try:
            state = storage.load()
            core = RaftCore(self.make_config(node_id), state, random.Random(self.rng.random()))
            kv = KVStateMachine()
            if state.snapshot_data is not None:
                kv.restore(unpack_snapshot(state.snapshot_data)[1])
        except (StorageCorruption, ValueError) as exc:
            raise Violation("restart", f"{node_id} could not restart: {type(exc).__name__}: {exc}") from None
        node.storage, node.core, node.kv = storage, core, kv
        node.up = True
        node.incarnation += 1
        node._reset_driver()
        phase = self.rng.randrange(self.tick_us)
        self.at(self.now + phase, TICK, node_id, node.incarnation)
        self.at(self.now + self.writeback_us, WRITEBACK, node_id, node.incarnation)
        if node.incarnation > 1:
            self.stats.restarts += 1
            self.log(f"restart {node_id} (term {node.core.term}, log {node.core.last_log_index}, "
                     f"snapshot {node.core.snapshot_index})")

    def crash(self, node_id: str) -> None:
        """Power loss: the process dies in the middle of its storage jobs, and of what was not
        synced only a random part survives (sim.files)."""
        node = self.nodes[node_id]
        if not node.up:
            return
        node.up = False
        node.incarnation += 1
        rng = self.rng
        jobs = []
        if node.storage_job is not None:
            ops, started = node.storage_job
            jobs.append((started, node.storage.run_ops, (ops,)))
        if node.snapshot_job is not None:
            index, term, data, started = node.snapshot_job
            jobs.append((started, self._save_own_snapshot, (node, index, term, data)))
        if len(jobs) == 2 and rng.random() < 0.5:
            jobs.reverse()  # the storage and snapshot threads run concurrently
        files = node.files
        for started, fn, args in jobs:
            done = 0
            if self.now > started:
                while rng.random() < CRASH_OP_CONTINUES:
                    done += 1
            files.arm(done)
            try:
                fn(*args)
            except SimulatedCrash:
                pass
            except Exception as exc:
                raise Violation("storage", f"{node_id}: storage failed: {type(exc).__name__}: {exc}") from None
            files.disarm()
        files.power_loss(rng)
        node.storage = None
        node.core = None
        node.kv = None
        node._reset_driver()
        self.stats.crashes += 1
        self.log(f"crash {node_id}")

    def crash_during_io(self, node_id: str, deadline_us: int, job: str = "any") -> None:
        """Crash the node at a random moment of its next job of the kind `job` ("storage",
        "snapshot", "any"): where a crash at a random time rarely lands. At deadline_us it
        crashes anyway if no such job started before."""
        node = self.nodes[node_id]
        if not node.up:
            return
        node.crash_armed = job
        self.call_at(deadline_us, self._armed_crash_due, node_id, node.incarnation)

    def _job_started(self, node: SimNode, kind: str, duration_us: int) -> None:
        armed = node.crash_armed
        if armed is not None and armed in (kind, "any"):
            node.crash_armed = None
            self.call_at(self.now + int(self.rng.random() * duration_us), self._crash_if_same,
                         node.id, node.incarnation)
        elif (kind == "storage" and self.install_crash_rate
              and any(op[0] == "install" for op in node.storage_job[0])
              and self.rng.random() < self.install_crash_rate):
            # Installing a leader's snapshot is the storage's most delicate step: crash in it
            # now and then, and come back soon.
            at = self.now + int(self.rng.random() * duration_us)
            self.call_at(at, self._crash_if_same, node.id, node.incarnation)
            self.call_at(at + self.rng.randint(50_000, 300_000), self.start, node.id)

    def _armed_crash_due(self, node_id: str, incarnation: int) -> None:
        node = self.nodes[node_id]
        if node.incarnation == incarnation and node.crash_armed is not None:
            node.crash_armed = None
            self.crash(node_id)

    def _crash_if_same(self, node_id: str, incarnation: int) -> None:
        if self.nodes[node_id].incarnation == incarnation:
            self.crash(node_id)

    # -- membership ------------------------------------------------------------------------------
    def add_node(self, node_id: str) -> SimNode:
        """Start a new node with an empty disk and no configuration (it joins once a leader adds
        it: see change())."""
        if node_id in self.nodes:
            raise ValueError(f"{node_id} exists already")
        node = self.nodes[node_id] = SimNode(node_id, self, bootstrap=False)
        self.ids.append(node_id)
        self.start(node_id)
        self.log(f"new node {node_id}")
        return node

    def learner_change(self, node_id: str) -> ConfChange:
        node = self.nodes[node_id]
        peer, client = node.address
        return ConfChange(ADD_LEARNER, node_id, peer, client, node.disk_id)

    def change(self, change: ConfChange, node_id: str | None = None):
        """Propose a membership change to node_id (default: the leader) as POST /cluster/...
        does: (index, term) once appended, else the reason it was refused (a string)."""
        node_id = node_id or self.leader()
        if node_id is None:
            return "no leader"
        node = self.nodes[node_id]
        if not node.up:
            return "node down"
        # Every member's incarnation is known to the leader's transport after a handshake.
        known = {i: n.disk_id for i, n in self.nodes.items() if n.up}
        try:
            index, term = node.core.propose_conf_change(change, known)
        except (NotLeader, TransferInProgress) as exc:
            return f"{type(exc).__name__}: {exc}"
        except ChangeRefused as exc:
            return exc.code
        self.membership_changed = True
        self.stats.changes += 1
        self.log(f"{node_id} proposes {change.op} {change.node_id} at {index}")
        self._process(node)
        return index, term

    def transfer(self, target: str | None = None, node_id: str | None = None):
        """Ask the leader (or node_id) to hand leadership over: the target, or the reason."""
        node_id = node_id or self.leader()
        if node_id is None:
            return "no leader"
        node = self.nodes[node_id]
        try:
            chosen = node.core.transfer_leadership(target)
        except NotLeader as exc:
            return f"NotLeader: {exc}"
        except ChangeRefused as exc:
            return exc.code
        self.stats.transfers += 1
        self.log(f"{node_id} transfers leadership to {chosen}")
        self._process(node)
        return chosen

    def retire(self, node_id: str) -> None:
        """A removed node is stopped for good (the provisioner retires it)."""
        self.crash(node_id)
        self.nodes[node_id].retired = True
        self.log(f"retire {node_id}")

    def wipe(self, node_id: str) -> None:
        """The node loses its disk and comes back empty (a new incarnation), same id."""
        node = self.nodes[node_id]
        self.crash(node_id)
        node.files = SimFiles()
        node.files.makedirs(node.data_dir)
        node.wipes += 1
        self.log(f"wipe {node_id}")

    def members(self) -> set[str]:
        """The members (voters and learners) of the newest configuration any live node holds."""
        best = None
        for node in self.nodes.values():
            if node.up and (best is None or node.core.conf_index > best.core.conf_index):
                best = node
        return set(best.core.configuration.members) if best else set()

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
        if self.membership_changed and self.admission and node.core.admission_problem(
                msg.src, self.nodes[msg.src].disk_id) is not None:
            self.stats.refused += 1   # the transport would refuse the sender's connection
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
        """As RaftNode._handle_ready: messages that do not wait for the disk go out at once, the
        Ready's storage operations are queued, committed entries are applied at hand-out."""
        checker = self.checker
        if rd.events:
            self._events(node, rd)
        if checker is not None and rd.entries:
            first = rd.entries[0].index
            checker.entries_persisted(node.id, rd.entries, node.core.term_at(first - 1))
        later = []
        for msg in rd.messages:
            if msg.needs_persist:
                later.append(msg)  # after this Ready's storage job AND every earlier one
            else:
                self._send(node, msg)
        item = [rd, later, False]
        node.unadvanced.append(item)
        if rd.snapshot is not None:
            node.installs_pending += 1
        if rd.must_sync:
            node.storage_ops.extend(ready_ops(rd, item))
            self._flush_storage(node)
        else:
            item[2] = True
        self._apply_ready(node, rd)
        if not node.up:
            return
        if rd.committed:
            self._maybe_snapshot(node)
        self._advance_persisted(node)

    def _job_us(self, node: SimNode) -> int:
        """How long a storage job takes: an fsync, or only writes into the page cache."""
        net = self.net
        if node.storage.sync_enabled:
            return net.fsync_min_us + int(self.rng.random() * (net.fsync_max_us - net.fsync_min_us))
        return 10 + int(self.rng.random() * 90)

    def _flush_storage(self, node: SimNode) -> None:
        """As RaftNode._flush_storage_ops: every queued operation forms the next storage job,
        unless a job is running (then they wait for it: group commit)."""
        if node.storage_job is not None or not node.storage_ops:
            return
        ops, node.storage_ops = node.storage_ops, []
        node.storage_job = (ops, self.now)
        duration = self._job_us(node)
        self.at(self.now + duration, STORAGE_DONE, node.id, node.incarnation)
        self._job_started(node, "storage", duration)

    def _storage_done(self, node: SimNode) -> None:
        ops = node.storage_job[0]
        node.storage_job = None
        try:
            node.storage.run_ops(ops)
        except Exception as exc:  # the real node stops itself here (exit code 3)
            raise Violation("storage", f"{node.id}: storage failed: {type(exc).__name__}: {exc}") from None
        for op in ops:
            if op[0] == "log":
                if op[1] is not None:
                    op[1][2] = True
            elif op[0] == "install":
                node.installs_pending -= 1
        self._flush_storage(node)
        self._advance_persisted(node)
        self._process(node)

    def _advance_persisted(self, node: SimNode) -> None:
        """Advance every Ready, in order, whose own and earlier storage jobs are complete."""
        queue = node.unadvanced
        core = node.core
        checker = self.checker
        while queue and queue[0][2]:
            rd, later, _ = queue.popleft()
            for msg in later:
                self._send(node, msg)
            core.advance(rd)
            if checker is not None and core.role == LEADER:
                checker.leader_committed(node.id, core)

    def _maybe_snapshot(self, node: SimNode) -> None:
        """As RaftNode._maybe_snapshot: a snapshot of the state as of now (the forked child's
        copy) is written and adopted by a job of its own; then the core and the log compact."""
        every = self.snapshot_every
        if every <= 0 or node.snapshot_job is not None or node.installs_pending:
            return
        index = node.kv.last_applied
        if index - node.storage.snapshot_index < every:
            return
        term = node.core.term_at(index)
        if term is None:
            return
        data = pack_snapshot(node.core.configuration_at(index), node.kv.snapshot())
        node.snapshot_job = (index, term, data, self.now)
        duration = self._job_us(node)
        self.at(self.now + duration, SNAPSHOT_DONE, node.id, node.incarnation)
        self._job_started(node, "snapshot", duration)

    @staticmethod
    def _save_own_snapshot(node: SimNode, index: int, term: int, data: bytes) -> bytes | None:
        """The forked child's write, then the snapshot thread's adoption (server.py)."""
        storage = node.storage
        path = storage.snapshot_temp_path(index)
        Storage.write_snapshot_file(path, index, term, data, storage.sync_enabled, node.files)
        return storage.adopt_snapshot_file(path, index, term)

    def _snapshot_done(self, node: SimNode) -> None:
        index, term, data, _ = node.snapshot_job
        node.snapshot_job = None
        try:
            saved = self._save_own_snapshot(node, index, term, data)
        except Exception as exc:
            raise Violation("storage", f"{node.id}: snapshot failed: {type(exc).__name__}: {exc}") from None
        if saved is None:
            return  # superseded by a snapshot installed from the leader
        node.core.compact(index, saved)
        self.stats.snapshots += 1
        node.storage_ops.append(("compact", min(index, node.storage.snapshot_index)))
        self._flush_storage(node)

    def _apply_ready(self, node: SimNode, rd: Ready) -> None:
        kv = node.kv
        if rd.snapshot is not None:
            kv.restore(unpack_snapshot(rd.snapshot.data)[1])
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
            except TransferInProgress:   # 503 transferring: nothing appended, retry later
                self._reply(request, ("redirect", None))
                return
            if self.ack_before_commit:  # SEEDED BUG ack-before-commit: answer once appended
                self._reply(request, ("ok", (200, {}), index, term))
            else:
                node.pending_writes[index] = (term, request)
        self._process(node)

    def _reply(self, request, answer) -> None:
        self.at(self.now + 100 + int(self.rng.random() * 900), REPLY, request.client, (request, answer))
