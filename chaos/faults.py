"""The fault kinds: the one place that says what each fault is called, which ops start and heal
it, which DB capabilities it needs, how to build its nemesis and how to draw a random instance.

    kind = fault_kind("partition")
    kind.start, kind.heal                  # "partition", "heal"   (history f names)
    kind.needs(value)                      # {"partition", "leader"} for isolate-leader
    kind.nemesis(db, nodes, view, rng)     # the Nemesis that handles both ops

Built-in kinds are registered below; a plugin adds its own through the `splitbrain.faults`
entry point group (an entry point naming a FaultKind). chaos.config, the scenario reader, the
random schedule and the runner all read this table instead of keeping their own lists.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

TARGETS = ("one", "minority", "majority", "all", "leader")
TOPOLOGIES = ("isolate-one", "isolate-leader", "halves", "random-halves", "majorities-ring",
              "bridge", "groups", "leader-deaf", "leader-mute", "deaf-one", "mute-one", "one-way")
#: one-way topologies: the leader (or a node) hears nobody but is heard, or the reverse
LEADER_TOPOLOGIES = ("isolate-leader", "leader-deaf", "leader-mute")
CLOCK_MODES = ("bump", "strobe", "rate")


@dataclass(frozen=True)
class FaultKind:
    name: str                                  # what --nemesis names: "partition"
    start: str                                 # the op that starts it: "partition"
    heal: str                                  # the op that heals it: "heal"
    capabilities: frozenset[str]               # DB capabilities it always needs
    make_nemesis: Callable[..., Any]           # (db, nodes, view, rng) -> Nemesis for both ops
    random_value: Callable[[random.Random, int, bool], dict]  # (rng, node count, has leader)
    heal_value: dict | None = None             # the heal op's invoke value
    #: parameters a schedule step of each op takes: name -> required?
    params: dict[str, dict[str, bool]] = field(default_factory=dict)
    #: heal order at the end of a run: lower heals first (network before processes)
    heal_rank: int = 50
    #: the smallest cluster this fault means anything on (a partition needs two nodes)
    min_nodes: int = 1
    description: str = ""
    #: whether `--nemesis all` includes it (faults that damage files on purpose, or need a
    #: mount of their own, are asked for by name)
    in_all: bool = True
    #: a change rather than a state (membership): each start op is active only while it runs,
    #: and the heal op finishes what is half done instead of undoing anything
    instant: bool = False

    def needs(self, value: Any = None) -> frozenset[str]:
        """Capabilities one op of this kind needs; aiming at the leader also needs "leader"."""
        return self.capabilities | ({"leader"} if aims_at_leader(value) else frozenset())


def aims_at_leader(value: Any) -> bool:
    return isinstance(value, dict) and (value.get("target") == "leader"
                                        or value.get("topology") in LEADER_TOPOLOGIES)


# -- built-in kinds ----------------------------------------------------------------------------

def _partition_nemesis(db, nodes, view, rng):
    from chaos.nemesis.partition import PartitionNemesis
    return PartitionNemesis(db, nodes, view, rng)


def _kill_nemesis(db, nodes, view, rng):
    from chaos.nemesis.process import KillNemesis
    return KillNemesis(db, nodes, view, rng)


def _pause_nemesis(db, nodes, view, rng):
    from chaos.nemesis.process import PauseNemesis
    return PauseNemesis(db, nodes, view, rng)


def _clock_nemesis(db, nodes, view, rng):
    from chaos.nemesis.clock import ClockNemesis
    return ClockNemesis(db, nodes, view, rng)


def _lose_unsynced_nemesis(db, nodes, view, rng):
    from chaos.nemesis.disk import LoseUnsyncedNemesis
    return LoseUnsyncedNemesis(db, nodes, view, rng)


def _corrupt_nemesis(db, nodes, view, rng):
    from chaos.nemesis.disk import CorruptNemesis
    return CorruptNemesis(db, nodes, view, rng)


def _random_lose_unsynced(rng: random.Random, nodes: int, leader: bool) -> dict:
    target = rng.choice(_random_targets(nodes, leader, ("one", "minority", "majority", "all")))
    return {"target": target, "tear": rng.random() < 0.5}


def _random_corrupt(rng: random.Random, nodes: int, leader: bool) -> dict:
    # a minority at most: damaging a majority's acknowledged data may lose it by design
    target = rng.choice(_random_targets(nodes, leader, ("one", "minority")))
    if rng.random() < 0.5:
        return {"target": target, "mode": "bitflip", "flips": rng.choice((1, 1, 4))}
    return {"target": target, "mode": "truncate"}


def _membership_nemesis(db, nodes, view, rng):
    from chaos.nemesis.membership import MembershipNemesis
    return MembershipNemesis(db, nodes, view, rng)


MEMBERSHIP_CHANGES = ("grow", "shrink", "replace", "transfer")


def _random_membership(rng: random.Random, nodes: int, leader: bool) -> dict:
    # the nemesis skips what is illegal from its own view (a shrink at three voters)
    return {"change": rng.choice(MEMBERSHIP_CHANGES)}


def _packet_nemesis(kind: str):
    def make(db, nodes, view, rng):
        from chaos.nemesis.packet import packet_nemesis
        return packet_nemesis(kind, db, nodes, view, rng)
    return make


def _random_link_target(rng: random.Random, nodes: int, leader: bool) -> dict:
    return {"target": rng.choice(_random_targets(nodes, leader, ("one", "minority", "all")))}


def _random_loss(rng: random.Random, nodes: int, leader: bool) -> dict:
    return {**_random_link_target(rng, nodes, leader), "loss": rng.choice((0.05, 0.1, 0.2, 0.4))}


def _random_delay(rng: random.Random, nodes: int, leader: bool) -> dict:
    delay = rng.choice((20, 50, 100, 250))
    return {**_random_link_target(rng, nodes, leader), "delay_ms": delay,
            "jitter_ms": rng.choice((0, delay // 4, delay // 2))}


def _random_bandwidth(rng: random.Random, nodes: int, leader: bool) -> dict:
    return {**_random_link_target(rng, nodes, leader), "rate_kbit": rng.choice((128, 512, 2048, 8192))}


_LINK_PARAMS = {"target": False, "links": False}


def _random_partition(rng: random.Random, nodes: int, leader: bool) -> dict:
    if nodes < 2:
        raise ValueError("a partition needs at least two nodes")
    topologies = ["isolate-one", "halves", "random-halves"]
    if nodes >= 3:
        topologies += ["majorities-ring", "bridge"]
    if leader:
        topologies.insert(1, "isolate-leader")
        topologies += ["leader-deaf", "leader-mute"]
    else:
        topologies += ["deaf-one", "mute-one"]
    return {"topology": rng.choice(topologies)}


def _random_targets(nodes: int, leader: bool, base: tuple[str, ...]) -> tuple[str, ...]:
    """Targets that hit someone: a minority of fewer than three nodes is nobody."""
    targets = tuple(t for t in base if t != "minority" or nodes >= 3)
    return targets + (("leader",) if leader else ())


def _random_process(rng: random.Random, nodes: int, leader: bool) -> dict:
    return {"target": rng.choice(_random_targets(nodes, leader, ("one", "minority", "majority")))}


def _random_clock(rng: random.Random, nodes: int, leader: bool) -> dict:
    target = rng.choice(_random_targets(nodes, leader, ("one", "minority", "all")))
    mode = rng.choice(CLOCK_MODES)
    if mode == "bump":
        return {"target": target, "mode": "bump", "delta": rng.choice((-60, -10, -2, 2, 10, 60, 300))}
    if mode == "strobe":
        return {"target": target, "mode": "strobe", "delta": rng.choice((0.2, 0.5, 2.0, 5.0)),
                "period": rng.choice((0.05, 0.2, 1.0))}
    return {"target": target, "mode": "rate", "rate": rng.choice((0.5, 0.8, 1.5, 2.0))}


BUILTIN_KINDS = (
    FaultKind("partition", "partition", "heal", frozenset({"partition"}), _partition_nemesis,
              _random_partition, params={"partition": {"topology": True, "groups": False, "node": False,
                                                       "links": False},
                                         "heal": {}},
              heal_rank=10, min_nodes=2, description="iptables drops between groups of nodes"),
    FaultKind("kill", "kill", "start", frozenset({"kill"}), _kill_nemesis, _random_process,
              heal_value={"target": "killed"}, params={"kill": {"target": True}, "start": {"target": False}},
              heal_rank=30, description="SIGKILL the service process, start it later"),
    FaultKind("pause", "pause", "resume", frozenset({"pause"}), _pause_nemesis, _random_process,
              params={"pause": {"target": True}, "resume": {}}, heal_rank=20,
              description="SIGSTOP the service process, SIGCONT later"),
    FaultKind("clock", "clock-skew", "clock-reset", frozenset({"clock"}), _clock_nemesis, _random_clock,
              params={"clock-skew": {"target": True, "mode": True, "delta": False, "period": False,
                                     "rate": False}, "clock-reset": {}},
              heal_rank=40, description="skew, strobe or slow down the service's clock"),
    # Link faults (chaos.nemesis.packet): on the links between the targets and everyone (every
    # link for "all"), or on the given links ([[n1, n2], ...], both directions).
    FaultKind("loss", "lossy", "lossless", frozenset({"loss"}), _packet_nemesis("loss"), _random_loss,
              params={"lossy": {**_LINK_PARAMS, "loss": True}, "lossless": {}}, heal_rank=12, min_nodes=2,
              description="drop a share of the packets on some links (iptables statistic)"),
    FaultKind("delay", "slow", "fast", frozenset({"delay"}), _packet_nemesis("delay"), _random_delay,
              params={"slow": {**_LINK_PARAMS, "delay_ms": True, "jitter_ms": False}, "fast": {}},
              heal_rank=12, min_nodes=2,
              description="hold the packets on some links for a while, with jitter (NFQUEUE)"),
    FaultKind("bandwidth", "throttle", "unthrottle", frozenset({"bandwidth"}), _packet_nemesis("bandwidth"),
              _random_bandwidth, params={"throttle": {**_LINK_PARAMS, "rate_kbit": True}, "unthrottle": {}},
              heal_rank=12, min_nodes=2, in_all=False,
              description="cap the bandwidth of some links (an htb class on the sender's interface)"),
    FaultKind("lose-unsynced", "lose-unsynced", "restart-lost", frozenset({"kill", "lose-unsynced"}),
              _lose_unsynced_nemesis, _random_lose_unsynced,
              params={"lose-unsynced": {"target": True, "tear": False}, "restart-lost": {}},
              heal_rank=30, in_all=False,
              description="SIGKILL the service and drop its unsynced writes (a lazy disk), start it later"),
    FaultKind("corrupt", "corrupt", "restart-corrupted", frozenset({"kill", "corrupt"}), _corrupt_nemesis,
              _random_corrupt,
              params={"corrupt": {"target": True, "mode": False, "file": False, "flips": False,
                                  "offset": False, "bytes": False}, "restart-corrupted": {}},
              heal_rank=30, in_all=False,
              description="SIGKILL the service, flip bits in or truncate one of its data files, start it later"),
    # Membership (chaos.nemesis.membership): one change per op, through the DB's Membership
    # capability; settle finishes a half-done change and compares the view with the cluster's.
    FaultKind("membership", "membership", "settle", frozenset({"membership"}), _membership_nemesis,
              _random_membership,
              params={"membership": {"change": True, "node": False, "wait": False, "retire": False}, "settle": {}},
              heal_rank=60, min_nodes=3, in_all=False, instant=True,
              description="grow, shrink, replace a node or transfer leadership (the DB's membership changes)"),
)


# -- the registry -------------------------------------------------------------------------------

_KINDS: dict[str, FaultKind] | None = None


def _load() -> dict[str, FaultKind]:
    global _KINDS
    if _KINDS is None:
        kinds = {k.name: k for k in BUILTIN_KINDS}
        from chaos.registry import entry_point_objects
        for name, kind in entry_point_objects("splitbrain.faults"):
            if not isinstance(kind, FaultKind):
                raise TypeError(f"entry point splitbrain.faults:{name} is {type(kind).__name__}, not a FaultKind")
            kinds.setdefault(kind.name, kind)
        _KINDS = kinds
    return _KINDS


def register(kind: FaultKind) -> None:
    """Add a fault kind at run time (tests, or a plugin that prefers code to entry points)."""
    _load()[kind.name] = kind


def fault_kinds() -> dict[str, FaultKind]:
    return dict(_load())


def fault_names() -> tuple[str, ...]:
    return tuple(_load())


def fault_kind(name: str) -> FaultKind:
    kinds = _load()
    if name not in kinds:
        raise KeyError(f"unknown fault {name!r} (valid: {', '.join(kinds)})")
    return kinds[name]


def kind_of_op(f: str) -> FaultKind | None:
    """The fault kind an op (start or heal) belongs to, or None for a non-fault op."""
    for kind in _load().values():
        if f in (kind.start, kind.heal):
            return kind
    return None


def start_ops() -> dict[str, str]:
    return {k.start: k.name for k in _load().values()}


def heal_ops() -> dict[str, str]:
    return {k.heal: k.name for k in _load().values()}


def nemesis_fs() -> tuple[str, ...]:
    return tuple(f for k in _load().values() for f in (k.start, k.heal))


def step_params(f: str) -> dict[str, bool]:
    kind = kind_of_op(f)
    if kind is None:
        raise KeyError(f)
    return dict(kind.params.get(f, {}))
