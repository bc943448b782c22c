"""Membership in the core (issue 12; the rules are in raftnode.membership's docstring):
which configuration is in force, when a leader may change it, learners' catch-up, the removed
leader's step-down, and leadership transfer (thesis §3.10).

A configuration takes effect when its entry is appended (the leader's own, or received from the
leader); a truncation that removes it reverts to the latest configuration left. `_confs` lists
the configuration entries in the log after the snapshot, `_snapshot_conf` is the configuration
in force at the snapshot's index (the one the snapshot carries, or the bootstrap one). `conf`,
`conf_index`: the configuration in force and its index; `_conf_committed`: whether that index is
committed (known to this node).

A mixin of RaftCore (raftnode.core).
"""

from __future__ import annotations

from typing import Any

from .corestate import CoreState
from .log import entry_size
from .membership import (
    PROMOTE,
    REMOVE,
    ChangeRefused,
    ConfChange,
    Configuration,
    snapshot_configuration,
)
from .quorum import MajorityConfig
from .tracker import Progress
from .types import (
    CONFIG,
    LEADER,
    TIMEOUT_NOW,
    Entry,
    Message,
    NotLeader,
    TransferInProgress,
)


class Reconfiguration(CoreState):
    # -- which configuration is in force ---------------------------------------------------------
    def _init_configuration(self, snapshot_data: bytes | None) -> None:
        self.bootstrap_conf = Configuration.bootstrap(self.config.peers, self.config.members)
        conf = snapshot_configuration(snapshot_data) if snapshot_data is not None else None
        self._snapshot_conf = conf if conf is not None else self.bootstrap_conf
        self._confs = []
        for entry in self.raft_log.entries:
            if entry.kind == CONFIG:
                self._confs.append((entry.index, Configuration.from_json(entry.data)))
        self.conf_index = -1   # none yet: _apply_latest_conf sets conf
        self._apply_latest_conf()

    def configuration_at(self, index: int) -> Configuration:
        """The configuration in force at `index` (at or after the snapshot's index): what a
        snapshot taken there must carry."""
        conf = self._snapshot_conf
        for at, c in self._confs:
            if at > index:
                break
            conf = c
        return conf

    @property
    def conf_committed(self) -> bool:
        return self._conf_committed

    def _track_configurations(self, entries: list[Entry], truncated: int | None, old_last: int) -> None:
        """After a follower appended `entries`: a truncation at `truncated` took the
        configurations from there with it; configuration entries among the new ones take
        effect now."""
        confs = self._confs
        reverted = False
        if truncated is not None:
            while confs and confs[-1][0] >= truncated:
                confs.pop()
                reverted = True
        first_new = truncated if truncated is not None else old_last + 1
        added = False
        for entry in entries:
            if entry.kind == CONFIG and entry.index >= first_new:
                confs.append((entry.index, Configuration.from_json(entry.data)))
                added = True
        if reverted or added:
            self._apply_latest_conf(reverted=reverted and not added)

    def _install_snapshot_configuration(self, index: int, data: bytes, kept_entries: bool) -> None:
        try:
            conf = snapshot_configuration(data)
        except ValueError as exc:
            raise ValueError(f"{self.id}: the leader's snapshot at {index}: {exc}") from None
        self._snapshot_conf = conf if conf is not None else self.bootstrap_conf
        self._confs = [c for c in self._confs if c[0] > index] if kept_entries else []
        self._apply_latest_conf()

    def _compact_configurations(self, index: int) -> None:
        self._snapshot_conf = self.configuration_at(index)
        self._confs = [c for c in self._confs if c[0] > index]

    def _apply_latest_conf(self, reverted: bool = False) -> None:
        if self._confs:
            index, conf = self._confs[-1]
        else:
            index, conf = self.raft_log.snapshot_index, self._snapshot_conf
        if index == self.conf_index and conf is self.conf:
            return
        self.conf = conf
        self.conf_index = index
        self._conf_committed = index <= self.commit_index
        self.quorum = MajorityConfig(conf.voters)
        self._voters_others = sorted(v for v in conf.voters if v != self.id)
        self._self_voter = self.id in conf.voters
        self._sole_voter = conf.voters == {self.id}
        self._update_promotable()
        if self.role == LEADER:
            self._sync_progress()
        self._event("config", index=index, voters=sorted(conf.voters), learners=sorted(conf.learners),
                    change=conf.change, committed=self._conf_committed, reverted=reverted)

    def _update_promotable(self) -> None:
        """Only a voter campaigns, and a node that the latest change made a voter waits until
        that change is committed (a joining node never disturbs the cluster on the strength of
        a promotion that may still be undone)."""
        change = self.conf.change
        self._promotable = self._self_voter and not (
            change is not None and change.get("op") == PROMOTE and change.get("id") == self.id
            and not self._conf_committed)

    def _on_conf_committed(self) -> None:
        self._conf_committed = True
        self._update_promotable()
        self._event("config_committed", index=self.conf_index, voters=sorted(self.conf.voters),
                    learners=sorted(self.conf.learners))
        if self.role != LEADER:
            return
        members = self.conf.members
        for peer in [p for p in self.progress if p not in members]:
            del self.progress[peer]   # removed: its Progress was kept only until now
            self._send_to.discard(peer)
        self._sync_progress()
        if not self._self_voter:
            self._hand_over_and_step_down()

    def _hand_over_and_step_down(self) -> None:
        """A leader whose removal committed steps down, first telling the most up-to-date voter
        to campaign at once (if one holds our whole log) so that the cluster does not wait an
        election timeout for its next leader."""
        last = self.raft_log.last_index
        ready = [v for v in self._voters_others if self.progress[v].match == last]
        if ready:
            self._send_timeout_now(ready[0])
        self._event("step_down", reason="removed", term=self.term, successor=ready[0] if ready else None)
        self._become_follower(self.term, None)

    # -- peers -----------------------------------------------------------------------------------
    def peer_ids(self) -> list[str]:
        """Whom this node exchanges messages with: the members of its configuration, and (on a
        leader) a member being removed until its removal commits, so that it learns of it."""
        ids = set(self.conf.members) | set(self.progress)
        removing = self._removing()
        if removing is not None:
            ids.add(removing)   # it may be the leader, which needs our answers to commit it
        ids.discard(self.id)
        return sorted(ids)

    def _removing(self) -> str | None:
        """The member whose removal is the latest change and is not committed yet, or None."""
        change = self.conf.change
        if not self._conf_committed and change is not None and change.get("op") == REMOVE:
            return change.get("id")
        return None

    def admission_problem(self, src: str, incarnation: str) -> str | None:
        """Why messages from `src` (presenting `incarnation`) are not to be taken, or None: the
        peer transport asks at each handshake (see membership.Configuration.admission_problem)."""
        if src in self.progress and src not in self.conf.members:
            return None   # being removed: it still answers until the removal commits
        if src == self._removing():
            # Its removal is not committed yet: it may be the leader that proposed it, which
            # keeps replicating until the entry commits (thesis §4.2.2).
            return None
        return self.conf.admission_problem(src, incarnation)

    # -- the leader's view of the members --------------------------------------------------------
    def _sync_progress(self) -> None:
        """Give every member (but us) a Progress; learners measure catch-up rounds."""
        conf = self.conf
        progress = self.progress
        config = self.config
        last = self.raft_log.last_index
        for peer, member in conf.members.items():
            if peer == self.id:
                continue
            pr = progress.get(peer)
            if pr is None:
                pr = progress[peer] = Progress(last + 1, config.max_inflight_msgs, config.max_inflight_bytes)
            if member.role == "learner":
                if not pr.learner:
                    pr.start_rounds(last, self._ticks)
            else:
                pr.learner = False
        self.others = sorted(progress)
        self._voter_prs = [progress[v] for v in self._voters_others]

    def _caught_up(self, peer: str) -> tuple[bool, str]:
        pr = self.progress.get(peer)
        tick = self.config.tick_ms
        timeout_ms = self.election_ticks_min * tick
        if pr is None:
            return False, f"{peer} has no replication state on this leader"
        silent = self._ticks - pr.last_heard
        if silent >= self.election_ticks_min:
            return False, (f"{peer} has not answered for {silent * tick} ms (at least an election "
                           f"timeout, {timeout_ms} ms)")
        if not pr.caught_up:
            if pr.last_round < 0:
                how = "it has not completed a round of replication yet"
            else:
                how = f"its last round of replication took {pr.last_round * tick} ms"
            return False, (f"{peer} holds the log up to {pr.match} of {self.raft_log.last_index}: {how} "
                           f"(a learner is caught up once a round takes less than an election "
                           f"timeout, {timeout_ms} ms)")
        return True, f"its last round took {pr.last_round * tick} ms"

    def progress_report(self) -> dict[str, Any]:
        """The leader's view of each member's replication (for GET /cluster); {} elsewhere."""
        if self.role != LEADER:
            return {}
        tick = self.config.tick_ms
        out: dict[str, Any] = {}
        for peer in self.others:
            pr = self.progress[peer]
            item = {"match": pr.match, "next": pr.next, "state": pr.state,
                    "last_heard_ms_ago": max(0, (self._ticks - pr.last_heard) * tick) if pr.last_heard >= 0 else None}
            if pr.learner:
                ok, _ = self._caught_up(peer)
                item.update(caught_up=ok, rounds=pr.rounds,
                            last_round_ms=pr.last_round * tick if pr.last_round >= 0 else None)
            out[peer] = item
        return out

    # -- changes (leader) ------------------------------------------------------------------------
    def propose_conf_change(self, change: ConfChange,
                            incarnations: dict[str, str] | None = None) -> tuple[int, int]:
        """Append the configuration `change` leads to; returns its (index, term). Raises
        NotLeader, TransferInProgress (nothing appended), or ChangeRefused (code, detail) when
        the change is not legal now. `incarnations` (id -> incarnation) fills in the members
        whose incarnation the configuration does not name yet."""
        if self.role != LEADER:
            raise NotLeader(self.leader_id)
        if self._transfer is not None:
            raise TransferInProgress(self._transfer[0])
        if not self._conf_committed:
            raise ChangeRefused("change_in_progress", f"the configuration at index {self.conf_index} is "
                                                      "not committed yet: one change at a time")
        if self.commit_index < self._noop_index:
            if not self._bug_unsafe_membership:
                raise ChangeRefused("leader_not_ready", "this leader has not committed an entry of its "
                                                       "own term yet (a change must wait for it)")
            # SEEDED BUG unsafe-membership: append the change before an entry of this term committed
        new = self.conf.apply(change)
        if change.op == PROMOTE:
            ok, detail = self._caught_up(change.node_id)
            if not ok:
                raise ChangeRefused("not_caught_up", detail)
        if incarnations:
            new = new.with_incarnations(incarnations)
        index = self.raft_log.last_index + 1
        entry = Entry(index, self.term, CONFIG, new.to_json())
        entry._term_bytes = self._proposed_bytes = self._proposed_bytes + entry_size(entry)
        self.raft_log.append(entry)
        self._confs.append((index, new))
        self._apply_latest_conf()
        self._send_to.update(self.others)
        return index, self.term

    # -- leadership transfer (leader) ------------------------------------------------------------
    def transfer_leadership(self, target: str | None = None) -> str:
        """Hand leadership to `target` (a voter; None: the most up-to-date one). Proposals are
        refused (TransferInProgress) until the transfer ends: the target campaigns once it holds
        our whole log (TimeoutNow), and the transfer aborts after an election timeout. Returns
        the target; raises NotLeader or ChangeRefused."""
        if self.role != LEADER:
            raise NotLeader(self.leader_id)
        if self._transfer is not None:
            raise ChangeRefused("transfer_in_progress", f"leadership is already being transferred to "
                                                        f"{self._transfer[0]}")
        if target is None:
            if not self._voters_others:
                raise ChangeRefused("no_transferee", "there is no other voter to transfer to")
            target = max(self._voters_others, key=lambda v: (self.progress[v].match, v))
        elif target == self.id:
            raise ChangeRefused("already_leader", f"{target} is the leader already")
        elif target not in self.conf.voters:
            role = self.conf.role(target)
            raise ChangeRefused("not_a_voter", f"{target} is a learner" if role else f"{target} is not a member")
        self._transfer = [target, self._ticks, False]
        self._event("transfer", phase="started", target=target, term=self.term)
        self._maybe_send_timeout_now()
        if not self._transfer[2]:
            self._send_to.add(target)   # catch it up first
        return target

    @property
    def transferring_to(self) -> str | None:
        return self._transfer[0] if self._transfer is not None else None

    def _maybe_send_timeout_now(self) -> None:
        transfer = self._transfer
        assert transfer is not None, "called only while a transfer is under way"
        target, _, sent = transfer
        pr = self.progress.get(target)
        if not sent and pr is not None and pr.match == self.raft_log.last_index:
            self._send_timeout_now(target)
            transfer[2] = True
            self._event("transfer", phase="timeout_now", target=target, term=self.term)

    def _send_timeout_now(self, target: str) -> None:
        """TimeoutNow carries our last entry and commit index, as an empty append would: the
        target, which holds our whole log, learns from it whether it may campaign (a voter
        whose promotion it has not yet seen committed would ignore it)."""
        rlog = self.raft_log
        self._msgs.append(Message(TIMEOUT_NOW, self.id, target, self.term, prev_log_index=rlog.last_index,
                                  prev_log_term=rlog.last_term, leader_commit=self.commit_index,
                                  needs_persist=False))

    def _tick_leader_membership(self) -> None:
        """Once per heartbeat: abort a transfer older than an election timeout; measure the
        rounds of learners that went quiet."""
        transfer = self._transfer
        if transfer is not None and self._ticks - transfer[1] >= self.election_ticks_min:
            self._event("transfer", phase="aborted", target=transfer[0], term=self.term)
            self._transfer = None
        last = self.raft_log.last_index
        for pr in self.progress.values():
            if pr.learner:
                pr.update_rounds(last, self._ticks, self.election_ticks_min)

