"""Nemeses: partition/heal, kill/start, pause/resume, clock-skew/clock-reset (and a plugin's
own fault kinds, chaos.faults).

    nemesis = build_nemesis(["partition", "kill"], db, nodes, view, rng)
    done = nemesis.invoke(Op(process="nemesis", type="invoke", f="partition",
                             value={"topology": "isolate-leader"}))
    nemesis.heal_all()

Leader-aimed ops ask the DB's Primaries capability; ops and values are in docs/contracts.md §1.
"""

from __future__ import annotations

from chaos.faults import fault_kind, fault_names
from chaos.interfaces import require
from chaos.nemesis.composite import CompositeNemesis


def build_nemesis(faults, db, nodes, view, rng) -> CompositeNemesis:
    """A composite nemesis for the given fault kinds, each checked against the DB's capabilities."""
    faults = list(dict.fromkeys(faults))
    unknown = [f for f in faults if f not in fault_names()]
    if unknown:
        raise ValueError(f"unknown fault {unknown[0]!r} (choose from: {', '.join(fault_names())})")
    parts = []
    for name in faults:
        kind = fault_kind(name)
        for capability in sorted(kind.capabilities):
            require(db, capability, f"the {name} fault")
        parts.append(kind.make_nemesis(db, nodes, view, rng))
    return CompositeNemesis(parts, heal_rank={f: fault_kind(n).heal_rank for n in faults
                                             for f in (fault_kind(n).start, fault_kind(n).heal)})


__all__ = ["build_nemesis", "CompositeNemesis"]
