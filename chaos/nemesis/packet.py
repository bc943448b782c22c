"""Packet faults on links: loss (lossy/lossless), delay (slow/fast), bandwidth (throttle/unthrottle).

Values of the start ops (docs/contracts.md section 1):
    {"target": T, "loss": 0.2}                             lose 20 % of the packets
    {"target": T, "delay_ms": 100, "jitter_ms": 20}        80-120 ms late (jitter reorders)
    {"target": T, "rate_kbit": 512}                        at most 512 kbit/s
T is a target as for kill ("one", "minority", "majority", "all", "leader", or node ids): the
links between the targets and every other node, both directions ("all": every link). Instead of
a target, "links": [["n1", "n2"], ...] names node pairs (both directions). The completion says
what was done: {"nodes": [targets], "links": [[sender, receiver], ...], "loss": 0.2}. A start
op while the kind is active replaces it; the heal op ends it ({"healed": "loss"}).

Each kind owns one property of the links it hits; the three kinds of a DB share its LinkState,
so that a link both slowed and lossy has both, and healing one leaves the other. The network
layer (chaos.net: Net.shape) applies them; the DB's unavailable() names the kinds it cannot
offer (the local provisioner: bandwidth, which would need a qdisc on the host's loopback).
"""

from __future__ import annotations

import math
import threading

from chaos.history import Op
from chaos.interfaces import Nemesis, require
from chaos.nemesis.common import complete, current_leader, value_dict
from chaos.nemesis.topology import _sorted, select_targets
from chaos.net.links import MAX_DELAY_MS, MAX_RATE_KBIT, MIN_RATE_KBIT, LinkFault, both_ways, links_touching

#: kind -> (start op, heal op, the value's own parameters)
KINDS = {"loss": ("lossy", "lossless", ("loss",)),
         "delay": ("slow", "fast", ("delay_ms", "jitter_ms")),
         "bandwidth": ("throttle", "unthrottle", ("rate_kbit",))}


class LinkState:
    """The link properties each kind holds in force: kind -> {(sender, receiver): {field: value}}."""

    def __init__(self):
        self.by_kind: dict[str, dict[tuple[str, str], dict]] = {}
        self.lock = threading.Lock()

    def faults(self) -> list[LinkFault]:
        merged: dict[tuple[str, str], dict] = {}
        for links in self.by_kind.values():
            for link, fields in links.items():
                merged.setdefault(link, {}).update(fields)
        return [LinkFault(s, r, **fields) for (s, r), fields in sorted(merged.items())]


def link_state(db) -> LinkState:
    state = getattr(db, "_splitbrain_link_faults", None)
    if state is None:
        state = LinkState()
        db._splitbrain_link_faults = state
    return state


def _number(f: str, name: str, value, low: float, high: float, low_open: bool = False) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (low < value if low_open else low <= value) and value <= high)
    if not ok:
        bound = f"more than {low:g}" if low_open else f"at least {low:g}"
        raise ValueError(f"{f}: {name} must be a number, {bound} and at most {high:g}, got {value!r}")
    return float(value)


def link_params(kind: str, value: dict) -> dict:
    """The link properties a start op of `kind` asks for, checked (ValueError naming the op)."""
    f = KINDS[kind][0]
    if kind == "loss":
        return {"loss": _number(f, "loss", value.get("loss"), 0.0, 1.0, low_open=True)}
    if kind == "delay":
        delay = _number(f, "delay_ms", value.get("delay_ms"), 0.0, MAX_DELAY_MS, low_open=True)
        jitter = _number(f, "jitter_ms", value.get("jitter_ms", 0), 0.0, MAX_DELAY_MS)
        return {"delay_ms": delay, "jitter_ms": jitter}
    rate = value.get("rate_kbit")
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_RATE_KBIT <= rate <= MAX_RATE_KBIT:
        raise ValueError(f"{f}: rate_kbit must be an integer within {MIN_RATE_KBIT}..{MAX_RATE_KBIT}, got {rate!r}")
    return {"rate_kbit": rate}


def check_value(kind: str, value, nodes: list[str]) -> None:
    """Everything about a start op's value that can be known before the run (scenario files)."""
    f, _, own = KINDS[kind]
    if not isinstance(value, dict):
        raise ValueError(f"{f}: value must be an object like {{\"target\": \"one\", ...}}, got {value!r}")
    allowed = ("target", "links") + own
    for key in value:
        if key not in allowed:
            raise ValueError(f"{f}: unknown key {key!r} (valid: {', '.join(allowed)})")
    link_params(kind, value)
    if ("target" in value) == ("links" in value):
        raise ValueError(f"{f} needs either target (nodes whose links it hits) or links ([[n1, n2], ...])")
    if "links" in value:
        _pairs(f, value["links"], nodes)


def _pairs(f: str, links, nodes: list[str]) -> list[tuple[str, str]]:
    if not isinstance(links, list) or not links:
        raise ValueError(f"{f}: links must be a non-empty list of node pairs like [[n1, n2]], got {links!r}")
    pairs = []
    for i, pair in enumerate(links):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or pair[0] == pair[1]:
            raise ValueError(f"{f}: link {i} must be two different nodes like [n1, n2], got {pair!r}")
        for node in pair:
            if node not in nodes:
                raise ValueError(f"{f}: link {i} names unknown node {node!r} (nodes: {', '.join(nodes)})")
        pairs.append(tuple(pair))
    return both_ways(pairs)


class PacketNemesis(Nemesis):
    def __init__(self, kind: str, db, nodes, view, rng):
        if kind not in KINDS:
            raise ValueError(f"no packet fault {kind!r} (valid: {', '.join(KINDS)})")
        require(db, kind, f"the {kind} fault")
        self.kind = kind
        self.start_f, self.heal_f, self.own = KINDS[kind]
        self.fs = frozenset({self.start_f, self.heal_f})
        self.db, self.nodes, self.view, self.rng = db, nodes, view, rng
        self.state = link_state(db)

    @property
    def ids(self) -> list[str]:
        # the run's roster, shared: nodes added or retired mid-run (membership) are seen here
        return [n.id for n in self.nodes]

    def _shape(self) -> None:
        """The link faults of every kind in force, without those of retired nodes."""
        ids = set(self.ids)
        for kind, pairs in self.state.by_kind.items():
            self.state.by_kind[kind] = {p: v for p, v in pairs.items() if set(p) <= ids}
        self.db.net().shape(self.state.faults())

    def invoke(self, op: Op) -> Op:
        if op.f == self.heal_f:
            healed = self._heal()
            return complete(op, {"healed": self.kind, "links": [list(link) for link in healed]})
        if op.f != self.start_f:
            raise ValueError(f"the {self.kind} nemesis does not handle {op.f!r} "
                             f"(it handles {self.start_f}, {self.heal_f})")
        value = value_dict(op)
        check_value(self.kind, value, self.ids)
        params = link_params(self.kind, value)
        if "links" in value:
            pairs = _pairs(self.start_f, value["links"], self.ids)
            targets = _sorted({n for pair in pairs for n in pair})
        else:
            target = value["target"]
            leader = current_leader(self.db, self.view) if target == "leader" else None
            targets = select_targets(target, self.ids, self.rng, leader=leader)
            pairs = links_touching(targets, self.ids)
        with self.state.lock:
            previous = self.state.by_kind.get(self.kind, {})
            self.state.by_kind[self.kind] = {pair: dict(params) for pair in pairs}
            try:
                self._shape()
            except BaseException:
                self.state.by_kind[self.kind] = previous
                raise
        return complete(op, {"nodes": targets, "links": [list(p) for p in sorted(pairs)], **params})

    def _heal(self) -> list[tuple[str, str]]:
        with self.state.lock:
            healed = sorted(self.state.by_kind.pop(self.kind, {}))
            if healed:
                self._shape()
        return healed

    def heal_all(self) -> None:
        self._heal()


def packet_nemesis(kind: str, db, nodes, view, rng) -> PacketNemesis:
    return PacketNemesis(kind, db, nodes, view, rng)
