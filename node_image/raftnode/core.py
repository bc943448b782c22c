"""The pure, deterministic Raft core (Ongaro & Ousterhout 2014, Figure 2; thesis ch. 3, 4, 6, 9).

No sockets, disks, clocks, threads or randomness of its own: inputs are tick(), step(message),
propose(command), read_index(ctx), propose_conf_change(change), transfer_leadership(target);
outputs are collected in a Ready (see raftnode.types).

Where each rule lives:

    core.py         RaftCore: state, inputs and outputs (ready/advance), step dispatch
    log.py          the log, its snapshot, and what of it is handed out and durable
    quorum.py       majorities: commit index, vote results, check-quorum, ReadIndex rounds
    election.py     timers, pre-vote, votes, the leader lease, role changes
    replication.py  the leader: appends, heartbeats, answers, commit, snapshots sent
    follower.py     the follower: the consistency check, appends, snapshots received
    reads.py        ReadIndex
    reconfig.py     the configuration in force, membership changes, leadership transfer
    membership.py   configurations and which changes are legal (pure, no core state)
    corestate.py    the state the mixins share, declared with its types (annotations only)
    tracker.py      a follower's progress: flow control, snapshot transfer, catch-up rounds

Driver protocol (the simulator and the asyncio node run exactly this loop):

    rd = core.ready()
    if rd.snapshot:      persist it atomically, restore the state machine from it
    if rd.must_sync:     persist rd.hard_state, truncate at rd.truncate_from, append rd.entries,
                         then fsync once (group commit)
    send rd.messages     (those with needs_persist=True only after that fsync; the leader's
                         AppendEntries have needs_persist=False and may go out before it)
    apply rd.committed   in order; serve rd.read_states once last_applied >= their index;
                         answer rd.dropped_reads as "not leader"
    core.advance(rd)     AFTER the fsync: this is how the leader learns its own log is durable,
                         and it counts itself in matchIndex only up to what an advance() covered.
                         advance() may advance the commit index, so call ready() again after it.

Readies must be advanced in the order they were returned. step()/tick()/propose() may be called
between ready() and advance() (e.g. while the fsync runs); the core never hands out the same
entry twice and tracks durability by (index, term) so a later truncation is handled.

A restarted node starts with commit_index = snapshot_index and re-learns commit from the leader
(HardState.commit is advisory only: after a crash the log on disk may hold an unreplaced
conflicting suffix that an early persisted commit index would wrongly cover).

Seeded bugs (Config.bugs; every path is marked `# SEEDED BUG` and is unreachable when empty):
  commit-old-term    the leader commits entries of earlier terms by counting replicas (Figure 8)
  stale-read         any node answers a read at once with its local applied index
  lease-read         a leader skips the ReadIndex heartbeat round while it heard from a majority
                     within a lease measured in its own ticks (a slow clock stretches the lease)
  unsafe-membership  a leader appends a configuration change before an entry of its own term
                     committed (Ongaro's 2015 single-server bug: two leaders' sibling changes)
"""

from __future__ import annotations

import math
import random
from typing import Any

from .codec import MAX_FRAME_BYTES, PreEncoded
from .election import Elections
from .follower import Following
from .log import _ENTRY_HEAD_BYTES, RaftLog, entry_size
from .membership import Configuration
from .reads import Reads
from .reconfig import Reconfiguration
from .replication import Replication
from .types import (
    APPEND,
    APPEND_RESP,
    CANDIDATE,
    COMMAND,
    FOLLOWER,
    LEADER,
    PRE_CANDIDATE,
    PRE_VOTE,
    PRE_VOTE_RESP,
    REQUEST_VOTE,
    REQUEST_VOTE_RESP,
    SNAPSHOT,
    SNAPSHOT_RESP,
    TIMEOUT_NOW,
    Config,
    Entry,
    Event,
    HardState,
    Message,
    NotLeader,
    ProposalDropped,
    Ready,
    SafetyViolation,
    StorageState,
    TransferInProgress,
)

CORE_BUGS = frozenset({"commit-old-term", "stale-read", "lease-read", "unsafe-membership"})
DRIVER_BUGS = frozenset({"no-fsync", "ack-before-commit", "forget-vote", "snapshot-gap"})
KNOWN_BUGS = CORE_BUGS | DRIVER_BUGS

DEFAULT_SNAPSHOT_CHUNK = 64 * 1024
# Room in a frame for everything but the entries (fixed fields, two ids, counts).
_FRAME_OVERHEAD = 1024

__all__ = ["KNOWN_BUGS", "RaftCore", "SafetyViolation", "entry_size", "validate_config"]


def validate_config(config: Config) -> None:
    """Raise ValueError naming the first problem with a Config."""
    if not config.node_id:
        raise ValueError("config.node_id must be a non-empty string")
    if len(set(config.peers)) != len(config.peers):
        raise ValueError(f"config.peers has duplicates: {config.peers}")
    if config.peers and config.node_id not in config.peers:
        raise ValueError(f"config.peers {config.peers} must include node_id {config.node_id!r} "
                         "(or be empty: a node that joins a running cluster)")
    if config.tick_ms <= 0:
        raise ValueError(f"tick_ms must be positive, got {config.tick_ms}")
    if not 0 < config.election_timeout_min_ms <= config.election_timeout_max_ms:
        raise ValueError("election timeout must satisfy 0 < min <= max, got "
                         f"{config.election_timeout_min_ms}-{config.election_timeout_max_ms} ms")
    if not 0 < config.heartbeat_ms < config.election_timeout_min_ms:
        raise ValueError(f"heartbeat ({config.heartbeat_ms} ms) must be positive and below the "
                         f"minimum election timeout ({config.election_timeout_min_ms} ms)")
    if config.max_entries_per_append < 1:
        raise ValueError(f"max_entries_per_append must be at least 1, got {config.max_entries_per_append}")
    if not 0 < config.max_bytes_per_append <= MAX_FRAME_BYTES - _FRAME_OVERHEAD:
        raise ValueError(f"max_bytes_per_append must be 1..{MAX_FRAME_BYTES - _FRAME_OVERHEAD} "
                         f"(a frame holds at most {MAX_FRAME_BYTES} bytes), got {config.max_bytes_per_append}")
    if not 0 < config.snapshot_chunk_bytes <= MAX_FRAME_BYTES - _FRAME_OVERHEAD:
        raise ValueError(f"snapshot_chunk_bytes must be 1..{MAX_FRAME_BYTES - _FRAME_OVERHEAD}, "
                         f"got {config.snapshot_chunk_bytes}")
    if config.max_inflight_msgs < 1:
        raise ValueError(f"max_inflight_msgs must be at least 1, got {config.max_inflight_msgs}")
    if config.max_inflight_bytes < config.max_bytes_per_append:
        raise ValueError(f"max_inflight_bytes ({config.max_inflight_bytes}) must be at least "
                         f"max_bytes_per_append ({config.max_bytes_per_append})")
    if config.max_uncommitted_bytes < 1:
        raise ValueError(f"max_uncommitted_bytes must be positive, got {config.max_uncommitted_bytes}")
    unknown = set(config.bugs) - KNOWN_BUGS
    if unknown:
        raise ValueError(f"unknown seeded bug(s) {sorted(unknown)}; known: {sorted(KNOWN_BUGS)}")


class RaftCore(Elections, Replication, Following, Reads, Reconfiguration):
    def __init__(self, config: Config, state: StorageState, rng: random.Random) -> None:
        validate_config(config)
        self.config = config
        self.id = config.node_id
        self.rng = rng
        tick = config.tick_ms
        self.election_ticks_min = max(1, math.ceil(config.election_timeout_min_ms / tick))
        self.election_ticks_max = max(self.election_ticks_min,
                                      math.ceil(config.election_timeout_max_ms / tick))
        self.heartbeat_ticks = max(1, min(round(config.heartbeat_ms / tick), self.election_ticks_min - 1))
        self.bugs = frozenset(config.bugs)
        self._bug_commit_old_term = "commit-old-term" in self.bugs
        self._bug_stale_read = "stale-read" in self.bugs
        self._bug_lease_read = "lease-read" in self.bugs
        self._bug_unsafe_membership = "unsafe-membership" in self.bugs
        self.snapshot_chunk = getattr(config, "snapshot_chunk_bytes", DEFAULT_SNAPSHOT_CHUNK)

        hs = state.hard_state
        self.term = hs.term
        self.voted_for = hs.voted_for
        # The log's end this node had made durable before (see Elections._behind_acknowledged).
        self._acked_floor = getattr(hs, "acked", 0)
        self.raft_log = RaftLog(state.snapshot_index, state.snapshot_term,
                                getattr(state, "snapshot_data", None), state.entries)
        for entry in self.raft_log.entries:
            if entry.term > self.term:
                raise ValueError(f"log entry {entry.index} has term {entry.term} above the "
                                 f"persisted current term {self.term}")

        self.role = FOLLOWER
        self.leader_id: str | None = None
        self.commit_index = self.raft_log.snapshot_index
        self._applied = self.raft_log.snapshot_index   # handed out in a Ready for applying
        self._hs_dirty = False
        self._pending_snapshot = None
        self._incoming_snapshot = None   # see CoreState

        self._ticks = 0
        self.election_elapsed = 0
        self.randomized_timeout = self.election_ticks_max
        self._reset_election_timer()
        self.heartbeat_elapsed = 0
        self.votes: dict[str, bool] = {}
        self.progress = {}                  # leader: member -> tracker.Progress
        self.others: list[str] = []         # leader: the members with a Progress, in a fixed order
        self._voter_prs = []                # leader: the Progress of every voter but us
        self._send_to: set[str] = set()
        self._noop_index = 0
        self._proposed_bytes = self._committed_bytes = 0   # this leadership's proposals
        self._transfer = None               # leader: [target, started at tick, TimeoutNow sent]
        self._read_round = 0
        self._read_round_requested = False
        self._waiting_reads = []            # reads that arrived before the no-op committed
        self._pending_reads = []            # (round, ctx, index) awaiting a quorum of acks
        self._reported_commit = self.commit_index

        self._msgs: list[Message] = []
        self._events: list[Event] = []
        self._read_states = []
        self._dropped_reads = []
        self._init_configuration(self.raft_log.snapshot_data)

    # -- properties for the driver --------------------------------------------------------------
    @property
    def log(self) -> list[Entry]:
        """The entries after the snapshot (read only)."""
        return self.raft_log.entries

    @property
    def snapshot_index(self) -> int:
        return self.raft_log.snapshot_index

    @property
    def snapshot_term(self) -> int:
        return self.raft_log.snapshot_term

    @property
    def snapshot_data(self) -> bytes | None:
        return self.raft_log.snapshot_data

    @property
    def last_log_index(self) -> int:
        return self.raft_log.last_index

    @property
    def last_log_term(self) -> int:
        return self.raft_log.last_term

    @property
    def leader(self) -> str | None:
        return self.leader_id

    @property
    def applied_index(self) -> int:
        """The highest index handed out in Ready.committed (or covered by a snapshot)."""
        return self._applied

    @property
    def persisted_index(self) -> int:
        return self.raft_log.persisted

    @property
    def configuration(self) -> Configuration:
        """The configuration in force (raftnode.membership.Configuration)."""
        return self.conf

    @property
    def promotable(self) -> bool:
        """Whether this node may campaign (a voter of its configuration, see reconfig)."""
        return self._promotable

    def term_at(self, index: int) -> int | None:
        """The term of the entry at index, or None if compacted away or beyond the log."""
        return self.raft_log.term_at(index)

    def entries_between(self, first: int, last: int) -> list[Entry]:
        """Entries first..last inclusive (both within the log after the snapshot)."""
        return self.raft_log.slice(first, last)

    # -- inputs ----------------------------------------------------------------------------------
    def tick(self) -> bool:
        """One logical clock tick. Returns True if it did something (a Ready may be waiting);
        most ticks do nothing, and a driver may skip ready() after those."""
        self._ticks += 1
        self.election_elapsed += 1
        if self.role != LEADER:
            return self._tick_follower()
        self.heartbeat_elapsed += 1
        acted = False
        if self.election_elapsed >= self.election_ticks_min:
            self.election_elapsed = 0
            if not self._quorum_active() and self.config.check_quorum:
                self._event("step_down", reason="check_quorum", term=self.term)
                self._become_follower(self.term, None)
                return True
        if self.heartbeat_elapsed >= self.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._tick_leader_membership()
            self._broadcast_heartbeat()
            acted = True
        return acted

    def propose(self, command: dict[str, Any]) -> tuple[int, int]:
        """Append a client command to the leader's log; returns its (index, term). Raises
        NotLeader on a non-leader, TransferInProgress while leadership is being handed over,
        ProposalDropped (nothing appended) while the uncommitted entries of this leader's term
        hold max_uncommitted_bytes or more."""
        if self.role != LEADER:
            raise NotLeader(self.leader_id)
        if self._transfer is not None:
            raise TransferInProgress(self._transfer[0])
        rlog = self.raft_log
        entry = Entry(rlog.snapshot_index + len(rlog.entries) + 1, self.term, COMMAND, command)
        # (The HTTP layer's commands carry their encoding: no need to cache it on the entry.)
        size = (len(command.wire) + _ENTRY_HEAD_BYTES if type(command) is PreEncoded
                else entry_size(entry))
        total = self._proposed_bytes
        uncommitted = total - self._committed_bytes
        # As etcd: an empty backlog always takes one entry, however large, so progress is possible.
        if uncommitted and uncommitted + size > self.config.max_uncommitted_bytes:
            raise ProposalDropped(uncommitted, self.config.max_uncommitted_bytes)
        # Each entry of our term carries the running total of our term's bytes through it:
        # commit learns the committed bytes, and RaftLog.batch the size of a run of entries, in O(1).
        entry._term_bytes = self._proposed_bytes = total + size
        rlog.entries.append(entry)
        self._send_to.update(self.others)
        return entry.index, entry.term

    @property
    def uncommitted_bytes(self) -> int:
        """Bytes of this leader's proposals not committed yet (0 on a non-leader)."""
        return self._proposed_bytes - self._committed_bytes if self.role == LEADER else 0

    def step(self, msg: Message) -> None:
        kind = msg.kind
        if msg.term > self.term:
            if kind == PRE_VOTE or (kind == PRE_VOTE_RESP and msg.granted):
                pass  # pre-vote traffic never changes a term
            elif (kind == REQUEST_VOTE and self.config.check_quorum and self._in_leader_lease()
                  and not msg.transfer):
                # A live leader was heard from recently: this candidate is disruptive (a removed
                # server, or one that was cut off), unless the leader itself asked for the
                # election (leadership transfer).
                return
            else:
                leader = msg.src if kind in (APPEND, SNAPSHOT) else None
                self._become_follower(msg.term, leader)
        elif msg.term < self.term:
            if kind in (APPEND, SNAPSHOT):
                # Tell the stale leader about the newer term so it steps down.
                self._send(Message(APPEND_RESP, self.id, msg.src, self.term, success=False,
                                   prev_log_index=msg.prev_log_index, context=msg.context))
            elif kind == REQUEST_VOTE:
                self._send(Message(REQUEST_VOTE_RESP, self.id, msg.src, self.term, granted=False))
            elif kind == PRE_VOTE:
                self._send(Message(PRE_VOTE_RESP, self.id, msg.src, self.term, granted=False,
                                   needs_persist=False))
            return

        if kind == APPEND:
            self._handle_append(msg)
        elif kind == APPEND_RESP:
            if self.role == LEADER:
                self._handle_append_resp(msg)
        elif kind == REQUEST_VOTE:
            self._handle_request_vote(msg)
        elif kind == REQUEST_VOTE_RESP:
            if self.role == CANDIDATE and msg.term == self.term:
                self._count_vote(msg.src, msg.granted)
        elif kind == PRE_VOTE:
            self._handle_pre_vote(msg)
        elif kind == PRE_VOTE_RESP:
            if self.role == PRE_CANDIDATE and (msg.term == self.term + 1 or not msg.granted):
                self._count_vote(msg.src, msg.granted)
        elif kind == SNAPSHOT:
            self._handle_snapshot(msg)
        elif kind == SNAPSHOT_RESP:
            if self.role == LEADER:
                self._handle_snapshot_resp(msg)
        elif kind == TIMEOUT_NOW:
            self._handle_timeout_now(msg)
        else:
            raise ValueError(f"unknown message kind {kind!r} from {msg.src}")

    # -- outputs ---------------------------------------------------------------------------------
    def ready(self) -> Ready:
        rd = Ready()
        rlog = self.raft_log
        if self._pending_snapshot is not None:
            rd.snapshot = self._pending_snapshot
            self._pending_snapshot = None
        if self._hs_dirty:
            rd.hard_state = HardState(self.term, self.voted_for, self.commit_index)
            self._hs_dirty = False
        if rlog.truncate_from is not None:
            rd.truncate_from = rlog.take_truncation()
        last = rlog.snapshot_index + len(rlog.entries)
        if rlog.unstable_from <= last:
            rd.entries = rlog.take_unstable()
        if self.role == LEADER:
            if self._read_round_requested:
                self._read_round_requested = False
                self._broadcast_heartbeat()
            elif self._send_to:
                send_to = self._send_to
                for peer in self.others:   # in a fixed order: a seed must replay exactly
                    if peer in send_to:
                        self._send_append(peer)
            self._send_to.clear()
        if self._msgs:
            rd.messages = self._msgs
            self._msgs = []
        if self.commit_index > self._applied:
            upto = min(self.commit_index, last)
            if upto > self._applied:
                rd.committed = rlog.slice(self._applied + 1, upto)
                self._applied = upto
        if self.commit_index > self._reported_commit:
            self._reported_commit = self.commit_index
            self._event("commit", index=self.commit_index, term=rlog.term_at(self.commit_index))
        if self._read_states:
            rd.read_states = self._read_states
            self._read_states = []
        if self._dropped_reads:
            rd.dropped_reads = self._dropped_reads
            self._dropped_reads = []
        if self._events:
            rd.events = self._events
            self._events = []
        return rd

    def has_ready(self) -> bool:
        """Whether ready() would return something (cheap: called after every input)."""
        rlog = self.raft_log
        return bool(self._msgs or self._events or self._hs_dirty or self._send_to
                    or rlog.unstable_from <= rlog.snapshot_index + len(rlog.entries)
                    or self.commit_index > self._applied or rlog.truncate_from is not None
                    or self._read_round_requested or self._read_states or self._dropped_reads
                    or self._pending_snapshot)

    def advance(self, rd: Ready) -> None:
        """The driver persisted (fsynced) everything in rd."""
        rlog = self.raft_log
        if rd.snapshot is not None and rlog.snapshot_index >= rd.snapshot.index:
            rlog.persisted = max(rlog.persisted, rd.snapshot.index)
        if rd.entries and rlog.advance_persisted(rd.entries) and self.role == LEADER:
            self._maybe_commit()

    # -- log compaction --------------------------------------------------------------------------
    def compact(self, index: int, data: bytes) -> None:
        """The driver durably saved a snapshot covering entries <= index (which it has applied):
        `data` is membership.pack_snapshot(self.configuration_at(index), state machine bytes).
        Drop the covered entries from the in-memory log; `data` is kept to send InstallSnapshot."""
        rlog = self.raft_log
        if index <= rlog.snapshot_index:
            return
        if index > self._applied:
            raise ValueError(f"cannot compact to {index}: only {self._applied} handed out to apply")
        self._compact_configurations(index)
        rlog.compact(index, data)

    # -- misc ------------------------------------------------------------------------------------
    def _send(self, msg: Message) -> None:
        self._msgs.append(msg)

    def _event(self, kind: str, **detail: Any) -> None:
        self._events.append(Event(kind, detail))
