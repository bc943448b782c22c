"""Simulated clients: they talk to nodes the way an HTTP client talks to the real server.

A client runs one operation at a time (get, put, append, cas, delete over a few keys), sends it to
the node it believes leads (sometimes a random node), follows redirects, retries a write whose
outcome is unknown (504 / timeout) with the same (client_id, seq) so the session deduplicates it,
and reports every answer to the checker.
"""

from __future__ import annotations

from .checks import ABSENT
from .cluster import ARRIVE, TIMEOUT


class Request:
    __slots__ = ("client", "command", "is_read", "node", "sent_at")

    def __init__(self, client, command, is_read, node, sent_at):
        self.client = client
        self.command = command
        self.is_read = is_read
        self.node = node
        self.sent_at = sent_at


class SimClient:
    def __init__(self, cluster, client_id: str, keys: list[str], rng, *, read_fraction=0.25,
                 think_us=(20_000, 150_000), timeout_us=600_000, max_attempts=10,
                 random_target=0.1):
        self.cluster = cluster
        self.id = client_id
        self.keys = keys
        self.rng = rng
        self.read_fraction = read_fraction
        self.think_us = think_us
        self.timeout_us = timeout_us
        self.max_attempts = max_attempts
        self.random_target = random_target
        self.seq = 0
        self.counter = 0
        self.leader_guess: str | None = None
        self.command: dict | None = None
        self.is_read = False
        self.read_floor = 0
        self.attempts = 0
        self.request: Request | None = None
        self.stop_at: int | None = None  # sim time (us) after which no new operation starts
        self.last_seen: dict[str, object] = {}

    def start(self, at_us: int, stop_at_us: int) -> None:
        self.stop_at = stop_at_us
        self.cluster.call_at(at_us, self.wake)

    # -- one operation ---------------------------------------------------------------------------
    def wake(self) -> None:
        cluster = self.cluster
        if self.stop_at is not None and cluster.now >= self.stop_at:
            return
        rng = self.rng
        key = rng.choice(self.keys)
        self.attempts = 0
        if rng.random() < self.read_fraction:
            self.is_read = True
            self.command = {"op": "get", "key": key}
            checker = cluster.checker
            self.read_floor = checker.read_floor(key) if checker else 0
        else:
            self.is_read = False
            self.seq += 1
            self.counter += 1
            value = f"{self.id}-{self.counter}"
            r = rng.random()
            if r < 0.45:
                command = {"op": "put", "key": key, "value": value}
            elif r < 0.8:
                command = {"op": "append", "key": "list-" + key, "value": value}
            elif r < 0.95:
                command = {"op": "cas", "key": key, "expected": self.last_seen.get(key), "value": value}
            else:
                command = {"op": "delete", "key": key}
            command["client_id"] = self.id
            command["seq"] = self.seq
            self.command = command
        self._send()

    def _send(self) -> None:
        cluster = self.cluster
        rng = self.rng
        if self.leader_guess is not None and rng.random() >= self.random_target:
            target = self.leader_guess
        else:
            target = rng.choice(cluster.ids)
        request = Request(self, self.command, self.is_read, target, cluster.now)
        self.request = request
        cluster.at(cluster.now + rng.randint(100, 1000), ARRIVE, target, request)
        cluster.at(cluster.now + self.timeout_us, TIMEOUT, self, request)

    def _retry(self, backoff_us: int) -> None:
        self.attempts += 1
        self.request = None
        if self.attempts >= self.max_attempts:
            stats = self.cluster.stats
            if self.is_read:
                stats.reads_failed += 1
            else:
                stats.writes_failed += 1   # outcome unknown: the client gives up on it
            self._next()
            return
        self.cluster.call_at(self.cluster.now + backoff_us, self._resend)

    def _resend(self) -> None:
        if self.command is not None and self.request is None:
            self._send()

    def _next(self) -> None:
        self.request = None
        self.command = None
        lo, hi = self.think_us
        self.cluster.call_at(self.cluster.now + self.rng.randint(lo, hi), self.wake)

    # -- answers ---------------------------------------------------------------------------------
    def on_timeout(self, request: Request) -> None:
        if request is not self.request:
            return
        self.leader_guess = None
        self._retry(self.rng.randint(1_000, 20_000))

    def on_reply(self, payload) -> None:
        request, answer = payload
        if request is not self.request:
            return
        assert request is not None and self.command is not None  # the request in flight, for its command
        kind = answer[0]
        cluster = self.cluster
        if kind == "redirect":
            self.leader_guess = answer[1]
            self._retry(self.rng.randint(1_000, 10_000) if answer[1] is None else 0)
        elif kind == "unknown":
            self.leader_guess = None
            self._retry(self.rng.randint(1_000, 20_000))
        elif kind == "ok":
            _, result, index, term = answer
            self.leader_guess = request.node
            cluster.stats.writes_acked += 1
            key = self.command["key"]
            if cluster.checker is not None:
                cluster.checker.write_acknowledged(index, term, key)
            status, body = result
            op = self.command["op"]
            if op == "put" and status == 200:
                self.last_seen[key] = self.command["value"]
            elif op == "cas":
                self.last_seen[key] = self.command["value"] if status == 200 else body.get("value")
            cluster.log(f"{self.id} {op} {key} -> {status} at {index}")
            self._next()
        elif kind == "read":
            _, value, served_at = answer
            self.leader_guess = request.node
            key = self.command["key"]
            if cluster.checker is not None:
                cluster.checker.read_completed(request.node, key, served_at, value, self.read_floor)
            self.last_seen[key] = None if value is ABSENT else value
            cluster.stats.reads_ok += 1
            self._next()
