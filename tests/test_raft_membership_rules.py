"""What a configuration is and which single-server changes are legal from it (raftnode.membership,
pure): one voter added or removed per change, new members join as learners, removed ids are
retired, members carry their addresses and incarnations, and snapshots carry the configuration."""

import pytest
from raftnode.membership import (
    ADD_LEARNER,
    EMPTY,
    PROMOTE,
    REMOVE,
    ChangeRefused,
    ConfChange,
    Configuration,
    config_entry_problem,
    pack_snapshot,
    snapshot_configuration,
    unpack_snapshot,
)

BOOT = Configuration.bootstrap(["n1", "n2", "n3"], {
    f"n{i}": {"peer": f"127.0.0.1:900{i}", "client": f"127.0.0.1:800{i}"} for i in (1, 2, 3)})


def learner(node_id="n4", port=4, incarnation="inc-4"):
    return ConfChange(ADD_LEARNER, node_id, f"127.0.0.1:90{port:02d}", f"127.0.0.1:80{port:02d}", incarnation)


def refused(conf, change):
    with pytest.raises(ChangeRefused) as info:
        conf.apply(change)
    return info.value.code


def test_a_new_member_joins_as_a_learner_and_a_promotion_adds_exactly_one_voter():
    with_learner = BOOT.apply(learner())
    assert with_learner.voters == BOOT.voters and with_learner.learners == {"n4"}
    assert with_learner.members["n4"].peer == "127.0.0.1:9004"
    promoted = with_learner.apply(ConfChange(PROMOTE, "n4"))
    assert promoted.voters == {"n1", "n2", "n3", "n4"} and not promoted.learners
    assert promoted.change == {"op": PROMOTE, "id": "n4"}


def test_removing_a_member_retires_its_id_for_good():
    smaller = BOOT.apply(ConfChange(REMOVE, "n2"))
    assert smaller.voters == {"n1", "n3"} and smaller.retired == {"n2"}
    assert refused(smaller, ConfChange(ADD_LEARNER, "n2", "127.0.0.1:9102", "127.0.0.1:8102", "new")) == "id_retired"
    assert refused(smaller, ConfChange(REMOVE, "n2")) == "not_a_member"


def test_illegal_changes_are_refused_with_a_reason():
    assert refused(BOOT, learner("n2")) == "already_member"
    assert refused(BOOT, ConfChange(PROMOTE, "n1")) == "not_a_learner"
    assert refused(BOOT, ConfChange(PROMOTE, "n9")) == "not_a_member"
    assert refused(BOOT, ConfChange(ADD_LEARNER, "n4", "127.0.0.1:9001", "127.0.0.1:8004", "x")) == "address_in_use"
    assert refused(BOOT, ConfChange(ADD_LEARNER, "n4", "nohost", "127.0.0.1:8004", "x")) == "bad_change"
    assert refused(BOOT, ConfChange(ADD_LEARNER, "n4", "127.0.0.1:9004", "127.0.0.1:8004", None)) == "bad_change"
    assert refused(BOOT, ConfChange(ADD_LEARNER, "bad id", "127.0.0.1:9004", "127.0.0.1:8004", "x")) == "bad_change"
    assert refused(BOOT, ConfChange("demote", "n1")) == "bad_change"
    only = Configuration.bootstrap(["n1"])
    assert refused(only, ConfChange(REMOVE, "n1")) == "last_voter"
    incarnated = BOOT.apply(learner())
    assert refused(incarnated, learner("n5", 5, incarnation="inc-4")) == "incarnation_in_use"


def test_a_configuration_round_trips_through_json_and_bad_json_is_named():
    conf = BOOT.apply(learner()).apply(ConfChange(REMOVE, "n3"))
    assert Configuration.from_json(conf.to_json()) == conf
    assert config_entry_problem(conf.to_json()) is None
    assert "at least one voter" in config_entry_problem({"members": {}})
    assert "role" in config_entry_problem({"members": {"n1": {"role": "king"}}})
    assert "members" in config_entry_problem([1, 2])


def test_the_first_change_pins_the_incarnations_of_bootstrap_members():
    pinned = BOOT.apply(learner()).with_incarnations({"n1": "inc-1", "n2": "inc-2", "n4": "other"})
    assert pinned.members["n1"].incarnation == "inc-1" and pinned.members["n3"].incarnation is None
    assert pinned.members["n4"].incarnation == "inc-4"   # never overwritten


def test_peers_are_admitted_by_id_and_incarnation():
    conf = BOOT.apply(learner()).with_incarnations({"n1": "inc-1"})
    assert conf.admission_problem("n1", "inc-1") is None
    assert conf.admission_problem("n2", "anything") is None        # not pinned yet
    assert "never reused with a new disk" in conf.admission_problem("n1", "wiped")
    # an id this configuration has never named: a member added by a later one (a node whose
    # log is behind must still take its leader's appends)
    assert conf.admission_problem("n7", "x") is None
    assert "removed" in conf.apply(ConfChange(REMOVE, "n2")).admission_problem("n2", "x")
    assert EMPTY.admission_problem("anyone", "x") is None           # a joining node


def test_a_snapshot_carries_the_configuration_beside_the_state_machine_bytes():
    conf = BOOT.apply(learner())
    data = pack_snapshot(conf, b'{"kv": 1}')
    assert snapshot_configuration(data) == conf
    assert unpack_snapshot(data) == (conf, b'{"kv": 1}')
    assert unpack_snapshot(pack_snapshot(None, b"x")) == (None, b"x")
    # a snapshot from before configurations were kept: the bootstrap configuration applies
    assert unpack_snapshot(b'{"format": 1}') == (None, b'{"format": 1}')
    with pytest.raises(ValueError, match="runs past"):
        unpack_snapshot(data[:20])
