"""ReadIndex reads, InstallSnapshot, compaction and configuration checks of the pure core."""

import random

import pytest

from raftnode.core import RaftCore
from raftnode.types import (APPEND, APPEND_RESP, FOLLOWER, SNAPSHOT, SNAPSHOT_RESP, Config, HardState,
                            Message, NotLeader, StorageState)
from raftnode.sim.manual import ack, append, drain, entry, make_core, make_leader, messages


def leader_with_committed_noop(**config):
    core = make_leader(make_core(pre_vote=False, **config))
    for follower in ("n2", "n3"):
        core.step(ack(follower, "n1", core.term, core.last_log_index))
    drain(core)
    assert core.commit_index == core.last_log_index
    return core


def read_states(readies):
    return [rs for rd in readies for rs in rd.read_states]


def test_a_follower_refuses_reads_naming_the_leader():
    core = make_core(term=1)
    core.step(append("n2", "n1", 1, 0, 0))
    with pytest.raises(NotLeader) as info:
        core.read_index("r1")
    assert info.value.leader == "n2"


def test_a_new_leader_serves_no_read_before_its_noop_commits():
    core = make_leader(make_core(pre_vote=False))
    core.read_index("r1")
    readies = drain(core)
    assert not read_states(readies)
    heartbeat = messages(readies, APPEND)
    assert not heartbeat or all(m.context == 0 for m in heartbeat)
    # The no-op commits; the read then needs its own heartbeat round.
    core.step(ack("n2", "n1", core.term, core.last_log_index))
    readies = drain(core)
    assert not read_states(readies)
    rounds = {m.context for m in messages(readies, APPEND)}
    assert rounds and max(rounds) >= 1
    core.step(ack("n2", "n1", core.term, core.last_log_index, context=max(rounds)))
    states = read_states(drain(core))
    assert [(rs.ctx, rs.index) for rs in states] == [("r1", core.commit_index)]


def test_a_read_waits_for_a_majority_to_acknowledge_a_heartbeat_round_sent_after_it():
    core = leader_with_committed_noop()
    core.read_index("r1")
    core.read_index("r2")
    readies = drain(core)
    round_ = {m.context for m in messages(readies, APPEND)}
    assert len(round_) == 1, "reads arriving together share one heartbeat round"
    round_ = round_.pop()
    # An acknowledgement of an older round does not confirm leadership for these reads.
    core.step(ack("n2", "n1", core.term, core.last_log_index, context=round_ - 1))
    assert not read_states(drain(core))
    core.step(ack("n3", "n1", core.term, core.last_log_index, context=round_))
    assert [rs.ctx for rs in read_states(drain(core))] == ["r1", "r2"]


def test_the_read_index_is_the_commit_index_when_the_read_arrived():
    core = leader_with_committed_noop()
    commit = core.commit_index
    core.read_index("r")
    core.propose({"op": "put", "key": "k", "value": 1})
    readies = drain(core)
    round_ = max(m.context for m in messages(readies, APPEND))
    core.step(ack("n2", "n1", core.term, core.last_log_index, context=round_))
    states = read_states(drain(core))
    assert states[0].index == commit and core.commit_index > commit


def test_pending_reads_are_dropped_when_the_leader_steps_down():
    core = leader_with_committed_noop()
    core.read_index("r1")
    drain(core)
    core.step(Message(APPEND, "n2", "n1", core.term + 1, prev_log_index=0, prev_log_term=0))
    rd = core.ready()
    assert rd.dropped_reads == ["r1"] and core.role == FOLLOWER


def test_seeded_bug_stale_read_answers_at_once_from_local_state_on_any_node():
    core = make_core(term=1, bugs=frozenset({"stale-read"}))
    core.read_index("r")
    assert [(rs.ctx, rs.index) for rs in core.ready().read_states] == [("r", 0)]


def test_seeded_bug_lease_read_skips_the_heartbeat_round_within_its_tick_lease():
    core = leader_with_committed_noop(bugs=frozenset({"lease-read"}))
    core.read_index("r")
    assert read_states(drain(core)), "served at once: n2 and n3 were heard from recently"
    for _ in range(20):
        core.tick()
        core.step(ack("n2", "n1", core.term, core.last_log_index))   # only n2 keeps answering
    drain(core)
    core.read_index("late")
    assert read_states(drain(core)), "n2 + the leader are still a majority"


# -- snapshots ---------------------------------------------------------------------------------------

def test_compaction_drops_the_log_prefix_and_the_leader_sends_a_snapshot_in_chunks():
    core = leader_with_committed_noop(snapshot_chunk_bytes=4)
    for i in range(5):
        core.propose({"op": "put", "key": "k", "value": i})
    drain(core)
    core.step(ack("n2", "n1", core.term, core.last_log_index))
    drain(core)
    applied = core.commit_index
    core.compact(applied, b"0123456789")
    assert core.snapshot_index == applied and core.log == []
    # n3 is far behind: a probe at its next index finds it compacted.
    core.step(Message(APPEND_RESP, "n3", "n1", core.term, success=False, prev_log_index=applied,
                      conflict_index=1, conflict_term=0))
    chunks = [m for m in messages(drain(core), SNAPSHOT)]
    assert chunks[0].offset == 0 and chunks[0].data == b"0123" and not chunks[0].done
    offset = 4
    while True:
        core.step(Message(SNAPSHOT_RESP, "n3", "n1", core.term, success=True, offset=offset,
                          snapshot_index=applied))
        chunk = messages(drain(core), SNAPSHOT)[-1]
        assert chunk.offset == offset
        offset += len(chunk.data)
        if chunk.done:
            break
    assert offset == 10
    core.step(Message(SNAPSHOT_RESP, "n3", "n1", core.term, success=True, match_index=applied,
                      snapshot_index=applied))
    assert core.progress["n3"].match == applied


def _install(core, index, term, data=b"state", leader="n2", leader_term=5):
    core.step(Message(SNAPSHOT, leader, core.id, leader_term, snapshot_index=index,
                      snapshot_term=term, offset=0, data=data, done=True))
    return core.ready()


def test_installing_a_snapshot_replaces_a_conflicting_log():
    core = make_core(term=4, log_terms=(1, 1, 2, 2))
    drain(core)
    rd = _install(core, 6, 4)
    assert rd.snapshot.index == 6 and rd.snapshot.data == b"state"
    assert core.log == [] and core.snapshot_index == 6 and core.commit_index == 6
    # The storage restarts its log after the snapshot; no truncation is needed for that.
    assert rd.snapshot.keep_log_after is False and rd.truncate_from is None
    assert rd.messages[0].match_index == 6


def test_a_follower_with_a_later_prefix_keeps_its_entries_after_the_snapshot():
    core = make_core(term=4, log_terms=(1, 1, 2, 2, 3))
    drain(core)
    rd = _install(core, 3, 2)
    assert core.snapshot_index == 3 and [e.index for e in core.log] == [4, 5]
    assert rd.snapshot.keep_log_after is True and rd.truncate_from is None and rd.entries == []


def test_entries_not_yet_handed_to_the_storage_are_handed_out_again_after_its_log_restart():
    core = make_core(term=5)
    drain(core)
    # The leader's entries 1..5 arrive and, before a Ready hands them to the storage, so does a
    # snapshot at 3 that they match: the storage's log does not hold (3, 5), so it restarts.
    core.step(append("n2", "n1", 5, 0, 0, [entry(i, 5) for i in range(1, 6)]))
    rd = _install(core, 3, 5, leader_term=5)
    assert rd.snapshot.keep_log_after is False and rd.truncate_from is None
    assert [e.index for e in rd.entries] == [4, 5] and [e.index for e in core.log] == [4, 5]


def test_an_out_of_order_chunk_asks_the_leader_to_resume_where_the_follower_is():
    core = make_core(term=5)
    core.step(Message(SNAPSHOT, "n2", "n1", 5, snapshot_index=9, snapshot_term=5, offset=0,
                      data=b"abc", done=False))
    core.step(Message(SNAPSHOT, "n2", "n1", 5, snapshot_index=9, snapshot_term=5, offset=7,
                      data=b"xyz", done=True))
    replies = messages(drain(core), SNAPSHOT_RESP)
    assert replies[-1].success is False and replies[-1].offset == 3
    assert core.snapshot_index == 0


def test_a_restart_from_a_snapshot_resumes_after_it():
    state = StorageState(HardState(3, "n2"), [entry(11, 3), entry(12, 3)], snapshot_index=10,
                         snapshot_term=2, snapshot_data=b"x")
    core = RaftCore(Config("n1", ["n1", "n2", "n3"]), state, random.Random(0))
    assert core.commit_index == 10 and core.applied_index == 10 and core.last_log_index == 12
    assert core.term_at(10) == 2 and core.term_at(9) is None


# -- configuration and start-up state -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs, problem", [
    (dict(peers=["n2", "n3"]), "must include node_id"),
    (dict(peers=["n1", "n1"]), "duplicates"),
    (dict(tick_ms=0), "tick_ms"),
    (dict(election_timeout_min_ms=300, election_timeout_max_ms=150), "election timeout"),
    (dict(heartbeat_ms=200), "heartbeat"),
    (dict(max_entries_per_append=0), "max_entries_per_append"),
    (dict(bugs=frozenset({"typo"})), "unknown seeded bug"),
])
def test_a_bad_config_is_rejected_naming_the_problem(kwargs, problem):
    config = dict(node_id="n1", peers=["n1", "n2", "n3"])
    config.update(kwargs)
    with pytest.raises(ValueError, match=problem):
        RaftCore(Config(**config), StorageState(), random.Random(0))


def test_a_log_with_a_gap_is_rejected_at_start_up():
    state = StorageState(HardState(2), [entry(1, 1), entry(3, 1)])
    with pytest.raises(ValueError, match="not contiguous"):
        RaftCore(Config("n1", ["n1", "n2", "n3"]), state, random.Random(0))


def test_a_log_newer_than_the_persisted_term_is_rejected_at_start_up():
    state = StorageState(HardState(1), [entry(1, 2)])
    with pytest.raises(ValueError, match="above the persisted current term"):
        RaftCore(Config("n1", ["n1", "n2", "n3"]), state, random.Random(0))


def test_a_restarted_node_relearns_commit_from_the_leader():
    state = StorageState(HardState(2, None, commit=3), [entry(1, 1), entry(2, 1), entry(3, 2)])
    core = RaftCore(Config("n1", ["n1", "n2", "n3"]), state, random.Random(0))
    assert core.commit_index == 0
    core.step(append("n2", "n1", 2, 3, 2, [], commit=3))
    assert [e.index for e in core.ready().committed] == [1, 2, 3]
