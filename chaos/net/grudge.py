"""Grudges: who stops hearing whom. The network layer's one data structure.

A grudge maps a node to the nodes whose packets it drops: {"n1": {"n2"}} means n1 no longer
hears n2, while n2 may still hear n1 (a one-way fault). A symmetric partition is a grudge that
holds both directions. Every partition topology (chaos.nemesis.topology) and every later link
fault is expressed as a grudge, so that one layer (chaos.net) applies them all.
"""

from __future__ import annotations

from typing import Iterable, Mapping

Grudge = dict[str, frozenset[str]]


def normalize(grudge: Mapping[str, Iterable[str]], nodes: Iterable[str]) -> Grudge:
    """A grudge over exactly `nodes`: every node present (possibly empty), no self-grudges,
    unknown node names rejected with the name."""
    ids = list(nodes)
    known = set(ids)
    out: Grudge = {n: frozenset() for n in ids}
    for receiver, senders in grudge.items():
        if receiver not in known:
            raise ValueError(f"grudge names unknown node {receiver!r} (nodes: {', '.join(ids)})")
        senders = set(senders)
        unknown = senders - known
        if unknown:
            raise ValueError(f"grudge names unknown node {sorted(unknown)[0]!r} (nodes: {', '.join(ids)})")
        out[receiver] = frozenset(senders - {receiver})
    return out


def symmetric(pairs: Iterable[Iterable[str]], nodes: Iterable[str]) -> Grudge:
    """The grudge of a symmetric cut: every pair [a, b] stops hearing each other."""
    g: dict[str, set[str]] = {}
    for pair in pairs:
        a, b = tuple(pair)
        g.setdefault(a, set()).add(b)
        g.setdefault(b, set()).add(a)
    return normalize(g, nodes)


def one_way(receivers: Iterable[str], senders: Iterable[str], nodes: Iterable[str]) -> Grudge:
    """Every receiver stops hearing every sender (the senders still hear the receivers)."""
    senders = set(senders)
    return normalize({r: senders - {r} for r in receivers}, nodes)


def is_empty(grudge: Mapping[str, Iterable[str]]) -> bool:
    return not any(grudge.values())


def directed_links(grudge: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The dropped links as sorted [sender, receiver] pairs (for the history and reports)."""
    return sorted([sender, receiver] for receiver, senders in grudge.items() for sender in senders)


def to_value(grudge: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """JSON-able form: receiver -> sorted senders, receivers without a grudge left out."""
    return {r: sorted(s) for r, s in sorted(grudge.items()) if s}
