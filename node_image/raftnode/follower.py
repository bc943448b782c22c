"""The follower's side of replication (Raft §5.3, thesis ch. 5): AppendEntries' consistency
check, appending (only a conflicting suffix is truncated, and the configurations it held go with
it), learning the commit index, and receiving a snapshot in chunks.

A mixin of RaftCore (raftnode.core); `raft_log` is the log (raftnode.log.RaftLog).
"""

from __future__ import annotations

from .corestate import CoreState
from .types import (
    APPEND_RESP,
    FOLLOWER,
    SNAPSHOT_RESP,
    Message,
    SafetyViolation,
    SnapshotInstall,
)


class Following(CoreState):
    def _handle_append(self, msg: Message) -> None:
        if self.role != FOLLOWER or self.leader_id != msg.src:
            # A candidate (or pre-candidate) that hears the leader of its term steps down.
            self._set_role(FOLLOWER, msg.src)
        self._reset_election_timer()
        rlog = self.raft_log
        prev, prev_term, entries = msg.prev_log_index, msg.prev_log_term, msg.entries
        last_new = prev + len(entries)
        if prev < rlog.snapshot_index:
            # Our snapshot covers a committed prefix identical to the leader's: skip into it.
            skip = rlog.snapshot_index - prev
            if skip >= len(entries):
                self._ack(msg, rlog.snapshot_index)
                return
            entries = entries[skip:]
            prev, prev_term = rlog.snapshot_index, rlog.snapshot_term
        last = rlog.last_index
        if prev > last:
            self._reject(msg, last + 1, 0)
            return
        my_prev_term = rlog.term_at(prev)
        assert my_prev_term is not None  # snapshot_index <= prev <= last
        if my_prev_term != prev_term:
            # Hint: the first index of our conflicting term, so the leader skips it in one step.
            self._reject(msg, max(rlog.first_index_of_term(my_prev_term), self.commit_index + 1),
                         my_prev_term)
            return
        if entries:
            try:
                truncated = rlog.merge(entries, self.commit_index)
            except SafetyViolation as exc:
                raise SafetyViolation(f"{self.id}: {exc}") from None
            if truncated is not None or entries[-1].index > last:
                self._track_configurations(entries, truncated, last)
        if msg.leader_commit > self.commit_index:
            new_commit = min(msg.leader_commit, last_new)
            if new_commit > self.commit_index:
                self.commit_index = new_commit
                if not self._conf_committed and new_commit >= self.conf_index:
                    self._on_conf_committed()
        self._ack(msg, last_new)

    def _ack(self, msg: Message, match: int) -> None:
        self._send(Message(APPEND_RESP, self.id, msg.src, self.term, success=True,
                           match_index=match, prev_log_index=msg.prev_log_index,
                           context=msg.context))

    def _reject(self, msg: Message, conflict_index: int, conflict_term: int) -> None:
        self._send(Message(APPEND_RESP, self.id, msg.src, self.term, success=False,
                           prev_log_index=msg.prev_log_index, conflict_index=conflict_index,
                           conflict_term=conflict_term, context=msg.context))

    # -- InstallSnapshot ---------------------------------------------------------------------------
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
        data = bytes(incoming[1])
        rlog = self.raft_log
        kept_entries = rlog.term_at(index) == term
        keep_log_after = rlog.install(index, term, data)
        self._install_snapshot_configuration(index, data, kept_entries)
        self.commit_index = max(self.commit_index, index)
        self._applied = max(self._applied, index)
        self._reported_commit = max(self._reported_commit, index)
        if not self._conf_committed and self.commit_index >= self.conf_index:
            self._on_conf_committed()
        self._pending_snapshot = SnapshotInstall(index, term, data, keep_log_after)
        self._event("snapshot_installed", index=index, term=term)
        self._snapshot_reply(msg, index, 0, True)

    def _snapshot_reply(self, msg: Message, match: int, offset: int, success: bool) -> None:
        self._send(Message(SNAPSHOT_RESP, self.id, msg.src, self.term, success=success,
                           match_index=match, offset=offset, snapshot_index=msg.snapshot_index,
                           context=msg.context))
