"""What to do next: client operations for the workers and the fault schedule for the nemesis.

Everything here is seeded and bounded. Client generators are shared by all workers (one lock):
given the same seed and the same order of requests they hand out the same operations; thread
timing decides that order, so a rerun repeats the op mix and the fault schedule, not the exact
interleaving (which no real cluster would repeat anyway).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Callable

from chaos.config import FAULT_OPS, HEAL_OPS, START_OPS

REGISTER_MIX = (("read", 0.4), ("write", 0.3), ("cas", 0.3))


class ClientGenerator:
    """Base: `next_op(worker)` -> (f, key, value) or None when the generator is exhausted."""

    def __init__(self, seed: int, limit: int | None = None):
        self.rng = random.Random(seed)
        self.limit = limit
        self.issued = 0
        self.lock = threading.Lock()

    def next_op(self, worker: int) -> tuple[str, str, Any] | None:
        with self.lock:
            if self.limit is not None and self.issued >= self.limit:
                return None
            self.issued += 1
            return self._next(worker)

    def _next(self, worker: int) -> tuple[str, str, Any]:
        raise NotImplementedError

    def keys_used(self) -> list[str]:
        raise NotImplementedError


class RegisterGenerator(ClientGenerator):
    """read / write / cas over `keys` registers in use at once. Values written to a key are
    unique (1, 2, 3, ...), so each key's history is checkable on its own; after `ops_per_key`
    operations a register is retired and replaced by a fresh key."""

    def __init__(self, seed: int, keys: int = 5, ops_per_key: int = 200, limit: int | None = None):
        super().__init__(seed, limit)
        if keys < 1 or ops_per_key < 1:
            raise ValueError("keys and ops_per_key must be positive")
        self.ops_per_key = ops_per_key
        self.next_key = keys
        self.slots = [f"r{i}" for i in range(keys)]
        self.count = {k: 0 for k in self.slots}
        self.written: dict[str, int] = {k: 0 for k in self.slots}
        self.all_keys = list(self.slots)

    def _next(self, worker: int) -> tuple[str, str, Any]:
        slot = self.rng.randrange(len(self.slots))
        key = self.slots[slot]
        self.count[key] += 1
        if self.count[key] >= self.ops_per_key:
            fresh = f"r{self.next_key}"
            self.next_key += 1
            self.slots[slot] = fresh
            self.count[fresh] = 0
            self.written[fresh] = 0
            self.all_keys.append(fresh)
        r = self.rng.random()
        f = "read" if r < REGISTER_MIX[0][1] else "write" if r < REGISTER_MIX[0][1] + REGISTER_MIX[1][1] else "cas"
        if f == "read":
            return "read", key, None
        if f == "cas" and self.written[key] == 0:
            f = "write"  # nothing to compare against yet
        self.written[key] += 1
        new = self.written[key]
        if f == "write":
            return "write", key, new
        # Expect one of the last few values written: recent values are the likely current ones,
        # so a fair share of cas operations succeed.
        expected = self.rng.randint(max(1, new - 4), new - 1)
        return "cas", key, [expected, new]

    def keys_used(self) -> list[str]:
        with self.lock:
            return list(self.all_keys)


class SetGenerator(ClientGenerator):
    """add unique integers (the node's append); a new key every `elements_per_key` elements."""

    def __init__(self, seed: int, elements_per_key: int = 100, limit: int | None = None):
        super().__init__(seed, limit)
        if elements_per_key < 1:
            raise ValueError("elements_per_key must be positive")
        self.elements_per_key = elements_per_key
        self.element = 0
        self.all_keys = ["s0"]

    def _next(self, worker: int) -> tuple[str, str, Any]:
        key = f"s{self.element // self.elements_per_key}"
        if key != self.all_keys[-1]:
            self.all_keys.append(key)
        value = self.element
        self.element += 1
        return "add", key, value

    def keys_used(self) -> list[str]:
        with self.lock:
            return list(self.all_keys)


def client_generator(workload: str, seed: int, *, keys: int = 5, ops_per_key: int = 200,
                     elements_per_key: int = 100, limit: int | None = None) -> ClientGenerator:
    if workload == "register":
        return RegisterGenerator(seed, keys, ops_per_key, limit)
    if workload == "set":
        return SetGenerator(seed, elements_per_key, limit)
    raise ValueError(f"unknown workload {workload!r} (valid: register, set)")


class RateLimiter:
    """A shared pace for all workers: at most `rate` operations per second in total.

    Each caller reserves the next slot under a lock and sleeps until it (outside the lock);
    a slow period does not bank a burst (slots never lie in the past by more than one)."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / rate if rate else 0.0
        self.clock = clock
        self.next_slot = clock()
        self.lock = threading.Lock()

    def wait(self, stop: threading.Event | None = None) -> bool:
        """Block until this caller may send; False when `stop` was set meanwhile."""
        if not self.interval:
            return not (stop and stop.is_set())
        with self.lock:
            now = self.clock()
            slot = max(self.next_slot, now)
            self.next_slot = slot + self.interval
        delay = slot - self.clock()
        if delay > 0:
            if stop is not None:
                return not stop.wait(delay)
            time.sleep(delay)
        return not (stop and stop.is_set())


# -- nemesis schedules ----------------------------------------------------------------------

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


def random_schedule(faults: list[str], time_limit: float, interval: float, seed: int,
                    nodes: int, max_concurrent: int = 2) -> list[dict]:
    """A combined schedule over `faults`: every ~interval seconds either start a fault of a kind
    not active yet or heal the oldest active one, with at most `max_concurrent` kinds at once.
    Faults still active at the end are healed by the runner's final heal-everything."""
    steps: list[dict] = []
    if not faults:
        return steps
    rng = random.Random(f"schedule:{seed}")
    active: list[str] = []
    t = interval
    while t < time_limit:
        can_start = [k for k in faults if k not in active] if len(active) < max_concurrent else []
        if active and (not can_start or rng.random() < 0.5):
            kind = active.pop(0)
            steps.append({"at": round(t, 3), "f": FAULT_OPS[kind][1], "value": heal_value(kind)})
        else:
            kind = rng.choice(can_start)
            active.append(kind)
            steps.append({"at": round(t, 3), "f": FAULT_OPS[kind][0],
                          "value": random_fault_value(kind, rng, nodes)})
        t += interval * rng.uniform(0.8, 1.2)
    return steps


def heal_value(kind: str) -> dict | None:
    """The invoke value of the op healing `kind` (contracts §1: start names what it restarts)."""
    return {"target": "killed"} if kind == "kill" else None


def heal_steps(active_kinds) -> list[dict]:
    """The ops that heal every given fault kind (for the final heal-everything)."""
    return [{"f": FAULT_OPS[k][1], "value": heal_value(k)}
            for k in ("partition", "pause", "kill", "clock") if k in active_kinds]


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


def active_after(steps: list[dict]) -> set[str]:
    """Fault kinds left active after the given ops."""
    active: set[str] = set()
    for s in steps:
        if s["f"] in START_OPS:
            active.add(START_OPS[s["f"]])
        elif s["f"] in HEAL_OPS:
            active.discard(HEAL_OPS[s["f"]])
    return active
