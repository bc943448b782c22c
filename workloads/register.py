"""The register workload: read / write / cas on a few keys with values unique per key.

Unique values make every key checkable on its own (and fast: a read names the write it saw).
Keys rotate after a bounded number of operations (chaos.generator.RegisterGenerator).
"""

from __future__ import annotations

from chaos.history import Op
from workloads.base import NodeHttpClient, Workload
from workloads.http_client import perform


class RegisterClient(NodeHttpClient):
    def invoke(self, op: Op) -> Op:
        if op.f == "read":
            outcome = perform(self.http, "GET", self.url(op.key), None, is_read=True,
                              not_found_value=None, extract=lambda b: b["value"])
            return self.complete(op, outcome, outcome.value)
        if op.f == "write":
            outcome = perform(self.http, "PUT", self.url(op.key), self.write_body(value=op.value),
                              is_read=False)
            return self.complete(op, outcome, op.value)
        if op.f == "cas":
            expected, new = op.value
            outcome = perform(self.http, "POST", self.url(op.key, "/cas"),
                              self.write_body(expected=expected, value=new), is_read=False)
            return self.complete(op, outcome, op.value)
        raise ValueError(f"register client cannot {op.f!r} (valid: read, write, cas)")


class RegisterWorkload(Workload):
    name = "register"
    checker_workload = "register"

    def client(self, client_id: str) -> RegisterClient:
        return RegisterClient(client_id, self.config.request_timeout)
