"""Our own linearizability search: Wing & Gong's algorithm with Lowe's cache, one key at a time.

The same algorithm porcupine runs (operations in a doubly linked list of call/return events;
linearize the first call that the model accepts, lift it out, backtrack at the first return that
cannot be reached; a cache of (linearized set, state) pairs prunes repeated states), with two
additions:

- a time budget (over budget → "unknown", never a pass) and a bound on the cache's size (when it
  is full it is cleared: the cache only prunes, so correctness is unaffected, memory stays bounded);
- for the kv model in concat mode with unique appended strings (Jepsen's kv histories), every read
  tells at which state each append it contains took effect ("x 3 y" read as "x 1 yx 3 y" means
  "x 3 y" was appended to "x 1 y"). An append is then only tried in that state. This is what makes
  histories with 50 concurrent clients decidable in seconds.

The model semantics match checkers/porcupine/main.go exactly (states are canonical strings).
"""

from __future__ import annotations

import time
from typing import Any

from .prepare import APPEND, CAS, DELETE, READ, WRITE, KeyHistory, LinOp, describe_op

CACHE_MEMORY_BYTES = 256 << 20  # what the cache of one search may hold, roughly


class Unknown(Exception):
    """The search ran out of its time budget."""


def append_to(mode: str, init: str, state: str, value: str) -> str | None:
    """The state after an append; None when the state is not something one can append to."""
    if mode == "list":
        if state == init or state == "null" or state == "[]":
            return "[" + value + "]"
        if state.startswith("[") and state.endswith("]"):
            return state[:-1] + "," + value + "]"
        return None
    return state + value


def append_predecessors(ops: list[LinOp]) -> tuple[dict[str, str] | None, dict | None]:
    """For concat-mode appends: the state each append of a unique string was applied to.

    An appended string that occurs once in the history (appended once, never put) can enter a
    state only by that append, and only puts reset a state, so a read containing it shows exactly
    the state it was appended to: the prefix before it. Strings appended more than once get no
    entry. Returns (predecessors, None); (None, None) when reads cannot be split into the
    written strings unambiguously (no pruning then); or (None, anomaly) when two reads prove the
    same append took effect on two different states (not linearizable).
    """
    counts: dict[str, int] = {}
    appender: dict[str, LinOp] = {}
    for op in ops:
        if op.f in (APPEND, WRITE):
            if not op.inp:
                return None, None
            counts[op.inp] = counts.get(op.inp, 0) + (1 if op.f == APPEND else 2)
            appender[op.inp] = op
        elif op.f in (CAS, DELETE):
            return None, None
    if not counts:
        return None, None
    lengths = sorted({len(t) for t in counts})
    preds: dict[str, str] = {}
    witness: dict[str, LinOp] = {}
    for op in ops:
        if op.f != READ or op.info or not op.out:
            continue
        g = op.out
        pos = 0
        while pos < len(g):
            found = None
            for n in lengths:
                piece = g[pos:pos + n]
                if len(piece) == n and piece in counts:
                    if found is not None:
                        return None, None  # ambiguous split
                    found = piece
            if found is None:
                return None, None
            if counts[found] == 1:
                prefix = g[:pos]
                seen = preds.get(found)
                if seen is None:
                    preds[found] = prefix
                    witness[found] = op
                elif seen != prefix:
                    other = witness[found]
                    return None, {
                        "kind": "append-order",
                        "description": (f"the append of {found!r} (op {appender[found].index}) took effect once, "
                                        f"yet op {other.index} read it after {seen!r} and op {op.index} "
                                        f"read it after {prefix!r}"),
                        "ops": [appender[found].index, other.index, op.index]}
            pos += len(found)
    return preds, None


def check_key(kh: KeyHistory, append_mode: str = "list", deadline: float | None = None,
              cache_limit: int | None = None, t0: int | None = 0) -> dict:
    """Search one key. Returns {"valid": True|False|"unknown", "method": "search", ...}.

    cache_limit: entries kept in Lowe's cache before it is cleared (default: what fits in
    CACHE_MEMORY_BYTES, counting a tuple, a bitset of n bits and a shared state string each).
    """
    ops = kh.ops
    n = len(ops)
    if cache_limit is None:
        cache_limit = max(10_000, CACHE_MEMORY_BYTES // (150 + n // 8))
    result: dict[str, Any] = {"valid": True, "method": "search", "ops": n}
    if n == 0:
        return result
    preds = None
    if append_mode == "concat" and any(op.f == APPEND for op in ops):
        preds, anomaly = append_predecessors(ops)
        if anomaly is not None:
            result.update(valid=False, anomaly=anomaly)
            return result
    init = kh.init

    # Events sorted by rank; node ids are positions in this list, `head` is a sentinel.
    events = sorted([(op.call, 0, i) for i, op in enumerate(ops)] + [(op.ret, 1, i) for i, op in enumerate(ops)])
    size = len(events)
    head = size
    nxt = list(range(1, size + 1)) + [0]
    nxt[size - 1] = -1
    nxt[head] = 0
    prv = [head] + list(range(0, size - 1)) + [-1]
    match = [-1] * size
    op_of = [0] * size
    call_node = [0] * n
    for node, (_, kind, i) in enumerate(events):
        op_of[node] = i
        if kind == 0:
            call_node[i] = node
    for node, (_, kind, i) in enumerate(events):
        if kind == 1:
            match[call_node[i]] = node

    fs = [op.f for op in ops]
    # str for the kinds the loop reads them for (a write's, cas's or append's input, a cas's new
    # value: prepare always sets those), None for the rest; Any keeps the hot loop free of checks.
    inps: list[Any] = [op.inp for op in ops]
    inp2s: list[Any] = [op.inp2 for op in ops]
    outs = [op.out for op in ops]
    infos = [op.info for op in ops]
    pred_of = [preds.get(op.inp) if preds is not None and op.f == APPEND and op.inp is not None else None
               for op in ops]

    if deadline is not None and time.monotonic() > deadline:
        result.update(valid="unknown", steps=0, reason="time budget exhausted")
        return result
    state = init
    linearized = 0
    cache: set = set()
    calls: list[tuple[int, str]] = []
    entry = nxt[head]
    steps = 0
    cache_resets = 0
    deepest = -1
    deepest_snapshot = (0, init)
    while nxt[head] != -1:
        steps += 1
        if steps & 4095 == 0 and deadline is not None and time.monotonic() > deadline:
            result.update(valid="unknown", steps=steps, cache_resets=cache_resets,
                          reason="time budget exhausted")
            return result
        ret_node = match[entry]
        if ret_node != -1:
            i = op_of[entry]
            f = fs[i]
            ok = True
            new = state
            if f == READ:
                ok = infos[i] or outs[i] == state
            elif f == WRITE:
                new = inps[i]
            elif f == CAS:
                if state == inps[i]:
                    new = inp2s[i]
                else:
                    ok = infos[i]
            elif f == APPEND:
                p = pred_of[i]
                if p is not None and p != state:
                    ok = False
                else:
                    nxt_state = append_to(append_mode, init, state, inps[i])
                    if nxt_state is None:
                        ok = infos[i]
                    else:
                        new = nxt_state
            elif f == DELETE:
                new = init
            if ok:
                bits = linearized | (1 << i)
                key = (bits, new)
                if key not in cache:
                    if len(cache) >= cache_limit:
                        cache.clear()
                        cache_resets += 1
                    cache.add(key)
                    calls.append((entry, state))
                    state = new
                    linearized = bits
                    # lift the call and its return out of the list
                    a, b = prv[entry], nxt[entry]
                    nxt[a] = b
                    prv[b] = a
                    a, b = prv[ret_node], nxt[ret_node]
                    nxt[a] = b
                    if b != -1:
                        prv[b] = a
                    entry = nxt[head]
                    continue
            entry = nxt[entry]
        else:
            if len(calls) > deepest:
                deepest = len(calls)
                deepest_snapshot = (linearized, state)
            if not calls:
                result.update(valid=False, steps=steps, cache_resets=cache_resets,
                              anomaly=_describe_stuck(ops, deepest, deepest_snapshot, t0))
                return result
            entry, state = calls.pop()
            linearized &= ~(1 << op_of[entry])
            ret_node = match[entry]
            a, b = prv[ret_node], nxt[ret_node]
            nxt[a] = ret_node
            if b != -1:
                prv[b] = ret_node
            a, b = prv[entry], nxt[entry]
            nxt[a] = entry
            prv[b] = entry
            entry = nxt[entry]
    result.update(steps=steps, cache_resets=cache_resets)
    return result


def _describe_stuck(ops: list[LinOp], depth: int, snapshot: tuple[int, str], t0: int | None) -> dict:
    """Words for an illegal key: where the longest linearization got stuck."""
    bits, state = snapshot
    pending = [i for i in range(len(ops)) if not (bits >> i) & 1]
    first_ret = min(ops[i].ret for i in pending)
    # The ops that could come next are those invoked before the earliest pending return.
    candidates = sorted((i for i in pending if ops[i].call < first_ret), key=lambda i: ops[i].ret)
    blocker = candidates[0]
    shown = candidates[:4]
    text = (f"no order of the operations is legal: at best {depth} of {len(ops)} operations "
            f"linearize, leaving the value {_short(state)}, and then {describe_op(ops[blocker], t0)} "
            f"cannot take effect")
    others = [describe_op(ops[i], t0) for i in shown[1:]]
    if others:
        text += " (nor can " + "; ".join(others) + ")"
    return {"kind": "no-linearization", "description": text,
            "ops": [ops[i].index for i in shown], "state": state, "linearized": depth}


def _short(v: str) -> str:
    return v if len(v) <= 40 else v[:37] + "..."
