"""The fault schedule: active from the completion of the start op to the invoke of its heal,
shown as a table and as shaded bands on every time plot."""

import re

from reports.analysis import fault_intervals, nemesis_events
from reports.load import load_run
from reports import render_run
from tests.fixtures.run_factory import FaultSpec, build_run, history, write_run


def test_a_fault_is_active_from_its_completion_to_the_invoke_of_its_heal(tmp_path):
    ops = history(("nemesis", "invoke", "partition", None, {"topology": "halves"}, 1.0),
                  ("nemesis", "info", "partition", None, {"groups": [["n1", "n2"], ["n3", "n4", "n5"]]}, 1.2),
                  ("nemesis", "invoke", "kill", None, {"target": "leader"}, 2.0),
                  ("nemesis", "info", "kill", None, {"nodes": ["n3"]}, 2.1),
                  ("nemesis", "invoke", "heal", None, None, 3.0),
                  ("nemesis", "info", "heal", None, {"healed": "partition"}, 3.5),
                  ("nemesis", "invoke", "pause", None, {"target": "one"}, 4.0))
    run = load_run(write_run(tmp_path / "run", ops))
    t0 = run.ops[0].time
    faults = fault_intervals(nemesis_events(run.ops, t0))
    assert [(f.kind, round(f.start, 3), None if f.end is None else round(f.end, 3)) for f in faults] == [
        ("partition", 0.2, 2.0), ("kill", 1.1, None), ("pause", 3.0, None)]
    assert faults[0].heal_f == "heal" and round(faults[0].heal_done, 3) == 2.5
    assert faults[0].describe() == "halves: n1 n2 | n3 n4 n5"
    assert faults[1].describe() == "leader: n3"
    assert faults[2].describe() == "one"  # never completed: active from its invocation


def test_every_time_plot_carries_a_band_per_fault(tmp_path):
    faults = [FaultSpec("partition", 1.0, 0.5, "leader"), FaultSpec("kill", 2.5, 0.6, "majority"),
              FaultSpec("pause", 4.0, 0.4, "one"), FaultSpec("clock-skew", 5.0, 0.5, "leader")]
    run = build_run(tmp_path, ops=4000, faults=faults)
    with open(render_run(run), encoding="utf-8") as f:
        page = f.read()
    plots = re.findall(r'<svg class="plot timeplot.*?</svg>', page, flags=re.S)
    assert len(plots) == 5  # latency, quantiles, throughput, Raft timeline, node clocks (skewed here)
    for svg in plots:
        titles = re.findall(r'<rect class="band"[^>]*><title>([^<]*)</title>', svg)
        assert [t.split()[0] for t in titles] == ["partition", "kill", "pause", "clock-skew"]
    table = re.search(r'<table class="faults".*?</table>', page, flags=re.S).group(0)
    assert len(re.findall(r"<tr>", table)) == 1 + 4
    for kind in ("partition", "kill", "pause", "clock-skew"):
        assert kind in table


def test_a_run_without_faults_says_so_and_draws_no_bands(tmp_path):
    run = build_run(tmp_path, ops=500, faults=[])
    with open(render_run(run), encoding="utf-8") as f:
        page = f.read()
    assert "No faults were injected in this run." in page
    assert 'class="band"' not in page
