"""Synthetic histories with a known answer: for tests and benchmarks of the checkers.

`register_history` runs a real sequential register per key and lets operations overlap in time
around the moment they take effect, as concurrent clients do; crashed operations become info
(after a crash the worker continues as a new process, as our workload does), some writes fail
and cas with a wrong expected value fails. Such a history is linearizable by construction.
`inject_stale_read` then makes it certainly not linearizable: a read returns a value that had been
overwritten, with both writes completed, before the read began. `inject_lost_write` drops the
effect of an acknowledged write (usually, not always, detectable).
"""

from __future__ import annotations

import random
from typing import Any

from chaos.history import Op


def register_history(seed: int, n_ops: int = 200, processes: int = 5, keys: int = 1,
                     p_info: float = 0.05, p_fail: float = 0.05, unique_values: bool = True,
                     value_domain: int = 5, mix: tuple[float, float, float] = (0.5, 0.3, 0.2),
                     partitions: int = 0, step_ns: int = 1_000_000) -> list[Op]:
    """A linearizable register history of about n_ops operations (invocations)."""
    rng = random.Random(seed)
    ops: list[Op] = []
    state: dict[str, Any] = {}
    next_value: dict[str, int] = {}
    # per worker: its current process id and its op in flight: [phase, invoke op, effect-result]
    inflight: dict[int, list] = {}
    process_of = {w: w for w in range(processes)}
    now = 0
    started = 0
    key_names = [f"r{i}" for i in range(keys)]
    nemesis_at = (sorted(rng.sample(range(1, max(2, n_ops)), min(partitions * 2, max(0, n_ops - 1))))
                  if partitions else [])

    def emit(op: Op) -> Op:
        op.index = len(ops)
        op.time = now
        ops.append(op)
        return op

    while started < n_ops or inflight:
        now += rng.randint(1, step_ns)
        if nemesis_at and started >= nemesis_at[0]:
            nemesis_at.pop(0)
            f = "partition" if len(nemesis_at) % 2 else "heal"
            emit(Op(process="nemesis", type="invoke", f=f, value={"topology": "halves"} if f == "partition" else None))
            now += rng.randint(1, step_ns)
            emit(Op(process="nemesis", type="info", f=f,
                    value=({"groups": [["n1", "n2"], ["n3", "n4", "n5"]]} if f == "partition"
                           else {"healed": "partition"})))
            continue
        w = rng.randrange(processes)
        slot = inflight.get(w)
        if slot is None:
            if started >= n_ops:
                continue
            key = rng.choice(key_names)
            r = rng.random()
            value: Any  # a read's None, a write's value, a cas's [expected, new]
            if r < mix[0]:
                f, value = "read", None
            elif r < mix[0] + mix[1]:
                f = "write"
                value = _fresh(next_value, key, rng, unique_values, value_domain)
            else:
                f = "cas"
                current = state.get(key)
                expected = current if rng.random() < 0.6 else _fresh(next_value, key, rng, False, value_domain)
                value = [expected, _fresh(next_value, key, rng, unique_values, value_domain)]
            inv = emit(Op(process=process_of[w], type="invoke", f=f, key=key, value=value))
            inflight[w] = ["invoked", inv, None]
            started += 1
        elif slot[0] == "invoked":
            inv = slot[1]
            crash = rng.random() < p_info
            fail = not crash and inv.f == "write" and rng.random() < p_fail
            if crash and rng.random() < 0.5:
                slot[0] = "crashed-before-effect"
                continue
            if fail:
                slot[0], slot[2] = "failed", None
                continue
            slot[0], slot[2] = ("crashed" if crash else "applied"), _apply(state, inv)
        else:
            phase, inv, result = slot
            del inflight[w]
            if phase in ("crashed", "crashed-before-effect"):
                emit(Op(process=inv.process, type="info", f=inv.f, key=inv.key, value=inv.value, error="timeout"))
                process_of[w] += processes
            elif phase == "failed":
                emit(Op(process=inv.process, type="fail", f=inv.f, key=inv.key, value=inv.value, error="unavailable"))
            else:
                ok, value = result
                emit(Op(process=inv.process, type="ok" if ok else "fail", f=inv.f, key=inv.key, value=value))
    return ops


def kv_history(seed: int, n_ops: int = 200, processes: int = 5, keys: int = 1, p_put: float = 0.1,
               p_get: float = 0.45, p_info: float = 0.0, p_reuse: float = 0.0,
               step_ns: int = 1_000_000) -> list[Op]:
    """A linearizable history of Jepsen's kv test: get/put/append of strings "x P N y" on keys.

    p_reuse: chance that a worker reuses its previous string (Jepsen's kv data has a few).
    """
    rng = random.Random(seed)
    ops: list[Op] = []
    state: dict[str, str] = {}
    inflight: dict[int, list] = {}
    process_of = {w: w for w in range(processes)}
    counter = {w: 0 for w in range(processes)}
    now = 0
    started = 0
    key_names = [str(i) for i in range(keys)]

    def emit(op: Op) -> Op:
        op.index, op.time = len(ops), now
        ops.append(op)
        return op

    while started < n_ops or inflight:
        now += rng.randint(1, step_ns)
        w = rng.randrange(processes)
        slot = inflight.get(w)
        if slot is None:
            if started >= n_ops:
                continue
            key = rng.choice(key_names)
            r = rng.random()
            if r < p_get:
                f, value = "get", None
            else:
                f = "put" if r < p_get + p_put else "append"
                if not (p_reuse and counter[w] and rng.random() < p_reuse):
                    counter[w] += 1
                value = f"x {w} {counter[w]} y"
            inflight[w] = ["invoked", emit(Op(process=process_of[w], type="invoke", f=f, key=key, value=value)), None]
            started += 1
        elif slot[0] == "invoked":
            inv = slot[1]
            if inv.f != "get" and rng.random() < p_info:
                slot[0] = "crashed"
                if rng.random() < 0.5:
                    continue  # crashed before taking effect
            else:
                slot[0] = "applied"
            if inv.f == "get":
                slot[2] = state.get(inv.key, "")
            elif inv.f == "put":
                state[inv.key] = inv.value
            else:
                state[inv.key] = state.get(inv.key, "") + inv.value
        else:
            phase, inv, result = slot
            del inflight[w]
            if phase == "crashed":
                emit(Op(process=inv.process, type="info", f=inv.f, key=inv.key, value=inv.value))
                process_of[w] += processes
            else:
                emit(Op(process=inv.process, type="ok", f=inv.f, key=inv.key,
                        value=result if inv.f == "get" else inv.value))
    return ops


def _fresh(counter: dict, key: str, rng: random.Random, unique: bool, domain: int) -> int:
    if not unique:
        return rng.randrange(domain)
    counter[key] = counter.get(key, 0) + 1
    return counter[key]


def _apply(state: dict, inv: Op) -> tuple[bool, Any]:
    key = inv.key
    if inv.f == "read":
        return True, state.get(key)
    if inv.f == "write":
        state[key] = inv.value
        return True, inv.value
    expected, new = inv.value
    if state.get(key) == expected:
        state[key] = new
        return True, inv.value
    return False, inv.value


def _completion(ops: list[Op], inv: Op) -> Op | None:
    for op in ops[inv.index + 1:]:
        if op.process == inv.process:
            return op
    return None


def inject_stale_read(ops: list[Op], rng: random.Random) -> list[Op] | None:
    """Copy of ops where one ok read returns a value certainly overwritten before it began.

    Needs a value v whose write completed before an overwriting write began, which in turn
    completed before the read began. None when the history has no such triple.
    """
    writes = []  # (invoke, completion) of ok writes and ok cas, with the value they wrote
    for op in ops:
        if op.type == "invoke" and op.f in ("write", "cas") and not op.is_nemesis:
            c = _completion(ops, op)
            if c is not None and c.type == "ok":
                writes.append((op, c, op.value if op.f == "write" else op.value[1]))
    reads = [(op, _completion(ops, op)) for op in ops if op.type == "invoke" and op.f == "read"]
    ok_reads = [(i, c) for i, c in reads if c is not None and c.type == "ok"]
    rng.shuffle(ok_reads)
    for inv, comp in ok_reads:
        for w_old in writes:
            if w_old[0].key != inv.key or w_old[2] == comp.value:
                continue
            for w_new in writes:
                if (w_new[0].key == inv.key and w_old[1].time < w_new[0].time and w_new[1].time < inv.time
                        and w_new[2] != w_old[2]):
                    out = [Op(**{**o.__dict__, "extra": dict(o.extra)}) for o in ops]
                    out[comp.index].value = w_old[2]
                    return out
    return None


def inject_lost_write(ops: list[Op], rng: random.Random) -> list[Op] | None:
    """Copy of ops where reads after an acknowledged write return the value from before it."""
    writes = [op for op in ops if op.type == "invoke" and op.f == "write" and not op.is_nemesis]
    rng.shuffle(writes)
    for w in writes:
        c = _completion(ops, w)
        if c is None or c.type != "ok":
            continue
        before = None
        for op in ops[:w.index]:
            if op.key == w.key and op.type == "ok" and op.f == "read":
                before = op.value
        out = [Op(**{**o.__dict__, "extra": dict(o.extra)}) for o in ops]
        changed = False
        for op in out[c.index + 1:]:
            if op.key == w.key and op.type == "ok" and op.f == "read" and op.value == w.value:
                op.value = before
                changed = True
        if changed:
            return out
    return None
