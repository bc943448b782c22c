"""The nemeses' ops against a recording fake DB: targets, completion values, state, heal_all."""

import random
import time

import pytest

from chaos.history import INFO, INVOKE, NEMESIS, Op
from chaos.interfaces import Exec, LogFiles, Network, Node, Pause, Primaries, Process, Unsupported
from chaos.nemesis import build_nemesis
from chaos.nemesis.topology import NoLeader
from chaos.net import Net, directed_links
from chaos.provision.base import ProvisionedDB, clock_spec


class RecordingNet(Net):
    def __init__(self, nodes):
        super().__init__(nodes)
        self.applied = []

    def install(self): pass
    def uninstall(self): pass
    def reapply(self, node): pass
    def rules(self, node): return []

    def _apply(self, grudge):
        self.applied.append(grudge)

    def _clear(self):
        self.applied.append({})

    @property
    def cut(self):
        """The cut pairs in force (both directions dropped)."""
        links = directed_links(self.current())
        return sorted({tuple(sorted(pair)) for pair in links})


class FakeDB(ProvisionedDB, Process, Pause, Network, Primaries, LogFiles, Exec):
    name = "fake"

    def __init__(self, count=5):
        super().__init__("fake", nodes=count)
        self.nodes = [Node(f"n{i}", f"http://127.0.0.{10 + i}:8000", f"127.0.0.{10 + i}") for i in range(1, count + 1)]
        self.calls = []
        self.specs = {}
        self.elapsed = 0.0
        self.the_net = RecordingNet(self.nodes)
        self.missing = {}

    def unavailable(self):
        return dict(self.missing)

    def process_elapsed(self, node):
        return self.elapsed

    def clock_sample(self, node):
        if not self.status:
            return None
        return self.status["wall_time"], self.status["monotonic_time"]

    status = None  # no node answers: the clock arithmetic alone is under test

    def primaries(self, view):
        return [view.current] if view is not None and view.current else []

    def setup(self, nodes=None):
        return self.nodes

    def teardown(self):
        pass

    def start(self, node):
        self.calls.append(("start", node.id))

    def kill(self, node):
        self.calls.append(("kill", node.id))

    def pause(self, node):
        self.calls.append(("pause", node.id))

    def resume(self, node):
        self.calls.append(("resume", node.id))

    def exec(self, node, argv, check=True):
        return ""

    def collect_logs(self, node, dest_dir):
        return []

    def set_clock(self, node, spec):
        self.specs[node.id] = spec

    def net(self):
        return self.the_net

    @property
    def cut(self):
        return self.the_net.cut


class FakeView:
    def __init__(self, leader="n2"):
        self.current = leader

    def fresh_statuses(self):
        return {}


def invoke(nemesis, f, value=None):
    done = nemesis.invoke(Op(process=NEMESIS, type=INVOKE, f=f, value=value, time=time.monotonic_ns()))
    assert done.process == NEMESIS and done.type == INFO and done.f == f
    return done.value


@pytest.fixture
def db():
    return FakeDB()


def build(db, faults=("partition", "kill", "pause", "clock"), leader="n2", seed=1):
    import chaos.nemesis.common as common
    common.LEADER_WAIT_S = 0.2  # a missing leader is awaited briefly, then the op fails
    return build_nemesis(list(faults), db, db.nodes, FakeView(leader), random.Random(seed))


def test_partition_isolating_the_leader_cuts_it_and_heal_flushes(db):
    nemesis = build(db)
    value = invoke(nemesis, "partition", {"topology": "isolate-leader"})
    assert value["topology"] == "isolate-leader"
    assert value["groups"] == [["n2"], ["n1", "n3", "n4", "n5"]]
    assert sorted(db.cut) == [("n1", "n2"), ("n2", "n3"), ("n2", "n4"), ("n2", "n5")]
    assert invoke(nemesis, "heal") == {"healed": "partition"}
    assert db.cut == []


def test_isolating_the_leader_without_one_is_an_error_not_a_silent_no_op(db):
    nemesis = build(db, leader=None)
    with pytest.raises(NoLeader):
        invoke(nemesis, "partition", {"topology": "isolate-leader"})
    assert db.cut == []


def test_kill_then_start_restarts_exactly_the_killed_nodes(db):
    nemesis = build(db)
    assert invoke(nemesis, "kill", {"target": ["n3", "n1"]}) == {"nodes": ["n1", "n3"]}
    assert invoke(nemesis, "kill", {"target": "leader"}) == {"nodes": ["n2"]}
    db.calls.clear()
    assert invoke(nemesis, "start", {"target": "killed"}) == {"nodes": ["n1", "n2", "n3"]}
    assert sorted(db.calls) == [("start", "n1"), ("start", "n2"), ("start", "n3")]
    assert invoke(nemesis, "start", {"target": "killed"}) == {"nodes": []}


def test_pause_skips_killed_nodes_and_a_kill_ends_a_pause(db):
    nemesis = build(db)
    invoke(nemesis, "kill", {"target": ["n1"]})
    assert invoke(nemesis, "pause", {"target": ["n1", "n2"]}) == {"nodes": ["n2"]}
    invoke(nemesis, "kill", {"target": ["n2"]})
    assert invoke(nemesis, "resume") == {"nodes": []}


def test_pause_minority_then_resume_all_paused(db):
    nemesis = build(db, seed=5)
    paused = invoke(nemesis, "pause", {"target": "minority"})["nodes"]
    assert len(paused) == 2
    assert invoke(nemesis, "resume") == {"nodes": paused}


def test_bad_targets_and_values_are_clear_errors(db):
    nemesis = build(db)
    with pytest.raises(ValueError, match="unknown target 'most'"):
        invoke(nemesis, "kill", {"target": "most"})
    with pytest.raises(ValueError, match="value must be an object"):
        invoke(nemesis, "pause", "n1")
    with pytest.raises(ValueError, match=r"no nemesis handles 'explode'"):
        invoke(nemesis, "explode")
    with pytest.raises(ValueError, match="unknown mode 'warp'"):
        invoke(nemesis, "clock-skew", {"target": "one", "mode": "warp"})
    with pytest.raises(ValueError, match="delta must be a number"):
        invoke(nemesis, "clock-skew", {"target": "one", "mode": "bump", "delta": "5"})
    with pytest.raises(ValueError, match="rate must be positive"):
        invoke(nemesis, "clock-skew", {"target": "one", "mode": "rate", "rate": 0})


def test_build_nemesis_refuses_faults_the_db_cannot_carry(db):
    db.missing = {"partition": "no iptables here"}
    with pytest.raises(Unsupported, match=r"the partition fault needs the 'partition' capability, which "
                                          r"'fake' lacks: no iptables here"):
        build(db)
    with pytest.raises(ValueError, match="unknown fault 'flood'"):
        build(db, faults=["flood"])


def test_clock_bumps_accumulate_and_reset_returns_to_real_time(db):
    nemesis = build(db, faults=["clock"])
    assert invoke(nemesis, "clock-skew", {"target": ["n1"], "mode": "bump", "delta": 5}) == {"nodes": {"n1": "+5 x1"}}
    assert invoke(nemesis, "clock-skew", {"target": ["n1"], "mode": "bump", "delta": -7.5}) == {"nodes": {"n1": "-2.5 x1"}}
    assert invoke(nemesis, "clock-reset") == {"nodes": ["n1"]}
    assert db.specs["n1"] == "+0 x1"


def test_a_rate_change_keeps_the_clock_continuous(db):
    # libfaketime applies a rate from the process start: 100 s into the process, rate 2 would
    # jump the clock 100 s ahead unless the offset compensates.
    nemesis = build(db, faults=["clock"])
    db.elapsed = 100.0
    invoke(nemesis, "clock-skew", {"target": ["n3"], "mode": "bump", "delta": 4})
    assert invoke(nemesis, "clock-skew", {"target": ["n3"], "mode": "rate", "rate": 2}) == {"nodes": {"n3": "-96 x2"}}
    assert db.clock_skew(db.node("n3")) == (4.0, 2.0)
    db.elapsed = 110.0  # ten real seconds later the clock gained ten more
    assert db.clock_skew(db.node("n3")) == (14.0, 2.0)


def test_a_restarted_process_keeps_its_skew(db):
    db.set_skew(db.node("n1"), 3.0, 0.5)
    db.elapsed = 20.0   # 20 s at half speed: 10 s lost
    assert db._clock_before_start(db.node("n1")) == "-7 x0.5"


def test_strobe_flips_a_bounded_number_of_times_and_stops_at_reset(db):
    nemesis = build(db, faults=["clock"])
    seen = []
    original = db.set_clock
    db.set_clock = lambda node, spec: (seen.append(spec), original(node, spec))
    value = invoke(nemesis, "clock-skew", {"target": ["n2"], "mode": "strobe", "delta": 2, "period": 0.01, "count": 6})
    assert value["nodes"]["n2"].startswith("+2 x1 (strobe")
    deadline = time.monotonic() + 5
    while len(seen) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert seen == ["+2 x1", "+0 x1"] * 3  # exactly `count` flips, ending where it began
    invoke(nemesis, "clock-reset")
    assert db.specs["n2"] == "+0 x1"


def test_strobe_count_is_bounded(db):
    nemesis = build(db, faults=["clock"])
    with pytest.raises(ValueError, match="count must be an integer within 1..200"):
        invoke(nemesis, "clock-skew", {"target": "one", "mode": "strobe", "delta": 1, "count": 10_000})


def test_heal_all_undoes_every_kind_of_fault(db):
    nemesis = build(db)
    invoke(nemesis, "partition", {"topology": "halves"})
    invoke(nemesis, "kill", {"target": ["n1"]})
    invoke(nemesis, "pause", {"target": ["n4"]})
    invoke(nemesis, "clock-skew", {"target": ["n5"], "mode": "bump", "delta": 30})
    db.calls.clear()
    nemesis.heal_all()
    assert db.cut == []
    assert {("start", n.id) for n in db.nodes} <= set(db.calls)
    assert ("resume", "n4") in db.calls
    assert db.specs["n5"] == "+0 x1"
    # the network heals before processes restart
    assert db.calls.index(("resume", "n4")) < db.calls.index(("start", "n1"))


@pytest.mark.parametrize("offset, rate, spec", [(0, 1, "+0 x1"), (5, 1, "+5 x1"), (-2.5, 0.5, "-2.5 x0.5"),
                                                (-0.0001, 1, "+0 x1"), (1e6, 2, "+1000000 x2")])
def test_clock_specs_are_what_libfaketime_reads(offset, rate, spec):
    assert clock_spec(offset, rate) == spec


def test_the_first_rate_change_measures_when_libfaketime_started_in_the_process(db):
    # The process's libfaketime started 0.4 s after our estimate: a rate of 3 would turn that
    # into a 0.8 s jump. One /status sample (wall and real monotonic time together) reveals it.
    node = db.node("n1")
    real_start = time.monotonic() - 10.0
    db._process_started["n1"] = real_start - 0.4
    written = {}

    def set_clock(node, spec):
        written["spec"] = spec
        offset, rate = (float(x.lstrip("x")) for x in spec.split())
        mono = time.monotonic()
        db.status = {"monotonic_time": mono,
                     "wall_time": (mono + time.time() - time.monotonic()) + offset + (mono - real_start) * (rate - 1)}
    db.set_clock = set_clock
    db.process_elapsed = lambda node: time.monotonic() - db._process_started[node.id]
    db.set_skew(node, 0.0, 3.0)
    assert abs(db._process_started["n1"] - real_start) < 0.01
    offset, rate = (float(x.lstrip("x")) for x in written["spec"].split())
    skew_now = offset + (time.monotonic() - real_start) * (rate - 1)
    assert abs(skew_now) < 0.05
