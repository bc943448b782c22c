"""Linearizability of registers whose written values are unique, in O(n log n) — no search.

When every value is written at most once (our register workload writes unique values per key),
a read names the one write it saw, so the order of values is almost fixed. We use the result of
Gibbons & Korach ("Testing shared memories", 1997) for read/write registers with a read mapping,
extended to cas chains:

- a "block" is a maximal run of values joined by cas: a blind write (or the initial value), the
  reads of its value, the cas that consumed it (which writes the next value), its reads, ...
  In any linearization each block is contiguous and its internal order is fixed.
- a block's zone is [earliest return, latest invocation] over its ops. If the earliest return
  comes first the zone is "forward": the block must span it. Otherwise all its ops overlap and
  it can be linearized at a single point inside the (backward) zone.
- The history is linearizable iff (1) every block can be ordered internally (no op returned
  before an op it must follow was invoked), (2) no two forward zones overlap, (3) no backward
  zone lies inside another block's forward zone. Each violation names the operations that prove
  it, which become the anomaly a report prints.

Indeterminate writes whose value nobody observed are dropped first (they may not have happened,
and if they did nothing saw them), so the crashes of a partitioned run cost nothing.

The same applies to Jepsen's kv histories (concat mode, unique appended strings): a read splits
into the appends it contains, so each observed append is a cas from the prefix before it, a put is
a blind write, and an append nobody observed behaves as a write nobody read.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from .prepare import APPEND, CAS, READ, WRITE, KeyHistory, LinOp, describe_op
from .search import append_predecessors

NEG_INF = float("-inf")


@dataclass(slots=True)
class _Abs:
    op: LinOp | None        # None: the virtual write of the initial value
    kind: str               # "w" blind write, "c" consume+produce, "r" read
    value: str              # produced (w, c) or observed (r)
    expected: str | None = None
    call: float = NEG_INF
    ret: float = NEG_INF


@dataclass
class _Block:
    values: list[str]
    ops: list[_Abs] = field(default_factory=list)
    min_ret: float = float("inf")
    min_ret_op: _Abs | None = None
    max_call: float = NEG_INF
    max_call_op: _Abs | None = None


def _abstract(kh: KeyHistory, append_mode: str) -> tuple[list[_Abs] | None, dict | None]:
    preds = None
    if any(op.f == APPEND for op in kh.ops):
        if append_mode != "concat":
            return None, None
        preds, anomaly = append_predecessors(kh.ops)
        if anomaly is not None:
            return None, anomaly
        if preds is None:
            return None, None
        appended = [op.inp for op in kh.ops if op.f in (APPEND, WRITE)]
        if len(set(appended)) != len(appended):
            return None, None  # a string appended twice: its position is ambiguous
    out: list[_Abs] = []
    for op in kh.ops:
        if op.f == READ:
            out.append(_Abs(op, "r", op.out, call=op.call, ret=op.ret))
        elif op.f == WRITE:
            out.append(_Abs(op, "w", op.inp, call=op.call, ret=op.ret))
        elif op.f == CAS:
            out.append(_Abs(op, "c", op.inp2, op.inp, call=op.call, ret=op.ret))
        elif op.f == APPEND:
            pred = preds.get(op.inp)
            if pred is not None:
                out.append(_Abs(op, "c", pred + op.inp, pred, call=op.call, ret=op.ret))
            elif not op.info:
                # Nobody saw it: the next visible op must be a put, exactly like an unread write.
                out.append(_Abs(op, "w", "\x00unobserved append " + op.inp, call=op.call, ret=op.ret))
            # an unobserved indeterminate append may not have happened: dropped
        else:
            return None, None  # delete: a value can come back, the fast path does not apply
    return out, None


def check_unique(kh: KeyHistory, append_mode: str = "list", t0: int | None = 0) -> dict | None:
    """Decide one key, or None when its values are not unique (use the search then)."""
    abstract, anomaly = _abstract(kh, append_mode)
    result = {"valid": True, "method": "unique-values", "ops": len(kh.ops)}
    if anomaly is not None:
        result.update(valid=False, anomaly=anomaly)
        return result
    if abstract is None:
        return None
    init = kh.init

    # Indeterminate writes/cas whose value nobody observed may not have happened: drop them.
    observed = {a.value for a in abstract if a.kind == "r"}
    observed.update(a.expected for a in abstract if a.kind == "c" and not a.op.info)
    changed = True
    while changed:
        changed = False
        for a in abstract:
            if a.kind == "c" and a.op.info and a.value in observed and a.expected not in observed:
                observed.add(a.expected)
                changed = True
    ops = [a for a in abstract if a.kind == "r" or not a.op.info or a.value in observed]

    producer: dict[str, _Abs] = {}
    for a in ops:
        if a.kind in "wc":
            if a.value in producer or a.value == init:
                return None  # a value written twice: not for this method
            producer[a.value] = a
    virtual = _Abs(None, "w", init)
    producer[init] = virtual

    def fail(kind: str, text: str, involved: list[_Abs]) -> dict:
        result.update(valid=False, anomaly={
            "kind": kind, "description": text,
            "ops": [a.op.index for a in involved if a.op is not None]})
        return result

    d = lambda a: describe_op(a.op, t0) if a.op is not None else "the initial value"  # noqa: E731

    reads: dict[str, list[_Abs]] = {}
    consumer: dict[str, _Abs] = {}
    for a in ops:
        if a.kind == "r":
            if a.value not in producer:
                return fail("read-unwritten", f"{d(a)} returned a value no operation wrote", [a])
            reads.setdefault(a.value, []).append(a)
        elif a.kind == "c":
            if a.expected not in producer:
                return fail("cas-unwritten", f"{d(a)} found {a.expected}, a value no operation wrote", [a])
            other = consumer.get(a.expected)
            if other is not None:
                return fail("double-cas", f"{d(other)} and {d(a)} both replaced the value "
                            f"{a.expected}, which was written only once", [other, a])
            consumer[a.expected] = a

    # Blocks: from each blind write (and the initial value) along the cas chain.
    blocks: list[_Block] = []
    seen: set[str] = set()
    for start in [init] + [a.value for a in ops if a.kind == "w"]:
        block = _Block(values=[])
        v = start
        while True:
            seen.add(v)
            block.values.append(v)
            p = producer[v]
            block.ops.append(p)
            block.ops.extend(reads.get(v, ()))
            nxt = consumer.get(v)
            if nxt is None:
                break
            v = nxt.value
        blocks.append(block)
    for a in ops:
        if a.kind == "c" and a.value not in seen:
            return fail("cas-cycle", f"{d(a)} is part of a cycle of cas operations that never "
                        "starts from a written value", [a])

    # (1) internal order of each block.
    for block in blocks:
        max_call, max_op = NEG_INF, None
        i = 0
        ops_b = block.ops
        while i < len(ops_b):
            p = ops_b[i]
            if p.op is not None:
                if max_call > p.ret:
                    return fail("stale-read" if max_op.kind == "r" else "order",
                                f"{_head(max_op)}{d(max_op)} began after {d(p)} had completed, yet "
                                f"{_v(max_op.value)} comes before {_v(p.value)} in the chain of values "
                                "that cas operations wrote", [max_op, p])
            if p.call > max_call:
                max_call, max_op = p.call, p
            j = i + 1
            seg_max, seg_op = max_call, max_op
            while j < len(ops_b) and ops_b[j].kind == "r":
                r = ops_b[j]
                if max_call > r.ret:
                    if max_op is p:
                        text = f"{d(r)} completed before {d(p)}, which wrote that value, began"
                    else:
                        text = (f"{d(r)} completed before {d(max_op)} began, yet {_v(max_op.value)} "
                                f"comes before {_v(r.value)} in the chain of values that cas operations wrote")
                    return fail("future-read", text, [max_op, r])
                if r.call > seg_max:
                    seg_max, seg_op = r.call, r
                j += 1
            max_call, max_op = seg_max, seg_op
            i = j
        for a in ops_b:
            if a.op is None:
                ret, call = NEG_INF, NEG_INF
            else:
                ret, call = a.ret, a.call
            if ret < block.min_ret:
                block.min_ret, block.min_ret_op = ret, a
            if call > block.max_call:
                block.max_call, block.max_call_op = call, a

    forward = sorted((b for b in blocks if b.min_ret < b.max_call), key=lambda b: b.min_ret)
    # (2) forward zones must not overlap.
    widest = None
    for b in forward:
        if widest is not None and b.min_ret < widest.max_call:
            a = widest
            y_a, x_b, y_b, x_a = a.max_call_op, b.min_ret_op, b.max_call_op, a.min_ret_op
            return fail("stale-read" if y_a.kind == "r" else "order-cycle",
                        f"{_head(y_a)}{d(y_a)} began after {d(x_b)} had completed, so {_v(x_b.value)} "
                        f"came before {_v(y_a.value)}; but {d(y_b)} began after {d(x_a)} had completed, "
                        f"so {_v(x_a.value)} came before {_v(y_b.value)}: the two values cannot both hold their place",
                        [y_a, x_b, y_b, x_a])
        if widest is None or b.max_call > widest.max_call:
            widest = b
    # (3) a block that fits in one point must find one outside every forward zone.
    starts = [b.min_ret for b in forward]
    for b in blocks:
        if not b.max_call < b.min_ret or not b.ops or (len(b.ops) == 1 and b.ops[0].op is None):
            continue
        k = bisect.bisect_left(starts, b.max_call) - 1
        if k >= 0:
            a = forward[k]
            if a is not b and b.min_ret < a.max_call:
                y_a, x_b, x_a, y_b = a.max_call_op, b.min_ret_op, a.min_ret_op, b.max_call_op
                if x_b is y_b:
                    when = f"{d(x_b)} ran entirely"
                else:
                    when = f"{d(y_b)} began and {d(x_b)} completed"
                return fail("stale-read" if y_a.kind == "r" else "lost-write",
                            f"{_head(y_a)}{when} after {d(x_a)} had completed and before {d(y_a)} "
                            f"began, so {_v(x_b.value)} replaced {_v(x_a.value)} in a stretch where "
                            f"{_v(x_a.value)} had to stay", [y_a, x_b, x_a, y_b])
    result["blocks"] = len(blocks)
    return result


def _v(value: str) -> str:
    if value.startswith("\x00unobserved append "):
        return "an append nobody read"
    return value if len(value) <= 40 else value[:37] + "..."


def _head(reader: _Abs) -> str:
    """The headline a report leads with when the op at fault is a read."""
    if reader.kind == "r" and reader.op is not None:
        return f"stale read ({_v(reader.value)} had already been overwritten): "
    return ""
