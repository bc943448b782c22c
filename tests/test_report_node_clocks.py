"""Node clocks as the status polls saw them: each node's wall clock against the controller's
clock, so a clock fault is visible; nothing is ordered by them."""

import re

from reports import render_run
from reports.load import load_run
from reports.raft import clock_offsets
from tests.fixtures.run_factory import T0, FaultSpec, build_run, history, poll, write_run


def test_offsets_are_relative_to_the_clusters_clock_at_the_start(tmp_path):
    wall0 = 1_700_000_000.0
    polls = []
    for t in (0.0, 1.0, 2.0, 3.0):
        polls.append(poll(t, "n1", "leader", 1, "n1", wall=wall0 + t))
        polls.append(poll(t, "n2", "follower", 1, "n1", wall=wall0 + t + (10.0 if 1.0 <= t < 3.0 else 0.0)))
        polls.append(poll(t, "n3", "follower", 1, "n1", wall=wall0 + t + 0.002))
    polls.append(poll(3.5, "n2", None))
    run = load_run(write_run(tmp_path / "run", history((0, "invoke", "read", "r0", None, 0.0)), polls=polls))
    offsets = clock_offsets(run.polls, T0)
    assert [round(d, 3) for _, d in offsets["n2"]] == [0.0, 10.0, 10.0, 0.0]
    assert [round(d, 3) for _, d in offsets["n1"]] == [0.0] * 4
    assert [round(d, 3) for _, d in offsets["n3"]] == [0.002] * 4


def test_a_skewed_clock_gets_a_plot_with_a_line_per_node(tmp_path):
    run = build_run(tmp_path, ops=3000, faults=[FaultSpec("clock-skew", 1.0, 1.0, "leader")])
    with open(render_run(run), encoding="utf-8") as f:
        page = f.read()
    plot = re.search(r'id="plot-clocks">.*?</svg>', page, flags=re.S).group(0)
    assert len(re.findall(r'<path class="line" data-node="n\d"', plot)) == 5
    assert re.search(r"largest \d+(\.\d+)? s\)", plot)
    assert plot.count('<rect class="band"') == 1


def test_clocks_that_agree_get_one_line_of_text(tmp_path):
    run = build_run(tmp_path, ops=1500, faults=[FaultSpec("kill", 1.0, 0.5, "majority")])
    with open(render_run(run), encoding="utf-8") as f:
        page = f.read()
    assert 'id="plot-clocks"' not in page
    assert re.search(r'<p class="note" id="clocks">Node clocks \(wall_time in status polls\) agreed within 0 ms', page)
