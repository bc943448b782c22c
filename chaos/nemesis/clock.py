"""Clock faults: bump, strobe and rate, changed while the node runs.

Values (docs/contracts.md section 1, `clock-skew`):
    {"target": T, "mode": "bump",   "delta": seconds}             jump forward (+) or back (-)
    {"target": T, "mode": "strobe", "delta": seconds, "period": s, "count": n}
        alternate between the current skew and skew+delta every `period` seconds, n flips
        (default 20, at most 200); the DB flips it on the node (our provisioners: inside the
        node's process, so a 50 ms period is kept), and it stops by itself
    {"target": T, "mode": "rate",   "rate": r}                    the clock runs r times real speed
T is a target as for kill/pause ("one", "minority", "majority", "all", "leader", or node ids).
A bump or rate change ends a strobe still running on that node, continuing from its current flip.
`clock-reset` puts every skewed node back to real time (and ends strobes); the monotonic clock of
our provisioners' nodes does not go back at a reset (see ProvisionedDB.reset_clock).

Our provisioners move the wall clock and CLOCK_MONOTONIC together, and with them the node's
timers (chaos.provision.clockshim): a rate of 0.5 makes its 1 s sleeps take 2 s, a bump forward
fires its pending timers, a bump back of d holds them for d seconds.
"""

from __future__ import annotations

from chaos.history import Op
from chaos.interfaces import Nemesis, Node, require
from chaos.nemesis.common import complete, current_leader, down_nodes, on_nodes, value_dict, with_down
from chaos.nemesis.topology import select_targets

MODES = ("bump", "strobe", "rate")
MAX_STROBE_FLIPS = 200
MAX_SKEW_S = 10 * 365 * 86400.0


def _number(value, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"clock-skew: {name} must be a number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"clock-skew: {name} must be positive, got {value!r}")
    if abs(value) > MAX_SKEW_S:
        raise ValueError(f"clock-skew: {name} {value!r} is more than ten years")
    return float(value)


class ClockNemesis(Nemesis):
    fs = frozenset({"clock-skew", "clock-reset"})

    def __init__(self, db, nodes, view, rng):
        require(db, "clock", "the clock fault")
        self.db, self.nodes, self.view, self.rng = db, nodes, view, rng
        self.skewed: set[str] = set()

    @property
    def by_id(self) -> dict:
        # the run's roster, shared: nodes added or retired mid-run (membership) are seen here
        return {n.id: n for n in self.nodes}

    def invoke(self, op: Op) -> Op:
        if op.f == "clock-reset":
            reset = self._reset()
            return complete(op, with_down({"nodes": reset}, down_nodes(self.db, [self.by_id[i] for i in reset])))
        if op.f != "clock-skew":
            raise ValueError(f"the clock nemesis does not handle {op.f!r} (it handles clock-skew, clock-reset)")
        value = value_dict(op)
        mode = value.get("mode", "bump")
        if mode not in MODES:
            raise ValueError(f"clock-skew: unknown mode {mode!r} (choose one of: {', '.join(MODES)})")
        target = value.get("target", "one")
        leader = current_leader(self.db, self.view) if target == "leader" else None
        nodes = [self.by_id[i] for i in select_targets(target, list(self.by_id), self.rng, leader=leader)]
        if mode == "bump":
            delta = _number(value.get("delta"), "delta")
            specs = self._apply(nodes, lambda skew, rate: (skew + delta, rate))
        elif mode == "rate":
            rate = _number(value.get("rate"), "rate", positive=True)
            if not 0.01 <= rate <= 100:
                raise ValueError(f"clock-skew: rate must be within 0.01..100, got {rate!r}")
            specs = self._apply(nodes, lambda skew, _: (skew, rate))
        else:
            specs = self._strobe(nodes, value)
        self.skewed.update(specs)
        return complete(op, {"nodes": specs})

    def _apply(self, nodes: list[Node], change) -> dict[str, str]:
        def one(node):
            skew, rate = self.db.clock_skew(node)
            return node.id, self.db.set_skew(node, *change(skew, rate))
        return dict(on_nodes(one, nodes))

    def _strobe(self, nodes: list[Node], value: dict) -> dict[str, str]:
        delta = _number(value.get("delta"), "delta")
        period = _number(value.get("period", 0.2), "period", positive=True)
        count = value.get("count", 20)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_STROBE_FLIPS:
            raise ValueError(f"clock-skew: count must be an integer within 1..{MAX_STROBE_FLIPS}, got {count!r}")
        return dict(on_nodes(lambda node: (node.id, self.db.strobe_clock(node, delta, period, count)), nodes))

    def _reset(self) -> list[str]:
        ids, self.skewed = sorted(self.skewed, key=lambda s: (len(s), s)), set()
        by_id = self.by_id
        ids = [i for i in ids if i in by_id]  # a retired node's clock went with it
        on_nodes(self.db.reset_clock, [by_id[i] for i in ids])
        return ids

    def heal_all(self) -> None:
        self._reset()
