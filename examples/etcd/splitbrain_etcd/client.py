"""The register workload's client for etcd: its v3 JSON gateway over plain http.client.

read  -> POST /v3/kv/range  (linearizable; `"serializable": true` with read-mode=serializable)
write -> POST /v3/kv/put
cas   -> POST /v3/kv/txn    (compare value == expected, then put)
Keys and values travel base64-encoded; values are the workload's integers in decimal.

Outcomes, by Jepsen's rules (ok: it happened; fail: it certainly did not; info: unknown):
    200                                       ok (a txn whose compare failed: fail)
    connection refused / no connection        fail: nothing was sent
    any error on a read                       fail: a read changes nothing
    an error etcd raises before proposing     fail ("too many requests", "raft proposal
                                              dropped", "no leader", "database space exceeded")
    a timeout, a reset after sending, "leader
    changed", "request timed out", any other  info: the proposal may still commit
    error on a write
    a 4xx (our request was malformed)         ClientBug: aborts the run
"""

from __future__ import annotations

import base64
import http.client
import json
import select
import time

from chaos.history import FAIL, INFO, OK, Op
from chaos.interfaces import Client, ClientBug, Node

# etcd's messages for requests it refused before proposing them to Raft.
NOT_PROPOSED = ("etcdserver: too many requests", "raft proposal dropped", "etcdserver: no leader",
                "database space exceeded")
UNAVAILABLE = ("refused", "connect", "etcdserver: no leader", "etcdserver: too many requests")
MAX_BACKOFF_S = 0.5


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class NoAnswer(Exception):
    """No HTTP answer; `sent` is False only when the request cannot have reached etcd."""

    def __init__(self, error: str, sent: bool):
        super().__init__(error)
        self.error, self.sent = error, sent


class EtcdRegisterClient(Client):
    def __init__(self, timeout: float, serializable: bool = False):
        self.timeout, self.serializable = timeout, serializable
        self.node: Node | None = None
        self.conn: http.client.HTTPConnection | None = None
        self._backoff = 0.0

    def open(self, nodes: list[Node], node: Node) -> EtcdRegisterClient:
        self.node = node  # etcd forwards proposals to its leader itself: no redirects
        return self

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # -- one request ----------------------------------------------------------------------------
    def _fresh(self) -> bool:
        """Drop a kept-alive connection etcd closed meanwhile (readable while idle: EOF or a
        reset), so a write is never sent into a dead socket and wrongly counted as unknown."""
        if self.conn is not None and self.conn.sock is not None:
            poller = select.poll()
            poller.register(self.conn.sock, select.POLLIN | select.POLLERR | select.POLLHUP)
            if not poller.poll(0):
                return False
        self.close()
        self.conn = http.client.HTTPConnection(self.node.address, self.node.client_port, timeout=self.timeout)
        try:
            self.conn.connect()
        except OSError as e:
            self.close()
            raise NoAnswer(("refused: " if isinstance(e, ConnectionRefusedError) else "connect: ") + str(e),
                           sent=False) from None
        return True

    def _post(self, path: str, body: dict) -> tuple[int, dict]:
        payload = json.dumps(body)
        for retry in (False, True):
            fresh = self._fresh()
            try:
                self.conn.request("POST", path, payload, {"Content-Type": "application/json"})
            except (BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if not fresh and not retry:
                    continue  # etcd closed the idle connection just now; it read nothing of ours
                raise NoAnswer(f"reset: while sending: {e}", sent=True) from None
            except OSError as e:
                self.close()
                raise NoAnswer(f"send: {e}", sent=True) from None
            try:
                response = self.conn.getresponse()
                raw = response.read()
            except TimeoutError:
                self.close()
                raise NoAnswer(f"timeout: no answer within {self.timeout} s", sent=True) from None
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise NoAnswer(f"reset: {type(e).__name__}: {e}", sent=True) from None
            if response.will_close:
                self.close()
            try:
                parsed = json.loads(raw) if raw else {}
            except ValueError:
                parsed = {"error": f"not JSON: {raw[:200]!r}"}
            return response.status, parsed if isinstance(parsed, dict) else {}
        raise AssertionError("unreachable")

    # -- operations -------------------------------------------------------------------------------
    def invoke(self, op: Op) -> Op:
        key = _b64(op.key)
        if op.f == "read":
            body = {"key": key, **({"serializable": True} if self.serializable else {})}
            return self._complete(op, "/v3/kv/range", body, self._read_value)
        if op.f == "write":
            return self._complete(op, "/v3/kv/put", {"key": key, "value": _b64(str(op.value))},
                                  lambda reply: op.value)
        if op.f == "cas":
            expected, new = op.value
            body = {"compare": [{"key": key, "target": "VALUE", "result": "EQUAL", "value": _b64(str(expected))}],
                    "success": [{"requestPut": {"key": key, "value": _b64(str(new))}}]}
            return self._complete(op, "/v3/kv/txn", body, self._cas_result(op))
        raise ValueError(f"the etcd register client cannot {op.f!r} (valid: read, write, cas)")

    @staticmethod
    def _read_value(reply: dict):
        kvs = reply.get("kvs") or []
        return int(base64.b64decode(kvs[0]["value"])) if kvs else None

    @staticmethod
    def _cas_result(op: Op):
        def result(reply: dict):
            if "header" not in reply:
                raise ValueError(f"txn answer without a header: {reply!r}")
            if reply.get("succeeded") is not True:  # proto3 JSON leaves a false out
                raise CompareFailed()
            return op.value
        return result

    def _complete(self, op: Op, path: str, body: dict, value_of) -> Op:
        is_read = op.f == "read"
        try:
            status, reply = self._post(path, body)
        except NoAnswer as e:
            return self._done(op, FAIL if is_read or not e.sent else INFO, error=e.error)
        if status == 200:
            try:
                return self._done(op, OK, value_of(reply))
            except CompareFailed:
                return self._done(op, FAIL, error="cas-mismatch")
            except (KeyError, IndexError, TypeError, ValueError) as e:
                # a read learnt nothing; a put answered 200 did happen; a txn's result is unknown
                kind = FAIL if is_read else (INFO if op.f == "cas" else OK)
                return self._done(op, kind, op.value if kind == OK else None,
                                  error=None if kind == OK else f"malformed answer: {e}")
        message = str(reply.get("error") or reply.get("message") or f"http {status}")
        if 400 <= status < 500 and status not in (408, 429):
            raise ClientBug(f"POST {path} {body} got {status} {message}: etcd rejected our request "
                            "as malformed, a bug in the client")
        certain = is_read or any(text in message for text in NOT_PROPOSED)
        return self._done(op, FAIL if certain else INFO, error=f"etcd: {message}")

    def _done(self, op: Op, kind: str, value=None, error: str | None = None) -> Op:
        done = Op(process=op.process, type=kind, f=op.f, key=op.key, value=value if kind == OK else op.value,
                  time=time.monotonic_ns(), node=self.node.id, error=error)
        if op.extra.get("final"):
            done.extra["final"] = True
        return done

    def backoff_after(self, completion: Op) -> float:
        """Back off (up to 0.5 s) while the node is down or etcd has no leader."""
        error = completion.error or ""
        if completion.type == FAIL and any(error.startswith(w) or w in error for w in UNAVAILABLE):
            self._backoff = min(MAX_BACKOFF_S, self._backoff * 2 if self._backoff else 0.02)
        else:
            self._backoff = 0.0
        return self._backoff


class CompareFailed(Exception):
    """The txn's compare did not hold: nothing was written."""
