"""Clients of the bundled node's HTTP API for the register and set workloads.

Every write carries (client_id, seq): a write re-sent after a 307 redirect is applied at most
once. A worker whose operation ended with "no leader" / "refused" backs off a little
(backoff_after), instead of filling the history with thousands of identical refusals a second.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from chaos.history import FAIL, OK, Op
from chaos.interfaces import Client, Node
from systems.raftnode.http_client import HttpClient, Outcome, monotonic_ns, perform

UNAVAILABLE_ERRORS = ("refused", "connect", "no_leader", "unavailable")
MAX_BACKOFF_S = 0.5


class NodeHttpClient(Client):
    """Common part of our node's clients: one HttpClient, URL per node, dedup identity."""

    def __init__(self, client_id: str, timeout: float):
        self.client_id = client_id
        self.seq = 0
        self.timeout = timeout
        self.http: HttpClient | None = None
        self.node: Node | None = None
        self.node_by_netloc: dict[str, str] = {}
        self._backoff = 0.0

    def open(self, nodes: list[Node], node: Node) -> "NodeHttpClient":
        self.http = HttpClient(self.timeout)
        self.node = node
        self.node_by_netloc = {urlsplit(n.client_url).netloc: n.id for n in nodes}
        return self

    def close(self) -> None:
        if self.http is not None:
            self.http.close()

    def backoff_after(self, completion: Op) -> float:
        error = completion.error or ""
        if completion.type == FAIL and error.split(":", 1)[0] in UNAVAILABLE_ERRORS:
            self._backoff = min(MAX_BACKOFF_S, self._backoff * 2 if self._backoff else 0.02)
        else:
            self._backoff = 0.0
        return self._backoff

    def session(self) -> HttpClient:
        """The HTTP session open() made (the Client contract: open before invoke)."""
        if self.http is None:
            raise RuntimeError(f"{type(self).__name__} used before open()")
        return self.http

    def url(self, key: str, suffix: str = "") -> str:
        if self.node is None:
            raise RuntimeError(f"{type(self).__name__} used before open()")
        return f"{self.node.client_url.rstrip('/')}/kv/{quote(key, safe='')}{suffix}"

    def write_body(self, **fields) -> dict:
        self.seq += 1
        return {**fields, "client_id": self.client_id, "seq": self.seq}

    def complete(self, op: Op, outcome: Outcome, value=None) -> Op:
        """The completion op for `op` (time read right after the answer)."""
        now = monotonic_ns()
        answered = None
        if outcome.url:
            answered = self.node_by_netloc.get(urlsplit(outcome.url).netloc)
        done = Op(process=op.process, type=outcome.type, f=op.f, key=op.key,
                  value=value if outcome.type == OK else op.value, time=now,
                  node=answered or op.node, error=outcome.error)
        if op.extra.get("final"):
            done.extra["final"] = True
        return done


class RegisterClient(NodeHttpClient):
    def invoke(self, op: Op) -> Op:
        if op.f == "read":
            outcome = perform(self.session(), "GET", self.url(op.key), None, is_read=True,
                              not_found_value=None, extract=lambda b: b["value"])
            return self.complete(op, outcome, outcome.value)
        if op.f == "write":
            outcome = perform(self.session(), "PUT", self.url(op.key), self.write_body(value=op.value),
                              is_read=False)
            return self.complete(op, outcome, op.value)
        if op.f == "cas":
            expected, new = op.value
            outcome = perform(self.session(), "POST", self.url(op.key, "/cas"),
                              self.write_body(expected=expected, value=new), is_read=False)
            return self.complete(op, outcome, op.value)
        raise ValueError(f"register client cannot {op.f!r} (valid: read, write, cas)")


def _list_value(body):
    value = body["value"]
    if not isinstance(value, list):
        raise ValueError(f"set read returned {type(value).__name__}, expected a list")
    return value


class SetClient(NodeHttpClient):
    def invoke(self, op: Op) -> Op:
        if op.f == "add":
            outcome = perform(self.session(), "POST", self.url(op.key, "/append"),
                              self.write_body(value=op.value), is_read=False)
            return self.complete(op, outcome, op.value)
        if op.f == "read":
            outcome = perform(self.session(), "GET", self.url(op.key), None, is_read=True,
                              not_found_value=[], extract=_list_value)
            return self.complete(op, outcome, outcome.value)
        raise ValueError(f"set client cannot {op.f!r} (valid: add, read)")


CLIENTS = {"register": RegisterClient, "set": SetClient}
