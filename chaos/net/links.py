"""Link faults: what happens to the packets one node sends another (loss, delay, a bandwidth cap).

    LinkFault("n2", "n1", loss=0.2)                       n1 loses a fifth of what n2 sends it
    LinkFault("n2", "n1", delay_ms=100, jitter_ms=20)     ... receives it 80-120 ms late
    LinkFault("n1", "n2", rate_kbit=512)                  n1 sends n2 at most 512 kbit/s

A link fault is directed, like a grudge: a fault on both directions of a pair is two faults.
Net.shape(link_faults) puts a set of them in force (chaos.net.base), replacing the previous set.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

MAX_DELAY_MS = 60_000
MIN_RATE_KBIT, MAX_RATE_KBIT = 8, 10_000_000
FIELDS = ("sender", "receiver", "loss", "delay_ms", "jitter_ms", "rate_kbit")


@dataclass(frozen=True, order=True)
class LinkFault:
    sender: str
    receiver: str
    loss: float = 0.0              # probability that a packet is dropped, 0..1
    delay_ms: float = 0.0          # added to every packet
    jitter_ms: float = 0.0         # +- uniformly around delay_ms (reorders packets)
    rate_kbit: int | None = None   # the link's bandwidth; None: as fast as it is

    def kinds(self) -> frozenset[str]:
        """What the fault does: a subset of {"loss", "delay", "bandwidth"}."""
        return frozenset(k for k, on in (("loss", self.loss > 0), ("delay", self.delay_ms > 0 or self.jitter_ms > 0),
                                         ("bandwidth", self.rate_kbit is not None)) if on)

    def to_value(self) -> dict:
        out: dict[str, Any] = {"sender": self.sender, "receiver": self.receiver}
        if self.loss:
            out["loss"] = self.loss
        if self.delay_ms or self.jitter_ms:
            out["delay_ms"], out["jitter_ms"] = self.delay_ms, self.jitter_ms
        if self.rate_kbit is not None:
            out["rate_kbit"] = self.rate_kbit
        return out


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ValueError(f"link fault {name} must be a number within {low:g}..{high:g}, got {value!r}")
    return float(value)


def link_fault(value: LinkFault | Mapping[str, Any]) -> LinkFault:
    """A LinkFault from itself or from its dict form, every field checked."""
    if isinstance(value, LinkFault):
        value = dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"a link fault is a mapping like {{'sender': 'n1', 'receiver': 'n2', 'loss': 0.1}}, "
                         f"got {value!r}")
    unknown = sorted(set(value) - set(FIELDS))
    if unknown:
        raise ValueError(f"link fault has no field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
    sender, receiver = value.get("sender"), value.get("receiver")
    if not isinstance(sender, str) or not isinstance(receiver, str):
        raise ValueError(f"a link fault names its sender and receiver nodes, got {dict(value)!r}")
    rate = value.get("rate_kbit")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int)
                             or not MIN_RATE_KBIT <= rate <= MAX_RATE_KBIT):
        raise ValueError(f"link fault rate_kbit must be an integer within {MIN_RATE_KBIT}..{MAX_RATE_KBIT}, "
                         f"got {rate!r}")
    return LinkFault(sender, receiver,
                     loss=_number("loss", value.get("loss", 0.0), 0.0, 1.0),
                     delay_ms=_number("delay_ms", value.get("delay_ms", 0.0), 0.0, MAX_DELAY_MS),
                     jitter_ms=_number("jitter_ms", value.get("jitter_ms", 0.0), 0.0, MAX_DELAY_MS),
                     rate_kbit=rate)


def normalize_links(links: Iterable[LinkFault | Mapping[str, Any]], nodes: Iterable[str]) -> tuple[LinkFault, ...]:
    """Checked link faults over known nodes, sorted, at most one per directed link, and none
    that does nothing."""
    ids = list(nodes)
    known = set(ids)
    out: dict[tuple[str, str], LinkFault] = {}
    for raw in links:
        fault = link_fault(raw)
        for name in (fault.sender, fault.receiver):
            if name not in known:
                raise ValueError(f"link fault names unknown node {name!r} (nodes: {', '.join(ids)})")
        if fault.sender == fault.receiver:
            raise ValueError(f"a link fault joins two nodes, got {fault.sender!r} twice")
        key = (fault.sender, fault.receiver)
        if key in out:
            raise ValueError(f"two link faults for {fault.sender} -> {fault.receiver}: merge them into one")
        if fault.kinds():
            out[key] = fault
    return tuple(out[k] for k in sorted(out))


def links_touching(targets: Iterable[str], nodes: Iterable[str]) -> list[tuple[str, str]]:
    """Both directions of every link with a target at one end (every link when all are targets):
    "one node against the rest" is links_touching([that node], nodes)."""
    targets = set(targets)
    ids = list(nodes)
    return [(a, b) for a in ids for b in ids if a != b and (a in targets or b in targets)]


def both_ways(pairs: Iterable[Iterable[str]]) -> list[tuple[str, str]]:
    out = []
    for pair in pairs:
        a, b = tuple(pair)
        out += [(a, b), (b, a)]
    return sorted(set(out))
