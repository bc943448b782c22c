"""The history: invoke/ok/fail/info operations, the one data structure everything shares.

This module imports nothing of ours on purpose: the controller writes it, the checkers and the
reports read it, and a user's own tools can read it with nothing but this file.

One operation per JSON line:

    {"index": 0, "process": 3, "type": "invoke", "f": "write", "key": "r0", "value": 5,
     "time": 1234567890, "node": "n2"}

- index: position in the history, 0-based, dense.
- process: an int for a client worker, "nemesis" for faults.
- type: "invoke", then exactly one of "ok" (it happened), "fail" (it certainly did not happen)
  or "info" (unknown: it may have happened, at any time after its invocation).
- f: the operation ("read", "write", "cas", "add", ...; for the nemesis "partition", "heal", ...).
- key, value: what the operation touched; on a completion, value is what it returned.
- time: the controller's monotonic clock in nanoseconds (never a node's clock).
- node, error: optional; which node the client talked to, and why a fail/info happened.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Iterator

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
TYPES = (INVOKE, OK, FAIL, INFO)
NEMESIS = "nemesis"


class HistoryError(ValueError):
    """A malformed history; the message names the line (1-based) and the problem."""

    def __init__(self, line: int | None, problem: str, source: str = "history"):
        self.line = line
        self.problem = problem
        self.source = source
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {problem}")


@dataclass
class Op:
    process: Any
    type: str
    f: str
    key: Any = None
    value: Any = None
    time: int = 0
    index: int = -1
    node: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "process": self.process, "type": self.type, "f": self.f,
             "key": self.key, "value": self.value, "time": self.time}
        if self.node is not None:
            d["node"] = self.node
        if self.error is not None:
            d["error"] = self.error
        if self.extra:
            d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], line: int | None = None, source: str = "history") -> "Op":
        if not isinstance(d, dict):
            raise HistoryError(line, f"expected a JSON object, got {type(d).__name__}", source)
        for name in ("process", "type", "f"):
            if name not in d:
                raise HistoryError(line, f"operation has no {name!r} field", source)
        if d["type"] not in TYPES:
            raise HistoryError(line, f"unknown type {d['type']!r} (expected one of {', '.join(TYPES)})", source)
        t = d.get("time", 0)
        if not isinstance(t, int) or isinstance(t, bool):
            raise HistoryError(line, f"time must be an integer of nanoseconds, got {t!r}", source)
        known = {"index", "process", "type", "f", "key", "value", "time", "node", "error"}
        return cls(process=d["process"], type=d["type"], f=d["f"], key=d.get("key"),
                   value=d.get("value"), time=t, index=d.get("index", -1), node=d.get("node"),
                   error=d.get("error"), extra={k: v for k, v in d.items() if k not in known})

    @property
    def is_nemesis(self) -> bool:
        return bool(self.process == NEMESIS)


_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
_escape = json.encoder.encode_basestring_ascii  # what _encode does to a str
_int_repr = int.__repr__


def _value_json(v: Any) -> str:
    t = type(v)
    if t is str:
        return _escape(v)
    if t is int:
        return _int_repr(v)
    if v is None:
        return "null"
    if t is list or t is tuple:
        return "[" + ",".join(map(_value_json, v)) + "]"
    return _encode(v)


def op_line(op: Op) -> str:
    """op's JSON line (without the newline): json.dumps(op.to_dict()) with the history's
    separators, character for character, built directly in the common case (no extra fields)
    because the controller writes one per invocation and completion (str and int fields are
    encoded inline: a function call per field cost as much as the rest)."""
    if op.extra:
        return _encode(op.to_dict())
    index, process, kind, f, key, time = op.index, op.process, op.type, op.f, op.key, op.time
    line = (f'{{"index":{_int_repr(index) if type(index) is int else _value_json(index)},'
            f'"process":{_int_repr(process) if type(process) is int else _value_json(process)},'
            f'"type":{_escape(kind) if type(kind) is str else _value_json(kind)},'
            f'"f":{_escape(f) if type(f) is str else _value_json(f)},'
            f'"key":{_escape(key) if type(key) is str else _value_json(key)},'
            f'"value":{_value_json(op.value)},'
            f'"time":{_int_repr(time) if type(time) is int else _value_json(time)}')
    if op.node is not None:
        line += ',"node":' + _value_json(op.node)
    if op.error is not None:
        line += ',"error":' + _value_json(op.error)
    return line + "}"


class HistoryWriter:
    """Appends operations to a JSON-lines file as they happen, flushed per call, thread-safe.

    Every append, and the ops of one extend() together, go to the OS in one write before the
    call returns (no buffer of ours), so that a crash of the controller still leaves the history
    on disk up to the last call that returned.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        # Unbuffered bytes: a line is ASCII (JSON's escapes), and each call is exactly one write,
        # without a text and a buffer layer to go through (the controller writes once per op).
        self._file: IO[bytes] = open(self.path, "ab", buffering=0)
        self._lock = threading.Lock()
        self._next_index = 0
        self.ops: list[Op] = []

    def append(self, op: Op) -> Op:
        with self._lock:
            op.index = self._next_index
            self._next_index += 1
            self.ops.append(op)
            self._write((op_line(op) + "\n").encode())
            return op

    def extend(self, ops: list[Op]) -> None:
        """Append ops in order, all in one write (the generator interpreter records a batch of
        ops at a time)."""
        with self._lock:
            index = self._next_index
            lines = []
            for op in ops:
                op.index = index
                index += 1
                lines.append(op_line(op))
            self._next_index = index
            self.ops.extend(ops)
            if lines:
                lines.append("")
                self._write("\n".join(lines).encode())

    def _write(self, data: bytes) -> None:
        written = self._file.write(data)
        while written < len(data):  # a short write (rare for a file: a signal, a full disk)
            if not written:
                raise OSError(f"{self.path}: writing the history made no progress")
            data = data[written:]
            written = self._file.write(data)

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                os.fsync(self._file.fileno())
                self._file.close()

    def __enter__(self) -> "HistoryWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_jsonl(lines: Iterable[str], source: str = "history") -> Iterator[Op]:
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            hint = " (truncated last line?)" if not raw.endswith("\n") else ""
            raise HistoryError(number, f"not valid JSON: {e.msg} at column {e.colno}{hint}", source) from None
        op = Op.from_dict(d, number, source)
        op.extra["line"] = number
        yield op


def read_jsonl(path: str | os.PathLike[str]) -> list[Op]:
    with open(path, encoding="utf-8") as f:
        ops = list(iter_jsonl(f, source=os.fspath(path)))
    for i, op in enumerate(ops):
        op.index = i
    return ops


def write_jsonl(ops: Iterable[Op], path: str | os.PathLike[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for op in ops:
            d = op.to_dict()
            d.pop("line", None)
            f.write(json.dumps(d, separators=(",", ":"), default=str) + "\n")


@dataclass
class Pair:
    """An invocation and its completion (None when the history ended before it completed)."""

    invoke: Op
    complete: Op | None

    @property
    def type(self) -> str:
        # An invocation with no completion is indeterminate, exactly like an info.
        return self.complete.type if self.complete is not None else INFO


def pair_ops(ops: Iterable[Op], source: str = "history") -> list[Pair]:
    """Match each invocation with its completion by process, validating the history.

    Raises HistoryError (with the line) for a completion without an invocation, or a second
    invocation by a process whose previous operation has not completed.
    """
    open_by_process: dict[Any, Pair] = {}
    pairs: list[Pair] = []
    for op in ops:
        line = op.extra.get("line", op.index + 1 if op.index >= 0 else None)
        if op.type == INVOKE:
            if op.process in open_by_process and not op.is_nemesis:
                prev = open_by_process[op.process].invoke
                raise HistoryError(line, f"process {op.process!r} invokes {op.f!r} while its "
                                   f"{prev.f!r} invoked at index {prev.index} has not completed", source)
            pair = Pair(op, None)
            open_by_process[op.process] = pair
            pairs.append(pair)
        else:
            completed = open_by_process.pop(op.process, None)
            if completed is None:
                raise HistoryError(line, f"{op.type} of {op.f!r} by process {op.process!r} "
                                   "without an open invocation (completes twice, or never invoked)", source)
            if completed.invoke.f != op.f and not op.is_nemesis:
                raise HistoryError(line, f"completion f {op.f!r} does not match invocation f "
                                   f"{completed.invoke.f!r} of process {op.process!r}", source)
            completed.complete = op
    return pairs


def client_ops(ops: Iterable[Op]) -> list[Op]:
    return [op for op in ops if not op.is_nemesis]


def nemesis_ops(ops: Iterable[Op]) -> list[Op]:
    return [op for op in ops if op.is_nemesis]
