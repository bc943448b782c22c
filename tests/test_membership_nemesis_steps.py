"""The membership nemesis's single steps, for schedules that script a known failure (Ongaro's
sibling configurations, scenarios/unsafe-membership.yaml): add-learner adds a node without
promoting it; promote names the learner and, with wait: false, does not wait for the change to
commit (the outcome stays unknown in the view until the next op reads the cluster's
configuration); shrink with retire: false keeps the removed node's process and its place in the
roster; the new keys are checked like the others."""

import pytest

from chaos.interfaces import CHANGE_UNKNOWN
from chaos.nemesis.membership import check_value
from test_membership_nemesis import FakeCluster, invoke, make


class NoWaitCluster(FakeCluster):
    """The fake, with the wait flag of promote recorded."""

    def promote(self, node_id, wait=True):
        self.calls.append(("promote-wait" if wait else "promote-no-wait", node_id))
        return FakeCluster.promote(self, node_id)


def make_no_wait(count=4):
    db, roster, view, nemesis = make(count)
    db.__class__ = NoWaitCluster
    return db, roster, view, nemesis


def test_add_learner_provisions_and_adds_a_learner_without_promoting_it():
    db, roster, view, nemesis = make(4)
    done = invoke(nemesis, change="add-learner")
    assert done["outcome"] == "ok" and done["nodes"] == ["n5"]
    assert done["learners"] == ["n5"] and "n5" not in done["voters"]
    assert db.learners == {"n5"} and "n5" in db.voters | db.learners and "n5" not in db.voters
    assert [c[0] for c in db.calls] == ["provision", "add-learner"]
    assert "n5" in [n.id for n in roster] and view.added == ["n5"]


def test_promote_names_the_learner_and_waits_by_default():
    db, _, _, nemesis = make_no_wait()
    invoke(nemesis, change="add-learner")
    done = invoke(nemesis, change="promote", node="n5")
    assert done["outcome"] == "ok" and "n5" in done["voters"] and done["learners"] == []
    assert ("promote-wait", "n5") in db.calls


def test_promote_without_waiting_leaves_the_outcome_unknown_until_the_next_op_reads_the_cluster():
    db, _, _, nemesis = make_no_wait()
    invoke(nemesis, change="add-learner")
    # the leader appended it (apply) and could not say whether it committed
    db.script["promote"] = [{"outcome": CHANGE_UNKNOWN, "detail": "timed out", "apply": True}]
    done = invoke(nemesis, change="promote", node="n5", wait=False)
    assert ("promote-no-wait", "n5") in db.calls
    assert done["outcome"] == CHANGE_UNKNOWN
    assert [s["op"] for s in done["steps"]] == ["promote"]   # no wait for the configuration
    assert done["learners"] == ["n5"]                         # the view claims nothing yet
    after = invoke(nemesis, change="transfer", node="n2")
    assert after["steps"][0]["op"] == "read-configuration"
    assert "n5" in after["voters"] and after["learners"] == []


def test_promote_of_a_node_that_is_not_a_learner_is_skipped():
    db, _, _, nemesis = make_no_wait()
    done = invoke(nemesis, change="promote", node="n2")
    assert done["outcome"] == "skipped" and "n2 is not a learner" in done["detail"]
    assert not [c for c in db.calls if c[0].startswith("promote")]
    assert invoke(nemesis, change="promote")["detail"] == "no learner to promote"


def test_shrink_with_retire_false_keeps_the_removed_node_in_the_roster():
    db, roster, view, nemesis = make(5)
    done = invoke(nemesis, change="shrink", node="n4", retire=False)
    assert done["outcome"] == "ok" and "n4" not in done["voters"]
    assert db.retired == [] and "n4" in [n.id for n in roster] and view.removed == []
    shrunk = invoke(nemesis, change="shrink", node="n3")
    assert shrunk["outcome"] == "ok" and db.retired == ["n3"]


@pytest.mark.parametrize("value, message", [
    ({"change": "shrink", "wait": False}, "wait is only for change promote"),
    ({"change": "promote", "retire": False}, "retire is only for change shrink"),
    ({"change": "promote", "wait": "no"}, "wait must be true or false"),
    ({"change": "shrink", "retire": 0}, "retire must be true or false"),
    ({"change": "grow", "node": "n2"}, "node is only for change shrink or transfer .a voter. or promote"),
])
def test_the_new_keys_are_checked(value, message):
    with pytest.raises(ValueError, match=message):
        check_value(value)
