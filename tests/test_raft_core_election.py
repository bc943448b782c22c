"""Election rules of the pure core: timeouts, votes, terms, pre-vote, check-quorum."""

import pytest

from raftnode.core import RaftCore
from raftnode.types import (CANDIDATE, FOLLOWER, LEADER, NOOP, PRE_CANDIDATE, PRE_VOTE, PRE_VOTE_RESP,
                            REQUEST_VOTE, REQUEST_VOTE_RESP, Config, Message, StorageState)
from raftnode.sim.manual import (append, drain, events, make_core, make_leader, messages)


def vote_request(src, term, last_index=0, last_term=0, kind=REQUEST_VOTE):
    return Message(kind, src, "n1", term, last_log_index=last_index, last_log_term=last_term)


def test_everyone_starts_as_a_follower_of_the_persisted_term():
    core = make_core(term=4, voted_for="n2")
    assert (core.role, core.term, core.voted_for, core.leader) == (FOLLOWER, 4, "n2", None)


def test_the_election_timeout_is_randomized_within_the_configured_range():
    timeouts = set()
    for seed in range(40):
        core = make_core(seed=seed, pre_vote=False)
        ticks = 0
        while core.role == FOLLOWER:
            core.tick()
            ticks += 1
        timeouts.add(ticks)
    assert min(timeouts) >= 15 and max(timeouts) <= 30 and len(timeouts) > 5


def test_a_candidate_increments_its_term_votes_for_itself_and_asks_everyone():
    core = make_core(term=2, log_terms=(1, 2), pre_vote=False)
    while core.role == FOLLOWER:
        core.tick()
    readies = drain(core)
    assert (core.role, core.term, core.voted_for) == (CANDIDATE, 3, "n1")
    requests = messages(readies, REQUEST_VOTE)
    assert sorted(m.dst for m in requests) == ["n2", "n3"]
    assert all(m.term == 3 and m.last_log_index == 2 and m.last_log_term == 2 and m.needs_persist
               for m in requests)
    assert readies[0].hard_state.term == 3 and readies[0].hard_state.voted_for == "n1"


def test_a_majority_of_votes_wins_and_the_new_leader_appends_a_noop_and_sends_heartbeats_at_once():
    core = make_core(term=1, log_terms=(1,), pre_vote=False)
    while core.role == FOLLOWER:
        core.tick()
    drain(core)
    core.step(Message(REQUEST_VOTE_RESP, "n2", "n1", 2, granted=True))
    readies = drain(core)
    assert core.role == LEADER and core.leader == "n1"
    assert core.log[-1].kind == NOOP and core.log[-1].term == 2 and core.log[-1].index == 2
    appends = messages(readies, "AppendEntries")
    assert sorted(m.dst for m in appends) == ["n2", "n3"]
    assert all(not m.needs_persist for m in appends)
    assert events(readies, "election_won")[0].detail == {"term": 2, "votes": ["n1", "n2"]}


def test_a_candidate_that_collects_a_majority_of_rejections_returns_to_follower():
    core = make_core(term=1, pre_vote=False)
    while core.role == FOLLOWER:
        core.tick()
    drain(core)
    core.step(Message(REQUEST_VOTE_RESP, "n2", "n1", 2, granted=False))
    core.step(Message(REQUEST_VOTE_RESP, "n3", "n1", 2, granted=False))
    assert core.role == FOLLOWER and core.term == 2
    assert events(drain(core), "election_lost")


def test_a_vote_is_granted_once_per_term():
    core = make_core(term=1)
    core.step(vote_request("n2", 2))
    core.step(vote_request("n3", 2))
    replies = messages(drain(core), REQUEST_VOTE_RESP)
    assert [(m.dst, m.granted) for m in replies] == [("n2", True), ("n3", False)]
    assert core.voted_for == "n2"
    # The same candidate asking again (a retransmission) is granted again.
    core.step(vote_request("n2", 2))
    assert messages(drain(core), REQUEST_VOTE_RESP)[0].granted


@pytest.mark.parametrize("cand_last_index, cand_last_term, granted", [
    (3, 2, True),    # same log
    (4, 2, True),    # longer, same last term
    (2, 2, False),   # shorter, same last term
    (1, 3, True),    # higher last term wins even when shorter
    (9, 1, False),   # lower last term loses even when longer
])
def test_votes_go_only_to_candidates_whose_log_is_at_least_as_up_to_date(cand_last_index, cand_last_term, granted):
    core = make_core(term=2, log_terms=(1, 2, 2))
    core.step(vote_request("n2", 3, cand_last_index, cand_last_term))
    reply = messages(drain(core), REQUEST_VOTE_RESP)[0]
    assert reply.granted is granted and reply.term == 3


def test_a_vote_grant_needs_the_vote_persisted_first_and_resets_the_election_timer():
    core = make_core(term=1)
    for _ in range(10):
        core.tick()
    core.step(vote_request("n2", 2))
    rd = core.ready()
    assert rd.hard_state.voted_for == "n2" and rd.hard_state.term == 2
    assert rd.messages[0].needs_persist and rd.messages[0].granted
    assert core.election_elapsed == 0


def test_any_message_with_a_higher_term_turns_a_leader_into_a_follower_of_that_term():
    core = make_leader(make_core(pre_vote=False, check_quorum=False))
    term = core.term
    core.step(Message("AppendEntriesResp", "n2", "n1", term + 3, success=False))
    assert (core.role, core.term, core.voted_for) == (FOLLOWER, term + 3, None)


def test_a_candidate_steps_down_when_it_hears_the_leader_of_its_own_term():
    core = make_core(term=1, pre_vote=False)
    while core.role == FOLLOWER:
        core.tick()
    drain(core)
    core.step(append("n2", "n1", core.term, 0, 0))
    assert core.role == FOLLOWER and core.leader == "n2" and core.term == 2


def test_stale_term_messages_are_answered_with_the_current_term_and_change_nothing():
    core = make_core(term=5)
    core.step(append("n2", "n1", 3, 0, 0))
    core.step(vote_request("n3", 4))
    replies = messages(drain(core))
    assert all(m.term == 5 and not m.success and not m.granted for m in replies)
    assert core.term == 5 and core.voted_for is None and core.leader is None


def test_the_election_timer_is_not_reset_by_a_rejected_vote_or_a_stale_leader():
    core = make_core(term=3, log_terms=(3, 3))
    for _ in range(10):
        core.tick()
    core.step(vote_request("n2", 3, 0, 0))      # same term, log behind: rejected
    core.step(append("n3", "n1", 2, 0, 0))      # stale leader
    assert core.election_elapsed == 10


# -- pre-vote ---------------------------------------------------------------------------------------

def test_pre_vote_asks_for_the_next_term_without_changing_its_own_term_or_vote():
    core = make_core(term=3, voted_for="n3")
    while core.role == FOLLOWER:
        core.tick()
    readies = drain(core)
    assert core.role == PRE_CANDIDATE and core.term == 3 and core.voted_for == "n3"
    pre = messages(readies, PRE_VOTE)
    assert len(pre) == 2 and all(m.term == 4 and not m.needs_persist for m in pre)
    assert all(rd.hard_state is None for rd in readies)


def test_a_pre_vote_majority_starts_the_real_election():
    core = make_core(term=3)
    while core.role == FOLLOWER:
        core.tick()
    drain(core)
    core.step(Message(PRE_VOTE_RESP, "n2", "n1", 4, granted=True))
    assert core.role == CANDIDATE and core.term == 4 and core.voted_for == "n1"


def test_granting_a_pre_vote_changes_nothing_on_the_voter():
    core = make_core(term=3, voted_for="n3")
    for _ in range(20):   # has not heard from a leader for a while
        core.tick()
    role = core.role
    core.step(vote_request("n2", 4, kind=PRE_VOTE))
    reply = messages(drain(core), PRE_VOTE_RESP)[-1]
    assert reply.granted and reply.term == 4 and not reply.needs_persist
    assert (core.term, core.voted_for) == (3, "n3") and core.role == role


def test_a_node_that_heard_from_a_live_leader_recently_refuses_pre_votes():
    core = make_core(term=3)
    core.step(append("n3", "n1", 3, 0, 0))
    core.step(vote_request("n2", 4, kind=PRE_VOTE))
    assert not messages(drain(core), PRE_VOTE_RESP)[-1].granted


def test_with_check_quorum_a_node_that_heard_from_a_live_leader_ignores_request_vote():
    core = make_core(term=3)
    core.step(append("n3", "n1", 3, 0, 0))
    core.step(vote_request("n2", 4))
    assert core.term == 3 and not messages(drain(core), REQUEST_VOTE_RESP)
    # After the minimum election timeout without the leader, it listens again.
    for _ in range(15):
        core.tick()
    core.step(vote_request("n2", 4))
    assert core.term == 4 and messages(drain(core), REQUEST_VOTE_RESP)[-1].granted


def test_check_quorum_makes_a_leader_without_majority_contact_step_down():
    core = make_leader(make_core())
    ticks = 0
    while core.role == LEADER and ticks < 100:
        core.tick()
        ticks += 1
    readies = drain(core)
    assert 15 <= ticks <= 30, "steps down within one check period after a silent election timeout"
    assert core.role == FOLLOWER and core.leader is None
    assert events(readies, "step_down")[0].detail["reason"] == "check_quorum"


def test_a_leader_hearing_from_a_majority_keeps_leading():
    core = make_leader(make_core())
    for i in range(100):
        core.tick()
        if i % 5 == 0:
            core.step(Message("AppendEntriesResp", "n2", "n1", core.term, success=True,
                              match_index=core.commit_index))
        drain(core)
    assert core.role == LEADER


def test_a_single_node_cluster_elects_itself_and_commits_after_its_own_fsync():
    core = RaftCore(Config("solo", ["solo"]), StorageState(), __import__("random").Random(1))
    while core.role != LEADER:
        core.tick()
    rd = core.ready()
    assert rd.entries and not rd.committed           # not durable yet: nothing committed
    core.advance(rd)
    assert core.ready().committed[0].kind == NOOP
