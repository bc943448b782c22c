"""The vocabulary shared by the pure Raft core, the simulator and the asyncio driver.

The core (raftnode.core) is a deterministic state machine in the style of etcd's raft:

    core = RaftCore(config, storage_state, rng)
    core.tick()                       # one logical tick (config.tick_ms of real time)
    core.step(message)                # a message received from a peer
    core.propose(command) -> (index, term)   # leader only; raises NotLeader
    core.read_index(ctx)              # ask for a linearizable read; answered in a later Ready
    rd = core.ready()                 # everything the driver must do now (may be empty)
    ... driver persists rd.hard_state, installs rd.snapshot (atomically, see SnapshotInstall),
        persists rd.truncate_from / rd.entries (fsync once: group commit),
        sends rd.messages (those with needs_persist=True only after the fsync),
        applies rd.committed in order, serves rd.read_states ...
    core.advance(rd)                  # tell the core the Ready was handled (persisted)

Nothing in the core touches sockets, disks, clocks, threads or global randomness: `rng` is a
`random.Random` (or anything with .random() and .randint()) passed in and seeded by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FOLLOWER, PRE_CANDIDATE, CANDIDATE, LEADER = "follower", "pre-candidate", "candidate", "leader"

# Message kinds on the peer protocol.
REQUEST_VOTE = "RequestVote"
REQUEST_VOTE_RESP = "RequestVoteResp"
PRE_VOTE = "PreVote"
PRE_VOTE_RESP = "PreVoteResp"
APPEND = "AppendEntries"
APPEND_RESP = "AppendEntriesResp"
SNAPSHOT = "InstallSnapshot"
SNAPSHOT_RESP = "InstallSnapshotResp"
TIMEOUT_NOW = "TimeoutNow"   # leadership transfer: the leader tells its chosen successor to campaign

# Entry kinds.
NOOP = "noop"        # appended by a new leader in its own term
COMMAND = "command"  # a client command for the state machine (data is a JSON-able dict)
CONFIG = "config"    # a cluster configuration (data: membership.Configuration.to_json())


class _EntryCache:
    """What the core caches on an entry object, outside the dataclass fields (so neither
    compared nor printed): the running total of its leader term's proposed bytes through it
    (RaftCore.propose, RaftLog.batch). Annotations only: nothing is set here."""

    _term_bytes: int


@dataclass
class Entry(_EntryCache):
    index: int
    term: int
    kind: str = COMMAND
    data: Any = None  # JSON-able; for COMMAND the KV command dict (see raftnode.kv), for CONFIG
                      # the configuration (see raftnode.membership)


@dataclass
class HardState:
    term: int = 0
    voted_for: str | None = None
    commit: int = 0  # advisory; commit is re-learned from the leader after a restart
    # The highest log index this node had made durable (so may have acknowledged) when the hard
    # state was written, kept by the storage. A log found shorter at start-up went backwards
    # (truncated, or a corrupt tail taken for a torn write): the core does not vote until it
    # has caught up to it.
    acked: int = 0


@dataclass
class Message:
    kind: str
    src: str
    dst: str
    term: int
    # RequestVote / PreVote
    last_log_index: int = 0
    last_log_term: int = 0
    # AppendEntries
    prev_log_index: int = 0
    prev_log_term: int = 0
    entries: list[Entry] = field(default_factory=list)
    leader_commit: int = 0
    # responses
    granted: bool = False          # vote responses
    success: bool = False          # append responses
    match_index: int = 0           # append response: highest index known to match
    conflict_index: int = 0        # append response hint for fast backtracking
    conflict_term: int = 0
    # read-index heartbeat round: the leader tags heartbeats, followers echo the tag
    context: int = 0
    # InstallSnapshot (part 2)
    snapshot_index: int = 0
    snapshot_term: int = 0
    offset: int = 0
    data: bytes = b""
    done: bool = False
    # RequestVote of an election a leader asked for (TimeoutNow): voters grant it even within
    # the leader's lease (etcd's campaignTransfer)
    transfer: bool = False
    # Set by the core: True when the driver must have fsynced this Ready's hard state and
    # entries before sending the message (vote grants, append acks, candidates' own votes).
    needs_persist: bool = True


@dataclass
class ReadState:
    """A read that became safe: serve it once last_applied >= index."""

    ctx: Any
    index: int


@dataclass
class Event:
    """Something worth one structured log line: role/term change, vote, election, commit."""

    kind: str  # "role", "term", "vote", "election_won", "election_lost", "commit", "step_down",
               # "config", "config_committed", "transfer"
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class SnapshotInstall:
    """A snapshot received from the leader (InstallSnapshot, part 2).

    The driver restores the state machine from `data` and has the storage install it before the
    Ready's other log changes (after its hard state), as ONE atomic step: a crash at any point
    must leave either the old durable state (old snapshot and old log) or the new one, which is

      * the snapshot (index, term, data), and
      * if keep_log_after: the durable entries after `index`. The core sets it only when the log
        it already handed to the driver (earlier Readies, which the storage writes first) holds
        the entry (index, term): those entries then continue the snapshot;
      * otherwise: no entry at all. The log restarts after `index`; this Ready's `entries` (if
        any) start at index + 1.

    The core never uses Ready.truncate_from to remove what the install replaces: a truncation in
    the same Ready only ever concerns entries after `index` that the storage keeps. Until the
    Ready is advanced the core counts only what was durable before it (the old snapshot)."""

    index: int
    term: int
    data: bytes
    keep_log_after: bool


@dataclass
class Ready:
    snapshot: SnapshotInstall | None = None      # install atomically first, when not None (see SnapshotInstall)
    hard_state: HardState | None = None          # persist (atomically) when not None
    truncate_from: int | None = None             # delete log entries with index >= this first
    entries: list[Entry] = field(default_factory=list)  # then append these (contiguous)
    messages: list[Message] = field(default_factory=list)
    committed: list[Entry] = field(default_factory=list)  # apply in order, exactly once
    read_states: list[ReadState] = field(default_factory=list)
    dropped_reads: list[Any] = field(default_factory=list)  # ctxs that can no longer be served
    events: list[Event] = field(default_factory=list)

    def is_empty(self) -> bool:
        return (self.snapshot is None and self.hard_state is None and self.truncate_from is None and not self.entries
                and not self.messages and not self.committed and not self.read_states
                and not self.dropped_reads and not self.events)

    @property
    def must_sync(self) -> bool:
        return (self.snapshot is not None or self.hard_state is not None
                or self.truncate_from is not None or bool(self.entries))


@dataclass
class StorageState:
    """What a node recovers from disk at start-up and hands to the core."""

    hard_state: HardState = field(default_factory=HardState)
    entries: list[Entry] = field(default_factory=list)  # contiguous, after the snapshot
    snapshot_index: int = 0
    snapshot_term: int = 0
    snapshot_data: bytes | None = None  # the snapshot's bytes: membership.pack_snapshot(configuration,
                                        # state machine bytes); the leader sends them as they are


@dataclass
class Config:
    node_id: str
    # The bootstrap configuration (in force until the log holds a configuration entry): every
    # voter including node_id. Empty for a node that joins a running cluster: it has no
    # configuration and never campaigns until its log names it a voter.
    peers: list[str]
    tick_ms: int = 10
    election_timeout_min_ms: int = 150
    election_timeout_max_ms: int = 300
    heartbeat_ms: int = 50
    max_entries_per_append: int = 512
    # Flow control, as etcd's MaxSizePerMsg / MaxInflightMsgs / MaxInflightBytes /
    # MaxUncommittedEntriesSize. An entry's size is its encoded data plus the 21-byte entry head.
    max_bytes_per_append: int = 1 << 20     # entries per AppendEntries (at least one is sent)
    max_inflight_msgs: int = 256            # unacknowledged appends per follower
    max_inflight_bytes: int = 8 << 20       # unacknowledged entry bytes per follower
    max_uncommitted_bytes: int = 16 << 20   # past this, propose raises ProposalDropped
    pre_vote: bool = True            # part 2
    check_quorum: bool = True        # part 2
    bugs: frozenset[str] = frozenset()    # seeded bugs (part 2), empty = correct node
    snapshot_chunk_bytes: int = 65536  # InstallSnapshot chunk size (part 2)
    # The bootstrap members' addresses (id -> {"peer", "client"}), carried into the first
    # configuration entry so that nodes that join later learn them.
    members: dict[str, Any] = field(default_factory=dict)


class SafetyViolation(RuntimeError):
    """The core was asked to do something Raft's safety argument rules out (e.g. truncate a
    committed entry). Only reachable with a seeded bug or a broken driver: stop the node."""


class ProposalDropped(Exception):
    """The leader refused a proposal and appended nothing: its uncommitted log already holds
    Config.max_uncommitted_bytes (followers are slow or unreachable). The client may retry."""

    def __init__(self, uncommitted_bytes: int, limit: int):
        super().__init__(f"proposal dropped: {uncommitted_bytes} uncommitted bytes in the log "
                         f"(limit {limit})")
        self.uncommitted_bytes = uncommitted_bytes
        self.limit = limit


class TransferInProgress(Exception):
    """The leader is handing its leadership over (TimeoutNow) and takes no proposals until the
    transfer completes or aborts (an election timeout); nothing was appended."""

    def __init__(self, target: str):
        super().__init__(f"leadership is being transferred to {target}")
        self.target = target


class NotLeader(Exception):
    def __init__(self, leader: str | None):
        super().__init__(f"not leader (leader: {leader})")
        self.leader = leader
