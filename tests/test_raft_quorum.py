"""The quorum maths (raftnode.quorum): one majority configuration answers every "is it a
majority" question the core asks (commit index, elections, check-quorum, ReadIndex rounds)."""

import pytest
from raftnode.quorum import VOTE_LOST, VOTE_PENDING, VOTE_WON, MajorityConfig


def test_the_committed_index_is_the_highest_index_a_majority_holds():
    three = MajorityConfig(["a", "b", "c"])
    assert three.committed_index([5, 3, 1]) == 3
    assert three.committed_index([1, 5, 3]) == 3
    assert MajorityConfig(["a", "b", "c", "d"]).committed_index([9, 7, 2, 1]) == 2   # 3 of 4
    assert MajorityConfig(["a", "b", "c", "d", "e"]).committed_index([9, 8, 7, 0, 0]) == 7
    assert MajorityConfig(["a"]).committed_index([4]) == 4


def test_the_committed_index_needs_one_number_per_voter():
    with pytest.raises(ValueError, match="2 acknowledged indexes for 3 voters"):
        MajorityConfig(["a", "b", "c"]).committed_index([1, 2])
    assert MajorityConfig([]).committed_index([]) == 0


def test_an_election_is_won_by_a_majority_and_lost_once_a_majority_is_out_of_reach():
    five = MajorityConfig(["a", "b", "c", "d", "e"])
    assert five.vote_result({"a": True, "b": True}) == VOTE_PENDING
    assert five.vote_result({"a": True, "b": True, "c": True}) == VOTE_WON
    assert five.vote_result({"a": True, "b": False, "c": False}) == VOTE_PENDING
    assert five.vote_result({"a": True, "b": False, "c": False, "d": False}) == VOTE_LOST


def test_answers_from_non_voters_do_not_count():
    three = MajorityConfig(["a", "b", "c"])
    assert three.vote_result({"a": True, "learner": True, "gone": True}) == VOTE_PENDING
    assert three.vote_result({"a": True, "x": False, "y": False}) == VOTE_PENDING
    assert MajorityConfig([]).vote_result({"a": True}) == VOTE_LOST


def test_check_quorum_counts_distinct_voters_only():
    three = MajorityConfig(["a", "b", "c"])
    assert three.has_quorum(["a", "b"])
    assert not three.has_quorum(["a", "a", "learner"])
    assert not MajorityConfig([]).has_quorum([])
    # one voter added: 4 voters need 3 (the majorities of 3 and of 4 voters overlap)
    assert not MajorityConfig(["a", "b", "c", "d"]).has_quorum(["a", "b"])
