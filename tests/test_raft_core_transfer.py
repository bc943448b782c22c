"""Leadership transfer (thesis §3.10, TimeoutNow) in the core: the leader catches the target up
first, takes no proposals meanwhile, and gives up after an election timeout; the target
campaigns at once without pre-vote, and voters still inside the old leader's lease grant that
election (as etcd's campaignTransfer), with pre-vote and check-quorum both on."""

import random

import pytest
from raftnode.core import RaftCore
from raftnode.membership import ADD_LEARNER, ChangeRefused, ConfChange
from raftnode.sim.manual import ack, append, drain, events, make_leader, messages
from raftnode.types import (
    LEADER,
    NOOP,
    PRE_VOTE,
    REQUEST_VOTE,
    REQUEST_VOTE_RESP,
    TIMEOUT_NOW,
    Config,
    Entry,
    HardState,
    Message,
    StorageState,
    TransferInProgress,
)

PEERS = ["n1", "n2", "n3"]


def new_core(node="n1", **config):
    config.setdefault("pre_vote", True)
    config.setdefault("check_quorum", True)
    return RaftCore(Config(node, PEERS, **config), StorageState(HardState()), random.Random(0))


def leader():
    core = make_leader(new_core())
    for peer in ("n2", "n3"):
        core.step(ack(peer, "n1", core.term, core.last_log_index))
        drain(core)
    return core


def refusal(call):
    with pytest.raises(ChangeRefused) as info:
        call()
    return info.value.code


def test_timeout_now_goes_only_once_the_target_holds_the_whole_log():
    core = leader()
    core.propose({"op": "put", "key": "k", "value": 1})
    drain(core)
    core.step(ack("n3", "n1", core.term, core.last_log_index))
    drain(core)
    assert core.transfer_leadership("n2") == "n2"
    assert not messages(drain(core), TIMEOUT_NOW)   # n2 has not acknowledged the put yet
    core.step(ack("n2", "n1", core.term, core.last_log_index))
    assert [m.dst for m in messages(drain(core), TIMEOUT_NOW)] == ["n2"]


def test_the_leader_takes_no_proposals_and_no_changes_during_a_transfer():
    core = leader()
    core.transfer_leadership("n2")
    drain(core)
    with pytest.raises(TransferInProgress):
        core.propose({"op": "put", "key": "k", "value": 1})
    with pytest.raises(TransferInProgress):
        core.propose_conf_change(ConfChange(ADD_LEARNER, "n4", "127.0.0.1:9004", "127.0.0.1:8004", "i4"))
    assert refusal(lambda: core.transfer_leadership("n3")) == "transfer_in_progress"


def test_a_transfer_that_does_not_complete_aborts_after_an_election_timeout():
    core = leader()
    core.transfer_leadership("n2")
    out = drain(core)
    for _ in range(core.election_ticks_min + core.heartbeat_ticks):
        core.tick()
        for peer in ("n2", "n3"):   # the followers stay in touch: no check-quorum step-down
            core.step(ack(peer, "n1", core.term, core.last_log_index))
        out += drain(core)
    assert core.role == LEADER and core.transferring_to is None
    assert [e.detail["phase"] for e in events(out, "transfer")][-1] == "aborted"
    core.propose({"op": "put", "key": "k", "value": 2})   # proposals are taken again


def test_illegal_targets_are_refused():
    core = leader()
    assert refusal(lambda: core.transfer_leadership("n1")) == "already_leader"
    assert refusal(lambda: core.transfer_leadership("n9")) == "not_a_voter"
    lonely = make_leader(RaftCore(Config("n1", ["n1"]), StorageState(HardState()), random.Random(0)))
    assert refusal(lambda: lonely.transfer_leadership()) == "no_transferee"


def test_without_a_target_the_most_up_to_date_voter_is_chosen():
    core = leader()
    core.propose({"op": "put", "key": "k", "value": 1})
    drain(core)
    core.step(ack("n3", "n1", core.term, core.last_log_index))
    drain(core)
    assert core.transfer_leadership() == "n3"


def test_the_target_campaigns_at_once_without_pre_vote():
    core = new_core("n2")
    core.step(append("n1", "n2", 1, 0, 0, [Entry(1, 1, NOOP)], commit=1))
    drain(core)
    core.step(Message(TIMEOUT_NOW, "n1", "n2", 1, needs_persist=False))
    sent = messages(drain(core))
    assert not [m for m in sent if m.kind == PRE_VOTE]
    votes = [m for m in sent if m.kind == REQUEST_VOTE]
    assert {m.dst for m in votes} == {"n1", "n3"} and all(m.transfer for m in votes) and core.term == 2


def test_a_voter_inside_the_leaders_lease_grants_the_transfer_election_and_drops_others():
    def fresh_follower():
        core = new_core("n3")
        core.step(append("n1", "n3", 1, 0, 0, [Entry(1, 1, NOOP)], commit=1))
        drain(core)
        return core

    ordinary = fresh_follower()
    ordinary.step(Message(REQUEST_VOTE, "n2", "n3", 2, last_log_index=1, last_log_term=1))
    assert not messages(drain(ordinary)) and ordinary.term == 1       # inside the lease: dropped
    transfer = fresh_follower()
    transfer.step(Message(REQUEST_VOTE, "n2", "n3", 2, last_log_index=1, last_log_term=1, transfer=True))
    assert [m.granted for m in messages(drain(transfer), REQUEST_VOTE_RESP)] == [True]
    assert transfer.term == 2


def test_a_learner_or_a_node_outside_the_configuration_ignores_timeout_now():
    core = RaftCore(Config("n4", []), StorageState(HardState()), random.Random(0))
    core.step(Message(TIMEOUT_NOW, "n1", "n4", 1, needs_persist=False))
    assert not messages(drain(core), REQUEST_VOTE) and core.term == 1
