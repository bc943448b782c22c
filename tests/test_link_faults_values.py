"""Link faults and one-way partitions as values: what the nemesis ops ask the network layer
for, how one-way grudges become rules, how a run replays them, how reports band them."""

import random

import pytest

from chaos.generator.schedule import replayable_step
from chaos.history import Op
from chaos.interfaces import DB, Network, Node, Primaries
from chaos.nemesis import build_nemesis
from chaos.nemesis.topology import make_partition
from chaos.net import Net
from chaos.net.iptables import grudge_rules, link_rules
from chaos.net.links import LinkFault, normalize_links
from reports.analysis import describe_fault, fault_intervals, nemesis_events
from tests.fixtures.run_factory import history

IDS = ["n1", "n2", "n3"]


class RecordingNet(Net):
    link_unavailable = {}

    def install(self): pass
    def uninstall(self): pass
    def reapply(self, node): pass
    def rules(self, node): return []
    def _apply(self, grudge): pass
    def _apply_links(self, links): pass
    def _clear(self): pass


class FakeDB(DB, Network, Primaries):
    name = "fake"

    def __init__(self):
        self.nodes = [Node(n, "", f"127.0.9.{i + 1}") for i, n in enumerate(IDS)]
        self.the_net = RecordingNet(self.nodes)
        self.leader = "n2"

    def setup(self, count): return self.nodes
    def teardown(self): pass
    def net(self): return self.the_net
    def primaries(self, view): return [self.leader]


def invoke(nemesis, f, value=None):
    return nemesis.invoke(Op(process="nemesis", type="invoke", f=f, value=value)).value


def test_a_deaf_leader_hears_nobody_and_a_mute_one_is_heard_by_nobody():
    deaf = make_partition({"topology": "leader-deaf"}, IDS, random.Random(1), leader="n2")
    assert deaf.grudge(IDS) == {"n1": frozenset(), "n2": frozenset({"n1", "n3"}), "n3": frozenset()}
    assert deaf.to_value()["one_way"] == [["n1", "n2"], ["n3", "n2"]] and deaf.cut == []
    mute = make_partition({"topology": "leader-mute"}, IDS, random.Random(1), leader="n2")
    assert mute.grudge(IDS) == {"n1": frozenset({"n2"}), "n2": frozenset(), "n3": frozenset({"n2"})}


def test_one_way_grudges_drop_only_what_the_unheard_node_starts():
    def match(sender, receiver):
        return f"-s {sender}"
    one_way = grudge_rules(match, {"n1": frozenset({"n2"}), "n2": frozenset()})
    assert one_way == ["-s n2 -m conntrack --ctdir ORIGINAL -j DROP", "-s n2 -m conntrack --ctstate INVALID -j DROP"]
    both = grudge_rules(match, {"n1": frozenset({"n2"}), "n2": frozenset({"n1"})})
    assert both == ["-s n2 -j DROP", "-s n1 -j DROP"]


def test_link_rules_put_the_delay_queue_last_and_bypass_a_missing_program():
    links = [LinkFault("n2", "n1", loss=0.25, delay_ms=40, jitter_ms=10)]
    rules = link_rules(lambda s, r: f"-s {s}", links, {(40.0, 10.0): 101})
    assert rules == ["-s n2 -m statistic --mode random --probability 0.250000 -j DROP",
                     "-s n2 -j NFQUEUE --queue-num 101 --queue-bypass"]


def test_the_nemeses_combine_their_properties_per_link_and_heal_only_their_own():
    db = FakeDB()
    nemesis = build_nemesis(["partition", "loss", "delay", "bandwidth"], db, db.nodes, None, random.Random(1))
    done = invoke(nemesis, "slow", {"target": "leader", "delay_ms": 50, "jitter_ms": 5})
    assert done["nodes"] == ["n2"] and done["links"] == [["n1", "n2"], ["n2", "n1"], ["n2", "n3"], ["n3", "n2"]]
    invoke(nemesis, "lossy", {"links": [["n1", "n2"]], "loss": 0.1})
    invoke(nemesis, "partition", {"topology": "isolate-one", "node": "n3"})
    faults = {(f.sender, f.receiver): f for f in db.the_net.links()}
    assert faults[("n1", "n2")] == LinkFault("n1", "n2", loss=0.1, delay_ms=50, jitter_ms=5)
    assert faults[("n3", "n2")] == LinkFault("n3", "n2", delay_ms=50, jitter_ms=5)
    assert invoke(nemesis, "lossless")["healed"] == "loss"
    assert {f.loss for f in db.the_net.links()} == {0.0} and len(db.the_net.links()) == 4
    assert invoke(nemesis, "heal") == {"healed": "partition"}       # a partition's heal keeps the delay
    assert len(db.the_net.links()) == 4
    nemesis.heal_all()
    assert db.the_net.links() == () and not any(db.the_net.current().values())


@pytest.mark.parametrize("f,value,error", [
    ("lossy", {"target": "one", "loss": 1.5}, "loss must be a number"),
    ("slow", {"target": "one"}, "delay_ms must be a number"),
    ("throttle", {"target": "one", "rate_kbit": 2.5}, "rate_kbit must be an integer"),
    ("slow", {"delay_ms": 10}, "needs either target"),
    ("slow", {"links": [["n1", "n9"]], "delay_ms": 10}, "unknown node 'n9'"),
    ("lossy", {"target": "one", "loss": 0.1, "delay_ms": 3}, "unknown key 'delay_ms'"),
])
def test_bad_link_fault_values_are_refused_with_the_reason(f, value, error):
    db = FakeDB()
    nemesis = build_nemesis(["loss", "delay", "bandwidth"], db, db.nodes, None, random.Random(1))
    with pytest.raises(ValueError, match=error):
        invoke(nemesis, f, value)
    assert db.the_net.links() == ()


def test_two_faults_for_one_link_are_refused():
    with pytest.raises(ValueError, match="two link faults for n1 -> n2"):
        normalize_links([LinkFault("n1", "n2", loss=0.1), {"sender": "n1", "receiver": "n2", "delay_ms": 5}], IDS)


def test_a_replay_names_the_links_and_nodes_that_were_hit():
    step = replayable_step({"at": 1.0, "f": "partition", "value": {"topology": "leader-deaf"},
                            "result": {"topology": "leader-deaf", "groups": [["n2"], ["n1", "n3"]], "cut": [],
                                       "one_way": [["n1", "n2"], ["n3", "n2"]]}})
    assert step["value"] == {"topology": "one-way", "links": [["n1", "n2"], ["n3", "n2"]]}
    replayed = make_partition(step["value"], IDS, random.Random(0))
    assert replayed.grudge(IDS)["n2"] == frozenset({"n1", "n3"})
    step = replayable_step({"at": 2.0, "f": "slow", "value": {"target": "leader", "delay_ms": 9},
                            "result": {"nodes": ["n3"], "links": [], "delay_ms": 9.0, "jitter_ms": 0.0}})
    assert step["value"] == {"target": ["n3"], "delay_ms": 9}


def test_link_faults_are_drawn_as_bands_that_say_what_was_asked(tmp_path):
    from reports.load import load_run
    from tests.fixtures.run_factory import write_run

    ops = history(("nemesis", "invoke", "slow", None, {"target": "one", "delay_ms": 100, "jitter_ms": 20}, 1.0),
                  ("nemesis", "info", "slow", None, {"nodes": ["n3"], "delay_ms": 100.0, "jitter_ms": 20.0}, 1.2),
                  ("nemesis", "invoke", "lossy", None, {"target": "all", "loss": 0.2}, 1.5),
                  ("nemesis", "info", "lossy", None, {"nodes": ["n1", "n2"], "loss": 0.2}, 1.6),
                  ("nemesis", "invoke", "fast", None, None, 3.0),
                  ("nemesis", "info", "fast", None, {"healed": "delay", "links": []}, 3.1))
    run = load_run(write_run(tmp_path / "run", ops))
    faults = fault_intervals(nemesis_events(run.ops, run.ops[0].time))
    assert [(f.kind, round(f.start, 3), None if f.end is None else round(f.end, 3)) for f in faults] == [
        ("slow", 0.2, 2.0), ("lossy", 0.6, None)]
    assert faults[0].describe() == "one: n3 (delay 100 ± 20 ms)"
    assert describe_fault("lossy", {"target": "all"}, {"nodes": ["n1", "n2"], "loss": 0.2}) == "all: n1 n2 (loss 20 %)"
