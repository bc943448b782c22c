"""Partition topologies and fault targets (pure functions)."""

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.nemesis.topology import (NoLeader, bridge, from_groups, halves, isolate, majorities_ring,
                                    make_partition, random_halves, select_targets)

N5 = ["n1", "n2", "n3", "n4", "n5"]


def sees(partition, node, nodes):
    blocked = {b for a, b in partition.cut if a == node} | {a for a, b in partition.cut if b == node}
    return {n for n in nodes if n not in blocked}


def test_isolate_cuts_one_node_from_every_other():
    p = isolate(N5, "n3")
    assert p.groups == [["n3"], ["n1", "n2", "n4", "n5"]]
    assert p.cut == [["n1", "n3"], ["n2", "n3"], ["n3", "n4"], ["n3", "n5"]]


def test_halves_puts_a_minority_against_a_majority():
    p = halves(N5)
    assert p.groups == [["n1", "n2"], ["n3", "n4", "n5"]]
    assert len(p.cut) == 2 * 3


def test_random_halves_is_seeded_and_splits_minority_from_majority():
    a, b = random_halves(N5, random.Random(7)), random_halves(N5, random.Random(7))
    assert a == b
    assert sorted(len(g) for g in a.groups) == [2, 3]
    assert a.topology == "random-halves"


@pytest.mark.parametrize("n", [3, 5, 7])
def test_majorities_ring_every_node_sees_a_majority_and_no_two_see_the_same_one(n):
    nodes = [f"n{i}" for i in range(1, n + 1)]
    p = majorities_ring(nodes, random.Random(n))
    views = [frozenset(sees(p, node, nodes)) for node in nodes]
    assert all(len(v) > n // 2 for v in views)
    assert p.cut, "a ring must cut something"
    if n > 3:
        assert len(set(views)) == n
    else:
        assert len(set(views)) == 3  # two different majorities and one node that sees all
    # the groups (the ring's cliques) replay to exactly the same cut
    assert from_groups(nodes, p.groups).cut == p.cut


def test_bridge_keeps_one_node_linked_to_both_halves_that_cannot_talk():
    p = bridge(N5)
    assert from_groups(N5, p.groups).cut == p.cut  # overlapping groups replay the bridge
    hub = "n3"
    assert all(hub not in pair for pair in p.cut)
    assert sorted(map(tuple, p.cut)) == sorted(
        tuple(sorted(pair)) for pair in itertools.product(["n1", "n2"], ["n4", "n5"]))
    assert p.groups == [["n1", "n2", "n3"], ["n3", "n4", "n5"]]


def test_groups_must_cover_every_node_and_cut_something():
    with pytest.raises(ValueError, match="n5 are in no group"):
        from_groups(N5, [["n1"], ["n2", "n3", "n4"]])
    with pytest.raises(ValueError, match="names a node twice"):
        from_groups(N5, [["n1", "n1"], ["n2", "n3", "n4", "n5"]])
    with pytest.raises(ValueError, match="cut nothing"):
        from_groups(N5, [N5, ["n1"]])
    with pytest.raises(ValueError, match="unknown node 'n9'"):
        from_groups(N5, [["n9"], N5])
    with pytest.raises(ValueError, match="at least two groups"):
        from_groups(N5, [N5])


def test_make_partition_resolves_the_leader_and_refuses_without_one():
    p = make_partition({"topology": "isolate-leader"}, N5, random.Random(1), leader="n4")
    assert p.topology == "isolate-leader" and p.groups[0] == ["n4"]
    with pytest.raises(NoLeader):
        make_partition({"topology": "isolate-leader"}, N5, random.Random(1), leader=None)


def test_make_partition_rejects_unknown_topologies_listing_the_choices():
    with pytest.raises(ValueError, match=r"unknown partition topology 'star'.*majorities-ring"):
        make_partition({"topology": "star"}, N5, random.Random(1))
    with pytest.raises(ValueError, match="needs a 'topology'"):
        make_partition({}, N5, random.Random(1))


def test_make_partition_explicit_groups_and_named_isolation():
    p = make_partition({"topology": "groups", "groups": [["n1", "n2"], ["n3", "n4", "n5"]]}, N5, random.Random(0))
    assert p.cut == halves(N5).cut
    assert make_partition({"topology": "isolate-one", "node": "n2"}, N5, random.Random(0)).groups[0] == ["n2"]


@pytest.mark.parametrize("target, size", [("one", 1), ("minority", 2), ("majority", 3), ("all", 5)])
def test_targets_have_the_sizes_their_names_say(target, size):
    chosen = select_targets(target, N5, random.Random(3))
    assert len(chosen) == size and set(chosen) <= set(N5)


def test_targets_leader_and_named_nodes():
    assert select_targets("leader", N5, random.Random(0), leader="n2") == ["n2"]
    assert select_targets(["n4", "n1", "n4"], N5, random.Random(0)) == ["n1", "n4"]
    with pytest.raises(NoLeader):
        select_targets("leader", N5, random.Random(0))
    with pytest.raises(ValueError, match="unknown node 'n8'"):
        select_targets(["n8"], N5, random.Random(0))
    with pytest.raises(ValueError, match=r"unknown target 'most'.*minority"):
        select_targets("most", N5, random.Random(0))


def test_node_ids_sort_numerically():
    nodes = [f"n{i}" for i in range(1, 12)]
    assert halves(nodes).groups[0] == ["n1", "n2", "n3", "n4", "n5"]


@settings(max_examples=60, deadline=None)
@given(n=st.sampled_from([3, 5, 7]), seed=st.integers(0, 10_000),
       topology=st.sampled_from(["isolate-one", "halves", "random-halves", "majorities-ring", "bridge"]))
def test_every_topology_cuts_only_real_pairs_and_leaves_some_majority_connected_side(n, seed, topology):
    nodes = [f"n{i}" for i in range(1, n + 1)]
    p = make_partition({"topology": topology}, nodes, random.Random(seed))
    assert p.cut == sorted(p.cut)
    assert from_groups(nodes, p.groups).cut == p.cut  # every executed partition replays from its groups
    for a, b in p.cut:
        assert a != b and a in nodes and b in nodes
    # every topology keeps at least one node that still sees a majority (one side can progress)
    assert any(len(sees(p, node, nodes)) > n // 2 for node in nodes)
