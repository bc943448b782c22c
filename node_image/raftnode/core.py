"""The pure, deterministic Raft core (Ongaro & Ousterhout 2014, Figure 2; thesis ch. 3, 6, 9).

No sockets, disks, clocks, threads or randomness of its own: inputs are tick(), step(message),
propose(command), read_index(ctx); outputs are collected in a Ready (see raftnode.types).

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
  commit-old-term  the leader commits entries of earlier terms by counting replicas (Figure 8)
  stale-read       any node answers a read at once with its local applied index
  lease-read       a leader skips the ReadIndex heartbeat round while it heard from a majority
                   within a lease measured in its own ticks (a slow clock stretches the lease)
"""

from __future__ import annotations

import bisect
import math

from .codec import _ENTRY_HEAD, MAX_FRAME_BYTES, PreEncoded, encode_entry_data
from .tracker import STATE_PROBE, STATE_REPLICATE, STATE_SNAPSHOT, Progress
from .types import (APPEND, APPEND_RESP, CANDIDATE, COMMAND, FOLLOWER, LEADER, NOOP, PRE_CANDIDATE,
                    PRE_VOTE, PRE_VOTE_RESP, REQUEST_VOTE, REQUEST_VOTE_RESP, SNAPSHOT, SNAPSHOT_RESP,
                    Config, Entry, Event, HardState, Message, NotLeader, ProposalDropped, ReadState,
                    Ready, SnapshotInstall, StorageState)

CORE_BUGS = frozenset({"commit-old-term", "stale-read", "lease-read"})
DRIVER_BUGS = frozenset({"no-fsync", "ack-before-commit", "forget-vote", "snapshot-gap"})
KNOWN_BUGS = CORE_BUGS | DRIVER_BUGS

DEFAULT_SNAPSHOT_CHUNK = 64 * 1024


class SafetyViolation(RuntimeError):
    """The core was asked to do something Raft's safety argument rules out (e.g. truncate a
    committed entry). Only reachable with a seeded bug or a broken driver: stop the node."""


def _term_key(entry: Entry) -> int:
    return entry.term


def _term_bytes_key(entry: Entry) -> int:
    return entry._term_bytes


_ENTRY_HEAD_BYTES = _ENTRY_HEAD.size
# Room in a frame for everything but the entries (fixed fields, two ids, counts).
_FRAME_OVERHEAD = 1024


def entry_size(entry: Entry) -> int:
    """An entry's bytes on the wire: its encoded data plus the entry head. The data's encoding is
    cached on the entry where the codec looks for it (codec._entry_data_bytes), so it is made
    once per entry, here or in the transport, whichever comes first."""
    cache = entry.__dict__
    wire = cache.get("_wire")
    if wire is None:
        data = entry.data
        wire = cache["_wire"] = data.wire if type(data) is PreEncoded else encode_entry_data(data)
    return len(wire) + _ENTRY_HEAD_BYTES


def validate_config(config: Config) -> None:
    """Raise ValueError naming the first problem with a Config."""
    if not config.node_id:
        raise ValueError("config.node_id must be a non-empty string")
    if len(set(config.peers)) != len(config.peers):
        raise ValueError(f"config.peers has duplicates: {config.peers}")
    if config.node_id not in config.peers:
        raise ValueError(f"config.peers {config.peers} must include node_id {config.node_id!r}")
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


class RaftCore:
    def __init__(self, config: Config, state: StorageState, rng):
        validate_config(config)
        self.config = config
        self.id = config.node_id
        self.peers = list(config.peers)
        self.others = [p for p in self.peers if p != self.id]
        self.quorum = len(self.peers) // 2 + 1
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
        self.snapshot_chunk = getattr(config, "snapshot_chunk_bytes", DEFAULT_SNAPSHOT_CHUNK)

        hs = state.hard_state
        self.term = hs.term
        self.voted_for = hs.voted_for
        # The log's end this node had made durable before (see _behind_acknowledged).
        self._acked_floor = getattr(hs, "acked", 0)
        self.snapshot_index = state.snapshot_index
        self.snapshot_term = state.snapshot_term
        self.snapshot_data = getattr(state, "snapshot_data", None)
        self.log: list[Entry] = list(state.entries)
        for offset, entry in enumerate(self.log):
            if entry.index != self.snapshot_index + 1 + offset:
                raise ValueError(f"log is not contiguous after snapshot index {self.snapshot_index}: "
                                 f"position {offset} holds index {entry.index}")
            if entry.term > self.term:
                raise ValueError(f"log entry {entry.index} has term {entry.term} above the "
                                 f"persisted current term {self.term}")
        if self.log and self.log[0].term < self.snapshot_term:
            # The storage installs a snapshot atomically with the log after it (SnapshotInstall):
            # entries of an older term after the snapshot cannot continue it.
            raise ValueError(f"log entry {self.log[0].index} has term {self.log[0].term}, older than "
                             f"the snapshot it follows (index {self.snapshot_index}, term "
                             f"{self.snapshot_term}): the stored log does not continue the snapshot")

        self.role = FOLLOWER
        self.leader_id: str | None = None
        self.commit_index = self.snapshot_index
        self._applied = self.snapshot_index          # handed out in a Ready for applying
        self._persisted = self.last_log_index        # durable and equal to our in-memory log
        self._unstable_from = self.last_log_index + 1
        self._truncate_from: int | None = None
        self._hs_dirty = False
        self._pending_snapshot: SnapshotInstall | None = None
        self._incoming_snapshot: tuple | None = None  # (leader, term, index, snap_term, bytearray)

        self._ticks = 0
        self.election_elapsed = 0
        self.randomized_timeout = self.election_ticks_max
        self._reset_election_timer()
        self.heartbeat_elapsed = 0
        self.votes: dict[str, bool] = {}
        self.progress: dict[str, Progress] = {}
        self._send_to: set[str] = set()
        self._noop_index = 0
        self._proposed_bytes = self._committed_bytes = 0   # this leadership's proposals
        self._read_round = 0
        self._read_round_requested = False
        self._waiting_reads: list = []      # reads that arrived before the no-op committed
        self._pending_reads: list = []      # [round, ctx, index] awaiting a quorum of acks
        self._reported_commit = self.commit_index

        self._msgs: list[Message] = []
        self._events: list[Event] = []
        self._read_states: list[ReadState] = []
        self._dropped_reads: list = []

    # -- properties for the driver --------------------------------------------------------------
    @property
    def last_log_index(self) -> int:
        return self.snapshot_index + len(self.log)

    @property
    def last_log_term(self) -> int:
        return self.log[-1].term if self.log else self.snapshot_term

    @property
    def leader(self) -> str | None:
        return self.leader_id

    @property
    def applied_index(self) -> int:
        """The highest index handed out in Ready.committed (or covered by a snapshot)."""
        return self._applied

    @property
    def persisted_index(self) -> int:
        return self._persisted

    def term_at(self, index: int) -> int | None:
        """The term of the entry at index, or None if compacted away or beyond the log."""
        offset = index - self.snapshot_index - 1
        if offset < 0:
            return self.snapshot_term if index == self.snapshot_index else None
        if offset >= len(self.log):
            return None
        return self.log[offset].term

    def entries_between(self, first: int, last: int) -> list[Entry]:
        """Entries first..last inclusive (both within the log after the snapshot)."""
        base = self.snapshot_index + 1
        return self.log[first - base:last - base + 1]

    # -- inputs ----------------------------------------------------------------------------------
    def tick(self) -> bool:
        """One logical clock tick. Returns True if it did something (a Ready may be waiting);
        most ticks do nothing, and a driver may skip ready() after those."""
        self._ticks += 1
        self.election_elapsed += 1
        if self.role == LEADER:
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
                self._broadcast_heartbeat()
                acted = True
            return acted
        if self.election_elapsed >= self.randomized_timeout:
            self._start_election(pre=self.config.pre_vote)
            return True
        return False

    def propose(self, command) -> tuple[int, int]:
        """Append a client command to the leader's log; returns its (index, term). Raises
        NotLeader on a non-leader, ProposalDropped (nothing appended) while the uncommitted
        entries of this leader's term hold max_uncommitted_bytes or more."""
        if self.role != LEADER:
            raise NotLeader(self.leader_id)
        entry = Entry(self.last_log_index + 1, self.term, COMMAND, command)
        # (The HTTP layer's commands carry their encoding: no need to cache it on the entry.)
        size = (len(command.wire) + _ENTRY_HEAD_BYTES if type(command) is PreEncoded
                else entry_size(entry))
        total = self._proposed_bytes
        uncommitted = total - self._committed_bytes
        # As etcd: an empty backlog always takes one entry, however large, so progress is possible.
        if uncommitted and uncommitted + size > self.config.max_uncommitted_bytes:
            raise ProposalDropped(uncommitted, self.config.max_uncommitted_bytes)
        # Each entry of our term carries the running total of our term's bytes through it:
        # commit learns the committed bytes, and _batch the size of a run of entries, in O(1).
        entry._term_bytes = self._proposed_bytes = total + size
        self.log.append(entry)
        self._send_to.update(self.others)
        return entry.index, entry.term

    @property
    def uncommitted_bytes(self) -> int:
        """Bytes of this leader's proposals not committed yet (0 on a non-leader)."""
        return self._proposed_bytes - self._committed_bytes if self.role == LEADER else 0

    def read_index(self, ctx) -> None:
        """Ask for a linearizable read; a later Ready carries ReadState(ctx, index), or drops ctx
        (Ready.dropped_reads) if the leader steps down first. Raises NotLeader on a non-leader."""
        if self._bug_stale_read:  # SEEDED BUG stale-read: serve from local state on any node
            self._read_states.append(ReadState(ctx, self._applied))
            return
        if self.role != LEADER:
            raise NotLeader(self.leader_id)
        if self.commit_index < self._noop_index:
            # Until its no-op commits, the leader does not know the full committed prefix.
            self._waiting_reads.append(ctx)
            return
        self._queue_read(ctx, self.commit_index)

    def step(self, msg: Message) -> None:
        kind = msg.kind
        if msg.term > self.term:
            if kind == PRE_VOTE or (kind == PRE_VOTE_RESP and msg.granted):
                pass  # pre-vote traffic never changes a term
            elif kind == REQUEST_VOTE and self.config.check_quorum and self._in_leader_lease():
                return  # a live leader was heard from recently: this candidate is disruptive
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
        else:
            raise ValueError(f"unknown message kind {kind!r} from {msg.src}")

    # -- outputs ---------------------------------------------------------------------------------
    def ready(self) -> Ready:
        rd = Ready()
        if self._pending_snapshot is not None:
            rd.snapshot = self._pending_snapshot
            self._pending_snapshot = None
        if self._hs_dirty:
            rd.hard_state = HardState(self.term, self.voted_for, self.commit_index)
            self._hs_dirty = False
        if self._truncate_from is not None:
            rd.truncate_from = self._truncate_from
            self._truncate_from = None
        last = self.last_log_index
        if self._unstable_from <= last:
            rd.entries = self.entries_between(self._unstable_from, last)
            self._unstable_from = last + 1
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
                rd.committed = self.entries_between(self._applied + 1, upto)
                self._applied = upto
        if self.commit_index > self._reported_commit:
            self._reported_commit = self.commit_index
            self._event("commit", index=self.commit_index, term=self.term_at(self.commit_index))
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
        return bool(self._msgs or self._events or self._hs_dirty or self._send_to
                    or self._unstable_from <= self.snapshot_index + len(self.log)
                    or self.commit_index > self._applied or self._truncate_from is not None
                    or self._read_round_requested or self._read_states or self._dropped_reads
                    or self._pending_snapshot)

    def advance(self, rd: Ready) -> None:
        """The driver persisted (fsynced) everything in rd."""
        if rd.snapshot is not None and self.snapshot_index >= rd.snapshot.index:
            self._persisted = max(self._persisted, rd.snapshot.index)
        if rd.entries and rd.entries[-1].index > self._persisted:
            # An entry is durable only if our in-memory log still holds that very entry (a later
            # truncation may have replaced it); by log matching, so are all before it. Entries a
            # snapshot covers since then are committed, hence ours.
            for written in reversed(rd.entries):
                index = written.index
                if index <= self._persisted:
                    break
                if index <= self.snapshot_index or self.term_at(index) == written.term:
                    self._persisted = index
                    if self.role == LEADER:
                        self._maybe_commit()
                    break

    # -- elections -------------------------------------------------------------------------------
    def _reset_election_timer(self) -> None:
        self.election_elapsed = 0
        self.randomized_timeout = self.rng.randint(self.election_ticks_min, self.election_ticks_max)

    def _in_leader_lease(self) -> bool:
        return self.leader_id is not None and self.election_elapsed < self.election_ticks_min

    def _start_election(self, pre: bool) -> None:
        self._reset_election_timer()
        if self._behind_acknowledged():
            return
        if pre:
            self._set_role(PRE_CANDIDATE, None)
            kind, term = PRE_VOTE, self.term + 1
        else:
            self._set_term(self.term + 1)
            self.voted_for = self.id
            self._hs_dirty = True
            self._set_role(CANDIDATE, None)
            kind, term = REQUEST_VOTE, self.term
        self.votes = {self.id: True}
        if self.quorum == 1:
            self._election_won_or_next(pre)
            return
        last_index, last_term = self.last_log_index, self.last_log_term
        for peer in self.others:
            # A candidate's RequestVote depends on its persisted term and self-vote.
            self._send(Message(kind, self.id, peer, term, last_log_index=last_index,
                               last_log_term=last_term, needs_persist=not pre))

    def _count_vote(self, voter: str, granted: bool) -> None:
        self.votes[voter] = granted
        yes = sum(1 for v in self.votes.values() if v)
        if yes >= self.quorum:
            self._election_won_or_next(self.role == PRE_CANDIDATE)
        elif len(self.votes) - yes > len(self.peers) - self.quorum:
            self._event("election_lost", term=self.term, pre_vote=self.role == PRE_CANDIDATE,
                        votes=yes)
            self._set_role(FOLLOWER, None)

    def _election_won_or_next(self, pre: bool) -> None:
        if pre:
            self._start_election(pre=False)
        else:
            self._become_leader()

    def _behind_acknowledged(self) -> bool:
        """Whether the log ends below the index this node had made durable, and may have
        acknowledged, before it restarted: a log that went backwards (a truncated file, a corrupt
        tail taken for a torn write). Such a node neither grants votes nor campaigns until it has
        caught up: its vote could elect a leader lacking entries it helped commit."""
        if self._acked_floor and (self._persisted >= self._acked_floor or self.quorum == 1):
            self._acked_floor = 0  # caught up (a lone node has nobody to catch up from)
        return self._acked_floor > 0

    def _log_up_to_date(self, msg: Message) -> bool:
        if self._behind_acknowledged():
            return False
        my_term = self.last_log_term
        return (msg.last_log_term > my_term
                or (msg.last_log_term == my_term and msg.last_log_index >= self.last_log_index))

    def _handle_request_vote(self, msg: Message) -> None:
        # A candidate or leader of this term voted for itself, so only followers (and
        # pre-candidates, which have not voted) can grant: one vote per term.
        can_vote = self.voted_for is None or self.voted_for == msg.src
        granted = can_vote and self._log_up_to_date(msg)
        if granted:
            if self.voted_for != msg.src:
                self.voted_for = msg.src
                self._hs_dirty = True
            if self.role != FOLLOWER:
                self._set_role(FOLLOWER, None)
            self._reset_election_timer()
        self._event("vote", candidate=msg.src, term=self.term, granted=granted)
        self._send(Message(REQUEST_VOTE_RESP, self.id, msg.src, self.term, granted=granted))

    def _handle_pre_vote(self, msg: Message) -> None:
        # Thesis 9.6: grant only if the candidate could win (newer term, log up to date) and we
        # have not heard from a live leader within the minimum election timeout.
        granted = (msg.term > self.term and self._log_up_to_date(msg)
                   and not self._in_leader_lease() and self.role != LEADER)
        self._send(Message(PRE_VOTE_RESP, self.id, msg.src, msg.term if granted else self.term,
                           granted=granted, needs_persist=False))

    def _set_term(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.voted_for = None
            self._hs_dirty = True
            self._event("term", term=term)

    def _set_role(self, role: str, leader: str | None) -> None:
        if role != self.role or leader != self.leader_id:
            was_leader = self.role == LEADER
            self.role = role
            self.leader_id = leader
            self._event("role", role=role, term=self.term, leader=leader)
            if was_leader and role != LEADER:
                self._drop_reads()
                self.progress = {}
                self._send_to.clear()

    def _become_follower(self, term: int, leader: str | None) -> None:
        if self.role == LEADER:
            self.election_elapsed = 0
        self._set_term(term)
        self._set_role(FOLLOWER, leader)

    def _become_leader(self) -> None:
        self._set_role(LEADER, self.id)
        self._event("election_won", term=self.term,
                    votes=sorted(v for v, ok in self.votes.items() if ok))
        self.heartbeat_elapsed = 0
        self.election_elapsed = 0
        nxt = self.last_log_index + 1
        config = self.config
        self.progress = {p: Progress(nxt, config.max_inflight_msgs, config.max_inflight_bytes)
                         for p in self.others}
        self._read_round = 0
        # The no-op of our own term lets earlier-term entries commit and unlocks reads.
        noop = Entry(nxt, self.term, NOOP)
        noop._term_bytes = self._proposed_bytes = entry_size(noop)   # see propose
        self._committed_bytes = 0
        self.log.append(noop)
        self._noop_index = noop.index
        for peer in self.others:
            self._send_append(peer)
        if self.quorum == 1:
            self._maybe_commit()

    # -- replication (leader) --------------------------------------------------------------------
    def _send_append(self, peer: str, heartbeat: bool = False) -> None:
        """Send what the follower's state allows (tracker.Progress); a heartbeat always sends
        one message, which carries the commit index and the ReadIndex round."""
        pr = self.progress[peer]
        state = pr.state
        if state == STATE_SNAPSHOT or pr.next <= self.snapshot_index:
            self._send_snapshot(peer, pr, heartbeat)
            return
        if state == STATE_PROBE:
            if pr.probe_sent:
                if heartbeat:   # an empty probe: a lost probe must not stall the follower
                    self._append_msg(peer, pr.next - 1, [])
                return
            entries, size = self._batch(pr.next, self.config.max_bytes_per_append, True)
            self._append_msg(peer, pr.next - 1, entries)
            pr.sent_append(pr.next - 1 + len(entries), size)
            return
        # Replicate: pipeline while the in-flight window has room.
        last = self.snapshot_index + len(self.log)
        inflights = pr.inflights
        max_bytes = self.config.max_bytes_per_append
        while pr.next <= last:
            room = inflights.room()
            if not room:
                break  # the window is full: acknowledgements will free it
            entries, size = self._batch(pr.next, max_bytes if max_bytes < room else room,
                                        not inflights.count)
            if not entries:
                break  # the next entry does not fit in what is left of the window: wait
            self._append_msg(peer, pr.next - 1, entries)
            pr.sent_append(entries[-1].index, size)
            heartbeat = False
        if heartbeat:
            # Nothing (more) may go: an empty append after the last entry sent. On an ordered
            # link it arrives after them, so a rejection means an append was lost.
            self._append_msg(peer, pr.next - 1, [])

    def _batch(self, first: int, budget: int, at_least_one: bool) -> tuple[list[Entry], int]:
        """Entries from `first` for one append, at most max_entries_per_append of them and at
        most `budget` bytes (one entry regardless of its size when at_least_one), and their
        size in bytes."""
        base = self.snapshot_index + 1
        log = self.log
        start = first - base
        stop = min(len(log), start + self.config.max_entries_per_append)
        if start >= stop:
            return [], 0
        if start > 0 and log[start - 1].term == self.term:
            # All of our term (see propose): sizes are differences of running totals.
            before = log[start - 1]._term_bytes
            total = log[stop - 1]._term_bytes - before
            if total > budget:
                stop = bisect.bisect_right(log, before + budget, start, stop, key=_term_bytes_key)
                if stop == start and at_least_one:
                    stop += 1
                total = log[stop - 1]._term_bytes - before if stop > start else 0
            return log[start:stop], total
        total = 0
        i = start
        while i < stop:
            entry = log[i]
            wire = entry.__dict__.get("_wire")
            size = len(wire) + _ENTRY_HEAD_BYTES if wire is not None else entry_size(entry)
            if total + size > budget and (i > start or not at_least_one):
                break
            total += size
            i += 1
        return log[start:i], total

    def _append_msg(self, peer: str, prev: int, entries: list[Entry]) -> None:
        self._msgs.append(Message(APPEND, self.id, peer, self.term, prev_log_index=prev,
                                  prev_log_term=self.term_at(prev), entries=entries,
                                  leader_commit=self.commit_index, context=self._read_round,
                                  needs_persist=False))

    def _broadcast_heartbeat(self) -> None:
        for peer in self.others:
            self._send_append(peer, heartbeat=True)
        self._send_to.clear()

    def _heard_from(self, msg: Message):
        """Record that a follower answered (liveness for check-quorum, its ReadIndex ack);
        None when the sender is not one of our followers."""
        pr = self.progress.get(msg.src)
        if pr is None:
            return None
        pr.active = True
        pr.last_heard = self._ticks
        if msg.context > pr.read_ack:
            pr.read_ack = msg.context
            if self._pending_reads:
                self._confirm_reads()
        return pr

    def _handle_append_resp(self, msg: Message) -> None:
        pr = self._heard_from(msg)
        if pr is None:
            return
        state = pr.state
        if msg.success:
            if pr.acknowledged(msg.match_index):
                self._maybe_commit()
            if state == STATE_SNAPSHOT:
                if pr.match < self.snapshot_index:
                    return  # the answer to a heartbeat: the transfer goes on
                pr.become_replicate()   # it caught up otherwise: our log covers what it lacks
            elif state == STATE_PROBE:
                pr.become_replicate()   # the log matches up to pr.match
            if pr.next <= self.last_log_index:
                self._send_to.add(msg.src)
            return
        if state == STATE_SNAPSHOT:
            return  # the answer to a heartbeat sent during the transfer
        if msg.conflict_term > 0:
            # Skip the follower's whole conflicting term; if we have that term, resume after our
            # last entry of it (thesis 5.3 optimisation / 6.5840 fast backup).
            pos = bisect.bisect_right(self.log, msg.conflict_term, key=_term_key)
            if pos > 0 and self.log[pos - 1].term == msg.conflict_term:
                nxt = self.log[pos - 1].index + 1
            else:
                nxt = msg.conflict_index
        else:
            nxt = msg.conflict_index
        if pr.rejected(msg.prev_log_index, nxt):   # else: the answer to an older append
            self._send_to.add(msg.src)

    def _maybe_commit(self) -> None:
        matches = sorted([pr.match for pr in self.progress.values()] + [self._persisted],
                         reverse=True)
        n = matches[self.quorum - 1]
        if n <= self.commit_index:
            return
        if self.term_at(n) != self.term:
            if not self._bug_commit_old_term:
                return  # Figure 8: never commit an earlier term's entry by counting replicas
            # SEEDED BUG commit-old-term: fall through and commit it anyway
        self.commit_index = n
        entry = self.log[n - self.snapshot_index - 1]
        if entry.term == self.term:   # ours (not so only with the seeded bug above)
            self._committed_bytes = entry._term_bytes
        if self._waiting_reads and n >= self._noop_index:
            waiting, self._waiting_reads = self._waiting_reads, []
            for ctx in waiting:
                self._queue_read(ctx, n)

    def _quorum_active(self) -> bool:
        """Whether a majority answered since the last call (once per minimum election timeout).
        A follower that did not answer goes back to probing from its last known match: an empty
        probe per heartbeat instead of a window of appends, so an unreachable node does not pile
        up messages."""
        active = 1
        for pr in self.progress.values():
            if pr.active:
                active += 1
            elif pr.state == STATE_REPLICATE:
                pr.become_probe()
                pr.probe_sent = True   # the next heartbeat probes
            pr.active = False
        return active >= self.quorum

    # -- replication (follower) ------------------------------------------------------------------
    def _handle_append(self, msg: Message) -> None:
        if self.role != FOLLOWER or self.leader_id != msg.src:
            # A candidate (or pre-candidate) that hears the leader of its term steps down.
            self._set_role(FOLLOWER, msg.src)
        self._reset_election_timer()
        prev, prev_term, entries = msg.prev_log_index, msg.prev_log_term, msg.entries
        last_new = prev + len(entries)
        if prev < self.snapshot_index:
            # Our snapshot covers a committed prefix identical to the leader's: skip into it.
            skip = self.snapshot_index - prev
            if skip >= len(entries):
                self._ack(msg, self.snapshot_index)
                return
            entries = entries[skip:]
            prev, prev_term = self.snapshot_index, self.snapshot_term
        last = self.last_log_index
        if prev > last:
            self._reject(msg, last + 1, 0)
            return
        my_prev_term = self.term_at(prev)
        if my_prev_term != prev_term:
            # Hint: the first index of our conflicting term, so the leader skips it in one step.
            base = self.snapshot_index + 1
            pos = bisect.bisect_left(self.log, my_prev_term, key=_term_key)
            self._reject(msg, max(base + pos, self.commit_index + 1), my_prev_term)
            return
        if entries:
            first = entries[0].index
            if first <= last:
                # Find the first entry that differs; only a conflicting suffix is truncated.
                base = self.snapshot_index + 1
                for i, entry in enumerate(entries):
                    idx = entry.index
                    if idx > last:
                        self.log.extend(entries[i:])
                        break
                    if self.log[idx - base].term != entry.term:
                        self._truncate(idx)
                        self.log.extend(entries[i:])
                        break
            else:
                self.log.extend(entries)
        if msg.leader_commit > self.commit_index:
            new_commit = min(msg.leader_commit, last_new)
            if new_commit > self.commit_index:
                self.commit_index = new_commit
        self._ack(msg, last_new)

    def _truncate(self, index: int) -> None:
        if index <= self.commit_index:
            raise SafetyViolation(f"{self.id}: asked to truncate committed entry {index} "
                                  f"(commit index {self.commit_index})")
        del self.log[index - self.snapshot_index - 1:]
        if index < self._unstable_from:
            # Already handed to the driver: the disk must drop it too.
            if self._truncate_from is None or index < self._truncate_from:
                self._truncate_from = index
            self._unstable_from = index
        if self._persisted >= index:
            self._persisted = index - 1

    def _ack(self, msg: Message, match: int) -> None:
        self._send(Message(APPEND_RESP, self.id, msg.src, self.term, success=True,
                           match_index=match, prev_log_index=msg.prev_log_index,
                           context=msg.context))

    def _reject(self, msg: Message, conflict_index: int, conflict_term: int) -> None:
        self._send(Message(APPEND_RESP, self.id, msg.src, self.term, success=False,
                           prev_log_index=msg.prev_log_index, conflict_index=conflict_index,
                           conflict_term=conflict_term, context=msg.context))

    # -- snapshots (log compaction, InstallSnapshot) ---------------------------------------------
    def compact(self, index: int, data: bytes) -> None:
        """The driver durably saved a state-machine snapshot covering entries <= index (which it
        has applied); drop them from the in-memory log. `data` is kept to send InstallSnapshot."""
        if index <= self.snapshot_index:
            return
        if index > self._applied:
            raise ValueError(f"cannot compact to {index}: only {self._applied} handed out to apply")
        term = self.term_at(index)
        del self.log[:index - self.snapshot_index]
        self.snapshot_index, self.snapshot_term, self.snapshot_data = index, term, data

    def _send_snapshot(self, peer: str, pr: Progress, heartbeat: bool) -> None:
        """One chunk in flight per follower. A heartbeat during the transfer is an empty append
        that cannot disturb it (it matches any log at index 0); the chunk in flight is sent
        again only after an election timeout without its reply."""
        if pr.state != STATE_SNAPSHOT:
            if self.snapshot_data is None:
                raise SafetyViolation(f"{self.id}: follower {peer} needs entry {pr.next} which is "
                                      "compacted, but no snapshot data was given to the core")
            pr.become_snapshot(self.snapshot_index, self.snapshot_term, self.snapshot_data)
        elif heartbeat and pr.chunk_timed_out(self._ticks, self.election_ticks_min):
            pr.resend_chunk()
        if (pr.chunk_offset == 0 and not pr.chunk_in_flight
                and pr.snapshot_index != self.snapshot_index):
            # Nothing of the older snapshot arrived yet: send the newest one instead (once a
            # transfer is under way it finishes with the snapshot it started with).
            pr.become_snapshot(self.snapshot_index, self.snapshot_term, self.snapshot_data)
        chunk = pr.next_chunk(self.snapshot_chunk)
        if chunk is None:
            if heartbeat:
                self._msgs.append(Message(APPEND, self.id, peer, self.term, prev_log_index=0,
                                          prev_log_term=0, leader_commit=self.commit_index,
                                          context=self._read_round, needs_persist=False))
            return
        offset, data, done = chunk
        self._msgs.append(Message(SNAPSHOT, self.id, peer, self.term,
                                  snapshot_index=pr.snapshot_index,
                                  snapshot_term=pr.snapshot_term, offset=offset, data=data,
                                  done=done, leader_commit=self.commit_index,
                                  context=self._read_round, needs_persist=False))
        pr.chunk_sent(len(data), self._ticks)

    def _handle_snapshot(self, msg: Message) -> None:
        if self.role != FOLLOWER or self.leader_id != msg.src:
            self._set_role(FOLLOWER, msg.src)
        self._reset_election_timer()
        key = (msg.src, msg.term, msg.snapshot_index, msg.snapshot_term)
        if msg.snapshot_index <= self.commit_index:
            # We already have (and committed) everything it covers.
            self._snapshot_reply(msg, self.commit_index, 0, True)
            return
        incoming = self._incoming_snapshot
        if msg.offset == 0:
            incoming = self._incoming_snapshot = (key, bytearray())
        if incoming is None or incoming[0] != key or len(incoming[1]) != msg.offset:
            # Out-of-order or foreign chunk: ask the leader to restart the transfer.
            self._snapshot_reply(msg, 0, len(incoming[1]) if incoming and incoming[0] == key
                                 else 0, False)
            return
        incoming[1].extend(msg.data)
        if not msg.done:
            self._snapshot_reply(msg, 0, len(incoming[1]), True)
            return
        self._incoming_snapshot = None
        index, term = msg.snapshot_index, msg.snapshot_term
        holds = self.term_at(index) == term
        # The storage keeps its entries after the snapshot only if the log already handed to it
        # (below _unstable_from: earlier Readies, written before this one) holds (index, term).
        keep_log_after = holds and index < self._unstable_from
        if holds:
            # We hold a later prefix of the same log: keep the entries after the snapshot (if
            # the storage restarts its log, the unstable bound below hands them out again).
            del self.log[:index - self.snapshot_index]
        else:
            # Our log conflicts with (or is shorter than) the snapshot: replace it entirely.
            self.log = []
        if not keep_log_after:
            # The storage restarts its log after the snapshot: no truncation is left to do, and
            # until this Ready is advanced only the old snapshot counts as durable.
            self._truncate_from = None
            self._persisted = min(self._persisted, self.snapshot_index)
        self.snapshot_index, self.snapshot_term = index, term
        self.snapshot_data = bytes(incoming[1])
        self.commit_index = max(self.commit_index, index)
        self._applied = max(self._applied, index)
        self._reported_commit = max(self._reported_commit, index)
        self._unstable_from = min(max(self._unstable_from, index + 1), self.last_log_index + 1)
        self._pending_snapshot = SnapshotInstall(index, term, self.snapshot_data, keep_log_after)
        self._event("snapshot_installed", index=index, term=term)
        self._snapshot_reply(msg, index, 0, True)

    def _snapshot_reply(self, msg: Message, match: int, offset: int, success: bool) -> None:
        self._send(Message(SNAPSHOT_RESP, self.id, msg.src, self.term, success=success,
                           match_index=match, offset=offset, snapshot_index=msg.snapshot_index,
                           context=msg.context))

    def _handle_snapshot_resp(self, msg: Message) -> None:
        pr = self._heard_from(msg)
        if pr is None or pr.state != STATE_SNAPSHOT or msg.snapshot_index != pr.snapshot_index:
            return  # about a transfer that is over or was abandoned
        if msg.success and msg.match_index > 0:
            # Installed (or it had the snapshot's entries already): the log follows from there.
            if pr.acknowledged(msg.match_index):
                self._maybe_commit()
            pr.become_replicate()
            self._send_to.add(msg.src)
        elif pr.chunk_reply(msg.success, msg.offset):
            self._send_to.add(msg.src)

    # -- linearizable reads (ReadIndex, thesis 6.4) ----------------------------------------------
    def _queue_read(self, ctx, index: int) -> None:
        if self.quorum == 1:
            self._read_states.append(ReadState(ctx, index))
            return
        if self._bug_lease_read:  # SEEDED BUG lease-read: trust a lease of our own ticks
            lease_start = self._ticks - self.election_ticks_min
            heard = 1 + sum(1 for pr in self.progress.values() if pr.last_heard > lease_start)
            if heard >= self.quorum:
                self._read_states.append(ReadState(ctx, index))
                return
        # A new heartbeat round, sent after this read arrived, must be acknowledged by a majority.
        if not self._read_round_requested:
            self._read_round += 1
            self._read_round_requested = True
        self._pending_reads.append((self._read_round, ctx, index))

    def _confirm_reads(self) -> None:
        acks = sorted((pr.read_ack for pr in self.progress.values()), reverse=True)
        confirmed_round = acks[self.quorum - 2]  # the leader itself is the quorum's other member
        pending = self._pending_reads
        n = 0
        while n < len(pending) and pending[n][0] <= confirmed_round:
            self._read_states.append(ReadState(pending[n][1], pending[n][2]))
            n += 1
        if n:
            del pending[:n]

    def _drop_reads(self) -> None:
        for _, ctx, _ in self._pending_reads:
            self._dropped_reads.append(ctx)
        self._dropped_reads.extend(self._waiting_reads)
        self._pending_reads = []
        self._waiting_reads = []
        self._read_round_requested = False

    # -- misc ------------------------------------------------------------------------------------
    def _send(self, msg: Message) -> None:
        self._msgs.append(msg)

    def _event(self, kind: str, **detail) -> None:
        self._events.append(Event(kind, detail))
