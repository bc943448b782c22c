"""Partition topologies and fault targets: pure functions of node ids (and a seeded rng).

A partition is described by `cut`: the unordered pairs of nodes that cannot exchange packets,
and `groups`: what each side sees (for a ring or bridge the groups overlap). A one-way partition
has `one_way` links instead: [sender, receiver] pairs where the receiver no longer hears the
sender while the sender still hears the receiver (chaos.net applies them per connection, so
the receiver's own messages still reach the sender).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from chaos.faults import LEADER_TOPOLOGIES, TARGETS, TOPOLOGIES
from chaos.net.grudge import Grudge, normalize, symmetric


@dataclass
class Partition:
    topology: str
    groups: list[list[str]]
    cut: list[list[str]]  # sorted pairs [a, b] with a < b, sorted
    one_way: list[list[str]] = field(default_factory=list)  # [sender, receiver]: receiver deaf to sender

    def to_value(self) -> dict:
        value = {"topology": self.topology, "groups": self.groups, "cut": self.cut}
        if self.one_way:
            value["one_way"] = self.one_way
        return value

    def grudge(self, nodes: list[str]) -> Grudge:
        """Both directions of every cut pair: nobody hears anyone across the cut; and the
        receiver of every one-way link stops hearing its sender."""
        grudge = {n: set(s) for n, s in symmetric(self.cut, nodes).items()}
        for sender, receiver in self.one_way:
            grudge[receiver].add(sender)
        return normalize(grudge, nodes)


def _sort_key(node_id: str):
    # n2 before n10: ids are compared by their digits when they have the same prefix
    head = node_id.rstrip("0123456789")
    tail = node_id[len(head):]
    return (head, int(tail) if tail else -1, node_id)


def _sorted(ids) -> list[str]:
    return sorted(ids, key=_sort_key)


def _cut_from_links(nodes: list[str], linked) -> list[list[str]]:
    return sorted(([a, b] for a, b in itertools.combinations(_sorted(nodes), 2) if not linked(a, b)),
                  key=lambda p: (_sort_key(p[0]), _sort_key(p[1])))


def from_groups(nodes: list[str], groups: object, topology: str = "groups") -> Partition:
    """Two nodes can talk iff some group holds both; every node must be in a group.

    `groups` is a list of lists of node ids; it may come straight from a scenario, so anything
    else is refused with an error naming the problem.

    Disjoint groups are an ordinary partition. Overlapping groups describe a bridge
    ([[n1,n2,n3],[n3,n4,n5]]) or a ring (its links as cliques), so that any executed partition
    can be replayed from its groups.
    """
    _check_nodes(nodes)
    if not isinstance(groups, (list, tuple)) or len(groups) < 2:
        raise ValueError(f"a partition needs at least two groups, got {groups!r}")
    member: dict[str, set[int]] = {n: set() for n in nodes}
    for i, group in enumerate(groups):
        if not isinstance(group, (list, tuple)) or not group:
            raise ValueError(f"group {i} must be a non-empty list of node ids, got {group!r}")
        if len(set(group)) != len(group):
            raise ValueError(f"group {i} names a node twice: {list(group)!r}")
        for node in group:
            if node not in member:
                raise ValueError(f"group {i} names unknown node {node!r} (nodes: {', '.join(nodes)})")
            member[node].add(i)
    missing = [n for n in nodes if not member[n]]
    if missing:
        raise ValueError(f"nodes {', '.join(missing)} are in no group")
    cut = _cut_from_links(nodes, lambda a, b: bool(member[a] & member[b]))
    if not cut:
        raise ValueError(f"groups {groups!r} cut nothing: every pair of nodes shares a group")
    return Partition(topology, [_sorted(g) for g in groups], cut)


def isolate(nodes: list[str], node: str, topology: str = "isolate-one") -> Partition:
    if node not in nodes:
        raise ValueError(f"cannot isolate unknown node {node!r} (nodes: {', '.join(nodes)})")
    return from_groups(nodes, [[node], [n for n in nodes if n != node]], topology)


def halves(nodes: list[str], topology: str = "halves") -> Partition:
    """The first floor(n/2) nodes against the rest: a minority and a majority."""
    _check_nodes(nodes)
    middle = len(nodes) // 2
    return from_groups(nodes, [list(nodes[:middle]), list(nodes[middle:])], topology)


def random_halves(nodes: list[str], rng) -> Partition:
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    return halves(shuffled, "random-halves")


def majorities_ring(nodes: list[str], rng=None) -> Partition:
    """Every node sees a majority, and no two nodes see the same one (Jepsen's majorities ring).

    Nodes sit on a ring (shuffled by rng when given); each keeps links to the nodes within
    distance k, the smallest k whose window 2k+1 is a majority. Three nodes cannot form such a
    ring with a proper cut, so one link is cut: two nodes see different majorities and the
    third sees everyone.
    """
    _check_nodes(nodes)
    ring = list(nodes)
    if rng is not None:
        rng.shuffle(ring)
    n = len(ring)
    if n == 3:
        cut_pair = {ring[0], ring[1]}
        cut = _cut_from_links(ring, lambda a, b: {a, b} != cut_pair)
    else:
        majority = n // 2 + 1
        k = majority // 2  # window 2k+1 >= majority
        position = {node: i for i, node in enumerate(ring)}

        def linked(a, b):
            d = abs(position[a] - position[b])
            return min(d, n - d) <= k
        cut = _cut_from_links(ring, linked)
    # groups: the ring's links as cliques (k+1 consecutive nodes), so from_groups replays it
    if n == 3:
        groups = [_sorted([ring[0], ring[2]]), _sorted([ring[1], ring[2]])]
    else:
        groups = [_sorted(ring[(i + j) % n] for j in range(k + 1)) for i in range(n)]
    return Partition("majorities-ring", groups, cut)


def bridge(nodes: list[str], rng=None) -> Partition:
    """Two halves that cannot talk, and one node in the middle that talks to both."""
    _check_nodes(nodes)
    order = list(nodes)
    if rng is not None:
        rng.shuffle(order)
    middle = len(order) // 2
    left, hub, right = order[:middle], order[middle], order[middle + 1:]
    side = {n: 0 for n in left}
    side.update({n: 1 for n in right})
    cut = _cut_from_links(order, lambda a, b: a == hub or b == hub or side[a] == side[b])
    return Partition("bridge", [_sorted(left + [hub]), _sorted([hub] + right)], cut)


def _directed(nodes: list[str], links, topology: str) -> Partition:
    """A one-way partition of the given [sender, receiver] links."""
    _check_nodes(nodes)
    if not isinstance(links, (list, tuple)) or not links:
        raise ValueError(f"topology {topology} needs links: [[sender, receiver], ...], got {links!r}")
    out = set()
    for i, link in enumerate(links):
        if not isinstance(link, (list, tuple)) or len(link) != 2:
            raise ValueError(f"link {i} must be [sender, receiver], got {link!r}")
        sender, receiver = link
        for node in (sender, receiver):
            if node not in nodes:
                raise ValueError(f"link {i} names unknown node {node!r} (nodes: {', '.join(nodes)})")
        if sender == receiver:
            raise ValueError(f"link {i} joins {sender!r} to itself")
        out.add((sender, receiver))
    one_way = sorted(([s, r] for s, r in out), key=lambda p: (_sort_key(p[0]), _sort_key(p[1])))
    return Partition(topology, [], [], one_way)


def deaf(nodes: list[str], node: str, topology: str = "deaf-one") -> Partition:
    """`node` hears nobody; everyone still hears it (its messages go out, no answer comes back)."""
    if node not in nodes:
        raise ValueError(f"cannot make unknown node {node!r} deaf (nodes: {', '.join(nodes)})")
    others = [n for n in nodes if n != node]
    partition = _directed(nodes, [[other, node] for other in others], topology)
    partition.groups = [[node], _sorted(others)]
    return partition


def mute(nodes: list[str], node: str, topology: str = "mute-one") -> Partition:
    """Nobody hears `node`; it still hears everyone."""
    if node not in nodes:
        raise ValueError(f"cannot make unknown node {node!r} mute (nodes: {', '.join(nodes)})")
    others = [n for n in nodes if n != node]
    partition = _directed(nodes, [[node, other] for other in others], topology)
    partition.groups = [[node], _sorted(others)]
    return partition


def make_partition(value: dict, nodes: list[str], rng, leader: str | None = None) -> Partition:
    """Resolve a partition op's value ({"topology": ..., ...}) to a concrete partition."""
    if not isinstance(value, dict) or "topology" not in value:
        raise ValueError(f"a partition value needs a 'topology' (one of {', '.join(TOPOLOGIES)}), got {value!r}")
    topology = value["topology"]
    if topology == "isolate-one":
        node = value.get("node")
        return isolate(nodes, node if node is not None else rng.choice(list(nodes)))
    if topology in LEADER_TOPOLOGIES:
        if leader is None:
            raise NoLeader("no leader is known to isolate" if topology == "isolate-leader"
                           else f"no leader is known to make {topology.split('-')[1]}")
        if topology == "isolate-leader":
            return isolate(nodes, leader, "isolate-leader")
        return (deaf if topology == "leader-deaf" else mute)(nodes, leader, topology)
    if topology in ("deaf-one", "mute-one"):
        node = value.get("node")
        node = node if node is not None else rng.choice(list(nodes))
        return (deaf if topology == "deaf-one" else mute)(nodes, node, topology)
    if topology == "one-way":
        return _directed(nodes, value.get("links"), "one-way")
    if topology == "halves":
        return halves(nodes)
    if topology == "random-halves":
        return random_halves(nodes, rng)
    if topology == "majorities-ring":
        return majorities_ring(nodes, rng)
    if topology == "bridge":
        return bridge(nodes, rng)
    if topology == "groups":
        return from_groups(nodes, value.get("groups"))
    raise ValueError(f"unknown partition topology {topology!r} (choose one of: {', '.join(TOPOLOGIES)})")


class NoLeader(LookupError):
    """The fault targets the leader and none is known right now."""


def select_targets(target, nodes: list[str], rng, leader: str | None = None) -> list[str]:
    """The nodes a kill/pause/clock op acts on.

    target: "one" (a random node), "minority" (a random (n-1)//2 nodes), "majority"
    (a random n//2+1), "all", "leader", or a list of node ids.
    """
    _check_nodes(nodes, minimum=1)
    if isinstance(target, (list, tuple)):
        if not target:
            raise ValueError("a target list must name at least one node")
        for node in target:
            if node not in nodes:
                raise ValueError(f"target names unknown node {node!r} (nodes: {', '.join(nodes)})")
        return _sorted(set(target))
    n = len(nodes)
    if target == "one":
        return [rng.choice(list(nodes))]
    if target == "minority":
        return _sorted(rng.sample(list(nodes), (n - 1) // 2))
    if target == "majority":
        return _sorted(rng.sample(list(nodes), n // 2 + 1))
    if target == "all":
        return _sorted(nodes)
    if target == "leader":
        if leader is None:
            raise NoLeader("no leader is known to target")
        if leader not in nodes:
            raise ValueError(f"the leader {leader!r} is not one of the nodes ({', '.join(nodes)})")
        return [leader]
    raise ValueError(f"unknown target {target!r} (choose one of: {', '.join(TARGETS)}, or a list of node ids)")


def _check_nodes(nodes, minimum: int = 2) -> None:
    if len(nodes) < minimum:
        what = "a partition needs at least two nodes" if minimum == 2 else "no nodes to choose from"
        raise ValueError(f"{what}, got {list(nodes)!r}")
    if len(set(nodes)) != len(nodes):
        raise ValueError(f"node ids must be distinct, got {list(nodes)!r}")
