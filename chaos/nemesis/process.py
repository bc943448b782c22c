"""Kill (SIGKILL, later start) and pause (SIGSTOP, later SIGCONT) of the service *process*.

The two nemeses share one ProcessFaults record per DB (chaos.nemesis.common.process_state),
because the faults interact: a paused process can be killed (it is then no longer paused) and a
killed process cannot be paused or resumed. Bringing nodes back (start, resume) checks that
they really are back: a node that exits or does not answer is named in the completion's
"down" (a finding: checkers.node_health makes the run invalid with it).
"""

from __future__ import annotations

from chaos.history import Op
from chaos.interfaces import Nemesis, Node, require
from chaos.nemesis.common import (complete, current_leader, down_nodes, on_nodes, process_state,
                                  value_dict, with_down)
from chaos.nemesis.topology import select_targets


def _sorted(ids):
    return sorted(ids, key=lambda s: (len(s), s))


class _TargetedNemesis(Nemesis):
    capability = ""

    def __init__(self, db, nodes, view, rng):
        require(db, self.capability, f"the {self.capability} fault")
        self.db, self.nodes, self.view, self.rng = db, nodes, view, rng
        self.state = process_state(db)

    @property
    def by_id(self) -> dict:
        # the run's roster, shared: nodes added or retired mid-run (membership) are seen here
        return {n.id: n for n in self.nodes}

    def _targets(self, target) -> list[Node]:
        ids = [n.id for n in self.nodes]
        leader = current_leader(self.db, self.view) if target == "leader" else None
        return [self.by_id[i] for i in select_targets(target, ids, self.rng, leader=leader)]

    def _named(self, target, default: set[str], default_name: str) -> list[Node]:
        """The nodes a healing op acts on: the faulted ones, all, or named nodes."""
        if target in (None, default_name):
            by_id = self.by_id
            return [by_id[i] for i in _sorted(default) if i in by_id]
        if target == "all":
            return list(self.nodes)
        return self._targets(target)


class KillNemesis(_TargetedNemesis):
    fs = frozenset({"kill", "start"})
    capability = "kill"

    def invoke(self, op: Op) -> Op:
        value = value_dict(op)
        if op.f == "kill":
            nodes = self._targets(value.get("target", "one"))
            on_nodes(self.db.kill, nodes)
            with self.state.lock:
                for n in nodes:
                    self.state.killed.add(n.id)
                    self.state.paused.discard(n.id)  # SIGKILL ends a stopped process too
            return complete(op, {"nodes": [n.id for n in nodes]})
        if op.f == "start":
            with self.state.lock:
                killed = set(self.state.killed)
            nodes = self._named(value.get("target"), killed, "killed")
            on_nodes(self.db.start, nodes)
            with self.state.lock:
                for n in nodes:
                    self.state.killed.discard(n.id)
            return complete(op, with_down({"nodes": [n.id for n in nodes]}, down_nodes(self.db, nodes)))
        raise ValueError(f"the kill nemesis does not handle {op.f!r} (it handles kill, start)")

    def heal_all(self) -> None:
        # Every node, not only the ones we killed: start() leaves a running node alone and brings
        # back one that died on its own, so the final reads see the whole cluster.
        on_nodes(self.db.start, self.nodes)
        with self.state.lock:
            self.state.killed.clear()


class PauseNemesis(_TargetedNemesis):
    fs = frozenset({"pause", "resume"})
    capability = "pause"

    def invoke(self, op: Op) -> Op:
        value = value_dict(op)
        if op.f == "pause":
            with self.state.lock:
                killed = set(self.state.killed)
            nodes = [n for n in self._targets(value.get("target", "one")) if n.id not in killed]
            on_nodes(self.db.pause, nodes)
            with self.state.lock:
                self.state.paused.update(n.id for n in nodes)
            return complete(op, {"nodes": [n.id for n in nodes]})
        if op.f == "resume":
            with self.state.lock:
                paused = set(self.state.paused)
            nodes = self._named(value.get("target"), paused, "paused")
            on_nodes(self.db.resume, nodes)
            with self.state.lock:
                for n in nodes:
                    self.state.paused.discard(n.id)
            return complete(op, with_down({"nodes": [n.id for n in nodes]}, down_nodes(self.db, nodes)))
        raise ValueError(f"the pause nemesis does not handle {op.f!r} (it handles pause, resume)")

    def heal_all(self) -> None:
        # SIGCONT to every node: harmless for a running one, and it also frees a node whose
        # pause op failed half way.
        on_nodes(self.db.resume, self.nodes)
        with self.state.lock:
            self.state.paused.clear()
