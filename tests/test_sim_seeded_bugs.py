"""Every seeded bug is caught by a simulator check or a scenario; with the bug off the same run passes.

Which fault exposes which bug (the README documents this table):
  no-fsync           crashes (power loss) losing unsynced writes that were already acknowledged
  ack-before-commit  a leader crash or partition before the majority has the write
  forget-vote        a voter crashing after its grant, then voting again in the same term
  stale-read         reads sent to followers / partitioned nodes
  lease-read         a leader whose clock runs slow, isolated by a partition (clock-rate skew)
  commit-old-term    Figure 8: leader crashes after replicating an earlier term's entry
  snapshot-gap       a follower caught up by InstallSnapshot, then crashed: it cannot restart
"""

import pytest

from raftnode.sim.checks import Violation
from raftnode.sim.lab import Lab
from raftnode.sim.runner import run_seed
from raftnode.types import APPEND_RESP, CANDIDATE, LEADER, REQUEST_VOTE_RESP

SEEDS = range(0, 12)


def _first_failing_seed(bug):
    for seed in SEEDS:
        result = run_seed(seed, seconds=20, bug=bug)
        if not result.ok:
            return result
    return None


@pytest.mark.parametrize("bug, check", [
    ("no-fsync", None),
    ("ack-before-commit", "acknowledged write lost"),
    ("stale-read", "linearizable reads"),
    ("snapshot-gap", "restart:"),
])
def test_the_randomized_simulator_catches_the_seeded_bug(bug, check):
    failing = _first_failing_seed(bug)
    assert failing is not None, f"{bug}: no seed in {SEEDS} failed"
    if check:
        assert failing.violation.startswith(check), failing.violation
    # The very same seed, schedule and workload pass without the bug.
    clean = run_seed(failing.seed, seconds=20)
    assert clean.ok, clean.summary()


# -- commit-old-term: Raft paper Figure 8, scripted -------------------------------------------------

def _figure8_script(bugs, seed=2):
    """S1 leads, replicates X to S2 only, crashes; S5 wins the next term and crashes before
    replicating; S1 returns, wins, and replicates X (an earlier term's entry) to a majority
    without its own-term no-op. With the bug it commits and applies X; S5 then returns, wins and
    overwrites X: two replicas applied different entries at X's index."""
    lab = Lab(5, seed=seed, bugs=bugs, config_overrides={
        "max_entries_per_append": 1, "pre_vote": False, "check_quorum": False})
    lab.one("base", 5)
    s1 = lab.check_one_leader()
    s2, s3, s4, s5 = [i for i in lab.ids if i != s1]
    lab.partition([s1, s2], [s3, s4, s5])
    x_index, x_term = lab.start_command(s1, "X")
    assert lab.wait_until(lambda: lab.nodes[s2].core.last_log_index >= x_index, 1.0)
    lab.crash(s1)

    # The next leader among s3, s4, s5 is isolated the moment it wins, then crashes.
    winners = []

    def isolate_winner(node, event):
        if event.kind == "election_won" and not winners:
            winners.append(node.id)
            lab.partition([node.id])

    lab.event_hook = isolate_winner
    assert lab.wait_until(lambda: winners, 3.0), "no leader among the majority side"
    lab.event_hook = None
    c = winners[0]
    lab.crash(c)
    d, e = [i for i in (s3, s4, s5) if i != c]

    # s1 returns with s2 and d; once d acknowledges X, cut the new leader's link to d so the
    # no-op of its own term never reaches a majority.
    def cut_after_x(node, msg):
        if node.id == d and msg.kind == APPEND_RESP and msg.success and msg.match_index == x_index:
            lab.cut.add((msg.dst, d))

    lab.send_hook = cut_after_x
    lab.start(s1)
    lab.partition([s1, s2, d], [e], [c])
    lab.wait_until(lambda: any(lab.nodes[i].core.role == LEADER for i in (s1, s2))
                   and lab.nodes[d].core.last_log_index >= x_index, 3.0)
    lab.run_for(0.3)
    lab.send_hook = None
    # The Figure 8 situation: X (an earlier term's entry) is on a majority (s1, s2, d)...
    assert all(lab.nodes[i].core.term_at(x_index) == x_term
               for i in (s1, s2, d))
    # ...and only the bug commits it.
    committed = max(lab.nodes[i].core.commit_index for i in (s1, s2))
    assert (committed >= x_index) == bool(bugs)
    for i in (s1, s2):
        lab.crash(i)
    # c returns with d and e: its term is newer than X's, so it wins and overwrites X.
    lab.start(c)
    lab.partition([c, d, e], [s1], [s2])
    lab.run_for(2.0)
    lab.heal()
    for i in (s1, s2):
        lab.start(i)
    lab.one("after", 5)
    lab.checker.final()
    return lab


def test_commit_old_term_is_caught_by_the_figure8_scenario():
    with pytest.raises(Violation, match="state machine safety|leader completeness|safety"):
        _figure8_script(bugs=("commit-old-term",))


def test_the_figure8_scenario_passes_without_the_bug():
    _figure8_script(bugs=())


# -- forget-vote: a voter crashes after granting and votes again in the same term -------------------

def _double_vote_script(bugs, seed=3):
    lab = Lab(3, seed=seed, bugs=bugs, config_overrides={"pre_vote": False, "check_quorum": False})
    lab.one("x", 3)
    voter = lab.check_one_leader()
    term = lab.nodes[voter].core.term
    a, b = [i for i in lab.ids if i != voter]
    # Everyone cut off from everyone: both followers time out and campaign for term+1 in vain.
    lab.partition([voter], [a], [b])
    assert lab.wait_until(lambda: all(lab.nodes[i].core.role == CANDIDATE
                                      and lab.nodes[i].core.term == term + 1 for i in (a, b)), 1.0)
    lab.run_for(0.01)   # let their term+1 requests drain
    fired = []

    def crash_after_grant(node, msg):
        # The voter crashes right after its first (synced) grant of the next term and restarts.
        if node.id == voter and msg.kind == REQUEST_VOTE_RESP and msg.granted and not fired:
            fired.append(msg.dst)
            lab.cut.add((msg.dst, voter))   # the winner's no-op never reaches the voter
            lab.call_at(lab.now + 1, lab.restart, voter)

    lab.send_hook = crash_after_grant
    lab.partition([voter, a, b])
    lab.cut |= {(a, b), (b, a)}
    lab.run_for(2.0)
    lab.send_hook = None
    assert fired, "the voter never granted a vote"
    lab.heal()
    lab.one("y", 3)
    return lab


def test_forget_vote_is_caught_by_election_safety():
    with pytest.raises(Violation, match="election safety"):
        _double_vote_script(bugs=("forget-vote",))


def test_the_double_vote_scenario_passes_without_the_bug():
    _double_vote_script(bugs=())


# -- lease-read: an isolated leader whose clock runs slow keeps serving reads ----------------------

def _slow_clock_script(bugs, seed=5):
    lab = Lab(5, seed=seed, bugs=bugs)
    old = lab.check_one_leader()
    assert lab.write(old, "k", "v1")[0] == "ok"
    lab.nodes[old].clock_rate = 10.0          # its ticks come 10x slower than real time
    lab.partition([old])
    assert lab.wait_until(lambda: any(lab.nodes[i].core.role == LEADER for i in lab.ids if i != old), 2.0)
    new = next(i for i in lab.ids if i != old and lab.nodes[i].core.role == LEADER)
    assert lab.write(new, "k", "v2")[0] == "ok"
    assert lab.nodes[old].core.role == LEADER, "precondition: the old leader still believes it leads"
    answer = lab.read(old, "k", timeout=1.0)
    lab.heal()
    lab.nodes[old].clock_rate = 1.0
    lab.one("z", 5)
    return answer


def test_lease_read_is_caught_by_the_linearizable_read_check_under_clock_skew():
    with pytest.raises(Violation, match="linearizable reads"):
        _slow_clock_script(bugs=("lease-read",))


def test_read_index_stays_linearizable_under_the_same_clock_skew():
    answer = _slow_clock_script(bugs=())
    assert answer is None or answer[0] == "redirect"   # never served from the stale leader
