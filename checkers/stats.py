"""Stats (ok/fail/info per operation kind) and availability during and outside faults.

A fault is active from the completion of its start op to the invocation of its healing op
(docs/contracts.md §1): partition→heal, kill→start, pause→resume, clock-skew→clock-reset, and the
other kinds chaos.faults knows (slow→fast, lossy→lossless, ...). A fault never healed lasts to the
end of the history. A client operation counts as "during faults" when
it was invoked while any fault was active.
"""

from __future__ import annotations

from typing import Any

from chaos.history import FAIL, INFO, INVOKE, OK, Op, pair_ops


def fault_heals() -> dict[str, str]:
    """Start op -> its heal op, for every fault kind chaos.faults knows."""
    from chaos.faults import fault_kinds
    return {k.start: k.heal for k in fault_kinds().values()}



def _outcomes() -> dict[str, int]:
    return {"ok": 0, "fail": 0, "info": 0}


def check_stats(ops: list[Op]) -> dict:
    """As Jepsen's stats checker: invalid when some operation kind never succeeded."""
    by_f: dict[str, dict[str, int]] = {}
    for pair in pair_ops([op for op in ops if not op.is_nemesis]):
        by_f.setdefault(pair.invoke.f, _outcomes())[pair.type] += 1
    total = _outcomes()
    for counts in by_f.values():
        for k, v in counts.items():
            total[k] += v
    never_ok = sorted(f for f, c in by_f.items() if c["ok"] == 0)
    result: dict[str, Any] = {"valid": not never_ok, "count": sum(total.values()), **total, "by_f": by_f}
    if never_ok:
        result["never_ok"] = never_ok
    return result


def fault_windows(ops: list[Op]) -> list[dict]:
    """[{"f", "start", "end"}] in controller ns; end None when never healed."""
    heals = fault_heals()
    heal_of_start = {v: k for k, v in heals.items()}
    open_faults: dict[str, list[dict]] = {}
    windows: list[dict] = []
    for op in ops:
        if not op.is_nemesis:
            continue
        if op.f in heals and op.type != INVOKE:
            w = {"f": op.f, "start": op.time, "end": None, "value": op.value}
            windows.append(w)
            open_faults.setdefault(op.f, []).append(w)
        elif op.f in heal_of_start and op.type == INVOKE:
            for w in open_faults.pop(heal_of_start[op.f], []):
                w["end"] = op.time
    return windows


def check_availability(ops: list[Op]) -> dict:
    windows = fault_windows(ops)
    end_of_history = max((op.time for op in ops), default=0)
    spans = sorted((w["start"], w["end"] if w["end"] is not None else end_of_history + 1) for w in windows)

    def during(t: int) -> bool:
        return any(s <= t < e for s, e in spans)

    groups: dict[str, dict] = {"during_faults": {}, "outside_faults": {}}
    for pair in pair_ops([op for op in ops if not op.is_nemesis]):
        group = groups["during_faults" if during(pair.invoke.time) else "outside_faults"]
        group.setdefault(pair.invoke.f, _outcomes())[pair.type] += 1
    out: dict[str, Any] = {}
    t0 = min((op.time for op in ops), default=0)
    for name, by_f in groups.items():
        totals = _outcomes()
        for counts in by_f.values():
            for k, v in counts.items():
                totals[k] += v
        n = sum(totals.values())
        out[name] = {"ops": n, **totals, "availability": round(totals["ok"] / n, 4) if n else None,
                     "by_f": by_f}
    out["windows"] = [{"f": w["f"], "start_s": round((w["start"] - t0) / 1e9, 3),
                       "end_s": round((w["end"] - t0) / 1e9, 3) if w["end"] is not None else None}
                      for w in windows]
    return out


__all__ = ["check_stats", "check_availability", "fault_windows", "fault_heals", "OK", "FAIL", "INFO"]
