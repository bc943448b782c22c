"""Membership changes in the core, message by message: single-server changes that take effect on
append (a truncated suffix reverts them), one change at a time and only after an entry of the
leader's own term committed, learners that receive the log but never count or campaign, a
joining node that waits for a committed configuration naming it a voter, a removed leader that
steps down, removed servers that cannot disrupt, ReadIndex in the configuration in force, and
snapshots that carry the configuration."""

import random

import pytest
from raftnode.core import RaftCore
from raftnode.membership import (
    ADD_LEARNER,
    PROMOTE,
    REMOVE,
    ChangeRefused,
    ConfChange,
    Configuration,
    pack_snapshot,
)
from raftnode.sim.manual import ack, append, drain, events, make_leader, messages
from raftnode.types import (
    APPEND,
    APPEND_RESP,
    CONFIG,
    FOLLOWER,
    LEADER,
    NOOP,
    PRE_VOTE,
    REQUEST_VOTE,
    SNAPSHOT,
    SNAPSHOT_RESP,
    TIMEOUT_NOW,
    Config,
    Entry,
    HardState,
    Message,
    StorageState,
)

PEERS = ["n1", "n2", "n3"]
BOOT = Configuration.bootstrap(PEERS)


def new_core(node="n1", peers=PEERS, term=0, entries=(), seed=0, **config):
    return RaftCore(Config(node, list(peers), **config), StorageState(HardState(term), list(entries)),
                    random.Random(seed))


def add(node_id, n):
    return ConfChange(ADD_LEARNER, node_id, f"127.0.0.1:{9000 + n}", f"127.0.0.1:{8000 + n}", f"inc-{node_id}")


def leader(peers=PEERS, **config):
    """n1 leading `peers`, every follower holding (and the leader having committed) its no-op."""
    core = make_leader(new_core(peers=peers, **config))
    acks_from(core, [p for p in peers if p != "n1"])
    assert core.commit_index == core.last_log_index
    return core


def acks_from(core, peers, match=None):
    out = []
    for peer in peers:
        core.step(ack(peer, core.id, core.term, core.last_log_index if match is None else match))
        out += drain(core)
    return out


def ticks(core, n):
    out = []
    for _ in range(n):
        core.tick()
        out += drain(core)
    return out


def committed_change(core, change, voters):
    """Propose `change` on the leader and have `voters` acknowledge it."""
    index, _ = core.propose_conf_change(change)
    drain(core)
    acks_from(core, voters)
    assert core.commit_index >= index and core.conf_committed
    return index


def refusal(call):
    with pytest.raises(ChangeRefused) as info:
        call()
    return info.value.code


def config_entry(index, term, conf):
    return Entry(index, term, CONFIG, conf.to_json())


# -- when a configuration takes effect -------------------------------------------------------------

def test_a_configuration_takes_effect_when_appended_and_counts_before_it_commits():
    core = leader()
    index, _ = core.propose_conf_change(add("n4", 4))
    assert core.configuration.learners == {"n4"} and core.conf_index == index
    assert not core.conf_committed
    assert "n4" in core.progress                      # the leader replicates to it at once
    assert [e.detail for e in events(drain(core), "config")][0]["learners"] == ["n4"]
    acks_from(core, ["n2", "n3"])
    assert core.conf_committed and core.commit_index == index


def test_a_follower_whose_suffix_is_truncated_goes_back_to_the_previous_configuration():
    core = new_core("n2")
    grown = BOOT.apply(add("n4", 4))
    core.step(append("n1", "n2", 1, 0, 0, [Entry(1, 1, NOOP), config_entry(2, 1, grown)], commit=1))
    assert core.configuration == grown and not core.conf_committed
    drain(core)
    # a leader of term 2 never had the change: its entry at index 2 replaces it
    core.step(append("n3", "n2", 2, 1, 1, [Entry(2, 2, NOOP)], commit=1))
    assert core.configuration == BOOT
    reverted = events(drain(core), "config")
    assert reverted and reverted[-1].detail["reverted"] is True


def test_a_configuration_entry_already_held_is_not_counted_twice():
    core = new_core("n2")
    grown = BOOT.apply(add("n4", 4))
    batch = [Entry(1, 1, NOOP), config_entry(2, 1, grown)]
    core.step(append("n1", "n2", 1, 0, 0, batch, commit=0))
    drain(core)
    core.step(append("n1", "n2", 1, 0, 0, batch, commit=2))   # a duplicate, now committed
    assert core._confs == [(2, grown)] and core.conf_committed


# -- one change at a time, and not before the leader's own term committed --------------------------

def test_a_second_change_waits_until_the_first_is_committed():
    core = leader()
    core.propose_conf_change(add("n4", 4))
    drain(core)
    assert refusal(lambda: core.propose_conf_change(add("n5", 5))) == "change_in_progress"
    acks_from(core, ["n2"])
    core.propose_conf_change(add("n5", 5))
    assert core.configuration.learners == {"n4", "n5"}


def test_a_new_leader_changes_nothing_before_an_entry_of_its_own_term_commits():
    core = make_leader(new_core())
    assert core.commit_index < core.last_log_index       # its no-op is not committed yet
    assert refusal(lambda: core.propose_conf_change(add("n4", 4))) == "leader_not_ready"
    acks_from(core, ["n2"])
    core.propose_conf_change(add("n4", 4))


def test_the_unsafe_membership_bug_appends_a_change_before_the_own_term_entry_commits():
    core = make_leader(new_core(bugs=frozenset({"unsafe-membership"})))
    index, _ = core.propose_conf_change(add("n4", 4))
    assert core.commit_index < index and core.configuration.learners == {"n4"}


def test_non_leaders_refuse_changes():
    from raftnode.types import NotLeader
    core = new_core("n2")
    with pytest.raises(NotLeader):
        core.propose_conf_change(add("n4", 4))


# -- learners --------------------------------------------------------------------------------------

def test_a_learner_receives_the_log_but_its_acknowledgements_commit_nothing():
    core = leader()
    committed_change(core, add("n4", 4), ["n2", "n3"])
    sent = messages(drain(core) + ticks(core, 6), APPEND)
    assert any(m.dst == "n4" for m in sent)
    index, _ = core.propose({"op": "put", "key": "k", "value": 1})
    drain(core)
    acks_from(core, ["n4"])
    assert core.commit_index < index                   # the leader and a learner: no majority
    acks_from(core, ["n2"])
    assert core.commit_index == index


def test_a_learner_never_campaigns():
    grown = BOOT.apply(add("n4", 4))
    core = new_core("n4", peers=[], entries=[Entry(1, 1, NOOP), config_entry(2, 1, grown)], term=1)
    assert core.configuration == grown and not core.promotable
    sent = messages(ticks(core, 500))
    assert not [m for m in sent if m.kind in (PRE_VOTE, REQUEST_VOTE)] and core.term == 1


def test_promote_is_refused_until_the_learner_has_caught_up():
    core = leader()
    committed_change(core, add("n4", 4), ["n2", "n3"])
    code = refusal(lambda: core.propose_conf_change(ConfChange(PROMOTE, "n4")))
    assert code == "not_caught_up"
    acks_from(core, ["n4"])                             # one round, well within an election timeout
    index, _ = core.propose_conf_change(ConfChange(PROMOTE, "n4"))
    assert core.configuration.voters == {"n1", "n2", "n3", "n4"} and index == core.last_log_index


def test_a_learner_that_falls_silent_is_not_caught_up_any_more():
    core = leader()
    committed_change(core, add("n4", 4), ["n2", "n3"])
    acks_from(core, ["n4"])
    assert core._caught_up("n4")[0]
    for _ in range(3 * core.election_ticks_min):
        core.tick()
        drain(core)
        acks_from(core, ["n2", "n3"])
    ok, detail = core._caught_up("n4")
    assert not ok and "has not answered" in detail


# -- a node that joins -----------------------------------------------------------------------------

def test_a_joining_node_has_no_configuration_and_never_campaigns_on_its_own():
    core = new_core("n4", peers=[])
    assert not core.configuration.members and not core.promotable
    assert not messages(ticks(core, 1000)) and core.term == 0


def test_a_joining_node_campaigns_only_once_its_promotion_is_committed():
    core = new_core("n4", peers=[], check_quorum=False)
    learner_conf = BOOT.apply(add("n4", 4))
    voter_conf = learner_conf.apply(ConfChange(PROMOTE, "n4"))
    core.step(append("n1", "n4", 1, 0, 0, [Entry(1, 1, NOOP), config_entry(2, 1, learner_conf),
                                          config_entry(3, 1, voter_conf)], commit=2))
    drain(core)
    assert core.configuration == voter_conf and not core.promotable   # appended, not committed
    assert not [m for m in messages(ticks(core, 200)) if m.kind in (PRE_VOTE, REQUEST_VOTE)]
    core.step(append("n1", "n4", 1, 3, 1, [], commit=3))
    assert core.promotable
    assert [m for m in messages(ticks(core, 200)) if m.kind in (PRE_VOTE, REQUEST_VOTE)]


# -- removal ---------------------------------------------------------------------------------------

def test_a_removed_leader_leads_until_its_removal_commits_then_hands_over_and_steps_down():
    core = leader()
    index, _ = core.propose_conf_change(ConfChange(REMOVE, "n1"))
    drain(core)
    assert core.role == LEADER and core.configuration.voters == {"n2", "n3"}
    core.read_index("pending-read")
    drain(core)
    acks_from(core, ["n2"])
    assert core.role == LEADER                          # n2 alone is not a majority of {n2, n3}
    out = acks_from(core, ["n3"])
    assert core.commit_index == index and core.role == FOLLOWER and core.leader is None
    assert [m.dst for m in messages(out, TIMEOUT_NOW)] == ["n2"]
    assert "pending-read" in [ctx for rd in out for ctx in rd.dropped_reads]
    assert [e.detail["reason"] for e in events(out, "step_down")] == ["removed"]
    assert not core.promotable and not messages(ticks(core, 500), PRE_VOTE)


def test_a_removed_follower_is_dropped_by_the_leader_once_the_removal_commits():
    core = leader()
    core.propose_conf_change(ConfChange(REMOVE, "n3"))
    drain(core)
    assert "n3" in core.progress                        # it still learns of its removal...
    acks_from(core, ["n2"])
    assert core.conf_committed and "n3" not in core.progress   # ...until that commits
    assert not [m for m in messages(ticks(core, 10)) if m.dst == "n3"]


@pytest.mark.parametrize("pre_vote", [True, False])
def test_a_removed_server_cannot_disrupt_a_follower_that_hears_its_leader(pre_vote):
    core = new_core("n2", pre_vote=pre_vote, check_quorum=True)
    core.step(append("n1", "n2", 3, 0, 0, [Entry(1, 3, NOOP)], commit=1))
    drain(core)
    kind = PRE_VOTE if pre_vote else REQUEST_VOTE
    core.step(Message(kind, "n3", "n2", 9, last_log_index=50, last_log_term=8))
    answers = messages(drain(core))
    assert core.term == 3 and core.leader == "n1"
    assert not [m for m in answers if m.granted]


# -- ReadIndex across changes ----------------------------------------------------------------------

def read_confirmed(core, ctx, ackers):
    core.read_index(ctx)
    rounds = [m.context for m in messages(drain(core), APPEND)]
    done = []
    for peer in ackers:
        core.step(ack(peer, "n1", core.term, core.last_log_index, context=max(rounds)))
        done += [rs.ctx for rd in drain(core) for rs in rd.read_states]
    return ctx in done


def test_read_acknowledgements_count_in_the_configuration_in_force():
    core = leader()
    committed_change(core, add("n4", 4), ["n2", "n3"])
    acks_from(core, ["n4"])
    assert not read_confirmed(core, "learner-only", ["n4"])   # a learner's ack proves nothing
    committed_change(core, ConfChange(PROMOTE, "n4"), ["n2", "n3", "n4"])
    assert not read_confirmed(core, "one-of-four", ["n4"])    # 2 of 4 voters
    assert read_confirmed(core, "two-of-four", ["n4", "n2"])  # 3 of 4


# -- snapshots carry the configuration -------------------------------------------------------------

def test_a_snapshot_carries_the_configuration_and_a_new_learner_installs_both():
    core = leader(snapshot_chunk_bytes=64)
    committed_change(core, add("n4", 4), ["n2", "n3"])
    applied = core.applied_index
    core.compact(applied, pack_snapshot(core.configuration_at(applied), b'{"state": "of the kv"}'))
    committed_change(core, add("n5", 5), ["n2", "n3"])
    joiner = new_core("n5", peers=[])
    for _ in range(60):        # leader <-> joiner until the joiner holds everything
        core.tick()
        for rd in drain(core):
            for m in rd.messages:
                if m.dst == "n5":
                    joiner.step(m)
        for rd in drain(joiner):
            for m in rd.messages:
                core.step(m)
        if joiner.last_log_index == core.last_log_index:
            break
    assert joiner.snapshot_index == applied
    assert joiner.configuration_at(applied) == core.configuration_at(applied)
    assert joiner.configuration == core.configuration and joiner.configuration.learners == {"n4", "n5"}


def test_a_change_while_a_snapshot_is_on_its_way_to_that_learner():
    core = leader(snapshot_chunk_bytes=16)
    for i in range(5):
        core.propose({"op": "put", "key": "k", "value": i})
    drain(core)
    acks_from(core, ["n2", "n3"])
    core.compact(core.applied_index, pack_snapshot(core.configuration, b"x" * 200))
    core.propose_conf_change(add("n4", 4))
    probe = [m for m in messages(drain(core), APPEND) if m.dst == "n4"]
    acks_from(core, ["n2", "n3"])
    core.step(Message(APPEND_RESP, "n4", "n1", core.term, success=False, conflict_index=1,
                      prev_log_index=probe[0].prev_log_index))
    chunks = messages(drain(core), SNAPSHOT)
    assert core.progress["n4"].state == "snapshot" and [m.offset for m in chunks] == [0]
    # promoting it now is refused; removing it is not, and stops the transfer once committed
    assert refusal(lambda: core.propose_conf_change(ConfChange(PROMOTE, "n4"))) == "not_caught_up"
    core.step(Message(SNAPSHOT_RESP, "n4", "n1", core.term, success=True, offset=16,
                      snapshot_index=core.snapshot_index))
    assert [m.offset for m in messages(drain(core), SNAPSHOT)] == [16]
    committed_change(core, ConfChange(REMOVE, "n4"), ["n2", "n3"])
    assert "n4" not in core.progress
    core.step(Message(SNAPSHOT_RESP, "n4", "n1", core.term, success=True, offset=32,
                      snapshot_index=core.snapshot_index))
    assert not [m for m in messages(drain(core) + ticks(core, 20)) if m.dst == "n4"]
    assert core.role == LEADER and core.configuration.retired == {"n4"}


def test_a_restarted_node_recovers_its_configuration_from_its_log_and_snapshot():
    grown = BOOT.apply(add("n4", 4))
    smaller = grown.apply(ConfChange(REMOVE, "n3"))
    entries = [Entry(3, 1, NOOP), config_entry(4, 1, smaller)]
    state = StorageState(HardState(1), entries, snapshot_index=2, snapshot_term=1,
                         snapshot_data=pack_snapshot(grown, b"{}"))
    core = RaftCore(Config("n2", PEERS), state, random.Random(0))
    assert core.configuration == smaller and core.configuration_at(2) == grown
    assert core.configuration_at(3) == grown and core.configuration_at(4) == smaller
