"""Helpers every nemesis shares: completions, the leader lookup, acting on nodes in parallel."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from chaos.history import INFO, NEMESIS, Op
from chaos.interfaces import Node


def complete(op: Op, value) -> Op:
    """The info completion of a nemesis op (the runner stamps its own time on it too)."""
    return Op(process=NEMESIS, type=INFO, f=op.f, key=op.key, value=value, time=time.monotonic_ns())


def current_leader(view) -> str | None:
    return view.leader() if view is not None else None


def on_nodes(fn, nodes: list[Node]) -> list:
    """fn(node) for every node at once, so a fault hits its targets together; errors propagate."""
    if len(nodes) <= 1:
        return [fn(n) for n in nodes]
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        return list(pool.map(fn, nodes))


def value_dict(op: Op) -> dict:
    """The op's value as a dict; a bad value is an error naming the op."""
    value = op.value if op.value is not None else {}
    if not isinstance(value, dict):
        raise ValueError(f"{op.f}: value must be an object like {{\"target\": \"one\"}}, got {op.value!r}")
    return value
