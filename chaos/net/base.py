"""Net: applies grudges and link faults to a set of nodes, remembers what is in force, re-applies
it to a node whose network namespace was recreated (a restarted container), and removes
everything it made.

    net.drop({"n1": {"n2"}})           n1 no longer hears n2 (grudges, chaos.net.grudge)
    net.shape([LinkFault("n2", "n1", delay_ms=100)])   link faults (chaos.net.links)
    net.drop({}) / net.shape([])       end one of the two; heal() ends both
"""

from __future__ import annotations

import abc
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Mapping

from chaos.interfaces import Node
from chaos.net.grudge import Grudge, normalize
from chaos.net.links import LinkFault, normalize_links

LINK_KINDS = ("loss", "delay", "bandwidth")


class NetError(RuntimeError):
    """A rule could not be applied or removed; the message names the node and the command."""


class Net(abc.ABC):
    #: the link faults this layer can apply, with the reason for each it cannot
    link_unavailable: dict[str, str] = {k: "this network layer applies no link faults" for k in LINK_KINDS}

    def __init__(self, nodes: Iterable[Node]):
        self.nodes = list(nodes)
        self.by_id = {n.id: n for n in self.nodes}
        self._grudge: Grudge = {n.id: frozenset() for n in self.nodes}
        self._links: tuple[LinkFault, ...] = ()
        self._lock = threading.Lock()
        # One change at a time: grudges and link faults are rendered together into the same rules.
        self._changing = threading.RLock()

    # -- what callers use ---------------------------------------------------------------------
    def drop(self, grudge: Mapping[str, Iterable[str]]) -> Grudge:
        """Replace the grudge in force by this one (nodes not named hear everyone); link
        faults stay as they are."""
        g = normalize(grudge, self.by_id)
        with self._changing:
            self._apply(g)
            with self._lock:
                self._grudge = g
        return g

    def shape(self, links: Iterable[LinkFault | Mapping[str, Any]]) -> tuple[LinkFault, ...]:
        """Replace the link faults in force by these (an empty list ends them); grudges stay."""
        faults = normalize_links(links, self.by_id)
        for kind in sorted({k for f in faults for k in f.kinds()}):
            if kind in self.link_unavailable:
                raise NetError(f"{type(self).__name__} cannot apply {kind} faults: {self.link_unavailable[kind]}")
        with self._changing:
            self._apply_links(faults)
            with self._lock:
                self._links = faults
        return faults

    def heal(self) -> None:
        """Everyone hears everyone again, and every link is as it was: no grudge, no link fault."""
        with self._changing:
            with self._lock:
                self._grudge = {n: frozenset() for n in self.by_id}
                self._links = ()
            self._clear()

    def add_node(self, node: Node) -> None:
        """A node that joined mid-run: it hears everyone (the grudge in force is kept for the
        others), and later grudges and link faults may name it. A layer with rules per node
        puts them on it when its namespace is ready (reapply)."""
        with self._changing:
            with self._lock:
                if node.id in self.by_id:
                    return
                self.nodes.append(node)
                self.by_id[node.id] = node
                self._grudge = {**self._grudge, node.id: frozenset()}

    def remove_node(self, node_id: str) -> None:
        """A node retired mid-run: the grudges and link faults that name it are dropped, and
        the rules in force re-rendered without it."""
        with self._changing:
            with self._lock:
                if node_id not in self.by_id:
                    return
                grudge = {n: frozenset(s - {node_id}) for n, s in self._grudge.items() if n != node_id}
                links = tuple(f for f in self._links if node_id not in (f.sender, f.receiver))
                changed_links = links != self._links
                self.nodes = [n for n in self.nodes if n.id != node_id]
                del self.by_id[node_id]
                self._grudge, self._links = grudge, links
            self._apply(grudge)
            if changed_links:
                self._apply_links(links)

    def current(self) -> Grudge:
        with self._lock:
            return dict(self._grudge)

    def links(self) -> tuple[LinkFault, ...]:
        with self._lock:
            return self._links

    def close(self) -> None:
        """Stop every helper process this layer started (delay programs); the rules go with
        uninstall() or with the namespaces. Idempotent."""

    # -- what implementations provide -----------------------------------------------------------
    @abc.abstractmethod
    def install(self) -> None:
        """Prepare every node (our chain, empty). Called once at setup; idempotent."""

    @abc.abstractmethod
    def uninstall(self) -> None:
        """Remove every rule and chain of ours. Idempotent; safe after a partial install."""

    @abc.abstractmethod
    def reapply(self, node: Node) -> None:
        """Install and put the current grudge and link faults back on one node (its namespace
        was recreated)."""

    @abc.abstractmethod
    def rules(self, node: Node) -> list[str]:
        """The rules in force for this node, as `iptables -S` prints them (tests, reports)."""

    @abc.abstractmethod
    def _apply(self, grudge: Grudge) -> None:
        """Put this grudge in force (self.links() are the link faults to keep)."""

    def _apply_links(self, links: tuple[LinkFault, ...]) -> None:
        """Put these link faults in force (self.current() is the grudge to keep)."""
        raise NetError(f"{type(self).__name__} applies no link faults")

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
