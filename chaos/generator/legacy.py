"""The client generators and the rate limiter the runner drives by hand, from before the
interpreter; they go once the runner runs chaos.generator.interpreter instead.

Client generators are shared by all workers (one lock): given the same seed and the same order
of requests they hand out the same operations; thread timing decides that order, so a rerun
repeats the op mix, not the exact interleaving (which no real cluster would repeat anyway).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Callable

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
