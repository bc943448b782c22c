"""A node whose log went backwards below what it had made durable (and so may have acknowledged)
does not vote, for others or for itself, until it has caught up: the storage keeps that index in
the hard state ("acked"), the core refuses to grant RequestVote and PreVote and to campaign."""

import json
import random

from raftnode.core import RaftCore
from raftnode.sim.manual import append, drain, entry, messages
from raftnode.storage import Storage
from raftnode.types import (CANDIDATE, FOLLOWER, PRE_CANDIDATE, PRE_VOTE, PRE_VOTE_RESP, REQUEST_VOTE,
                            REQUEST_VOTE_RESP, COMMAND, Config, Entry, HardState, Message, StorageState)

PEERS = ["n1", "n2", "n3"]


def core_with(log_len, acked, term=2, seed=0, **config):
    entries = [Entry(i, 1, COMMAND, {"op": "put", "key": "k", "value": i}) for i in range(1, log_len + 1)]
    state = StorageState(HardState(term, None, 0, acked), entries)
    return RaftCore(Config("n1", PEERS, **config), state, random.Random(seed))


def vote_request(kind, term, last_index, last_term=1):
    return Message(kind, "n2", "n1", term, last_log_index=last_index, last_log_term=last_term)


def answers(core, kind):
    return [m.granted for m in messages(drain(core), kind)]


def test_a_node_behind_its_acknowledged_index_grants_no_vote_to_an_up_to_date_candidate():
    core = core_with(log_len=7, acked=10)
    core.step(vote_request(REQUEST_VOTE, 3, last_index=7))
    assert answers(core, REQUEST_VOTE_RESP) == [False]
    assert core.voted_for is None


def test_it_grants_no_pre_vote_either():
    core = core_with(log_len=7, acked=10)
    core.step(vote_request(PRE_VOTE, 3, last_index=9))
    assert answers(core, PRE_VOTE_RESP) == [False]


def test_it_does_not_campaign_however_long_it_hears_nobody():
    for pre_vote in (True, False):
        core = core_with(log_len=7, acked=10, pre_vote=pre_vote)
        for _ in range(200):
            core.tick()
        readies = drain(core)
        assert core.role == FOLLOWER and core.role not in (CANDIDATE, PRE_CANDIDATE)
        assert not messages(readies, REQUEST_VOTE) and not messages(readies, PRE_VOTE)


def test_once_caught_up_by_a_leader_it_votes_again():
    # (without check-quorum, which makes a follower that just heard a leader ignore votes)
    core = core_with(log_len=7, acked=10, check_quorum=False, pre_vote=False)
    core.step(append("n2", "n1", 2, 7, 1, [entry(i, 2) for i in range(8, 11)], commit=10))
    drain(core)  # persisted: the log reaches index 10 again
    core.step(vote_request(REQUEST_VOTE, 3, last_index=10, last_term=2))
    assert answers(core, REQUEST_VOTE_RESP) == [True]


def test_a_log_at_or_above_the_mark_votes_as_usual():
    core = core_with(log_len=10, acked=10)
    core.step(vote_request(REQUEST_VOTE, 3, last_index=10))
    assert answers(core, REQUEST_VOTE_RESP) == [True]


def test_a_single_node_cluster_has_nobody_to_catch_up_from_and_still_elects_itself():
    entries = [Entry(1, 1, COMMAND, None)]
    core = RaftCore(Config("n1", ["n1"]), StorageState(HardState(1, None, 0, 5), entries), random.Random(0))
    for _ in range(100):
        core.tick()
    drain(core)
    assert core.role == "leader"


# -- the storage's side: the mark in the hard state -----------------------------------------------

def stored(folder):
    with open(folder / "hardstate.json") as f:
        return json.load(f)


def entries(first, last, term=1):
    return [Entry(i, term, COMMAND, {"op": "put", "key": "k", "value": i}) for i in range(first, last + 1)]


def test_the_storage_records_the_durable_log_end_and_a_truncated_log_is_found_below_it(tmp_path):
    storage = Storage(str(tmp_path), acked_mark_interval=0.0)
    storage.load()
    storage.persist(HardState(1, "n1"), None, entries(1, 20))
    storage.close()
    segment = sorted(p for p in tmp_path.iterdir() if p.suffix == ".seg")[-1]
    reopened = Storage(str(tmp_path))
    state = reopened.load()
    reopened.close()
    assert state.hard_state.acked == 20 and state.entries[-1].index == 20
    # the truncate-file fault: the newest segment loses its tail (here: all but the magic)
    with open(segment, "r+b") as f:
        f.truncate(8)
    state = Storage(str(tmp_path)).load()
    assert state.entries == [] and state.hard_state.acked == 20


def test_a_legitimate_truncation_lowers_the_mark_before_it_is_written(tmp_path):
    storage = Storage(str(tmp_path), acked_mark_interval=0.0)
    storage.load()
    storage.persist(HardState(1, None), None, entries(1, 10))
    assert stored(tmp_path)["acked"] == 10
    writes = []
    real = storage._write_hard_state
    storage._write_hard_state = lambda hs: (writes.append(storage._acked_mark), real(hs))
    storage.persist(HardState(2, "n2"), 6, entries(6, 7, term=2))
    assert writes[0] == 5  # lowered to the kept prefix before the truncating record
    assert stored(tmp_path)["acked"] == 7
    storage.close()
    state = Storage(str(tmp_path)).load()
    assert state.hard_state.acked == 7 and state.entries[-1].index == 7


def test_the_mark_is_raised_at_most_once_per_interval(tmp_path):
    now = [0.0]
    storage = Storage(str(tmp_path), acked_mark_interval=0.2, clock=lambda: now[0])
    storage.load()
    storage.persist(HardState(1, "n1"), None, entries(1, 1))
    before = storage.fsyncs
    for i in range(2, 50):
        storage.persist(None, None, entries(i, i))
    assert storage.fsyncs - before == 48  # one log fsync each, no hard-state rewrite
    now[0] = 0.25
    storage.persist(None, None, entries(50, 50))
    assert storage.fsyncs - before == 48 + 1 + 2 and stored(tmp_path)["acked"] == 50
