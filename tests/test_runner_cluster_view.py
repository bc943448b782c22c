"""The status poller: every node's /status at least every 100 ms into status.jsonl, leader()
for the nemesis, a bounded wait for a stable leader; a paused node does not slow the others."""

import io
import itertools
import json
import time

from chaos.cluster_view import ClusterView
from chaos.interfaces import Node
from chaos.progress import Counts, Progress, format_line
from fake_node import FakeCluster, StatusOnlyDB


def nodes_of(cluster):
    return [Node(n.id, n.url, "127.0.0.1", client_port=n.port) for n in cluster.nodes]


def view_of(cluster, path=None, **kw):
    nodes = nodes_of(cluster)
    return ClusterView(nodes, path, db=StatusOnlyDB(nodes), **kw)


def test_polls_every_node_at_least_ten_times_a_second_and_writes_status_lines(tmp_path):
    cluster = FakeCluster(3).start()
    path = tmp_path / "status.jsonl"
    view = view_of(cluster, str(path)).start()
    try:
        time.sleep(1.0)
    finally:
        view.stop()
        cluster.stop()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for node in ("n1", "n2", "n3"):
        polls = [line for line in lines if line["node"] == node]
        assert len(polls) >= 10, (node, len(polls))
        assert all(isinstance(p["time"], int) and p["status"]["id"] == node for p in polls)
        gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(polls)]
        assert max(gaps) < 100_000_000 * 1.5  # ns; "at least every 100 ms" with scheduling slack


def test_leader_follows_the_cluster_and_none_without_a_leader():
    cluster = FakeCluster(3).start()
    view = view_of(cluster).start()
    try:
        assert view.wait_stable_leader(5, stable_for=0.2) == "n1"
        assert view.leader() == "n1"
        cluster.leader = cluster.nodes[2]
        cluster.term += 1
        deadline = time.monotonic() + 3
        while view.leader() != "n3" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert view.leader() == "n3"
        cluster.leader = None
        time.sleep(0.3)
        assert view.leader() is None
        assert view.wait_stable_leader(0.5, stable_for=0.1) is None  # bounded
    finally:
        view.stop()
        cluster.stop()


def test_a_deposed_leader_loses_to_the_higher_term():
    nodes = [Node(f"n{i}", "http://127.0.0.1:9", "127.0.0.1") for i in (1, 2, 3)]
    view = ClusterView(nodes, db=StatusOnlyDB(nodes))
    view.record("n1", {"role": "leader", "term": 3, "leader": "n1"}, None)
    view.record("n2", {"role": "leader", "term": 4, "leader": "n2"}, None)
    view.record("n3", {"role": "follower", "term": 4, "leader": "n2"}, None)
    assert view.leader() == "n2"


def test_without_a_status_probe_nothing_is_polled_and_no_leader_is_named(tmp_path):
    from chaos.interfaces import DB

    class Bare(DB):
        def setup(self, count):
            return []

        def teardown(self):
            pass

    view = ClusterView([Node("n1", "http://127.0.0.1:9", "127.0.0.1")], str(tmp_path / "s.jsonl"), db=Bare()).start()
    view.stop()
    assert view.leader() is None and view.summary() == {} and not (tmp_path / "s.jsonl").exists()


def test_a_paused_node_does_not_slow_down_the_polls_of_the_others(tmp_path):
    cluster = FakeCluster(3).start()
    cluster.nodes[1].running.clear()  # n2 hangs like a SIGSTOPped process
    path = tmp_path / "status.jsonl"
    view = view_of(cluster, str(path), timeout=0.3).start()
    try:
        time.sleep(1.0)
    finally:
        cluster.nodes[1].running.set()
        view.stop()
        cluster.stop()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len([line for line in lines if line["node"] == "n1"]) >= 10
    n2 = [line for line in lines if line["node"] == "n2"]
    assert n2 and n2[0]["status"] is None and n2[0]["error"]


def test_progress_line_shows_time_counts_faults_and_leader():
    line = format_line(12.3, 60, {"ok": 10, "fail": 2, "info": 1}, ["partition n1 | n2,n3"], "n2")
    assert "12.3s elapsed" in line and "47.7s left" in line
    assert "ok 10 fail 2 info 1" in line and "partition n1 | n2,n3" in line and "leader: n2" in line


def test_progress_prints_plain_lines_when_not_on_a_terminal():
    stream = io.StringIO()
    counts = Counts()
    counts.add("ok")
    p = Progress(10, counts, lambda: ["kill n3"], lambda: "n1", stream=stream, tty=False, plain_every=0.1).start()
    time.sleep(0.35)
    p.stop()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and "\r" not in stream.getvalue()
    assert "ok 1" in lines[-1] and "kill n3" in lines[-1]


def test_progress_redraws_one_line_on_a_terminal():
    stream = io.StringIO()
    p = Progress(10, Counts(), lambda: [], lambda: None, stream=stream, tty=True, refresh=0.05).start()
    time.sleep(0.2)
    p.stop()
    text = stream.getvalue()
    assert text.count("\r") >= 3 and text.count("\n") == 1
