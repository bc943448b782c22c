"""Log agreement scenarios (6.5840 lab 3B style) on the deterministic simulator."""

import pytest

from raftnode.sim.lab import Lab, LabError
from raftnode.types import APPEND, APPEND_RESP


def test_basic_agreement_commits_each_command_on_every_node_in_order():
    lab = Lab(3)
    previous = 0
    for _ in range(3):
        value = lab.token()
        assert lab.n_committed(previous + 1)[0] == 0 or previous == 0
        index = lab.one(value, 3, retry=False)
        assert index > previous
        previous = index


def test_agreement_continues_with_a_failed_follower_and_it_catches_up():
    lab = Lab(3)
    lab.one(lab.token(), 3)
    leader = lab.check_one_leader()
    follower = next(i for i in lab.ids if i != leader)
    lab.disconnect(follower)
    for _ in range(4):
        lab.one(lab.token(), 2)
    lab.connect(follower)
    index = lab.one(lab.token(), 3)
    assert lab.nodes[follower].kv.last_applied >= index


def test_no_agreement_without_a_majority():
    lab = Lab(5)
    lab.one(lab.token(), 5)
    leader = lab.check_one_leader()
    followers = [i for i in lab.ids if i != leader][:3]
    for f in followers:
        lab.disconnect(f)
    started = lab.start_command(leader, "lonely")
    assert started is not None
    index, _ = started
    lab.run_for(2.0)
    assert lab.n_committed(index)[0] == 0, "committed without a majority"
    for f in followers:
        lab.connect(f)
    # The uncommitted command may be kept or replaced; agreement resumes either way.
    lab.check_one_leader()
    lab.one(lab.token(), 5)


def test_concurrent_proposals_all_commit_in_one_order():
    lab = Lab(3)
    leader = lab.check_one_leader()
    values = [f"c{i}" for i in range(20)]
    indices = [lab.start_command(leader, v)[0] for v in values]
    assert indices == list(range(indices[0], indices[0] + 20))
    assert lab.wait_until(lambda: lab.n_committed(indices[-1])[0] == 3, 3.0)
    assert [lab.n_committed(i)[1] for i in indices] == values


def test_a_partitioned_leader_rejoins_and_its_uncommitted_entries_are_replaced():
    lab = Lab(3)
    lab.one("101", 3)
    leader1 = lab.check_one_leader()
    lab.disconnect(leader1)
    for v in ("102", "103", "104"):
        lab.start_command(leader1, v)        # never committed
    lab.one("103b", 2)
    leader2 = lab.check_one_leader()
    lab.disconnect(leader2)
    lab.connect(leader1)
    lab.one("104b", 2)
    lab.connect(leader2)
    index = lab.one("105", 3)
    applied = [lab.applied_value(lab.ids[0], i) for i in range(1, index + 1)]
    assert "102" not in applied and "103b" in applied and "104b" in applied


def test_backup_over_fifty_conflicting_entries_converges_quickly():
    lab = Lab(5, seed=3)
    lab.one(lab.token(), 5)
    ids = lab.ids
    leader1 = lab.check_one_leader()
    l1 = ids.index(leader1)

    def at(k):
        return ids[(l1 + k) % 5]

    # The leader and one follower are cut off; they accept 50 entries that never commit.
    for k in (2, 3, 4):
        lab.disconnect(at(k))
    for i in range(50):
        lab.start_command(leader1, f"doomed{i}")
    lab.run_for(0.5)
    lab.disconnect(leader1)
    lab.disconnect(at(1))
    # The other three commit 50 entries of their own.
    for k in (2, 3, 4):
        lab.connect(at(k))
    for i in range(50):
        lab.one(f"good{i}", 3)
    # Another partitioned leader with one follower accepts 50 more doomed entries.
    leader2 = lab.check_one_leader()
    other = at(2) if leader2 != at(2) else ids[(ids.index(leader2) + 1) % 5]
    lab.disconnect(other)
    for i in range(50):
        lab.start_command(leader2, f"doomed2-{i}")
    lab.run_for(0.5)
    # The first leader, its follower and `other` form a majority: they must back up 50+ entries.
    for i in ids:
        lab.disconnect(i)
    for node in (leader1, at(1), other):
        lab.connect(node)
    for i in range(50):
        lab.one(f"better{i}", 3)
    for i in ids:
        lab.connect(i)
    started = lab.now
    index = lab.one("final", 5)
    assert lab.now - started < 3_000_000, "backing up over 50+ conflicting entries took too long"
    values = [lab.applied_value(leader2, i) for i in range(1, index + 1)]
    assert not any(v and v.startswith("doomed") for v in values)
    assert sum(1 for v in values if v and v.startswith("good")) == 50
    assert sum(1 for v in values if v and v.startswith("better")) == 50


def _append_rpcs(lab, sender):
    return lab.nodes[sender].sent.get(APPEND, 0)


def test_an_idle_cluster_sends_only_heartbeats_at_most_one_per_follower_per_interval():
    lab = Lab(3)
    leader = lab.check_one_leader()
    lab.one(lab.token(), 3)
    lab.run_for(0.5)
    before = {i: dict(lab.nodes[i].sent) for i in lab.ids}
    seconds = 2.0
    lab.run_for(seconds)
    assert lab.check_one_leader() == leader
    heartbeat_s = 0.05
    for i in lab.ids:
        sent = {k: v - before[i].get(k, 0) for k, v in lab.nodes[i].sent.items()}
        if i == leader:
            assert set(k for k, v in sent.items() if v) == {APPEND}
            assert sent[APPEND] <= (seconds / heartbeat_s + 1) * 2, sent
        else:
            assert set(k for k, v in sent.items() if v) <= {APPEND_RESP}


def test_agreeing_on_one_command_costs_a_small_bounded_number_of_rpcs_per_follower():
    lab = Lab(3)
    leader = lab.check_one_leader()
    lab.one(lab.token(), 3)
    lab.run_for(0.2)
    before = sum(sum(n.sent.values()) for n in lab.nodes.values())
    started = lab.now
    commands = 10
    for _ in range(commands):
        lab.one(lab.token(), 3)
    elapsed = (lab.now - started) / 1e6
    total = sum(sum(n.sent.values()) for n in lab.nodes.values()) - before
    heartbeats = (elapsed / 0.05 + 1) * 2 * 2   # two followers, request + response
    per_command_per_follower = (total - heartbeats) / commands / 2
    assert per_command_per_follower <= 3, f"{total} RPCs for {commands} commands in {elapsed:.2f}s"
    assert lab.check_one_leader() == leader


def test_unreliable_network_agreement():
    lab = Lab(5, reliable=False)
    for _ in range(30):
        lab.one(lab.token(), 1)
    lab.set_unreliable(False)
    lab.one(lab.token(), 5)


def test_one_raises_when_no_agreement_is_possible():
    lab = Lab(3)
    lab.check_one_leader()
    for i in lab.ids[:2]:
        lab.disconnect(i)
    with pytest.raises(LabError):
        lab.one("x", 2, timeout=2.0)
