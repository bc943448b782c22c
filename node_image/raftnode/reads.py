"""Linearizable reads (ReadIndex, thesis §6.4): a read is served at the commit index the leader
had when it arrived, once a majority of the voters in force has answered a heartbeat round sent
after it (so no newer leader can exist), and the state machine has applied that index.

Acknowledgements are counted in the configuration in force when they are counted (`quorum`):
with one voter changed per configuration, any majority of the old configuration and any of the
new one overlap, so either proves the leadership. A leader that steps down, or is removed (it
steps down once its removal commits), fails its pending reads (Ready.dropped_reads).

A mixin of RaftCore (raftnode.core).
"""

from __future__ import annotations

from typing import Any

from .corestate import CoreState
from .types import LEADER, NotLeader, ReadState


class Reads(CoreState):
    def read_index(self, ctx: Any) -> None:
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

    def _queue_read(self, ctx: Any, index: int) -> None:
        if self._sole_voter:
            self._read_states.append(ReadState(ctx, index))
            return
        if self._bug_lease_read:  # SEEDED BUG lease-read: trust a lease of our own ticks
            lease_start = self._ticks - self.election_ticks_min
            heard = [p for p, pr in self.progress.items() if pr.last_heard > lease_start]
            if self.quorum.has_quorum(heard + ([self.id] if self._self_voter else [])):
                self._read_states.append(ReadState(ctx, index))
                return
        # A new heartbeat round, sent after this read arrived, must be acknowledged by a majority.
        if not self._read_round_requested:
            self._read_round += 1
            self._read_round_requested = True
        self._pending_reads.append((self._read_round, ctx, index))

    def _confirm_reads(self) -> None:
        acks = [pr.read_ack for pr in self._voter_prs]
        if self._self_voter:
            acks.append(self._read_round)   # the leader acknowledges its own rounds
        confirmed_round = self.quorum.committed_index(acks)
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
