"""The quorum maths, in one place (in the spirit of etcd-raft's quorum package).

Every decision that needs "a majority" asks a MajorityConfig: the commit index (the highest
index a majority of voters holds), an election (won, lost or still open), check-quorum (did a
majority answer lately) and ReadIndex (which heartbeat round a majority acknowledged, which is
the commit-index question asked of round numbers). Only voters count; learners never do.

The node changes its membership one voter at a time (raftnode.membership), so one majority
configuration is in force at any moment; a joint configuration is never needed.
"""

from __future__ import annotations

from collections.abc import Iterable

VOTE_PENDING, VOTE_WON, VOTE_LOST = "pending", "won", "lost"


class MajorityConfig:
    """A set of voters; a quorum is any majority of them."""

    __slots__ = ("quorum", "size", "voters")

    def __init__(self, voters: Iterable[str]) -> None:
        self.voters = frozenset(voters)
        self.size = len(self.voters)
        # An empty set has no majority: nothing commits and no election is won.
        self.quorum = self.size // 2 + 1 if self.size else 1

    def __repr__(self) -> str:
        return f"MajorityConfig({sorted(self.voters)}, quorum {self.quorum})"

    def committed_index(self, acked: list[int]) -> int:
        """The highest index that a majority holds, given the acknowledged index of every voter
        (one number per voter, in any order; a voter that acknowledged nothing counts as 0)."""
        if len(acked) != self.size:
            raise ValueError(f"{len(acked)} acknowledged indexes for {self.size} voters")
        if not acked:
            return 0
        acked = sorted(acked, reverse=True)
        return acked[self.quorum - 1]

    def vote_result(self, votes: dict[str, bool]) -> str:
        """An election's state from the answers so far (voter -> granted); answers from
        non-voters are ignored. Lost once the voters that have not refused are too few."""
        granted = refused = 0
        for voter, vote in votes.items():
            if voter in self.voters:
                if vote:
                    granted += 1
                else:
                    refused += 1
        if not self.size:
            return VOTE_LOST
        if granted >= self.quorum:
            return VOTE_WON
        if self.size - refused < self.quorum:
            return VOTE_LOST
        return VOTE_PENDING

    def has_quorum(self, ids: Iterable[str]) -> bool:
        """Whether the given ids include a majority of the voters (check-quorum)."""
        return bool(self.size) and sum(1 for i in set(ids) if i in self.voters) >= self.quorum
