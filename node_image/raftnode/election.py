"""Elections (Raft §5.2, thesis §9.6 pre-vote, §4.2.3 the leader lease, §3.10 leadership
transfer): timers, campaigns, vote requests and answers, and the role transitions.

A mixin of RaftCore (raftnode.core), which owns the state it reads: term, voted_for, role,
leader_id, the election timer, `votes`, `quorum` (quorum.MajorityConfig of the configuration in
force) and `_promotable` (see RaftCore._update_promotable: only a voter of its configuration
campaigns, and a node that the latest change made a voter only once that change committed).
"""

from __future__ import annotations

from .corestate import CoreState
from .log import entry_size
from .quorum import VOTE_LOST, VOTE_WON
from .tracker import Progress
from .types import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    NOOP,
    PRE_CANDIDATE,
    PRE_VOTE,
    PRE_VOTE_RESP,
    REQUEST_VOTE,
    REQUEST_VOTE_RESP,
    Entry,
    Message,
)


class Elections(CoreState):
    # -- timers ----------------------------------------------------------------------------------
    def _reset_election_timer(self) -> None:
        self.election_elapsed = 0
        self.randomized_timeout = self.rng.randint(self.election_ticks_min, self.election_ticks_max)

    def _in_leader_lease(self) -> bool:
        return self.leader_id is not None and self.election_elapsed < self.election_ticks_min

    def _tick_follower(self) -> bool:
        """A non-leader's tick: campaign after an election timeout of silence, if it may."""
        if self.election_elapsed < self.randomized_timeout:
            return False
        if self._promotable:
            self._start_election(pre=self.config.pre_vote)
            return True
        # A learner, a removed node or one that has no configuration yet never campaigns; after
        # an election timeout without a leader it stops pointing clients at the one it knew.
        if self.leader_id is not None and self.role == FOLLOWER:
            self._set_role(FOLLOWER, None)
            return True
        return False

    # -- campaigns -------------------------------------------------------------------------------
    def _start_election(self, pre: bool, transfer: bool = False) -> None:
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
        if self.quorum.vote_result(self.votes) == VOTE_WON:
            self._election_won_or_next(pre)
            return
        last_index, last_term = self.raft_log.last_index, self.raft_log.last_term
        for peer in self._voters_others:
            # A candidate's RequestVote depends on its persisted term and self-vote.
            self._send(Message(kind, self.id, peer, term, last_log_index=last_index,
                               last_log_term=last_term, needs_persist=not pre, transfer=transfer))

    def _count_vote(self, voter: str, granted: bool) -> None:
        self.votes[voter] = granted
        result = self.quorum.vote_result(self.votes)
        if result == VOTE_WON:
            self._election_won_or_next(self.role == PRE_CANDIDATE)
        elif result == VOTE_LOST:
            self._event("election_lost", term=self.term, pre_vote=self.role == PRE_CANDIDATE,
                        votes=sum(1 for v in self.votes.values() if v))
            self._set_role(FOLLOWER, None)

    def _election_won_or_next(self, pre: bool) -> None:
        if pre:
            self._start_election(pre=False)
        else:
            self._become_leader()

    def _handle_timeout_now(self, msg: Message) -> None:
        """The leader hands its leadership to us (thesis §3.10): campaign at once, skipping
        pre-vote, with RequestVotes that voters grant inside the leader's lease."""
        if self.role == LEADER:
            return
        rlog = self.raft_log
        if (msg.leader_commit > self.commit_index and msg.prev_log_index >= rlog.snapshot_index
                and rlog.term_at(msg.prev_log_index) == msg.prev_log_term):
            # Our log holds the leader's last entry, hence (log matching) everything before it:
            # its commit index is ours up to there.
            self.commit_index = min(msg.leader_commit, msg.prev_log_index)
            if not self._conf_committed and self.commit_index >= self.conf_index:
                self._on_conf_committed()
        if not self._promotable:
            return
        self._event("transfer", phase="campaign", leader=msg.src, term=self.term)
        self._start_election(pre=False, transfer=True)

    # -- voting ----------------------------------------------------------------------------------
    def _behind_acknowledged(self) -> bool:
        """Whether the log ends below the index this node had made durable, and may have
        acknowledged, before it restarted: a log that went backwards (a truncated file, a corrupt
        tail taken for a torn write). Such a node neither grants votes nor campaigns until it has
        caught up: its vote could elect a leader lacking entries it helped commit."""
        if self._acked_floor and (self.raft_log.persisted >= self._acked_floor or self._sole_voter):
            self._acked_floor = 0  # caught up (a lone node has nobody to catch up from)
        return self._acked_floor > 0

    def _log_up_to_date(self, msg: Message) -> bool:
        if self._behind_acknowledged():
            return False
        return self.raft_log.up_to_date(msg.last_log_index, msg.last_log_term)

    def _handle_request_vote(self, msg: Message) -> None:
        # A candidate or leader of this term voted for itself, so only followers (and
        # pre-candidates, which have not voted) can grant: one vote per term. Anyone votes,
        # learners and non-members included: the candidate counts only the voters of its own
        # configuration, which may be newer than ours.
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

    # -- roles -----------------------------------------------------------------------------------
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
                self.others = []
                self._voter_prs = []
                self._send_to.clear()
                if self._transfer is not None:
                    self._event("transfer", phase="ended", target=self._transfer[0], term=self.term)
                    self._transfer = None

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
        nxt = self.raft_log.last_index + 1
        config = self.config
        self.progress = {p: Progress(nxt, config.max_inflight_msgs, config.max_inflight_bytes)
                         for p in self.conf.members if p != self.id}
        self._sync_progress()
        self._read_round = 0
        # The no-op of our own term lets earlier-term entries commit and unlocks reads (and,
        # once committed, membership changes: see Reconfiguration).
        noop = Entry(nxt, self.term, NOOP)
        noop._term_bytes = self._proposed_bytes = entry_size(noop)   # see propose
        self._committed_bytes = 0
        self.raft_log.append(noop)
        self._noop_index = noop.index
        for peer in self.others:
            self._send_append(peer)
