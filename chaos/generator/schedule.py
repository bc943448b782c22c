"""Fault schedules as generators for the nemesis thread, and back from the history to a replay.

    random_nemesis(...)    the random schedule: seeded, a change every ~interval s (+-20 %), at
                           most two fault kinds at once, a kind healed before it starts again
    schedule_generator()   an explicit schedule ([{"at": s, "f": ..., "value": ...}], what a
                           scenario's `schedule:` validates to) as timed ops
    heal_generator()       the final heal-everything
    replay_schedule()      the nemesis ops a run executed (from its history) -> the steps that
                           `reproduce` replays, naming the nodes they actually hit

The random schedule keeps its own seeded stream (not the context's), so a rerun with the same
seed repeats the same faults at the same times however the client operations interleave.
Scheduled ops are timed ops rather than sleeps: a sleeping nemesis thread would hold up the
phase after the load (phases wait for every thread), a pending timed op is simply dropped.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable

from chaos.config import FAULT_OPS, HEAL_OPS, START_OPS
from chaos.generator.core import (EMPTY, NS, PENDING, Generator, GeneratorError, Seq, fill_op,
                                  nemesis, seconds_to_ns)
from chaos.history import INVOKE, Op, nemesis_ops

RANDOM_TOPOLOGIES = ("isolate-one", "isolate-leader", "halves", "random-halves", "majorities-ring", "bridge")
RANDOM_TARGETS = ("one", "minority", "majority", "leader")
RANDOM_CLOCK_TARGETS = ("one", "minority", "leader", "all")


def random_fault_value(kind: str, rng: random.Random, nodes: int) -> dict:
    """Random parameters for starting one fault of `kind` (seeded, bounded)."""
    if kind == "partition":
        topologies = RANDOM_TOPOLOGIES if nodes >= 3 else ("isolate-one", "isolate-leader", "halves")
        return {"topology": rng.choice(topologies)}
    if kind in ("kill", "pause"):
        return {"target": rng.choice(RANDOM_TARGETS)}
    if kind == "clock":
        target = rng.choice(RANDOM_CLOCK_TARGETS)
        mode = rng.choice(("bump", "strobe", "rate"))
        if mode == "bump":
            return {"target": target, "mode": "bump", "delta": rng.choice((-60, -10, -2, 2, 10, 60, 300))}
        if mode == "strobe":
            return {"target": target, "mode": "strobe", "delta": rng.choice((0.2, 0.5, 2.0, 5.0)),
                    "period": rng.choice((0.05, 0.2, 1.0))}
        return {"target": target, "mode": "rate", "rate": rng.choice((0.5, 0.8, 1.5, 2.0))}
    raise ValueError(f"unknown fault kind {kind!r}")


def heal_value(kind: str) -> dict | None:
    """The invoke value of the op healing `kind` (contracts §1: start names what it restarts)."""
    return {"target": "killed"} if kind == "kill" else None


def _random_step(rng: random.Random, faults: tuple, active: tuple, t: float, interval: float,
                 nodes: int, max_concurrent: int) -> tuple[dict, tuple, float]:
    """One change of the random schedule at time t: start a kind not active yet, or heal the
    oldest active one. The draws (and their order) define the schedule of a seed."""
    can_start = [k for k in faults if k not in active] if len(active) < max_concurrent else []
    if active and (not can_start or rng.random() < 0.5):
        kind, active = active[0], active[1:]
        step = {"at": round(t, 3), "f": FAULT_OPS[kind][1], "value": heal_value(kind)}
    else:
        kind = rng.choice(can_start)
        active = active + (kind,)
        step = {"at": round(t, 3), "f": FAULT_OPS[kind][0], "value": random_fault_value(kind, rng, nodes)}
    return step, active, t + interval * rng.uniform(0.8, 1.2)


def _schedule_rng(seed: int) -> random.Random:
    return random.Random(f"schedule:{seed}")


def _check_faults(faults, interval) -> tuple:
    faults = tuple(faults)
    unknown = [k for k in faults if k not in FAULT_OPS]
    if unknown:
        raise GeneratorError(f"unknown fault kind {unknown[0]!r} (valid: {', '.join(FAULT_OPS)})")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
        raise GeneratorError(f"the fault interval must be a positive number of seconds, got {interval!r}")
    return faults


def random_schedule(faults: list[str], time_limit: float, interval: float, seed: int,
                    nodes: int, max_concurrent: int = 2) -> list[dict]:
    """The random schedule up to time_limit as a list of steps (what random_nemesis emits).
    Faults still active at the end are healed by the final heal-everything."""
    faults_t = _check_faults(faults, interval)
    steps: list[dict] = []
    if not faults_t:
        return steps
    rng = _schedule_rng(seed)
    active: tuple = ()
    t = float(interval)
    while t < time_limit:
        step, active, t = _random_step(rng, faults_t, active, t, interval, nodes, max_concurrent)
        steps.append(step)
    return steps


class RandomFaults(Generator):
    __slots__ = ("faults", "interval", "nodes", "max_concurrent", "rng_state", "active", "t")

    def __init__(self, faults, interval, nodes, max_concurrent, rng_state, active, t):
        self.faults, self.interval, self.nodes = faults, interval, nodes
        self.max_concurrent, self.rng_state, self.active, self.t = max_concurrent, rng_state, active, t

    def op(self, ctx):
        rng = random.Random()
        rng.setstate(self.rng_state)
        step, active, t = _random_step(rng, self.faults, self.active, self.t, self.interval,
                                       self.nodes, self.max_concurrent)
        o = fill_op({"f": step["f"], "value": step["value"], "time": seconds_to_ns(step["at"])}, ctx)
        if o is PENDING:
            return PENDING, self
        return o, RandomFaults(self.faults, self.interval, self.nodes, self.max_concurrent,
                               rng.getstate(), active, t)


def random_nemesis(faults: Iterable[str], interval: float, seed: int, nodes: int,
                   max_concurrent: int = 2) -> Generator:
    """The random schedule over `faults` as an endless nemesis generator (bound it with
    time_limit); its op times are seconds since the run started, as random_schedule's "at"."""
    faults_t = _check_faults(faults, interval)
    if not faults_t:
        return EMPTY
    return nemesis(RandomFaults(faults_t, float(interval), nodes, max_concurrent,
                                _schedule_rng(seed).getstate(), (), float(interval)))


def schedule_generator(steps: list[dict]) -> Generator:
    """Explicit steps [{"at": s, "f": ..., "value": ...}] (sorted by at) -> a nemesis generator
    running each no earlier than `at` seconds after the start."""
    ops = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or "f" not in step or "at" not in step:
            raise GeneratorError(f"schedule step {i} must be a mapping with at and f, got {step!r}")
        ops.append({"f": step["f"], "value": copy.deepcopy(step.get("value")),
                    "time": seconds_to_ns(step["at"], f"schedule step {i} at")})
    return nemesis(Seq(tuple(ops)))


def heal_steps(active_kinds) -> list[dict]:
    """The ops that heal every given fault kind (for the final heal-everything)."""
    return [{"f": FAULT_OPS[k][1], "value": heal_value(k)}
            for k in ("partition", "pause", "kill", "clock") if k in active_kinds]


def heal_generator(kinds) -> Generator:
    """The final heal-everything: one healing op per fault kind, marked final (not replayed)."""
    return nemesis(Seq(tuple({**step, "final": True} for step in heal_steps(kinds))))


def replayable_step(entry: dict) -> dict | None:
    """An executed schedule entry -> a step naming the nodes it actually hit, so that a
    reproduction cuts off / kills / pauses / skews the same nodes (not "the leader" again).
    None for a fault that hit no node."""
    f, value, result = entry["f"], entry.get("value"), entry.get("result")
    step = {"at": entry["at"], "f": f, "value": value}
    if not isinstance(result, dict):
        return step
    if f == "partition" and isinstance(result.get("groups"), list) and len(result["groups"]) >= 2:
        step["value"] = {"topology": "groups", "groups": [list(g) for g in result["groups"]]}
    elif f in ("kill", "pause", "clock-skew"):
        nodes = result.get("nodes")
        names = sorted(nodes) if isinstance(nodes, (dict, list)) else []
        if not names:
            return None  # it hit no node (all targets already down): replaying it must not either
        step["value"] = {**(value or {}), "target": names}
    return step


def executed_schedule(ops: Iterable[Op], start_ns: int) -> list[dict]:
    """The nemesis ops of a history as schedule entries {"at": s after start_ns, "f", "value",
    "result"} (+ "error", "final"); an op that never completed has no result."""
    entries: list[dict] = []
    current: dict | None = None
    for op in nemesis_ops(ops):
        if op.type == INVOKE:
            current = {"at": round((op.time - start_ns) / NS, 3), "f": op.f, "value": op.value,
                       "result": None, "completed": False}
            if op.extra.get("final"):
                current["final"] = True
            entries.append(current)
        elif current is not None:
            # the nemesis thread runs one op at a time: a completion belongs to the last invoke
            current["result"] = op.value
            current["completed"] = True
            if op.error:
                current["error"] = op.error
            current = None
    return entries


def replay_schedule(ops: Iterable[Op], start_ns: int, time_limit: float | None = None) -> list[dict]:
    """The steps that replay a run's faults on the nodes they hit: the completed, error-free,
    non-final nemesis ops (before time_limit), through replayable_step."""
    steps = []
    for entry in executed_schedule(ops, start_ns):
        if not entry["completed"] or entry.get("error") or entry.get("final"):
            continue
        if time_limit is not None and entry["at"] >= time_limit:
            continue
        step = replayable_step(entry)
        if step is not None:
            steps.append(step)
    return steps


def active_after(steps: list[dict]) -> set[str]:
    """Fault kinds left active after the given ops."""
    active: set[str] = set()
    for s in steps:
        if s["f"] in START_OPS:
            active.add(START_OPS[s["f"]])
        elif s["f"] in HEAL_OPS:
            active.discard(HEAL_OPS[s["f"]])
    return active

