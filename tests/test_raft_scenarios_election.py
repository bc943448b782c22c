"""Leader election scenarios (6.5840 lab 3A style) on the deterministic simulator."""

from raftnode.sim.lab import Lab
from raftnode.types import CANDIDATE, FOLLOWER, LEADER


def test_initial_election_elects_one_leader_and_keeps_it_while_nothing_fails():
    lab = Lab(3)
    lab.check_one_leader()
    term = lab.check_terms()
    assert term >= 1
    lab.run_for(2.0)
    assert lab.check_terms() == term, "the term changed although nothing failed"
    lab.check_one_leader()


def test_a_new_leader_is_elected_when_the_leader_disconnects_and_a_majority_is_needed():
    lab = Lab(3)
    leader1 = lab.check_one_leader()
    lab.disconnect(leader1)
    leader2 = lab.check_one_leader()
    assert leader2 != leader1
    # The old leader rejoins: it must not disturb the new one.
    lab.connect(leader1)
    assert lab.check_one_leader() == leader2
    # No quorum: no leader may be elected.
    lab.disconnect(leader2)
    other = next(i for i in lab.ids if i != leader2 and i in lab.connected_up())
    lab.disconnect(other)
    lab.run_for(2.0)
    lab.check_no_leader()
    # A quorum again.
    lab.connect(other)
    lab.check_one_leader()
    lab.connect(leader2)
    lab.check_one_leader()


def test_many_elections_with_three_of_seven_disconnected_at_a_time():
    lab = Lab(7, seed=7)
    lab.check_one_leader()
    rng = lab.rng
    for _ in range(10):
        victims = rng.sample(lab.ids, 3)
        for v in victims:
            lab.disconnect(v)
        lab.check_one_leader()
        for v in victims:
            lab.connect(v)
    lab.check_one_leader()


def test_without_pre_vote_a_rejoining_candidate_with_a_higher_term_forces_a_new_election():
    lab = Lab(3, config_overrides={"pre_vote": False, "check_quorum": False})
    leader = lab.check_one_leader()
    follower = next(i for i in lab.ids if i != leader)
    lab.disconnect(follower)
    assert lab.wait_until(lambda: lab.nodes[follower].core.role == CANDIDATE, 2.0)
    lab.connect(follower)
    # Its higher term deposes the leader (no pre-vote here); afterwards exactly one leader leads.
    lab.check_one_leader()
    lab.run_for(1.0)
    roles = sorted(lab.nodes[i].core.role for i in lab.ids)
    assert roles == [FOLLOWER, FOLLOWER, LEADER]


def test_election_events_name_role_term_vote_and_result():
    lab = Lab(3)
    seen = []
    original = lab._events

    def spy(node, rd):
        seen.extend((node.id, ev.kind, ev.detail) for ev in rd.events)
        original(node, rd)

    lab._events = spy
    leader = lab.check_one_leader()
    kinds = {kind for _, kind, _ in seen}
    assert {"role", "term", "vote", "election_won"} <= kinds
    won = [d for n, kind, d in seen if kind == "election_won" and n == leader]
    assert won and len(won[-1]["votes"]) >= 2
    lab.one(lab.token(), 3)
    assert any(kind == "commit" for _, kind, _ in seen)
