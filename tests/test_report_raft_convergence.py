"""For each heal: how long until the cluster had one stable leader again. Stable from t: over
[t, t+1 s], at every poll, exactly one node says it leads and a majority name it in its term."""

from reports.analysis import analyse
from reports.load import load_run
from reports.raft import build_timeline
from tests.fixtures.run_factory import history, poll, write_run

NODES = ["n1", "n2", "n3"]


def polls_from(states, start=0.0, end=6.0, step=0.1):
    """Polls of every node every `step` s; states(t, node) -> (role, term, leader) or None."""
    out = []
    t = start
    while t <= end + 1e-9:
        for n in NODES:
            s = states(round(t, 3), n)
            out.append(poll(round(t, 3), n, *(s if s else (None,))))
        t += step
    return out


def kill_heal_history(kill_at=1.0, heal_at=2.0):
    return history((0, "invoke", "read", "r0", None, 0.0), (0, "ok", "read", "r0", None, 0.01),
                   ("nemesis", "invoke", "kill", None, {"target": "leader"}, kill_at - 0.05),
                   ("nemesis", "info", "kill", None, {"nodes": ["n1"]}, kill_at),
                   ("nemesis", "invoke", "start", None, None, heal_at - 0.05),
                   ("nemesis", "info", "start", None, {"nodes": ["n1"]}, heal_at),
                   (0, "invoke", "read", "r0", None, 5.9), (0, "ok", "read", "r0", None, 6.0))


def timeline(tmp_path, states, ops=None, end=6.0):
    run = load_run(write_run(tmp_path / "run", ops or kill_heal_history(), config={"nodes": NODES},
                             polls=polls_from(states, end=end)))
    an = analyse(run)
    return build_timeline(run.config, run.polls, run.node_logs, an.t0_ns, an.duration, an.faults)


def test_time_to_stable_leader_runs_from_the_heal_to_the_first_stable_window(tmp_path):
    # n1 leads term 1 until killed at 1.0; nobody leads until n2 wins term 2 at 2.6
    def states(t, n):
        if t < 1.0:
            return ("leader", 1, "n1") if n == "n1" else ("follower", 1, "n1")
        if t < 2.6:
            return None if (n == "n1" and t < 2.0) else ("follower", 1, None)
        return ("leader", 2, "n2") if n == "n2" else ("follower", 2, "n2")
    tl = timeline(tmp_path, states)
    [c] = tl.convergence
    assert c.heal_f == "start" and round(c.heal_time, 2) == 2.0  # the start op's completion
    assert round(c.seconds, 2) == 0.6
    assert (c.leader, c.term) == ("n2", 2)


def test_a_cluster_that_kept_its_leader_converges_in_zero_seconds(tmp_path):
    def states(t, n):
        if n == "n3" and 1.0 <= t < 2.0:
            return None
        return ("leader", 1, "n1") if n == "n1" else ("follower", 1, "n1")
    [c] = timeline(tmp_path, states).convergence
    assert c.seconds == 0.0 and c.leader == "n1"


def test_a_leader_seen_for_less_than_a_second_is_not_stable(tmp_path):
    # n2 leads briefly (0.5 s) and is deposed by n3, which then holds
    def states(t, n):
        if t < 2.2:
            return None if n == "n1" else ("follower", 1, None)
        if t < 2.7:
            return ("leader", 2, "n2") if n == "n2" else ("follower", 2, "n2")
        return ("leader", 3, "n3") if n == "n3" else ("follower", 3, "n3")
    [c] = timeline(tmp_path, states).convergence
    assert (c.leader, c.term) == ("n3", 3)
    assert round(c.seconds, 2) == 0.7


def test_two_nodes_claiming_leadership_is_not_one_stable_leader(tmp_path):
    # a deposed leader in an old term still says "leader": the majority's leader is not alone
    def states(t, n):
        if n == "n1":
            return ("leader", 1, "n1") if t < 3.5 else ("follower", 2, "n2")
        return ("leader", 2, "n2") if n == "n2" else ("follower", 2, "n2")
    [c] = timeline(tmp_path, states).convergence
    assert round(c.seconds, 2) == 1.5


def test_no_stable_leader_before_the_polls_end_is_reported_as_never(tmp_path):
    def states(t, n):
        return ("follower", 1, None) if t >= 1.0 else (("leader", 1, "n1") if n == "n1" else ("follower", 1, "n1"))
    [c] = timeline(tmp_path, states).convergence
    assert c.seconds is None and c.stable_at is None


def test_a_window_cut_short_by_the_end_of_the_polls_does_not_count(tmp_path):
    def states(t, n):
        if t < 5.5:
            return ("follower", 1, None)
        return ("leader", 2, "n2") if n == "n2" else ("follower", 2, "n2")
    [c] = timeline(tmp_path, states).convergence
    assert c.seconds is None


def test_the_report_shows_the_definition_and_the_measured_time(tmp_path):
    from reports import render_run
    def states(t, n):
        if 1.0 <= t < 2.6:
            return None if n == "n1" and t < 2.0 else ("follower", 1, None)
        if t < 1.0:
            return ("leader", 1, "n1") if n == "n1" else ("follower", 1, "n1")
        return ("leader", 2, "n2") if n == "n2" else ("follower", 2, "n2")
    run = write_run(tmp_path / "run", kill_heal_history(), config={"nodes": NODES}, polls=polls_from(states))
    with open(render_run(run), encoding="utf-8") as f:
        page = f.read()
    assert "exactly one node reports itself leader" in page
    import re
    table = re.search(r'<table class="convergence".*?</table>', page, flags=re.S).group(0)
    assert ">0.60 s</td>" in table and ">n2</td>" in table


def test_the_report_lists_each_stable_leader_period(tmp_path):
    import re
    from reports import render_run
    def states(t, n):
        if t < 1.0:
            return ("leader", 1, "n1") if n == "n1" else ("follower", 1, "n1")
        if t < 2.6:
            return None if (n == "n1" and t < 2.0) else ("follower", 1, None)
        return ("leader", 2, "n2") if n == "n2" else ("follower", 2, "n2")
    run = write_run(tmp_path / "run", kill_heal_history(), config={"nodes": NODES}, polls=polls_from(states))
    with open(render_run(run), encoding="utf-8") as f:
        page = f.read()
    table = re.search(r'<table class="stable-leaders".*?</table>', page, flags=re.S).group(0)
    rows = [re.sub(r"<[^>]+>", "|", r) for r in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)[1:]]
    assert [[c for c in r.split("|") if c] for r in rows] == [
        ["n1", "1", "0.00", "1.00", "1.00"], ["n2", "2", "2.60", "6.00", "3.40", "1.60 s without"]]
