"""Nemeses: partition/heal, kill/start, pause/resume, clock-skew/clock-reset.

    nemesis = build_nemesis(["partition", "kill"], db, nodes, view, rng)
    done = nemesis.invoke(Op(process="nemesis", type="invoke", f="partition",
                             value={"topology": "isolate-leader"}))
    nemesis.heal_all()

`view.leader()` names the current leader (or None); ops and values are in docs/contracts.md §1.
"""

from __future__ import annotations

from chaos.nemesis.clock import ClockNemesis
from chaos.nemesis.composite import CompositeNemesis
from chaos.nemesis.partition import PartitionNemesis
from chaos.nemesis.process import KillNemesis, PauseNemesis, ProcessFaults

FAULTS = ("partition", "kill", "pause", "clock")


def build_nemesis(faults, db, nodes, view, rng) -> CompositeNemesis:
    """A composite nemesis for the given fault kinds, checked against what the DB supports."""
    faults = list(dict.fromkeys(faults))
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault {unknown[0]!r} (choose from: {', '.join(FAULTS)})")
    supported = getattr(db, "supported_faults", frozenset())
    missing = [f for f in faults if f not in supported]
    if missing:
        note = getattr(db, "partition_note", None) if "partition" in missing else None
        raise ValueError(f"{type(db).__name__} cannot inject {', '.join(missing)} "
                         f"(it supports: {', '.join(sorted(supported)) or 'none'})"
                         + (f": {note}" if note else ""))
    processes = ProcessFaults()
    parts = []
    for fault in faults:
        if fault == "partition":
            parts.append(PartitionNemesis(db, nodes, view, rng))
        elif fault == "kill":
            parts.append(KillNemesis(db, nodes, view, rng, processes))
        elif fault == "pause":
            parts.append(PauseNemesis(db, nodes, view, rng, processes))
        else:
            parts.append(ClockNemesis(db, nodes, view, rng))
    return CompositeNemesis(parts)


__all__ = ["build_nemesis", "CompositeNemesis", "PartitionNemesis", "KillNemesis", "PauseNemesis",
           "ClockNemesis", "FAULTS"]
