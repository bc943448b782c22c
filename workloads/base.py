"""What a workload is to the runner: a client generator, a client per worker process, the final
reads, and the name the checkers know it by.

A second system under test plugs in its own Workload (and Client) without touching the runner:
subclass Workload, implement `client()` (a chaos.interfaces.Client) and register it in
WORKLOADS, or pass the instance to chaos.runner.Runner directly.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from chaos.generator import ClientGenerator, client_generator
from chaos.history import FAIL, INFO, OK, Op
from chaos.interfaces import Client, Node
from workloads.http_client import HttpClient, Outcome, monotonic_ns


class Workload:
    name = "base"
    #: the checkers' name for this workload (checkers.check_history(workload=...))
    checker_workload = "base"
    #: True when the verdict is unknown unless every final read succeeded (set)
    final_reads_required = False

    def __init__(self, config):
        self.config = config

    def generator(self) -> ClientGenerator:
        c = self.config
        return client_generator(c.workload, c.seed, keys=c.keys, ops_per_key=c.ops_per_key,
                                elements_per_key=c.elements_per_key)

    def client(self, client_id: str) -> Client:
        raise NotImplementedError

    def final_reads(self, keys: list[str]) -> list[tuple[str, str, object]]:
        """Operations (f, key, value) read at the very end, through the leader."""
        return [("read", key, None) for key in keys]


class NodeHttpClient(Client):
    """Common part of our node's clients: one HttpClient, URL per node, dedup identity."""

    def __init__(self, client_id: str, timeout: float):
        self.client_id = client_id
        self.seq = 0
        self.timeout = timeout
        self.http: HttpClient | None = None
        self.node: Node | None = None
        self.node_by_netloc: dict[str, str] = {}

    def open(self, nodes: list[Node], node: Node) -> "NodeHttpClient":
        self.http = HttpClient(self.timeout)
        self.node = node
        self.node_by_netloc = {urlsplit(n.client_url).netloc: n.id for n in nodes}
        return self

    def close(self) -> None:
        if self.http is not None:
            self.http.close()

    def url(self, key: str, suffix: str = "") -> str:
        return f"{self.node.client_url.rstrip('/')}/kv/{quote(key, safe='')}{suffix}"

    def write_body(self, **fields) -> dict:
        # Every write carries (client_id, seq): a redirected write re-sent to the leader is
        # applied at most once.
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


TYPES = (OK, FAIL, INFO)


def get_workload(name: str, config) -> Workload:
    from workloads.register import RegisterWorkload
    from workloads.set import SetWorkload

    workloads = {"register": RegisterWorkload, "set": SetWorkload}
    if name not in workloads:
        raise ValueError(f"unknown workload {name!r} (valid: {', '.join(workloads)})")
    return workloads[name](config)
