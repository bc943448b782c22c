"""Persistence scenarios (6.5840 lab 3C style): crashes lose nothing committed or promised."""

from raftnode.sim.lab import Lab


def test_agreement_continues_after_crash_and_restart_of_all_nodes():
    lab = Lab(3)
    lab.one("11", 3)
    for i in lab.ids:
        lab.crash(i)
    for i in lab.ids:
        lab.start(i)
    lab.one("12", 3)
    index = lab.one("13", 3)
    applied = [lab.applied_value(lab.ids[0], i) for i in range(1, index + 1)]
    assert [v for v in applied if v] == ["11", "12", "13"]


def test_agreement_continues_after_crash_and_restart_of_the_leader():
    lab = Lab(3)
    lab.one("a", 3)
    leader = lab.check_one_leader()
    lab.restart(leader)
    lab.one("b", 3)
    leader = lab.check_one_leader()
    lab.crash(leader)
    lab.one("c", 2)
    lab.start(leader)
    lab.one("d", 3)


def test_agreement_continues_after_crash_and_restart_of_a_minority():
    lab = Lab(5)
    lab.one(lab.token(), 5)
    for _ in range(5):
        leader = lab.check_one_leader()
        victims = [i for i in lab.ids if i != leader][:2]
        for v in victims:
            lab.crash(v)
        lab.one(lab.token(), 3)
        for v in victims:
            lab.start(v)
        lab.one(lab.token(), 5)


def test_repeated_crashes_of_a_majority_lose_no_committed_entry():
    lab = Lab(5, seed=11)
    committed = []
    for iteration in range(8):
        committed.append(lab.one(f"v{iteration}", 5))
        leader = lab.check_one_leader()
        down = [leader] + [i for i in lab.ids if i != leader][:2]
        for v in down:
            lab.crash(v)
        lab.run_for(0.3)
        for v in down:
            lab.start(v)
    final = lab.one("final", 5)
    for index, value in zip(committed, [f"v{i}" for i in range(8)], strict=True):
        assert lab.applied_value(lab.ids[0], index) == value
    assert final > committed[-1]


def test_a_restarted_node_remembers_term_and_vote():
    lab = Lab(3)
    leader = lab.check_one_leader()
    lab.one("x", 3)
    follower = next(i for i in lab.ids if i != leader)
    core = lab.nodes[follower].core
    term, voted = core.term, core.voted_for
    lab.run_for(0.2)
    lab.restart(follower)
    core = lab.nodes[follower].core
    assert core.term >= term
    if core.term == term:
        assert core.voted_for == voted
    assert core.commit_index == 0 and core.last_log_index >= 2   # commit is re-learned
    lab.one("y", 3)


def test_a_crash_before_the_fsync_loses_the_unsynced_entry_and_nothing_else():
    lab = Lab(3, seed=5)
    base = lab.one("base", 3)
    leader = lab.check_one_leader()
    # Crash the leader in the same instant it appended: its own fsync has not completed (its
    # AppendEntries were already sent, so the followers may still commit the entry).
    index, _ = lab.start_command(leader, "maybe")
    lab.crash(leader)
    lab.start(leader)
    assert lab.nodes[leader].core.last_log_index == index - 1
    final = lab.one("after", 3)
    values = [lab.applied_value(leader, i) for i in range(1, final + 1)]
    assert "base" in values and values[-1] == "after" and values.count("maybe") <= 1
    assert base < final
