"""What the clients saw: latency per operation and its quantiles, throughput over time, and
availability during faults versus outside them."""

import re

from reports import render_run
from reports.analysis import (analyse, availability, latency_quantiles_over_time, latency_table, quantile,
                              throughput)
from reports.load import load_run
from tests.fixtures.run_factory import FaultSpec, build_run, history, write_run


def small_run(tmp_path):
    ops = history((0, "invoke", "write", "r0", 1, 0.0), (0, "ok", "write", "r0", 1, 0.010),
                  (1, "invoke", "read", "r0", None, 0.5), (1, "ok", "read", "r0", 1, 0.520),
                  ("nemesis", "invoke", "partition", None, {"topology": "halves"}, 0.9),
                  ("nemesis", "info", "partition", None, {"groups": [["n1"], ["n2", "n3"]]}, 1.0),
                  (0, "invoke", "write", "r0", 2, 1.1), (0, "info", "write", "r0", 2, 2.1, {"error": "timeout"}),
                  (1, "invoke", "read", "r0", None, 1.2), (1, "fail", "read", "r0", None, 1.201),
                  ("nemesis", "invoke", "heal", None, None, 3.0),
                  ("nemesis", "info", "heal", None, {"healed": "partition"}, 3.1),
                  (1, "invoke", "read", "r0", None, 3.5), (1, "ok", "read", "r0", 2, 3.540),
                  (10, "invoke", "cas", "r0", [2, 3], 3.6))  # never completed: info
    return analyse(load_run(write_run(tmp_path / "run", ops)))


def test_operations_pair_up_with_latency_and_a_missing_completion_counts_as_info(tmp_path):
    an = small_run(tmp_path)
    got = [(c.f, c.type, None if c.latency is None else round(c.latency, 3)) for c in an.client]
    assert got == [("write", "ok", 0.01), ("read", "ok", 0.02), ("write", "info", 1.0), ("read", "fail", 0.001),
                   ("read", "ok", 0.04), ("cas", "info", None)]


def test_latency_quantiles_are_nearest_rank_over_ok_operations(tmp_path):
    assert quantile([1, 2, 3, 4], 0.5) == 2 and quantile([1, 2, 3, 4], 0.99) == 4 and quantile([], 0.5) is None
    an = small_run(tmp_path)
    rows = {r["f"]: r for r in latency_table(an.client, an.fs)}
    assert (rows["all"]["count"], rows["all"]["ok"], rows["all"]["fail"], rows["all"]["info"]) == (6, 3, 1, 2)
    assert round(rows["read"]["q"][0.5], 3) == 0.02 and round(rows["read"]["q"][1.0], 3) == 0.04
    assert rows["cas"]["q"][0.5] is None


def test_throughput_counts_completions_per_second_by_outcome(tmp_path):
    an = small_run(tmp_path)
    tp = throughput(an.client, 0.0, 4.0, bucket=1.0)
    assert tp["ok"] == [2.0, 0.0, 0.0, 1.0]
    assert tp["fail"] == [0.0, 1.0, 0.0, 0.0]
    assert tp["info"] == [0.0, 0.0, 1.0, 0.0]
    qs = latency_quantiles_over_time(an.client, 0.0, 4.0, 1.0)
    assert [None if v is None else round(v, 3) for v in qs[1.0]] == [0.02, None, None, 0.04]


def test_availability_splits_operations_by_whether_a_fault_was_active_at_invocation(tmp_path):
    an = small_run(tmp_path)
    av = availability(an.client, an.faults, an.duration)
    during, outside = av["during_faults"], av["outside_faults"]
    assert (during["ok"], during["fail"], during["info"]) == (0, 1, 1)
    assert (outside["ok"], outside["fail"], outside["info"]) == (3, 0, 1)
    assert round(during["seconds"], 3) == 2.0  # from the partition's completion to the heal's invocation
    assert during["availability"] == 0.0 and outside["availability"] == 0.75


def test_the_report_plots_a_point_per_operation_coloured_by_outcome_and_shaped_by_kind(tmp_path):
    run = build_run(tmp_path, ops=1500, faults=[FaultSpec("kill", 1.0, 0.5, "majority")])
    with open(render_run(run), encoding="utf-8") as f:
        page = f.read()
    latency = re.search(r'id="plot-latency">.*?<svg class="plot timeplot.*?</svg>', page, flags=re.S).group(0)
    classes = set(re.findall(r'<path class="pts pts-(\w+)" data-f="(\w+)"', latency))
    assert {("ok", "read"), ("ok", "write"), ("ok", "cas"), ("fail", "read"), ("info", "write")} <= classes
    # kinds have distinct markers: round dots, squares, triangles
    assert 'data-f="read" fill="none" stroke="#1f9e6e" stroke-width="4.5" stroke-linecap="round"' in latency
    assert 'data-f="write" fill="none" stroke="#1f9e6e" stroke-width="4.5" stroke-linecap="square"' in latency
    for plot in ("plot-quantiles", "plot-throughput"):
        assert f'id="{plot}"' in page
    assert re.search(r'<table class="availability">.*during faults.*outside faults', page, flags=re.S)
    assert re.search(r'<table class="latency">.*p99.9', page, flags=re.S)
