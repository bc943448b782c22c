"""Jepsen's `independent` histories: one register per key, the key inside each operation's value.

Jepsen's `jepsen.independent` runs one register per key in a single history and writes each value
as a tuple `[key value]`: `:write [1 3]` writes 3 to key 1, `:read [2 nil]` reads key 2 (and
completes as `[2 5]`), `:cas [1 [3 4]]` compares-and-sets key 1 from 3 to 4. Read as one register
such a history is nonsense (a write of `[1 3]` followed by a read of `[2 nil]` "is not
linearizable"); split by key it is what Jepsen checked.

A plain register's `:cas [1 2]` is a pair too, so the split is never a guess:

- forced (`independent=True`, `splitbrain check --independent`): every client operation must fit
  the shapes below, and the first one that does not is an error naming its line;
- refused (`independent=False`, `--no-independent`): the history is read as it is;
- auto (None, the default): split only when every client operation fits AND at least one read is
  invoked with `[key nil]`. A plain register's read is invoked with nil, never with a pair, so no
  plain register history is ever split; and without a read there is nothing in the history that
  a key would explain.

The shapes, per client operation (an invocation and its completion):
  - no `:key` of its own, f one of read/write/cas;
  - the invocation's value is `[k v]` with k an integer or a string (keywords are strings here);
    for a read v is nil, for a cas v is a pair `[old new]`;
  - a completion carries the same k: `[k v']` (an ok read's v' is what it read); a fail or info
    completion may carry no value at all.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from chaos.history import FAIL, INFO, HistoryError, Op, pair_ops

SPLIT_FS = ("read", "write", "cas")


class _Misfit(Exception):
    def __init__(self, op: Op, problem: str):
        self.op, self.problem = op, problem


def _key_of(value: Any, op: Op) -> Any:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _Misfit(op, f"value must be [key value], got {value!r}")
    k = value[0]
    if isinstance(k, bool) or not isinstance(k, (int, str)):
        raise _Misfit(op, f"the key (first element of the value) must be an integer or a string, got {k!r}")
    return k


def _fit(ops: list[Op]) -> tuple[list[tuple[Op, Any, Any]], bool]:
    """[(op, key, unwrapped value)] for the client ops, and whether a read was invoked with
    [k nil]. Raises _Misfit at the first op that does not fit."""
    fitted: list[tuple[Op, Any, Any]] = []
    saw_keyed_read = False
    for pair in pair_ops([op for op in ops if not op.is_nemesis]):
        inv, comp = pair.invoke, pair.complete
        if inv.key is not None:
            raise _Misfit(inv, f"the operation already has a key ({inv.key!r})")
        if inv.f not in SPLIT_FS:
            raise _Misfit(inv, f"operation f {inv.f!r} is not one of {', '.join(SPLIT_FS)}")
        k = _key_of(inv.value, inv)
        v = inv.value[1]
        if inv.f == "read":
            if v is not None:
                raise _Misfit(inv, f"a read is invoked with [key nil], got {inv.value!r}")
            saw_keyed_read = True
        elif inv.f == "cas" and (not isinstance(v, (list, tuple)) or len(v) != 2):
            raise _Misfit(inv, f"a cas value must be [key [old new]], got {inv.value!r}")
        fitted.append((inv, k, v))
        if comp is None:
            continue
        if comp.value is None and comp.type in (FAIL, INFO):
            fitted.append((comp, k, None))
            continue
        ck = _key_of(comp.value, comp)
        if ck != k:
            raise _Misfit(comp, f"completes with key {ck!r} an operation invoked on key {k!r}")
        fitted.append((comp, k, comp.value[1]))
    return fitted, saw_keyed_read


def split_independent(ops: list[Op], independent: bool | None = None,
                      source: str = "history") -> tuple[list[Op], dict]:
    """(ops, note): the history with each client op's key and value taken out of its [k v] value
    when it is an independent history (see the module's rule), else the history unchanged.

    note: {"independent": True|False, "decided_by": "flag"|"auto", ...}, with "keys" when split and
    "why_not" when auto-detection declined. Raises HistoryError (with the line) when forced and an
    operation does not fit.
    """
    if independent is False:
        return ops, {"independent": False, "decided_by": "flag"}
    try:
        fitted, saw_keyed_read = _fit(ops)
    except _Misfit as m:
        if independent:
            line = m.op.extra.get("line", m.op.index + 1 if m.op.index >= 0 else None)
            raise HistoryError(line, f"--independent: {m.problem}", source) from None
        return ops, {"independent": False, "decided_by": "auto", "why_not": f"op {m.op.index}: {m.problem}"}
    if not independent and not saw_keyed_read:
        return ops, {"independent": False, "decided_by": "auto",
                     "why_not": "no read is invoked with [key nil]"}
    replaced = {id(op): (k, v) for op, k, v in fitted}
    out = []
    for op in ops:
        kv = replaced.get(id(op))
        out.append(op if kv is None else dataclasses.replace(op, key=kv[0], value=kv[1], extra=dict(op.extra)))
    keys = list(dict.fromkeys(k for _, k, _ in fitted))
    return out, {"independent": True, "decided_by": "flag" if independent else "auto", "keys": len(keys)}


__all__ = ["split_independent", "SPLIT_FS"]
