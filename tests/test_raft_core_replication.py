"""Log replication rules of the pure core: consistency check, truncation, backtracking, commit."""

import pytest

from raftnode.core import SafetyViolation
from raftnode.types import APPEND, APPEND_RESP, NOOP, NotLeader
from raftnode.sim.manual import ack, append, drain, entry, make_core, make_leader, messages


def reply(core):
    return messages(drain(core), APPEND_RESP)[-1]


def test_a_follower_appends_entries_that_follow_a_matching_prev_entry_and_acks_after_persisting():
    core = make_core(term=1, log_terms=(1,))
    core.step(append("n2", "n1", 1, 1, 1, [entry(2, 1), entry(3, 1)], commit=0))
    rd = core.ready()
    assert [e.index for e in rd.entries] == [2, 3]
    assert rd.messages[0].success and rd.messages[0].match_index == 3 and rd.messages[0].needs_persist
    assert core.leader == "n2"


def test_a_follower_rejects_when_it_lacks_the_prev_entry_with_a_hint_past_its_log():
    core = make_core(term=2, log_terms=(1, 1))
    r = (core.step(append("n2", "n1", 2, 5, 2, [entry(6, 2)])), reply(core))[1]
    assert not r.success and r.conflict_index == 3 and r.conflict_term == 0 and r.prev_log_index == 5


def test_a_follower_rejects_a_prev_term_mismatch_with_the_first_index_of_its_conflicting_term():
    core = make_core(term=3, log_terms=(1, 2, 2, 2))
    core.step(append("n2", "n1", 3, 4, 3, [entry(5, 3)]))
    r = reply(core)
    assert not r.success and r.conflict_term == 2 and r.conflict_index == 2
    assert core.last_log_index == 4   # nothing was truncated on a failed check


def test_only_a_conflicting_suffix_is_truncated_never_matching_entries():
    core = make_core(term=3, log_terms=(1, 1, 2, 2))
    drain(core)
    # A delayed, shorter append that matches must not cut entries 3-4.
    core.step(append("n2", "n1", 3, 1, 1, [entry(2, 1)]))
    assert core.last_log_index == 4 and reply(core).match_index == 2
    # A conflicting entry at 3 replaces 3.. and nothing before it.
    core.step(append("n2", "n1", 3, 2, 1, [entry(3, 3)]))
    rd = core.ready()
    assert rd.truncate_from == 3 and [e.index for e in rd.entries] == [3]
    assert [e.term for e in core.log] == [1, 1, 3]


def test_follower_commit_is_the_minimum_of_leader_commit_and_its_last_new_entry():
    core = make_core(term=2, log_terms=(1, 1, 1, 1, 1))  # entries 2..5 may be stale
    core.step(append("n2", "n1", 2, 1, 1, [entry(2, 1)], commit=5))
    assert core.commit_index == 2
    core.step(append("n2", "n1", 2, 5, 1, [], commit=4))
    assert core.commit_index == 4


def test_truncating_a_committed_entry_is_refused_as_a_safety_violation():
    core = make_core(term=2, log_terms=(1, 1, 1))
    core.step(append("n2", "n1", 2, 3, 1, [], commit=3))
    with pytest.raises(SafetyViolation):
        core.step(append("n3", "n1", 3, 1, 1, [entry(2, 3)]))


def test_propose_on_a_follower_raises_not_leader_with_the_known_leader():
    core = make_core(term=1)
    core.step(append("n2", "n1", 1, 0, 0))
    with pytest.raises(NotLeader) as info:
        core.propose({"op": "put", "key": "k", "value": 1})
    assert info.value.leader == "n2"


def test_many_proposals_go_out_in_one_append_per_follower():
    core = make_leader(make_core(pre_vote=False))
    for follower in ("n2", "n3"):
        core.step(ack(follower, "n1", core.term, core.last_log_index))
    drain(core)
    for i in range(30):
        core.propose({"op": "put", "key": "k", "value": i})
    appends = messages(drain(core), APPEND)
    assert len(appends) == 2 and all(len(m.entries) == 30 for m in appends)


def test_max_entries_per_append_splits_batches():
    core = make_leader(make_core(pre_vote=False, max_entries_per_append=8))
    for follower in ("n2", "n3"):
        core.step(ack(follower, "n1", core.term, core.last_log_index))
    drain(core)
    for i in range(20):
        core.propose({"op": "put", "key": "k", "value": i})
    appends = [m for m in messages(drain(core), APPEND) if m.dst == "n2"]
    assert [len(m.entries) for m in appends] == [8, 8, 4]
    assert [m.prev_log_index for m in appends] == [1, 9, 17]   # after the no-op at 1


def test_the_leader_counts_itself_in_the_majority_only_after_its_own_fsync():
    core = make_leader(make_core(pre_vote=False))
    for follower in ("n2", "n3"):
        core.step(ack(follower, "n1", core.term, core.last_log_index))
    drain(core)
    index, term = core.propose({"op": "put", "key": "k", "value": 1})
    rd = core.ready()                      # handed to the driver; its fsync has not finished
    assert any(m.kind == APPEND and m.entries for m in rd.messages), "sent before the fsync"
    core.step(ack("n2", "n1", term, index))
    assert core.commit_index < index       # n2 alone is not a majority of 3
    core.advance(rd)                       # the leader's own copy is durable now
    assert core.commit_index == index
    assert [e.index for e in core.ready().committed][-1] == index


def test_the_leader_never_commits_an_earlier_term_entry_by_counting_replicas():
    core = make_core(term=2, log_terms=(1, 2), pre_vote=False)
    make_leader(core)
    assert core.term == 3 and core.log[-1].kind == NOOP
    core.step(ack("n2", "n1", 3, 2))       # n2 has entry 2 (term 2) but not the no-op
    assert core.commit_index == 0, "Figure 8: entry 2 is from term 2"
    core.step(ack("n2", "n1", 3, 3))       # now the no-op (term 3) is on a majority
    assert core.commit_index == 3


def test_seeded_bug_commit_old_term_commits_the_earlier_term_entry():
    core = make_core(term=2, log_terms=(1, 2), pre_vote=False, bugs=frozenset({"commit-old-term"}))
    make_leader(core)
    core.step(ack("n2", "n1", 3, 2))
    assert core.commit_index == 2


def test_fast_backtracking_skips_a_whole_conflicting_term_in_one_step():
    core = make_core(term=5, log_terms=(1, 1, 4, 4, 4, 5), pre_vote=False)
    make_leader(core)
    drain(core)
    # n2 has a long run of term-2 entries the leader never had: it reports term 2 from index 3.
    core.step(_reject("n2", core.term, prev=6, conflict_index=3, conflict_term=2))
    retry = [m for m in messages(drain(core), APPEND) if m.dst == "n2"][-1]
    assert retry.prev_log_index == 2        # back to before the follower's term-2 run
    # n3 shares term 4 with the leader: resume right after the leader's last term-4 entry.
    core.step(_reject("n3", core.term, prev=6, conflict_index=3, conflict_term=4))
    retry = [m for m in messages(drain(core), APPEND) if m.dst == "n3"][-1]
    assert retry.prev_log_index == 5


def test_stale_rejections_are_ignored():
    core = make_leader(make_core(pre_vote=False))
    core.step(ack("n2", "n1", core.term, core.last_log_index))
    drain(core)
    core.step(_reject("n2", core.term, prev=0, conflict_index=1, conflict_term=0))
    assert core.progress["n2"].next == core.last_log_index + 1


def test_a_follower_that_was_behind_catches_up_through_probing():
    leader = make_leader(make_core(pre_vote=False))
    for i in range(5):
        leader.propose({"op": "put", "key": "k", "value": i})
    follower = make_core("n2", term=leader.term)
    pending = messages(drain(leader), APPEND)   # n2 is paused (probing): nothing for it yet
    for _ in range(20):
        leader.tick()                            # heartbeats re-probe
        pending += messages(drain(leader), APPEND)
        for m in [m for m in pending if m.dst == "n2"]:
            follower.step(m)
        for r in messages(drain(follower), APPEND_RESP):
            leader.step(r)
        pending = messages(drain(leader), APPEND)
    assert follower.last_log_index == leader.last_log_index
    assert leader.progress["n2"].match == leader.last_log_index


def test_committed_entries_are_handed_out_once_in_order():
    core = make_core(term=1)
    core.step(append("n2", "n1", 1, 0, 0, [entry(1, 1), entry(2, 1), entry(3, 1)], commit=2))
    first = core.ready()
    core.advance(first)
    core.step(append("n2", "n1", 1, 3, 1, [], commit=3))
    second = core.ready()
    assert [e.index for e in first.committed] == [1, 2] and [e.index for e in second.committed] == [3]
    core.step(append("n2", "n1", 1, 3, 1, [], commit=3))
    assert not core.ready().committed


def test_durability_is_tracked_by_index_and_term_across_a_truncation():
    core = make_core(term=1)
    core.step(append("n2", "n1", 1, 0, 0, [entry(1, 1), entry(2, 1)]))
    rd = core.ready()                           # handed to the driver, fsync pending
    core.step(append("n3", "n1", 2, 1, 1, [entry(2, 2)]))   # a new leader replaces entry 2
    later = core.ready()
    core.advance(rd)
    assert core.persisted_index == 1            # entry 2 of term 1 is gone from the log
    core.advance(later)
    assert core.persisted_index == 2 and later.truncate_from == 2


def _reject(src, term, prev, conflict_index, conflict_term):
    from raftnode.types import Message
    return Message(APPEND_RESP, src, "n1", term, success=False, prev_log_index=prev,
                   conflict_index=conflict_index, conflict_term=conflict_term)


def test_a_silent_follower_falls_back_to_one_probe_per_heartbeat():
    core = make_leader(make_core(pre_vote=False, check_quorum=False))
    for follower in ("n2", "n3"):
        core.step(ack(follower, "n1", core.term, core.last_log_index))
    drain(core)
    for _ in range(30):                     # n3 answers, n2 stays silent for a whole check period
        core.tick()
        core.step(ack("n3", "n1", core.term, core.last_log_index))
        drain(core)
    sent_to_n2 = []
    for i in range(10):
        core.propose({"op": "put", "key": "k", "value": i})
        core.tick()
        sent_to_n2 += [m for m in messages(drain(core), APPEND) if m.dst == "n2"]
    assert len(sent_to_n2) <= 2, "only heartbeat probes go to a silent follower"
    assert core.progress["n2"].state == "probe"


def test_an_ack_claiming_more_than_the_leaders_log_is_ignored_and_replication_goes_on():
    # A follower cannot hold more of our log than we do: such an answer comes from a diverged
    # log (a broken peer, or safety lost elsewhere). Taken, it set the follower's next index
    # past our log, and the next append had no previous entry to name: the leader crashed.
    core = make_leader(make_core(pre_vote=False))
    last = core.last_log_index
    core.step(ack("n2", "n1", core.term, last + 50))
    assert core.commit_index < last + 1 and core.role == "leader"
    sent = []
    for _ in range(20):
        core.tick()
        sent += messages(drain(core), APPEND)
    core.propose({"op": "put", "key": "k", "value": 1})
    sent += messages(drain(core), APPEND)
    to_n2 = [m for m in sent if m.dst == "n2"]
    assert to_n2 and all(m.prev_log_index <= core.last_log_index for m in to_n2)
    core.step(ack("n2", "n1", core.term, core.last_log_index))
    core.step(ack("n3", "n1", core.term, core.last_log_index))
    drain(core)
    assert core.commit_index == core.last_log_index
