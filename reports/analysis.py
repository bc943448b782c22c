"""Numbers behind the report: fault intervals, latencies, throughput, availability.

All times are seconds since the first operation of the history, on the controller's monotonic
clock (the only clock that orders anything: node clocks may be skewed by the clock nemesis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from chaos.history import FAIL, INFO, INVOKE, OK, HistoryError, Op, pair_ops

from reports.load import ReportError, RunData

# A fault is active from the completion of its start op to the invoke of its healing op
# (docs/contracts.md §1); which ops start and heal which fault, chaos.faults says (the built-in
# kinds and a plugin's).


def healed_by() -> dict[str, str]:
    """Heal op -> the start op it ends: {"heal": "partition", "start": "kill", ...}."""
    from chaos.faults import fault_kinds
    return {k.heal: k.start for k in fault_kinds().values()}


@dataclass(slots=True)
class ClientOp:
    index: int              # history index of the invocation
    process: Any
    f: str
    key: Any
    type: str               # ok / fail / info (no completion counts as info)
    start: float            # seconds since t0
    end: float | None       # None: the history ended before it completed
    invoke_value: Any
    value: Any              # the completion's value (None when not completed)
    node: str | None
    error: str | None
    complete_index: int | None

    @property
    def latency(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass
class Fault:
    kind: str               # the start op: partition / kill / pause / clock-skew / slow / ...
    invoke_index: int
    requested: Any          # the value of the invocation (what was asked)
    result: Any             # the value of the completion (what was done: groups, nodes, ...)
    start: float            # when it became active (completion of the start op)
    end: float | None       # invoke of the healing op; None: never healed in the history
    heal_f: str | None = None
    heal_index: int | None = None
    heal_done: float | None = None  # completion of the healing op (convergence is measured from here)

    def describe(self) -> str:
        return describe_fault(self.kind, self.requested, self.result)


@dataclass
class NemesisEvent:
    f: str
    invoke_index: int
    start: float
    end: float | None
    requested: Any
    result: Any
    error: str | None = None


@dataclass
class Analysis:
    t0_ns: int
    duration: float                      # seconds covered by history and polls
    t_min: float                         # earliest time on the plots (polls may precede the history)
    client: list[ClientOp]
    faults: list[Fault]
    nemesis: list[NemesisEvent]
    fs: list[str]                        # operation kinds in order of first appearance
    extra: dict = field(default_factory=dict)


def seconds(ns: int, t0_ns: int) -> float:
    return (ns - t0_ns) / 1e9


def _compact(value: Any, limit: int = 80) -> str:
    import json
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_fault(kind: str, requested: Any, result: Any) -> str:
    """What a fault did, in a few words: 'isolate-leader: n1 | n2 n3 n4 n5' or 'n3'."""
    parts: list[str] = []
    if isinstance(requested, dict):
        for name in ("topology", "target", "mode"):
            if name in requested:
                parts.append(str(requested[name]))
    if isinstance(result, dict):
        if "healed" in result:
            parts.append(f"healed {_compact(result['healed'])}")
        elif isinstance(result.get("groups"), list):
            parts.append(" | ".join(" ".join(str(n) for n in g) if isinstance(g, list) else str(g)
                                    for g in result["groups"]))
        elif isinstance(result.get("nodes"), list):
            parts.append(" ".join(str(n) for n in result["nodes"]))
        elif isinstance(result.get("nodes"), dict):
            parts.append(", ".join(f"{n} {v}" for n, v in result["nodes"].items()))
        link = _link_fault_words(result)
        if link and "healed" not in result:
            parts[-1:] = [f"{parts[-1]} ({link})" if parts else link]
    elif result is not None:
        parts.append(_compact(result))
    return ": ".join(parts) if parts else kind


def _link_fault_words(result: dict) -> str:
    """'loss 20 %', 'delay 100 ± 20 ms', '512 kbit/s' for a link fault's completion."""
    words = []
    if isinstance(result.get("loss"), (int, float)):
        words.append(f"loss {result['loss'] * 100:g} %")
    if isinstance(result.get("delay_ms"), (int, float)):
        jitter = result.get("jitter_ms") or 0
        words.append(f"delay {result['delay_ms']:g}" + (f" ± {jitter:g}" if jitter else "") + " ms")
    if isinstance(result.get("rate_kbit"), (int, float)):
        words.append(f"{result['rate_kbit']:g} kbit/s")
    return ", ".join(words)


def pair_client_ops(ops: list[Op], t0: int) -> list[ClientOp]:
    client = [op for op in ops if not op.is_nemesis]
    try:
        pairs = pair_ops(client)
    except HistoryError as e:
        raise ReportError(str(e)) from None
    out: list[ClientOp] = []
    for p in pairs:
        inv, comp = p.invoke, p.complete
        out.append(ClientOp(
            index=inv.index, process=inv.process, f=str(inv.f), key=inv.key, type=p.type,
            start=seconds(inv.time, t0), end=None if comp is None else seconds(comp.time, t0),
            invoke_value=inv.value, value=None if comp is None else comp.value,
            node=(comp.node if comp is not None and comp.node else inv.node),
            error=None if comp is None else comp.error,
            complete_index=None if comp is None else comp.index))
    return out


def nemesis_events(ops: list[Op], t0: int) -> list[NemesisEvent]:
    """Pair nemesis invocations with completions: a completion closes the oldest open invocation
    of the same f (the nemesis may run more than one operation at a time)."""
    events: list[NemesisEvent] = []
    open_: list[NemesisEvent] = []
    for op in ops:
        if not op.is_nemesis:
            continue
        if op.type == INVOKE:
            ev = NemesisEvent(str(op.f), op.index, seconds(op.time, t0), None, op.value, None)
            events.append(ev)
            open_.append(ev)
            continue
        match = next((e for e in open_ if e.f == op.f), open_[0] if open_ else None)
        if match is None:  # a completion with no invocation: keep it, as an instant
            match = NemesisEvent(str(op.f), op.index, seconds(op.time, t0), None, None, None)
            events.append(match)
        else:
            open_.remove(match)
        match.end = seconds(op.time, t0)
        match.result = op.value
        match.error = op.error
    return events


def fault_intervals(events: list[NemesisEvent]) -> list[Fault]:
    faults: list[Fault] = []
    open_: list[Fault] = []
    heals = healed_by()
    starts = set(heals.values())
    from chaos.faults import fault_kinds
    instant = {k.start for k in fault_kinds().values() if k.instant}
    for ev in sorted(events, key=lambda e: e.start):
        if ev.f in instant:
            # a change (membership): active while its op ran, nothing to heal afterwards
            faults.append(Fault(ev.f, ev.invoke_index, ev.requested, ev.result, ev.start,
                                ev.end if ev.end is not None else ev.start))
        elif ev.f in starts:
            # A start op that never completed may still have happened: active from its invoke.
            f = Fault(ev.f, ev.invoke_index, ev.requested, ev.result,
                      ev.end if ev.end is not None else ev.start, None)
            faults.append(f)
            open_.append(f)
        elif ev.f in heals or ev.f.startswith("heal"):
            kind = heals.get(ev.f)  # "heal-all" and the like heal every open fault
            for f in [f for f in open_ if kind is None or f.kind == kind]:
                f.end = max(ev.start, f.start)
                f.heal_f, f.heal_index = ev.f, ev.invoke_index
                f.heal_done = ev.end if ev.end is not None else ev.start
                open_.remove(f)
    return faults


def analyse(run: RunData) -> Analysis:
    ops = run.ops
    if ops:
        t0 = ops[0].time
    elif run.polls:
        t0 = run.polls[0].time
    else:
        t0 = 0
    client = pair_client_ops(ops, t0)
    nem = nemesis_events(ops, t0)
    last = seconds(max(op.time for op in ops), t0) if ops else 0.0
    first = 0.0
    if run.polls:
        last = max(last, seconds(run.polls[-1].time, t0))
        first = min(first, seconds(run.polls[0].time, t0))
    faults = fault_intervals(nem)
    fs: list[str] = []
    for c in client:
        if c.f not in fs:
            fs.append(c.f)
    return Analysis(t0_ns=t0, duration=last, t_min=first, client=client, faults=faults,
                    nemesis=nem, fs=fs)


def fault_active_spans(faults: list[Fault], end: float) -> list[tuple[float, float]]:
    """The union of all fault intervals, merged and sorted."""
    spans = sorted((f.start, f.end if f.end is not None else end) for f in faults)
    merged: list[tuple[float, float]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def in_spans(t: float, spans: list[tuple[float, float]]) -> bool:
    import bisect
    i = bisect.bisect_right(spans, (t, math.inf)) - 1
    return i >= 0 and spans[i][0] <= t < spans[i][1]


def quantile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank quantile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


QUANTILES = (0.5, 0.9, 0.99, 0.999, 1.0)


def latency_table(client: list[ClientOp], fs: list[str]) -> list[dict]:
    """Per operation kind (and all together): counts by outcome and quantiles of ok latencies."""
    groups: dict[str, dict] = {f: {OK: 0, FAIL: 0, INFO: 0, "lat": []} for f in fs + ["all"]}
    for c in client:
        for g in (groups[c.f], groups["all"]):
            g[c.type] += 1
            if c.type == OK and c.end is not None:
                g["lat"].append(c.end - c.start)
    rows = []
    for f in fs + ["all"]:
        g = groups[f]
        lat = sorted(g["lat"])
        rows.append({"f": f, "count": g[OK] + g[FAIL] + g[INFO], OK: g[OK], FAIL: g[FAIL], INFO: g[INFO],
                     "q": {q: quantile(lat, q) for q in QUANTILES}})
    return rows


def nice_bucket(duration: float, target_buckets: int = 200) -> float:
    for step in (0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if duration / step <= target_buckets:
            return float(step)
    return max(3600.0, duration / target_buckets)


def throughput(client: list[ClientOp], t_min: float, t_max: float, bucket: float) -> dict[str, list[float]]:
    """Completions per second in each bucket, by outcome (an op is counted when it completes)."""
    n = max(1, math.ceil((t_max - t_min) / bucket))
    series = {OK: [0.0] * n, FAIL: [0.0] * n, INFO: [0.0] * n}
    for c in client:
        if c.end is None:
            continue
        i = min(n - 1, max(0, int((c.end - t_min) / bucket)))
        series[c.type][i] += 1
    for s in series.values():
        for i in range(n):
            s[i] /= bucket
    return series


def latency_quantiles_over_time(client: list[ClientOp], t_min: float, t_max: float, bucket: float,
                                qs=(0.5, 0.95, 0.99, 1.0)) -> dict[float, list[float | None]]:
    """Quantiles of ok latencies of the operations invoked in each bucket."""
    n = max(1, math.ceil((t_max - t_min) / bucket))
    buckets: list[list[float]] = [[] for _ in range(n)]
    for c in client:
        if c.type == OK and c.end is not None:
            i = min(n - 1, max(0, int((c.start - t_min) / bucket)))
            buckets[i].append(c.end - c.start)
    out: dict[float, list[float | None]] = {q: [] for q in qs}
    for b in buckets:
        b.sort()
        for q in qs:
            out[q].append(quantile(b, q))
    return out


def availability(client: list[ClientOp], faults: list[Fault], end: float) -> dict[str, dict]:
    """Outcomes of the operations invoked while a fault was active, and of those invoked outside.

    Availability is ok / (ok + fail + info): the share of requests that got a definite success.
    """
    spans = fault_active_spans(faults, end)
    out: dict[str, dict[str, Any]] = {name: {OK: 0, FAIL: 0, INFO: 0, "seconds": 0.0}
                                      for name in ("during_faults", "outside_faults")}
    for c in client:
        out["during_faults" if in_spans(c.start, spans) else "outside_faults"][c.type] += 1
    during = sum(e - s for s, e in spans)
    out["during_faults"]["seconds"] = during
    out["outside_faults"]["seconds"] = max(0.0, end - during)
    for d in out.values():
        total = d[OK] + d[FAIL] + d[INFO]
        d["total"] = total
        d["availability"] = d[OK] / total if total else None
        d["ok_per_s"] = d[OK] / d["seconds"] if d["seconds"] > 0 else None
    return out
