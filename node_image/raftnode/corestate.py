"""The state RaftCore owns, declared once for the mixins that read and change it.

RaftCore (raftnode.core) is assembled from mixins (Elections, Replication, Following, Reads,
Reconfiguration), each of which uses state that RaftCore.__init__ and the other mixins set, and
calls methods the others define. Every mixin derives from CoreState so that a type checker sees
that state and those methods with their types (mypy checks the core strictly, see
pyproject.toml). CoreState holds annotations only: it sets nothing and, at run time, defines no
method, so attribute lookups and the method resolution order behave as without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import random

    from .log import RaftLog
    from .membership import Configuration
    from .quorum import MajorityConfig
    from .tracker import Progress
    from .types import Config, Entry, Event, Message, ReadState, SnapshotInstall


class CoreState:
    # -- set from the Config (RaftCore.__init__) -------------------------------------------------
    config: Config
    id: str
    rng: random.Random
    election_ticks_min: int
    election_ticks_max: int
    heartbeat_ticks: int
    bugs: frozenset[str]
    _bug_commit_old_term: bool
    _bug_stale_read: bool
    _bug_lease_read: bool
    _bug_unsafe_membership: bool
    snapshot_chunk: int

    # -- persistent state and the log ------------------------------------------------------------
    term: int
    voted_for: str | None
    _acked_floor: int
    raft_log: RaftLog
    _hs_dirty: bool

    # -- volatile state --------------------------------------------------------------------------
    role: str
    leader_id: str | None
    commit_index: int
    _applied: int
    _reported_commit: int
    _pending_snapshot: SnapshotInstall | None
    # A snapshot being received: ((leader, term, index, snapshot term), the bytes so far).
    _incoming_snapshot: tuple[tuple[str, int, int, int], bytearray] | None

    # -- timers (in ticks) -----------------------------------------------------------------------
    _ticks: int
    election_elapsed: int
    randomized_timeout: int
    heartbeat_elapsed: int

    # -- elections and the leader's replication --------------------------------------------------
    votes: dict[str, bool]
    progress: dict[str, Progress]
    others: list[str]
    _voter_prs: list[Progress]
    _send_to: set[str]
    _noop_index: int
    _proposed_bytes: int
    _committed_bytes: int
    _transfer: list[Any] | None   # [target, started at tick, TimeoutNow sent]

    # -- reads -----------------------------------------------------------------------------------
    _read_round: int
    _read_round_requested: bool
    _waiting_reads: list[Any]
    _pending_reads: list[tuple[int, Any, int]]   # (round, ctx, index)

    # -- outputs, collected for the next Ready ---------------------------------------------------
    _msgs: list[Message]
    _events: list[Event]
    _read_states: list[ReadState]
    _dropped_reads: list[Any]

    # -- the configuration in force (Reconfiguration) --------------------------------------------
    bootstrap_conf: Configuration
    _snapshot_conf: Configuration
    _confs: list[tuple[int, Configuration]]
    conf: Configuration
    conf_index: int
    _conf_committed: bool
    quorum: MajorityConfig
    _voters_others: list[str]
    _self_voter: bool
    _sole_voter: bool
    _promotable: bool

    if TYPE_CHECKING:
        # What one mixin calls of another's (or of RaftCore's); defined there.
        def _send(self, msg: Message) -> None: ...
        def _event(self, kind: str, **detail: Any) -> None: ...
        def _reset_election_timer(self) -> None: ...
        def _set_role(self, role: str, leader: str | None) -> None: ...
        def _become_follower(self, term: int, leader: str | None) -> None: ...
        def _send_append(self, peer: str, heartbeat: bool = False) -> None: ...
        def _queue_read(self, ctx: Any, index: int) -> None: ...
        def _confirm_reads(self) -> None: ...
        def _drop_reads(self) -> None: ...
        def _sync_progress(self) -> None: ...
        def _on_conf_committed(self) -> None: ...
        def _maybe_send_timeout_now(self) -> None: ...
        def _track_configurations(self, entries: list[Entry], truncated: int | None, old_last: int) -> None: ...
        def _install_snapshot_configuration(self, index: int, data: bytes, kept_entries: bool) -> None: ...
