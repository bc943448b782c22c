"""The membership nemesis against a fake DB with the Membership capability: it keeps its own
view of the configuration, draws only legal changes (no shrink below three voters, no grow past
seven members), records every step with its outcome, resolves an unknown outcome from the
cluster's configuration, moves added and retired nodes in and out of the run's roster, and a
run refuses membership faults on a DB without the capability."""

import random

import pytest

from chaos.faults import fault_kind
from chaos.history import INFO, NEMESIS, Op
from chaos.interfaces import (CHANGE_FAIL, CHANGE_OK, CHANGE_UNKNOWN, DB, Membership, Node, Primaries,
                              Roster)
from chaos.nemesis.membership import MembershipNemesis


class FakeCluster(DB, Membership, Primaries):
    """A cluster whose configuration is a pair of sets; `script` makes chosen calls answer
    otherwise (a list of outcomes per call name, consumed in order)."""

    name = "fake-membership"

    def __init__(self, count=5):
        self.nodes = [Node(id=f"n{i}", client_url=f"http://x/{i}", address=f"10.0.0.{i}") for i in range(1, count + 1)]
        self.voters = {n.id for n in self.nodes}
        self.learners = set()
        self.leader = "n1"
        self.script: dict[str, list[dict]] = {}
        self.calls: list[tuple] = []
        self.retired: list[str] = []
        self.next_id = count + 1

    def setup(self, count):
        return list(self.nodes)

    def teardown(self):
        pass

    def primaries(self, view):
        return [self.leader] if self.leader else []

    def _scripted(self, name, default):
        queue = self.script.get(name)
        if queue:
            outcome = queue.pop(0)
            if outcome.pop("apply", False):
                default()
            return outcome
        default()
        return {"outcome": CHANGE_OK, "detail": "committed"}

    def provision_node(self):
        node = Node(id=f"n{self.next_id}", client_url="", address=f"10.0.0.{self.next_id}")
        self.next_id += 1
        self.calls.append(("provision", node.id))
        return node

    def add_learner(self, node):
        self.calls.append(("add-learner", node.id))
        return self._scripted("add-learner", lambda: self.learners.add(node.id))

    def promote(self, node_id):
        self.calls.append(("promote", node_id))

        def do():
            self.learners.discard(node_id)
            self.voters.add(node_id)
        return self._scripted("promote", do)

    def remove(self, node_id):
        self.calls.append(("remove", node_id))

        def do():
            self.voters.discard(node_id)
            self.learners.discard(node_id)
            if self.leader == node_id:
                self.leader = sorted(self.voters)[0]
        return self._scripted("remove", do)

    def retire_node(self, node):
        self.retired.append(node.id)

    def transfer_leadership(self, to=None):
        self.calls.append(("transfer", to))

        def do():
            self.leader = to
        return self._scripted("transfer", do)

    def configuration(self):
        return {"voters": sorted(self.voters), "learners": sorted(self.learners), "committed": True}


class FakeView:
    def __init__(self):
        self.added, self.removed = [], []

    def add_node(self, node):
        self.added.append(node.id)

    def remove_node(self, node_id):
        self.removed.append(node_id)


def make(count=5, seed=1):
    db = FakeCluster(count)
    roster = Roster(db.setup(count))
    view = FakeView()
    return db, roster, view, MembershipNemesis(db, roster, view, random.Random(seed))


def invoke(nemesis, f="membership", **value):
    done = nemesis.invoke(Op(process=NEMESIS, type="invoke", f=f, value=value or None))
    assert done.type == INFO and done.process == NEMESIS
    return done.value


def test_grow_provisions_adds_a_learner_promotes_it_and_puts_it_in_the_roster():
    db, roster, view, nemesis = make()
    result = invoke(nemesis, change="grow")
    assert result["outcome"] == CHANGE_OK and result["nodes"] == ["n6"]
    assert [s["op"] for s in result["steps"]] == ["provision", "add-learner", "promote"]
    assert all(s["outcome"] == CHANGE_OK for s in result["steps"])
    assert result["voters"] == ["n1", "n2", "n3", "n4", "n5", "n6"] and result["learners"] == []
    assert [n.id for n in roster][-1] == "n6" and view.added == ["n6"]
    assert db.voters == set(result["voters"])


def test_shrink_removes_a_voter_and_retires_its_node():
    db, roster, view, nemesis = make()
    result = invoke(nemesis, change="shrink")
    victim = result["nodes"][0]
    assert result["outcome"] == CHANGE_OK and victim not in result["voters"]
    assert [s["op"] for s in result["steps"]] == ["remove", "retire"]
    assert db.retired == [victim] and victim not in [n.id for n in roster]
    assert [n.id for n in roster.retired] == [victim] and view.removed == [victim]


def test_a_shrink_never_leaves_fewer_than_three_voters():
    db, roster, view, nemesis = make(count=3)
    result = invoke(nemesis, change="shrink")
    assert result["outcome"] == "skipped" and "fewer than 3" in result["detail"]
    assert not [c for c in db.calls if c[0] == "remove"] and len(roster) == 3


def test_a_grow_never_makes_more_than_seven_members():
    db, roster, view, nemesis = make(count=7)
    result = invoke(nemesis, change="grow")
    assert result["outcome"] == "skipped" and not db.calls


def test_shrink_of_the_leader_removes_the_node_that_leads():
    db, roster, view, nemesis = make()
    db.leader = "n4"
    result = invoke(nemesis, change="shrink", node="leader")
    assert result["nodes"] == ["n4"] and "n4" not in db.voters


def test_transfer_hands_leadership_to_another_voter():
    db, roster, view, nemesis = make()
    result = invoke(nemesis, change="transfer")
    assert result["outcome"] == CHANGE_OK and result["from"] == "n1"
    assert result["nodes"][0] != "n1" and db.leader == result["nodes"][0]
    assert invoke(nemesis, change="transfer", node="n9")["outcome"] == "skipped"


def test_replace_grows_first_then_removes_another_voter():
    db, roster, view, nemesis = make()
    result = invoke(nemesis, change="replace")
    new, removed = result["nodes"]
    assert new == "n6" and removed != "n6"
    assert len(db.voters) == 5 and "n6" in db.voters and removed not in db.voters


def test_an_unknown_outcome_is_resolved_from_the_clusters_configuration():
    db, roster, view, nemesis = make()
    # the remove times out although it committed: the view must follow the cluster
    db.script["remove"] = [{"outcome": CHANGE_UNKNOWN, "detail": "timeout", "apply": True}]
    result = invoke(nemesis, change="shrink", node="n3")
    assert result["outcome"] == CHANGE_UNKNOWN
    assert [s["op"] for s in result["steps"]] == ["remove", "read-configuration", "retire"]
    assert "n3" not in result["voters"] and db.retired == ["n3"]
    # and one that did not commit leaves the node a voter, running
    db.script["remove"] = [{"outcome": CHANGE_UNKNOWN, "detail": "timeout"}]
    result = invoke(nemesis, change="shrink", node="n2")
    assert "n2" in result["voters"] and db.retired == ["n3"] and "n2" in [n.id for n in roster]


def test_a_not_now_refusal_is_retried_and_a_learner_left_behind_is_promoted_at_settle(monkeypatch):
    monkeypatch.setattr("chaos.nemesis.membership.RETRY_FOR_S", 0.5)
    db, roster, view, nemesis = make()
    db.script["promote"] = [{"outcome": CHANGE_FAIL, "error": "not_caught_up", "retry": True, "detail": "slow"}] * 2
    result = invoke(nemesis, change="grow")
    promote = result["steps"][-1]
    assert promote["op"] == "promote" and promote["outcome"] == CHANGE_OK and promote["tries"] == 3
    # a refusal that lasts leaves a learner, which settle promotes
    db.script["promote"] = [{"outcome": CHANGE_FAIL, "error": "not_caught_up", "retry": True, "detail": "slow"}] * 50
    result = invoke(nemesis, change="grow")
    assert result["outcome"] == CHANGE_FAIL and result["learners"] == ["n7"]
    db.script["promote"] = []
    settled = invoke(nemesis, f="settle")
    assert settled["agrees"] is True and settled["learners"] == [] and "n7" in settled["voters"]


def test_settle_removes_a_learner_that_cannot_be_promoted(monkeypatch):
    monkeypatch.setattr("chaos.nemesis.membership.RETRY_FOR_S", 0.2)
    db, roster, view, nemesis = make()
    db.script["promote"] = [{"outcome": CHANGE_FAIL, "error": "not_caught_up", "retry": True, "detail": "slow"}] * 100
    invoke(nemesis, change="grow")
    settled = invoke(nemesis, f="settle")
    assert [s["op"] for s in settled["steps"]][-2:] == ["remove", "retire"]
    assert settled["learners"] == [] and settled["agrees"] is True and db.retired == ["n6"]


def test_a_node_never_added_is_retired_not_left_running():
    db, roster, view, nemesis = make()
    db.script["add-learner"] = [{"outcome": CHANGE_FAIL, "detail": "refused"}]
    result = invoke(nemesis, change="grow")
    assert result["outcome"] == CHANGE_FAIL and db.retired == ["n6"]
    assert "n6" not in [n.id for n in roster] and result["voters"] == ["n1", "n2", "n3", "n4", "n5"]


def test_bad_values_are_refused_naming_the_choices():
    db, roster, view, nemesis = make()
    with pytest.raises(ValueError, match="unknown change 'explode'.*grow, shrink, replace, transfer"):
        invoke(nemesis, change="explode")
    with pytest.raises(ValueError, match="node is only for change shrink or transfer"):
        invoke(nemesis, change="grow", node="n2")


def test_a_run_refuses_membership_faults_on_a_db_without_the_capability(tmp_path):
    from chaos.config import RunConfig
    from chaos.phases import RunAborted, check_capabilities
    from fake_node import FakeDB

    cfg = RunConfig(nemesis=["membership"], store=str(tmp_path)).validate()
    with pytest.raises(RunAborted, match="the membership fault needs the 'membership' capability, which "
                                         "'fake' lacks: it does not implement chaos.interfaces.Membership"):
        check_capabilities(cfg, FakeDB())
    assert "membership" in FakeCluster().capabilities()
    assert fault_kind("membership").in_all is False


def test_scenario_steps_are_validated_with_the_line(tmp_path):
    from chaos.scenario import ScenarioError, load_scenario

    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nnodes: 5\nschedule:\n  - {at: 1, f: membership, change: grow}\n"
                    "  - {at: 2, f: membership, change: shrinkk}\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml:5: membership: unknown change 'shrinkk'"):
        load_scenario(str(path))


def test_a_reproduction_pins_the_removed_voter_and_may_name_nodes_added_mid_run():
    from chaos.config import RunConfig
    from chaos.generator import replayable_step
    from chaos.scenario import ScenarioError, validate_steps

    entry = {"at": 2.0, "f": "membership", "value": {"change": "shrink", "node": "leader"},
             "result": {"change": "shrink", "outcome": "ok", "nodes": ["n3"]}}
    assert replayable_step(entry)["value"] == {"change": "shrink", "node": "n3"}
    steps = [{"at": 1.0, "f": "membership", "value": {"change": "grow"}},
             {"at": 3.0, "f": "kill", "value": {"target": ["n6"]}},
             {"at": 4.0, "f": "partition", "value": {"topology": "groups", "groups": [["n6"], ["n1", "n2"]]}}]
    cfg = RunConfig(nodes=5, time_limit=10).validate()
    assert [s["f"] for s in validate_steps(steps, cfg)] == ["membership", "kill", "partition"]
    with pytest.raises(ScenarioError, match="unknown node 'n6'"):
        validate_steps(steps[1:], cfg)  # without a membership change no n6 can exist
