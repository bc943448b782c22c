"""Figure 8 scenarios: leaders crash right after appending entries they could not commit.

Raft paper, Figure 8: a leader must never count replicas of an earlier term's entry as a commit.
These runs crash leaders at random moments (optionally on a lossy, reordering network) and the
simulator's checks (state machine safety, leader completeness, acknowledged writes) must hold.
"""

from raftnode.sim.lab import Lab


def _figure8(lab, iterations, unreliable):
    rng = lab.rng
    lab.one(lab.token(), 1)
    for _ in range(iterations):
        leader = None
        for i in lab.ids:
            if lab.nodes[i].up and lab.start_command(i, lab.token()) is not None:
                leader = i
        if rng.random() < 0.1:
            lab.run_for(rng.uniform(0, 0.075))
        else:
            lab.run_for(rng.uniform(0, 0.013))
        if leader is not None:
            if unreliable and rng.random() < 0.5:
                lab.disconnect(leader)
            else:
                lab.crash(leader)
        if len(lab.connected_up()) < 3:
            s = rng.choice(lab.ids)
            if not lab.nodes[s].up:
                lab.start(s)
            if s in lab.disconnected:
                lab.connect(s)
    for i in lab.ids:
        if not lab.nodes[i].up:
            lab.start(i)
        lab.connect(i)
    lab.set_unreliable(False)
    lab.one(lab.token(), len(lab.ids))
    lab.checker.final()


def test_figure8_leaders_crashing_after_append_never_lose_a_committed_entry():
    _figure8(Lab(5, seed=8), iterations=1000, unreliable=False)


def test_figure8_on_an_unreliable_network():
    _figure8(Lab(5, seed=9, reliable=False), iterations=1000, unreliable=True)


def test_figure8_with_one_entry_per_append_and_no_pre_vote():
    lab = Lab(5, seed=10, config_overrides={"max_entries_per_append": 1, "pre_vote": False,
                                            "check_quorum": False})
    _figure8(lab, iterations=1000, unreliable=False)
