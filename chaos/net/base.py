"""Net: applies grudges to a set of nodes, remembers the one in force, re-applies it to a node
whose network namespace was recreated (a restarted container), and removes everything it made.
"""

from __future__ import annotations

import abc
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Mapping

from chaos.interfaces import Node
from chaos.net.grudge import Grudge, normalize


class NetError(RuntimeError):
    """A rule could not be applied or removed; the message names the node and the command."""


class Net(abc.ABC):
    def __init__(self, nodes: Iterable[Node]):
        self.nodes = list(nodes)
        self.by_id = {n.id: n for n in self.nodes}
        self._grudge: Grudge = {n.id: frozenset() for n in self.nodes}
        self._lock = threading.Lock()

    # -- what callers use ---------------------------------------------------------------------
    def drop(self, grudge: Mapping[str, Iterable[str]]) -> Grudge:
        """Replace the grudge in force by this one (nodes not named hear everyone)."""
        g = normalize(grudge, self.by_id)
        self._apply(g)
        with self._lock:
            self._grudge = g
        return g

    def heal(self) -> None:
        """Everyone hears everyone again."""
        empty = {n: frozenset() for n in self.by_id}
        with self._lock:
            self._grudge = empty
        self._clear()

    def current(self) -> Grudge:
        with self._lock:
            return dict(self._grudge)

    # -- what implementations provide -----------------------------------------------------------
    @abc.abstractmethod
    def install(self) -> None:
        """Prepare every node (our chain, empty). Called once at setup; idempotent."""

    @abc.abstractmethod
    def uninstall(self) -> None:
        """Remove every rule and chain of ours. Idempotent; safe after a partial install."""

    @abc.abstractmethod
    def reapply(self, node: Node) -> None:
        """Install and put the current grudge back on one node (its namespace was recreated)."""

    @abc.abstractmethod
    def rules(self, node: Node) -> list[str]:
        """The rules in force for this node, as `iptables -S` prints them (tests, reports)."""

    @abc.abstractmethod
    def _apply(self, grudge: Grudge) -> None: ...

    @abc.abstractmethod
    def _clear(self) -> None: ...

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def parallel(fn: Callable[[Node], object], nodes: list[Node]) -> list:
        """fn on every node at once, so that a partition starts everywhere together."""
        if len(nodes) <= 1:
            return [fn(n) for n in nodes]
        with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
            return list(pool.map(fn, nodes))
