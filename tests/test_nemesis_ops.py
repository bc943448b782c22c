"""The nemeses' ops against a recording fake DB: targets, completion values, state, heal_all."""

import random
import time

import pytest

from chaos.history import INFO, INVOKE, NEMESIS, Op
from chaos.interfaces import Exec, LogFiles, Network, Node, Pause, Primaries, Process, Unsupported
from chaos.nemesis import build_nemesis
from chaos.nemesis.topology import NoLeader
from chaos.net import Net, directed_links
from chaos.provision.base import ProvisionedDB
from chaos.provision.clockshim import ClockSpec


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
        self.now = 1000.0   # the real monotonic clock the specs are anchored to, driven by the tests
        self.the_net = RecordingNet(self.nodes)
        self.missing = {}

    def unavailable(self):
        return dict(self.missing)

    def monotonic(self):
        return self.now

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


def written(db, node_id) -> ClockSpec:
    """The spec the DB wrote for the node's clock file."""
    return ClockSpec.parse(db.specs[node_id])


def test_clock_bumps_accumulate_and_reset_returns_to_real_time(db):
    nemesis = build(db, faults=["clock"])
    assert invoke(nemesis, "clock-skew", {"target": ["n1"], "mode": "bump", "delta": 5}) == {"nodes": {"n1": "+5 x1"}}
    done = invoke(nemesis, "clock-skew", {"target": ["n1"], "mode": "bump", "delta": -7.5})
    assert done == {"nodes": {"n1": "-2.5 x1"}}
    assert written(db, "n1").skew_at(db.now) == -2.5
    assert invoke(nemesis, "clock-reset") == {"nodes": ["n1"]}
    assert written(db, "n1").is_real_time


def test_a_reset_returns_the_wall_clock_but_never_moves_the_monotonic_clock_back(db):
    nemesis = build(db, faults=["clock"])
    invoke(nemesis, "clock-skew", {"target": ["n1", "n2"], "mode": "bump", "delta": 5})
    invoke(nemesis, "clock-skew", {"target": ["n2"], "mode": "rate", "rate": 0.5})
    db.now += 20.0   # n2 lost 10 s: its clocks are 5 s behind
    assert invoke(nemesis, "clock-reset") == {"nodes": ["n1", "n2"]}
    assert written(db, "n1") == ClockSpec(mono_offset=5.0)   # 5 s ahead stays: going back would hold its timers
    assert written(db, "n2") == ClockSpec()                  # behind: caught up at once
    assert written(db, "n1").is_real_time and db.clock_skew(db.node("n1")) == (0.0, 1.0)
    invoke(nemesis, "clock-skew", {"target": ["n1"], "mode": "bump", "delta": 2})
    assert written(db, "n1").mono_skew_at(db.now) == 7.0 and written(db, "n1").skew_at(db.now) == 2.0


def test_a_rate_change_keeps_the_clock_continuous(db):
    # The spec is anchored where the rate changes: the skew goes on from where it was, no jump.
    nemesis = build(db, faults=["clock"])
    invoke(nemesis, "clock-skew", {"target": ["n3"], "mode": "bump", "delta": 4})
    db.now += 100.0
    assert invoke(nemesis, "clock-skew", {"target": ["n3"], "mode": "rate", "rate": 2}) == {"nodes": {"n3": "+4 x2"}}
    assert db.clock_skew(db.node("n3")) == (4.0, 2.0)
    assert written(db, "n3") == ClockSpec(anchor=db.now, skew=4.0, rate=2.0)
    db.now += 10.0  # ten real seconds later the clock gained ten more
    assert db.clock_skew(db.node("n3")) == (14.0, 2.0)
    assert invoke(nemesis, "clock-skew", {"target": ["n3"], "mode": "bump", "delta": 1}) == {"nodes": {"n3": "+15 x2"}}


def test_a_spec_holds_across_restarts_because_its_anchor_is_the_shared_real_clock(db):
    db.set_skew(db.node("n1"), 3.0, 0.5)
    spec = written(db, "n1")
    db.now += 20.0   # 20 s at half speed: 10 s lost, whichever process reads the file then
    assert spec.skew_at(db.now) == -7.0 == db.clock_skew(db.node("n1"))[0]


def test_a_strobe_is_one_spec_that_flips_by_itself_a_bounded_number_of_times(db):
    nemesis = build(db, faults=["clock"])
    start = db.now
    value = invoke(nemesis, "clock-skew", {"target": ["n2"], "mode": "strobe", "delta": 2, "period": 0.05, "count": 6})
    assert value == {"nodes": {"n2": "+0 x1 (strobe +2 s every 0.05 s, 6 flips)"}}
    spec = written(db, "n2")
    seen = [spec.skew_at(start + 0.025 + 0.05 * k) for k in range(10)]
    assert seen == [2.0, 0.0] * 3 + [0.0] * 4  # up, down, ...: exactly `count` periods, ending as it began
    invoke(nemesis, "clock-reset")
    assert written(db, "n2").is_real_time


def test_a_bump_during_a_strobe_ends_it_and_continues_from_its_current_flip(db):
    nemesis = build(db, faults=["clock"])
    invoke(nemesis, "clock-skew", {"target": ["n2"], "mode": "strobe", "delta": 2, "period": 1, "count": 10})
    db.now += 0.5   # the strobe is up
    assert invoke(nemesis, "clock-skew", {"target": ["n2"], "mode": "bump", "delta": 1}) == {"nodes": {"n2": "+3 x1"}}
    assert not written(db, "n2").strobing
    db.now += 1.0
    assert db.clock_skew(db.node("n2")) == (3.0, 1.0)


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
    assert written(db, "n5").is_real_time
    # the network heals before processes restart
    assert db.calls.index(("resume", "n4")) < db.calls.index(("start", "n1"))
