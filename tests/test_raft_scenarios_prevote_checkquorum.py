"""Pre-vote and check-quorum (Raft thesis 9.6): rejoining nodes do not disrupt, isolated leaders resign."""


from raftnode.sim.lab import Lab
from raftnode.types import FOLLOWER, LEADER, PRE_CANDIDATE, PRE_VOTE, PRE_VOTE_RESP


def _rejoin(pre_vote):
    lab = Lab(3, config_overrides={"pre_vote": pre_vote})
    leader = lab.check_one_leader()
    lab.one("x", 3)
    term = lab.check_terms()
    follower = next(i for i in lab.ids if i != leader)
    lab.disconnect(follower)
    lab.run_for(2.0)
    lab.connect(follower)
    lab.run_for(1.0)
    lab.one("y", 3)
    return lab, leader, term, follower


def test_with_pre_vote_a_rejoining_partitioned_node_does_not_raise_the_term():
    lab, leader, term, follower = _rejoin(pre_vote=True)
    assert lab.check_terms() == term
    assert lab.check_one_leader() == leader
    assert lab.nodes[follower].sent.get(PRE_VOTE, 0) > 0, "the isolated node never tried"


def test_without_pre_vote_a_rejoining_partitioned_node_disrupts_the_cluster():
    lab, leader, term, follower = _rejoin(pre_vote=False)
    assert lab.check_terms() > term + 1


def test_pre_vote_requests_and_grants_never_change_term_vote_or_role():
    lab = Lab(3)
    leader = lab.check_one_leader()
    lab.one("x", 3)
    follower = next(i for i in lab.ids if i != leader)
    lab.disconnect(follower)
    assert lab.wait_until(lambda: lab.nodes[follower].core.role == PRE_CANDIDATE, 1.0)
    lab.run_for(1.0)
    core = lab.nodes[follower].core
    assert core.role in (FOLLOWER, PRE_CANDIDATE)
    before = {i: (lab.nodes[i].core.term, lab.nodes[i].core.voted_for, lab.nodes[i].core.role)
              for i in lab.ids}
    # Deliver its pre-votes to the others, but cut the leader's heartbeats to the rejoiner.
    lab.connect(follower)
    lab.cut.add((leader, follower))
    lab.run_for(0.5)
    after = {i: (lab.nodes[i].core.term, lab.nodes[i].core.voted_for, lab.nodes[i].core.role)
             for i in lab.ids if i != follower}
    assert after == {i: v for i, v in before.items() if i != follower}
    assert lab.stats.messages.get(PRE_VOTE_RESP, 0) > 0


def test_with_check_quorum_an_isolated_leader_steps_down():
    lab = Lab(5)
    leader = lab.check_one_leader()
    lab.disconnect(leader)
    # Within two minimum election timeouts (its check period) it must resign.
    assert lab.wait_until(lambda: lab.nodes[leader].core.role == FOLLOWER, 0.35)
    lab.connect(leader)
    lab.check_one_leader()


def test_without_check_quorum_an_isolated_leader_keeps_believing_it_leads():
    lab = Lab(5, config_overrides={"check_quorum": False})
    leader = lab.check_one_leader()
    lab.disconnect(leader)
    lab.run_for(2.0)
    assert lab.nodes[leader].core.role == LEADER


def test_with_check_quorum_a_node_that_heard_a_live_leader_ignores_request_vote():
    lab = Lab(3, config_overrides={"pre_vote": False})
    leader = lab.check_one_leader()
    lab.one("x", 3)
    term = lab.check_terms()
    # A disruptive candidate that can reach the followers but not hear the leader.
    follower = next(i for i in lab.ids if i != leader)
    other = next(i for i in lab.ids if i not in (leader, follower))
    lab.cut.add((leader, follower))
    lab.run_for(1.0)
    assert lab.nodes[follower].core.term > term       # it campaigned (no pre-vote)...
    assert lab.nodes[other].core.term == term         # ...but `other` ignored it
    assert lab.nodes[leader].core.role == LEADER
