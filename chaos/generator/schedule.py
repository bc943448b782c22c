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

from chaos.faults import fault_kind, fault_names, heal_ops, start_ops
from chaos.generator.core import (EMPTY, NS, PENDING, Generator, GeneratorError, Seq, fill_op,
                                  nemesis, seconds_to_ns)
from chaos.history import INVOKE, Op, nemesis_ops


def heal_value(kind: str) -> dict | None:
    """The invoke value of the op healing `kind` (contracts §1: start names what it restarts)."""
    return fault_kind(kind).heal_value


def _random_step(rng: random.Random, faults: tuple, active: tuple, t: float, interval: float,
                 nodes: int, max_concurrent: int, leader: bool) -> tuple[dict, tuple, float]:
    """One change of the random schedule at time t: start a kind not active yet, or heal the
    oldest active one. The draws (and their order) define the schedule of a seed. The start's
    parameters come from the fault kind (chaos.faults): leader-aimed ones only when the DB can
    name its leader."""
    can_start = [k for k in faults if k not in active] if len(active) < max_concurrent else []
    if active and (not can_start or rng.random() < 0.5):
        kind, active = active[0], active[1:]
        step = {"at": round(t, 3), "f": fault_kind(kind).heal, "value": heal_value(kind)}
    else:
        kind = rng.choice(can_start)
        active = active + (kind,)
        k = fault_kind(kind)
        step = {"at": round(t, 3), "f": k.start, "value": k.random_value(rng, nodes, leader)}
    return step, active, t + interval * rng.uniform(0.8, 1.2)


def _schedule_rng(seed: int) -> random.Random:
    return random.Random(f"schedule:{seed}")


def _check_faults(faults, interval) -> tuple:
    faults = tuple(faults)
    known = fault_names()
    unknown = [k for k in faults if k not in known]
    if unknown:
        raise GeneratorError(f"unknown fault kind {unknown[0]!r} (valid: {', '.join(known)})")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
        raise GeneratorError(f"the fault interval must be a positive number of seconds, got {interval!r}")
    return faults


def random_schedule(faults: list[str], time_limit: float, interval: float, seed: int,
                    nodes: int, max_concurrent: int = 2, leader: bool = True) -> list[dict]:
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
        step, active, t = _random_step(rng, faults_t, active, t, interval, nodes, max_concurrent, leader)
        steps.append(step)
    return steps


class RandomFaults(Generator):
    __slots__ = ("faults", "interval", "nodes", "max_concurrent", "rng_state", "active", "t", "leader")

    def __init__(self, faults, interval, nodes, max_concurrent, rng_state, active, t, leader=True):
        self.faults, self.interval, self.nodes = faults, interval, nodes
        self.max_concurrent, self.rng_state, self.active, self.t = max_concurrent, rng_state, active, t
        self.leader = leader

    def op(self, ctx):
        rng = random.Random()
        rng.setstate(self.rng_state)
        step, active, t = _random_step(rng, self.faults, self.active, self.t, self.interval,
                                       self.nodes, self.max_concurrent, self.leader)
        o = fill_op({"f": step["f"], "value": step["value"], "time": seconds_to_ns(step["at"])}, ctx)
        if o is PENDING:
            return PENDING, self
        return o, RandomFaults(self.faults, self.interval, self.nodes, self.max_concurrent,
                               rng.getstate(), active, t, self.leader)


def random_nemesis(faults: Iterable[str], interval: float, seed: int, nodes: int,
                   max_concurrent: int = 2, leader: bool = True) -> Generator:
    """The random schedule over `faults` as an endless nemesis generator (bound it with
    time_limit); its op times are seconds since the run started, as random_schedule's "at"."""
    faults_t = _check_faults(faults, interval)
    if not faults_t:
        return EMPTY
    return nemesis(RandomFaults(faults_t, float(interval), nodes, max_concurrent,
                                _schedule_rng(seed).getstate(), (), float(interval), leader))


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
    """The ops that heal every given fault kind, network first (for the final heal-everything)."""
    kinds = sorted((fault_kind(k) for k in set(active_kinds)), key=lambda k: (k.heal_rank, k.name))
    return [{"f": k.heal, "value": k.heal_value} for k in kinds]


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
    if f == "partition" and isinstance(result.get("one_way"), list) and result["one_way"]:
        # a one-way partition's groups are for show: its links say who stopped hearing whom
        step["value"] = {"topology": "one-way", "links": [list(link) for link in result["one_way"]]}
    elif f == "partition" and isinstance(result.get("groups"), list) and len(result["groups"]) >= 2:
        step["value"] = {"topology": "groups", "groups": [list(g) for g in result["groups"]]}
    elif f == "membership" and isinstance(value, dict) and result.get("change") in ("shrink", "transfer") \
            and result.get("outcome") != "skipped" and result.get("nodes"):
        # the voter it removed or handed the leadership to, not another draw
        step["value"] = {**value, "node": result["nodes"][-1]}
    elif f in ("kill", "pause", "clock-skew") or (f in ("lossy", "slow", "throttle")
                                                   and isinstance(value, dict) and "target" in value):
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
    starts, heals = start_ops(), heal_ops()
    for s in steps:
        if s["f"] in starts:
            active.add(starts[s["f"]])
        elif s["f"] in heals:
            active.discard(heals[s["f"]])
    return active

