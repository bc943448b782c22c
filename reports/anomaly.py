"""The first anomaly, in words, and the part of the history around it.

The checker (results.json) says which keys are illegal and may attach an "anomaly" object; its
shape is the checker's business, so this module reads it liberally: a description string, and
history indices of the operations involved. On top of that it derives its own explanation from
the history, for the anomalies a register with unique values per key makes provable in plain
words (stale read, read of a value never written, read from the future) and for the set
checker's lost and unexpected elements.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from typing import Any

from chaos.history import INFO, OK

from reports.analysis import ClientOp, NemesisEvent

DESCRIPTION_FIELDS = ("description", "message", "explanation", "reason", "text", "summary")
INDEX_FIELDS = ("op", "op_index", "index", "ops", "indices", "op_indices", "operations", "history_indices")


@dataclass
class Anomaly:
    key: Any
    checker: str                    # "linearizable", "set", ...
    sentences: list[str]            # in words, most telling first
    roles: dict[int, str]           # history index of an invocation -> its part in the anomaly
    anchor: int | None              # the invocation index the excerpt centres on
    raw: Any = None                 # the checker's own anomaly object, shown as JSON
    visualization: str | None = None
    rows: list[dict] = field(default_factory=list)


def fmt_value(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    return json.dumps(v, separators=(",", ":"), default=str) if not isinstance(v, str) else repr(v)


def fmt_t(t: float | None) -> str:
    return "—" if t is None else f"{t:.3f} s"


def _indices(value: Any) -> list[int]:
    out: list[int] = []
    if isinstance(value, bool):
        return out
    if isinstance(value, int):
        out.append(value)
    elif isinstance(value, dict):
        if isinstance(value.get("index"), int):
            out.append(value["index"])
    elif isinstance(value, list):
        for v in value:
            out.extend(_indices(v))
    return out


def checker_anomaly_parts(anomaly: Any) -> tuple[list[str], list[int]]:
    """(descriptions, history indices) found in a checker's anomaly object."""
    if isinstance(anomaly, str):
        return [anomaly], []
    if not isinstance(anomaly, dict):
        return [], []
    texts = [str(anomaly[k]) for k in DESCRIPTION_FIELDS if isinstance(anomaly.get(k), str)]
    idx: list[int] = []
    for k in INDEX_FIELDS:
        if k in anomaly:
            idx.extend(_indices(anomaly[k]))
    return texts, idx


def _writes_of(op: ClientOp) -> Any:
    """The value an operation writes, if it is a write (cas writes its new value)."""
    if op.f == "write":
        return op.invoke_value
    if op.f == "cas" and isinstance(op.invoke_value, list) and len(op.invoke_value) == 2:
        return op.invoke_value[1]
    return _NO_WRITE


_NO_WRITE = object()


def _who(op: ClientOp) -> str:
    return f"process {op.process}"


def explain_register(key_ops: list[ClientOp]) -> tuple[list[str], dict[int, str], int | None]:
    """Find the earliest read that a register with unique written values cannot explain.

    Writes that certainly happened are kept sorted by completion time, so each read looks only at
    the writes that completed between the write of the value it read and its own invocation:
    near-linear on a legal key, whatever its length.
    """
    writes: dict[str, ClientOp] = {}
    effective: list[ClientOp] = []   # writes that certainly happened
    for op in key_ops:
        v = _writes_of(op)
        if v is _NO_WRITE or op.type not in (OK, INFO):
            continue
        writes.setdefault(json.dumps(v, sort_keys=True, default=str), op)
        if op.type == OK and op.end is not None:
            effective.append(op)
    effective.sort(key=lambda o: o.end)
    ends = [o.end for o in effective]
    reads = sorted((op for op in key_ops if op.f == "read" and op.type == OK and op.end is not None),
                   key=lambda o: o.start)
    for r in reads:
        v = r.value
        done = bisect.bisect_left(ends, r.start)  # effective[:done] completed before the read began
        if v is None:
            if done:
                w = effective[done - 1]
                return ([f"read of {fmt_value(None)} at {fmt_t(r.start)} by {_who(r)} returned an empty "
                         f"register, though {_who(w)}'s write of {fmt_value(_writes_of(w))} had completed "
                         f"at {fmt_t(w.end)}."],
                        {r.index: "anomalous read", w.index: "completed write"}, r.index)
            continue
        w = writes.get(json.dumps(v, sort_keys=True, default=str))
        if w is None:
            return ([f"read of {fmt_value(v)} at {fmt_t(r.start)} by {_who(r)} returned a value that "
                     "no operation on this key ever wrote."], {r.index: "anomalous read"}, r.index)
        if w.start > r.end:
            return ([f"read of {fmt_value(v)} at {fmt_t(r.start)} by {_who(r)} returned a value that "
                     f"{_who(w)} only began writing at {fmt_t(w.start)}, after the read had "
                     f"completed at {fmt_t(r.end)}."],
                    {r.index: "anomalous read", w.index: "wrote the value read (later)"}, r.index)
        if w.type != OK or w.end is None:
            continue
        # The latest-completing write that began after w completed and completed before r began;
        # writes completing before w did cannot have begun after it, so the scan stops there.
        o = None
        for j in range(done - 1, -1, -1):
            cand = effective[j]
            if cand.end <= w.end:
                break
            if cand is not w and cand.start > w.end:
                o = cand
                break
        if o is not None:
            return ([f"read of {fmt_value(v)} at {fmt_t(r.start)} by {_who(r)} returned a value "
                     f"overwritten at {fmt_t(o.end)} by {_who(o)} (its {o.f} of "
                     f"{fmt_value(_writes_of(o))}, invoked at {fmt_t(o.start)}, after {fmt_value(v)} "
                     f"had been written by {_who(w)} at {fmt_t(w.end)})."],
                    {r.index: "anomalous (stale) read", w.index: "wrote the value read",
                     o.index: "overwrote it before the read began"}, r.index)
    return [], {}, None


def explain_set(key_ops: list[ClientOp], lost: list, unexpected: list) -> tuple[list[str], dict[int, str], int | None]:
    finals = [o for o in key_ops if o.f == "read" and o.type == OK]
    final = finals[-1] if finals else None
    adds = {json.dumps(o.invoke_value, default=str): o for o in key_ops if o.f in ("add", "append")}
    for e in lost:
        a = adds.get(json.dumps(e, default=str))
        if a is not None and final is not None:
            return ([f"element {fmt_value(e)}, added by {_who(a)} (acknowledged at {fmt_t(a.end)}), "
                     f"is missing from the final read at {fmt_t(final.start)} by {_who(final)}."],
                    {a.index: "acknowledged add", final.index: "final read without it"}, a.index)
    for e in unexpected:
        if final is not None:
            return ([f"the final read at {fmt_t(final.start)} by {_who(final)} contains "
                     f"{fmt_value(e)}, which no operation added."], {final.index: "final read"}, final.index)
    return [], {}, None


def history_excerpt(key_ops: list[ClientOp], nemesis: list[NemesisEvent], roles: dict[int, str],
                    anchor: int | None, before: int = 8, after: int = 8) -> list[dict]:
    """Operations on the key around the anchor, the ops with a role, and overlapping faults."""
    ordered = sorted(key_ops, key=lambda o: o.start)
    pos = next((i for i, o in enumerate(ordered) if o.index == anchor), None)
    if pos is None:
        chosen = ordered[: before + after + 1]
    else:
        chosen = ordered[max(0, pos - before): pos + after + 1]
    chosen_ids = {o.index for o in chosen}
    chosen += [o for o in ordered if o.index in roles and o.index not in chosen_ids]
    chosen.sort(key=lambda o: o.start)
    rows = [{"kind": "op", "op": o, "role": roles.get(o.index, "")} for o in chosen]
    if chosen:
        lo = min(o.start for o in chosen)
        hi = max((o.end if o.end is not None else o.start) for o in chosen)
        for ev in nemesis:
            end = ev.end if ev.end is not None else ev.start
            if end >= lo and ev.start <= hi:
                rows.append({"kind": "nemesis", "op": ev, "role": "fault"})
    rows.sort(key=lambda r: r["op"].start)
    return rows


def _elements(entries: Any) -> list[tuple[Any, Any]]:
    """(key or None, element) from a set checker's list: bare elements or {"key", "element"}."""
    if not isinstance(entries, list):
        return []
    out = []
    for e in entries:
        if isinstance(e, dict) and "element" in e:
            out.append((e.get("key"), e["element"]))
        else:
            out.append((None, e))
    return out


def find_anomalies(results: dict | None, client: list[ClientOp], nemesis: list[NemesisEvent],
                   limit: int = 20) -> list[Anomaly]:
    """An Anomaly per illegal key (the first illegal key first), at most `limit` of them."""
    if not isinstance(results, dict):
        return []
    checkers = results.get("checkers") if isinstance(results.get("checkers"), dict) else {}
    by_key: dict[Any, list[ClientOp]] = {}
    for op in client:
        try:
            by_key.setdefault(op.key, []).append(op)
        except TypeError:  # an unhashable key: leave it out of per-key views
            continue
    out: list[Anomaly] = []
    lin = checkers.get("linearizable")
    if isinstance(lin, dict) and isinstance(lin.get("keys"), dict):
        illegal = [k for k, v in lin["keys"].items() if isinstance(v, dict) and v.get("valid") is False]
        first = lin.get("first_illegal_key")
        if first in illegal:
            illegal.remove(first)
            illegal.insert(0, first)
        for key in illegal[:limit]:
            info = lin["keys"][key]
            ops = by_key.get(key, [])
            texts, idx = checker_anomaly_parts(info.get("anomaly"))
            mine, roles, anchor = explain_register(ops)
            if anchor is None and idx:
                index_to_invoke = {o.index: o.index for o in ops}
                index_to_invoke.update({o.complete_index: o.index for o in ops if o.complete_index is not None})
                cited = [index_to_invoke[i] for i in idx if i in index_to_invoke]
                roles = {i: "cited by the checker" for i in cited}
                anchor = cited[0] if cited else None
            sentences = mine + [t for t in texts if t not in mine]
            if not sentences:
                sentences = [f"no linearization of the {len(ops)} operations on key {key!s} exists; "
                             "see porcupine's visualization for the longest linearizable prefix."]
            a = Anomaly(key, "linearizable", sentences, roles, anchor, raw=info.get("anomaly"),
                        visualization=info.get("visualization") if isinstance(info.get("visualization"), str) else None)
            a.rows = history_excerpt(ops, nemesis, roles, anchor)
            out.append(a)
    st = checkers.get("set")
    if isinstance(st, dict) and st.get("valid") is False:
        lost = _elements(st.get("lost"))
        unexpected = _elements(st.get("unexpected"))
        for key, ops in by_key.items():
            if not any(o.f in ("add", "append") for o in ops):
                continue
            mine = {json.dumps(o.invoke_value, default=str) for o in ops if o.f in ("add", "append")}
            reads = {json.dumps(v, default=str)
                     for o in ops if o.f == "read" and isinstance(o.value, list) for v in o.value}

            def of_key(entries: list[tuple[Any, Any]], pool: set[str], key: Any = key) -> list:
                return [e for k, e in entries if k == key or (k is None and json.dumps(e, default=str) in pool)]
            key_lost, key_unexpected = of_key(lost, mine), of_key(unexpected, reads)
            if not key_lost and not key_unexpected:
                continue
            sentences, roles, anchor = explain_set(ops, key_lost, key_unexpected)
            if sentences:
                a = Anomaly(key, "set", sentences, roles, anchor)
                a.rows = history_excerpt(ops, nemesis, roles, anchor)
                out.append(a)
                break
        if not any(a.checker == "set" for a in out) and (lost or unexpected):
            counts = ", ".join(f"{len(v)} {n}" for n, v in (("lost", lost), ("unexpected", unexpected),
                                                           ("duplicated", _elements(st.get("duplicated")))) if v)
            out.append(Anomaly(None, "set", [f"the set checker found {counts} elements."], {}, None, raw=None,
                               rows=[]))
    return out
