"""The per-node Raft timeline: roles, terms and leaders from the status polls, ordered by the
controller's clock; node log events placed on that clock even when the node's clock is skewed."""

import re

from reports import render_run
from reports.analysis import analyse
from reports.load import load_run
from reports.raft import build_timeline, node_segments
from tests.fixtures.run_factory import T0, FaultSpec, build_run, history, poll, write_run


def test_polls_become_merged_segments_per_node_with_down_for_no_answer(tmp_path):
    polls = [poll(0.0, "n1", "follower", 1, None), poll(0.1, "n1", "leader", 2, "n1"),
             poll(0.2, "n1", "leader", 2, "n1"), poll(0.3, "n1", None), poll(0.4, "n1", "follower", 3, "n2")]
    run = load_run(write_run(tmp_path / "run", history((0, "invoke", "read", "r0", None, 0.0)), polls=polls))
    segs = node_segments(run.polls, T0, end=0.5)["n1"]
    assert [(round(s.start, 2), round(s.end, 2), s.role, s.term, s.leader) for s in segs] == [
        (0.0, 0.1, "follower", 1, None), (0.1, 0.3, "leader", 2, "n1"), (0.3, 0.4, "down", None, None),
        (0.4, 0.5, "follower", 3, "n2")]


def test_node_log_events_are_placed_by_the_nodes_nearest_poll_despite_a_skewed_clock(tmp_path):
    # n2's clocks run 100 s (monotonic) and 1 hour (wall) ahead of the controller's view
    polls = [poll(t, "n2", "follower", 1, "n1", mono=500.0 + t, wall=1_700_003_600.0 + t) for t in (0.0, 1.0, 2.0)]
    polls += [poll(t, "n3", "follower", 1, "n1", wall=1_700_000_000.0 + t) for t in (0.0, 1.0, 2.0)]
    logs = {"n2": [{"ts": 1_700_003_601.5, "mono": 501.5, "node": "n2", "event": "election_won", "term": 2,
                    "votes": 2}],
            "n3": [{"ts": 1_700_000_000.7, "node": "n3", "event": "vote", "candidate": "n2", "term": 2,
                    "granted": True}],
            "n4": [{"ts": 5.0, "mono": 5.0, "node": "n4", "event": "start"}]}
    run = load_run(write_run(tmp_path / "run", history((0, "invoke", "read", "r0", None, 0.0)), polls=polls,
                             node_logs=logs))
    tl = build_timeline({}, run.polls, run.node_logs, T0, 2.0, [])
    placed = {(e.node, e.event): (e.time, e.placed_by) for e in tl.events}
    assert round(placed[("n2", "election_won")][0], 3) == 1.5 and placed[("n2", "election_won")][1] == "monotonic"
    assert round(placed[("n3", "vote")][0], 3) == 0.7 and placed[("n3", "vote")][1] == "wall clock"
    assert placed[("n4", "start")] == (None, "")  # never answered a poll: cannot be placed
    assert tl.unplaced_events == 1
    assert [e.node for e in tl.events][:2] == ["n3", "n2"]  # ordered by controller time


def test_an_unparsable_log_line_is_counted_not_fatal(tmp_path):
    logs = {"n1": [{"ts": 1.0, "mono": 1.0, "node": "n1", "event": "start"}, "Traceback (most recent call last):",
                   "[1, 2]"]}
    run = load_run(write_run(tmp_path / "run", history((0, "invoke", "read", "r0", None, 0.0)), node_logs=logs))
    assert run.node_logs["n1"].lines == 3 and run.node_logs["n1"].unparsed == 2
    assert len(run.node_logs["n1"].events) == 1


def test_commit_advances_are_counted_but_kept_out_of_the_timeline(tmp_path):
    commits = [{"ts": 1.0 + i, "mono": 1.0 + i, "node": "n1", "event": "commit", "index": i, "term": 1}
               for i in range(50)]
    compact = '{"ts":9.0,"mono":9.0,"node":"n1","event":"commit","index":51,"term":1}'
    logs = {"n1": [{"ts": 1.0, "mono": 1.0, "node": "n1", "event": "role", "role": "leader", "term": 1}] + commits
            + [compact, '{"ts":9.5,"node":"n1","event":"committed_config"}']}
    run = load_run(write_run(tmp_path / "run", history((0, "invoke", "read", "r0", None, 0.0)), node_logs=logs))
    log = run.node_logs["n1"]
    assert log.counts == {"role": 1, "commit": 51, "committed_config": 1}
    assert [e.event for e in log.events] == ["role", "committed_config"]


def test_report_draws_a_lane_per_node_with_terms_elections_and_the_cluster_lane(tmp_path):
    run = build_run(tmp_path, ops=6000, faults=[FaultSpec("kill", 1.5, 1.0, "majority")])
    with open(render_run(run), encoding="utf-8") as f:
        page = f.read()
    raft = re.search(r'<svg class="plot timeplot raft".*?</svg>', page, flags=re.S).group(0)
    labels = re.findall(r'<text class="lane-label"[^>]*>([^<]+)</text>', raft)
    assert labels == ["cluster", "n1", "n2", "n3", "n4", "n5"]
    assert 'fill="url(#down-hatch)"' in raft  # the killed majority did not answer
    assert re.search(r">t1</text>", raft) and re.search(r">t2</text>", raft)
    assert raft.count("election won") >= 2
    assert re.search(r"<title>stable leader n\d term 2", raft)
    events = re.search(r'<table class="events".*?</table>', page, flags=re.S).group(0)
    assert "election_won" in events and "monotonic" in events


def test_terms_and_leader_changes_are_counted_in_the_report(tmp_path):
    run = load_run(build_run(tmp_path, ops=3000, faults=[FaultSpec("partition", 1.0, 0.5, "leader")]))
    an = analyse(run)
    tl = build_timeline(run.config, run.polls, run.node_logs, an.t0_ns, an.duration, an.faults)
    assert tl.terms_seen == 3  # 0 before the first election, 1, and 2 after the leader was cut off
    assert tl.leader_changes == 1
    assert tl.poll_interval is not None and abs(tl.poll_interval - 0.1) < 0.005
