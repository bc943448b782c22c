"""From a history to per-key operation lists both linearizability checkers search.

What happens here is the same for porcupine and for our own checker, so the two always check the
same problem:

- client invocations are paired with their completions (a missing completion counts as info);
- fail operations are dropped (they certainly had no effect), and so are indeterminate reads
  (a read that may or may not have happened constrains nothing);
- indeterminate writes/cas/appends stay, pending to the end: their return time is "infinity"
  and the model accepts any output for them;
- time becomes a rank over all call/return events, calls before returns at equal times, so an
  operation precedes another only if it returned strictly before the other was invoked (the
  closed intervals porcupine uses);
- values become canonical strings, so a model only ever compares strings. For the kv model's
  append there are two modes: "concat" (Jepsen's kv histories: strings concatenated, a missing
  key reads as "") and "list" (our node: a JSON list extended by one element, missing is null).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chaos.history import FAIL, INFO, NEMESIS, OK, HistoryError, Op, pair_ops

READ, WRITE, CAS, APPEND, DELETE = "read", "write", "cas", "append", "delete"
_F_ALIASES = {"read": READ, "get": READ, "write": WRITE, "put": WRITE, "cas": CAS,
              "append": APPEND, "add": APPEND, "delete": DELETE}
MODELS = ("register", "kv")
REGISTER_FS = (READ, WRITE, CAS)
INF = float("inf")
DEFAULT_KEY = "default"  # the key of a history without keys (a single register, as Jepsen's etcd test)


@dataclass(slots=True)
class LinOp:
    """One operation as the linearizability checkers see it."""

    index: int          # index of the invocation in the history
    process: Any
    f: str              # read / write / cas / append / delete
    inp: str | None     # written value, cas expected value, appended value (canonical)
    inp2: str | None    # cas new value
    out: str | None     # a read's result (None for info ops and non-reads)
    call: int           # rank of the invocation
    ret: float          # rank of the completion, INF for info
    info: bool
    call_time: int      # controller ns, for describing anomalies
    ret_time: int | None
    complete_index: int | None


@dataclass
class KeyHistory:
    key: Any
    ops: list[LinOp]
    init: str


def canonical(value: Any) -> str:
    # ints and null are by far the most common values: skip the JSON encoder for them
    if value is None:
        return "null"
    if type(value) is int:
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def choose_append_mode(ops: list[Op]) -> str:
    """'concat' for Jepsen's kv histories, 'list' for our node.

    Jepsen's kv test writes strings and reads strings ("" for a missing key); our node reads null
    for a missing key and a list after an append. So: concat when every put/append value and every
    ok read value is a string, else list.
    """
    saw_string = False
    for op in ops:
        if op.is_nemesis:
            continue
        f = _F_ALIASES.get(op.f)
        if f in (APPEND, WRITE) and op.type == "invoke":
            if not isinstance(op.value, str):
                return "list"
            saw_string = True
        elif f == READ and op.type == OK:
            if not isinstance(op.value, str):
                return "list"
            saw_string = True
    return "concat" if saw_string else "list"


def _line(op: Op) -> int | None:
    return op.extra.get("line", op.index + 1 if op.index >= 0 else None)


def partition(ops: list[Op], model: str = "register", append_mode: str | None = None,
              source: str = "history") -> tuple[list[KeyHistory], dict]:
    """Split a history into per-key searchable histories.

    Returns (keys, notes) where notes counts what was dropped. Raises HistoryError for an
    operation the model cannot interpret (with its line).
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} (expected one of {', '.join(MODELS)})")
    mode = append_mode or ("list" if model == "register" else choose_append_mode(ops))
    concat = mode == "concat"
    init = "" if concat else "null"

    def enc(v: Any, line: int | None) -> str:
        if concat:
            if v is None:
                return ""
            if not isinstance(v, str):
                raise HistoryError(line, f"the kv model in concat mode needs string values, got {v!r}", source)
            return v
        return canonical(v)

    pairs = pair_ops([op for op in ops if not op.is_nemesis], source=source)
    notes: dict[str, Any] = {"dropped_fail": 0, "dropped_info_reads": 0, "pending_info": 0, "append_mode": mode}
    # Rank every event: calls before returns at equal times (closed intervals).
    events = []
    for n, p in enumerate(pairs):
        events.append((p.invoke.time, 0, n))
        if p.complete is not None and p.complete.type != INFO:
            events.append((p.complete.time, 1, n))
    events.sort()
    call_rank: dict[int, int] = {}
    ret_rank: dict[int, int] = {}
    for rank, (_, kind, n) in enumerate(events):
        (ret_rank if kind else call_rank)[n] = rank

    by_key: dict[Any, list[LinOp]] = {}
    key_order: list[Any] = []
    for n, p in enumerate(pairs):
        inv, comp = p.invoke, p.complete
        line = inv.extra.get("line", inv.index + 1)
        f = _F_ALIASES.get(inv.f)
        if f is None or (model == "register" and f not in REGISTER_FS):
            allowed = REGISTER_FS if model == "register" else tuple(sorted(set(_F_ALIASES)))
            raise HistoryError(line, f"operation f {inv.f!r} is not part of the {model} model "
                               f"(expected one of {', '.join(allowed)})", source)
        status = p.type
        if status == FAIL:
            notes["dropped_fail"] += 1
            continue
        info = status == INFO
        if info and f == READ:
            notes["dropped_info_reads"] += 1
            continue
        if comp is not None and comp.time < inv.time:
            raise HistoryError(_line(comp), f"completion at time {comp.time} precedes its invocation "
                               f"at {inv.time}", source)
        ret_time = None
        if not info:
            assert comp is not None  # only an indeterminate pair may lack its completion
            ret_time = comp.time
        inp = inp2 = out = None
        if f == READ:
            assert comp is not None  # an ok read: indeterminate reads were dropped above
            out = enc(comp.value, _line(comp))
        elif f == CAS:
            v = inv.value
            if not isinstance(v, (list, tuple)) or len(v) != 2:
                raise HistoryError(line, f"cas value must be [expected, new], got {v!r}", source)
            inp, inp2 = enc(v[0], line), enc(v[1], line)
        elif f in (WRITE, APPEND):
            inp = enc(inv.value, line)
        if info:
            notes["pending_info"] += 1
        key = DEFAULT_KEY if inv.key is None else inv.key
        try:
            hash(key)
        except TypeError:
            key = canonical(key)
        if key not in by_key:
            by_key[key] = []
            key_order.append(key)
        by_key[key].append(LinOp(
            index=inv.index, process=inv.process, f=f, inp=inp, inp2=inp2, out=out,
            call=call_rank[n], ret=INF if info else ret_rank[n], info=info,
            call_time=inv.time, ret_time=ret_time,
            complete_index=comp.index if comp is not None else None))
    return [KeyHistory(k, by_key[k], init) for k in key_order], notes


def history_t0(ops: list[Op]) -> int | None:
    """Origin for describing times, or None when times are only an order (imported logs)."""
    if any(op.extra.get("order_only_time") for op in ops[:1]):
        return None
    return min((op.time for op in ops), default=0)


def describe_value(v: str | None) -> str:
    if v is None:
        return "?"
    return v if len(v) <= 40 else v[:37] + "..."


def describe_op(op: LinOp, t0: int | None) -> str:
    """e.g. 'read of 3 by process 7 (op 812, 12.41-12.43 s)'; t0 None: times are only an order."""
    def secs(t):
        return f"{(t - t0) / 1e9:.3f}".rstrip("0").rstrip(".") if t is not None else "?"
    if op.f == READ:
        what = f"read of {describe_value(op.out)}"
    elif op.f == CAS:
        what = f"cas {describe_value(op.inp)}->{describe_value(op.inp2)}"
    elif op.f == DELETE:
        what = "delete"
    else:
        what = f"{op.f} of {describe_value(op.inp)}"
    if t0 is None:
        return f"{what} by process {op.process} (op {op.index}{', indeterminate' if op.info else ''})"
    span = f"{secs(op.call_time)}-{secs(op.ret_time) if not op.info else 'never (info)'} s"
    return f"{what} by process {op.process} (op {op.index}, {span})"


__all__ = ["LinOp", "KeyHistory", "partition", "canonical", "choose_append_mode", "describe_op",
           "READ", "WRITE", "CAS", "APPEND", "DELETE", "INF", "NEMESIS", "OK"]
