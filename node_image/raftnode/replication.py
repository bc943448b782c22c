"""The leader's side of replication (Raft §5.3, thesis ch. 5 for snapshots): appends within each
follower's flow-control state (raftnode.tracker), heartbeats, answers to appends and snapshot
chunks, the commit rule, and check-quorum.

A mixin of RaftCore (raftnode.core). Every member of the configuration but the leader has a
Progress (`progress`; `others` lists them in a fixed order, so a seed replays exactly), learners
included; only voters count (`quorum`, `_voter_prs`: the Progress of every voter but us,
`_self_voter`: whether we are one).
"""

from __future__ import annotations

from .corestate import CoreState
from .tracker import STATE_PROBE, STATE_REPLICATE, STATE_SNAPSHOT, Progress
from .types import APPEND, LEADER, SNAPSHOT, Entry, Message, SafetyViolation


class Replication(CoreState):
    # -- sending ---------------------------------------------------------------------------------
    def _send_append(self, peer: str, heartbeat: bool = False) -> None:
        """Send what the follower's state allows (tracker.Progress); a heartbeat always sends
        one message, which carries the commit index and the ReadIndex round."""
        pr = self.progress[peer]
        state = pr.state
        rlog = self.raft_log
        if state == STATE_SNAPSHOT or pr.next <= rlog.snapshot_index:
            self._send_snapshot(peer, pr, heartbeat)
            return
        config = self.config
        if state == STATE_PROBE:
            if pr.probe_sent:
                if heartbeat:   # an empty probe: a lost probe must not stall the follower
                    self._append_msg(peer, pr.next - 1, [])
                return
            entries, size = rlog.batch(pr.next, config.max_bytes_per_append, True,
                                       config.max_entries_per_append, self.term)
            self._append_msg(peer, pr.next - 1, entries)
            pr.sent_append(pr.next - 1 + len(entries), size)
            return
        # Replicate: pipeline while the in-flight window has room.
        last = rlog.snapshot_index + len(rlog.entries)
        inflights = pr.inflights
        max_bytes = config.max_bytes_per_append
        max_entries = config.max_entries_per_append
        while pr.next <= last:
            room = inflights.room()
            if not room:
                break  # the window is full: acknowledgements will free it
            entries, size = rlog.batch(pr.next, min(room, max_bytes),
                                       not inflights.count, max_entries, self.term)
            if not entries:
                break  # the next entry does not fit in what is left of the window: wait
            self._append_msg(peer, pr.next - 1, entries)
            pr.sent_append(entries[-1].index, size)
            heartbeat = False
        if heartbeat:
            # Nothing (more) may go: an empty append after the last entry sent. On an ordered
            # link it arrives after them, so a rejection means an append was lost.
            self._append_msg(peer, pr.next - 1, [])

    def _append_msg(self, peer: str, prev: int, entries: list[Entry]) -> None:
        prev_term = self.raft_log.term_at(prev)
        assert prev_term is not None, f"append after {prev}: compacted or beyond the log"
        self._msgs.append(Message(APPEND, self.id, peer, self.term, prev_log_index=prev,
                                  prev_log_term=prev_term, entries=entries,
                                  leader_commit=self.commit_index, context=self._read_round,
                                  needs_persist=False))

    def _broadcast_heartbeat(self) -> None:
        for peer in self.others:
            self._send_append(peer, heartbeat=True)
        self._send_to.clear()

    # -- answers ---------------------------------------------------------------------------------
    def _heard_from(self, msg: Message) -> Progress | None:
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

    def _acknowledged(self, pr: Progress, peer: str, match: int) -> bool:
        """A follower holds our log up to match: commit, measure a learner's catch-up, and hand
        over a leadership being transferred to it once it holds everything. Returns whether
        that is news (match moved)."""
        if not pr.acknowledged(match):
            return False
        self._maybe_commit()
        if pr.learner:
            pr.update_rounds(self.raft_log.last_index, self._ticks, self.election_ticks_min)
        if self._transfer is not None and self._transfer[0] == peer:
            self._maybe_send_timeout_now()
        return True

    def _handle_append_resp(self, msg: Message) -> None:
        pr = self._heard_from(msg)
        if pr is None:
            return
        state = pr.state
        if msg.success:
            if msg.match_index > self.raft_log.last_index:
                # It claims more of our log than we hold: its log diverged from ours (only a
                # broken peer, or safety already lost elsewhere, can say so). Taking it would
                # send appends after entries we do not have; ignore it, the next probe settles.
                self._event("append_resp_ignored", peer=msg.src, match=msg.match_index,
                            last=self.raft_log.last_index)
                return
            news = self._acknowledged(pr, msg.src, msg.match_index)
            if self.role != LEADER or self.progress.get(msg.src) is not pr:
                return  # the commit removed us (we stepped down) or this follower
            if state == STATE_SNAPSHOT:
                if pr.match < self.raft_log.snapshot_index:
                    return  # the answer to a heartbeat: the transfer goes on
                pr.become_replicate()   # it caught up otherwise: our log covers what it lacks
            elif state == STATE_PROBE:
                if not news and msg.match_index != pr.match:
                    # The answer to an append older than the probe (a reordered or duplicated
                    # message): restarting the pipeline from it would send the whole window
                    # again for every such answer (as etcd: only a current answer counts).
                    return
                pr.become_replicate()   # the log matches up to pr.match
            if pr.next <= self.raft_log.last_index:
                self._send_to.add(msg.src)
            return
        if state == STATE_SNAPSHOT:
            return  # the answer to a heartbeat sent during the transfer
        if msg.conflict_term > 0:
            # Skip the follower's whole conflicting term; if we have that term, resume after our
            # last entry of it (thesis 5.3 optimisation / 6.5840 fast backup).
            last_of_term = self.raft_log.last_index_of_term(msg.conflict_term)
            nxt = last_of_term + 1 if last_of_term is not None else msg.conflict_index
        else:
            nxt = msg.conflict_index
        if pr.rejected(msg.prev_log_index, nxt):   # else: the answer to an older append
            self._send_to.add(msg.src)

    # -- commitment ------------------------------------------------------------------------------
    def _maybe_commit(self) -> None:
        matches = [pr.match for pr in self._voter_prs]
        if self._self_voter:
            matches.append(self.raft_log.persisted)
        n = self.quorum.committed_index(matches)
        if n <= self.commit_index:
            return
        if self.raft_log.term_at(n) != self.term:
            if not self._bug_commit_old_term:
                return  # Figure 8: never commit an earlier term's entry by counting replicas
            # SEEDED BUG commit-old-term: fall through and commit it anyway
        self.commit_index = n
        entry = self.raft_log.entry(n)
        if entry.term == self.term:   # ours (not so only with the seeded bug above)
            self._committed_bytes = entry._term_bytes
        if self._waiting_reads and n >= self._noop_index:
            waiting, self._waiting_reads = self._waiting_reads, []
            for ctx in waiting:
                self._queue_read(ctx, n)
        if not self._conf_committed and n >= self.conf_index:
            self._on_conf_committed()

    def _quorum_active(self) -> bool:
        """Whether a majority of voters answered since the last call (once per minimum election
        timeout). A follower that did not answer goes back to probing from its last known match:
        an empty probe per heartbeat instead of a window of appends, so an unreachable node does
        not pile up messages."""
        active = [self.id] if self._self_voter else []
        for peer, pr in self.progress.items():
            if pr.active:
                active.append(peer)
            elif pr.state == STATE_REPLICATE:
                pr.become_probe()
                pr.probe_sent = True   # the next heartbeat probes
            pr.active = False
        return self.quorum.has_quorum(active)

    # -- snapshots (InstallSnapshot, leader side) ------------------------------------------------
    def _send_snapshot(self, peer: str, pr: Progress, heartbeat: bool) -> None:
        """One chunk in flight per follower. A heartbeat during the transfer is an empty append
        that cannot disturb it (it matches any log at index 0); the chunk in flight is sent
        again only after an election timeout without its reply."""
        rlog = self.raft_log
        if pr.state != STATE_SNAPSHOT:
            if rlog.snapshot_data is None:
                raise SafetyViolation(f"{self.id}: follower {peer} needs entry {pr.next} which is "
                                      "compacted, but no snapshot data was given to the core")
            pr.become_snapshot(rlog.snapshot_index, rlog.snapshot_term, rlog.snapshot_data)
        elif heartbeat and pr.chunk_timed_out(self._ticks, self.election_ticks_min):
            pr.resend_chunk()
        if (pr.chunk_offset == 0 and not pr.chunk_in_flight
                and pr.snapshot_index != rlog.snapshot_index):
            # Nothing of the older snapshot arrived yet: send the newest one instead (once a
            # transfer is under way it finishes with the snapshot it started with).
            newest = rlog.snapshot_data
            assert newest is not None  # the snapshot index moved: compact() set its data
            pr.become_snapshot(rlog.snapshot_index, rlog.snapshot_term, newest)
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

    def _handle_snapshot_resp(self, msg: Message) -> None:
        pr = self._heard_from(msg)
        if pr is None or pr.state != STATE_SNAPSHOT or msg.snapshot_index != pr.snapshot_index:
            return  # about a transfer that is over or was abandoned
        if msg.success and msg.match_index > 0:
            # Installed (or it had the snapshot's entries already): the log follows from there.
            self._acknowledged(pr, msg.src, msg.match_index)
            if self.progress.get(msg.src) is not pr:
                return
            pr.become_replicate()
            self._send_to.add(msg.src)
        elif pr.chunk_reply(msg.success, msg.offset):
            self._send_to.add(msg.src)
