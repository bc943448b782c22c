"""A register client of Redis: GET, SET, and compare-and-set as a Lua script, spoken in RESP
over one socket. Outcomes by Jepsen's rules:

    ok    Redis answered that it happened
    fail  it certainly did not: no connection (nothing was sent), an error reply, a cas whose
          expected value differs, or a read that got no answer (a read changes nothing)
    info  a write or cas sent without an answer (timeout, reset): it may have happened
"""

from __future__ import annotations

import socket
import time

from chaos.history import FAIL, INFO, OK, Op
from chaos.interfaces import Client, ClientBug, Node

# Atomic on the server: Redis runs a script without interleaving other commands.
CAS = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
       "redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0")
# Error replies for requests Redis refused without running them; any other error is ours.
REFUSALS = ("LOADING", "BUSY", "MISCONF", "OOM", "READONLY", "MASTERDOWN", "TRYAGAIN")


class ErrorReply(Exception):
    """Redis answered with an error (`-LOADING ...`)."""


def command(*args) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def read_reply(reader):
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionResetError("the connection closed in the middle of a reply")
    kind, rest = line[:1], line[1:-2]
    if kind == b"-":
        raise ErrorReply(rest.decode(errors="replace"))
    if kind == b"+":
        return rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        if int(rest) < 0:
            return None
        data = reader.read(int(rest) + 2)
        if len(data) != int(rest) + 2:
            raise ConnectionResetError("the connection closed in the middle of a reply")
        return data[:-2].decode()
    raise ConnectionError(f"not a RESP reply we asked for: {line[:80]!r}")


class RegisterClient(Client):
    def __init__(self, timeout: float):
        self.timeout = timeout
        self.node: Node | None = None
        self.sock: socket.socket | None = None
        self.reader = None
        self._backoff = 0.0

    def open(self, nodes: list[Node], node: Node) -> RegisterClient:
        self.node = node
        return self

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock, self.reader = None, None

    def call(self, *args):
        self.sock.sendall(command(*args))
        return read_reply(self.reader)

    def invoke(self, op: Op) -> Op:
        if self.sock is None:
            try:
                self.sock = socket.create_connection((self.node.address, self.node.client_port), self.timeout)
                self.reader = self.sock.makefile("rb")
            except OSError as e:
                return self.done(op, FAIL, error=f"refused: {e}")
        try:
            if op.f == "read":
                value = self.call("GET", op.key)
                return self.done(op, OK, None if value is None else int(value))
            if op.f == "write":
                self.call("SET", op.key, op.value)
                return self.done(op, OK)
            if op.f == "cas":
                expected, new = op.value
                swapped = self.call("EVAL", CAS, 1, op.key, expected, new) == 1
                return self.done(op, OK if swapped else FAIL, error=None if swapped else "cas: value differs")
        except ErrorReply as e:
            if str(e).split(" ", 1)[0] in REFUSALS:
                return self.done(op, FAIL, error=str(e))
            raise ClientBug(f"redis refused {op.f} {op.key} {op.value!r}: {e}") from None
        except (OSError, ValueError) as e:
            self.close()
            reason = "timeout" if isinstance(e, TimeoutError) else f"connection: {e}"
            return self.done(op, FAIL if op.f == "read" else INFO, error=reason)
        raise ClientBug(f"the redis register client cannot {op.f!r} (it can: read, write, cas)")

    def done(self, op: Op, type_: str, value=None, error: str | None = None) -> Op:
        return Op(process=op.process, type=type_, f=op.f, key=op.key, time=time.monotonic_ns(),
                  value=value if op.f == "read" and type_ == OK else op.value, node=self.node.id, error=error)

    def backoff_after(self, completion: Op) -> float:
        """Up to 0.5 s between tries while the server is down or still loading its file."""
        refused = completion.type == FAIL and (completion.error or "").startswith(("refused", "LOADING"))
        self._backoff = min(0.5, self._backoff * 2 or 0.02) if refused else 0.0
        return self._backoff
