"""Reading histories in the formats a Jepsen user has: ours, Knossos/Jepsen EDN, Jepsen log lines.

- splitbrain JSON lines (chaos/history.py), `history.jsonl` in a run folder;
- EDN, one map per line or one vector (or list) of maps, `;` comments anywhere:
  `{:process 0, :type :invoke, :f :write, :value 3}` (`:key`, `:time`, `:index` optional);
- Jepsen 0.0.x log lines: `INFO  jepsen.util - 3	:ok	:read	2` (other lines are skipped).

Everything becomes a list of `chaos.history.Op` (keywords become plain strings, vectors lists) with
`op.extra["line"]` set, and the client operations are validated with `pair_ops` so a completion
without an invocation or an operation completing twice is reported with its line.

Nemesis operations are not client operations: nothing pairs or validates them, in any format.
Jepsen logs both halves of a nemesis operation as `:type :info` (no `:invoke`), and a history
cut short leaves lone infos; our own histories pair an invoke with an info. Jepsen's nemesis ops
in EDN and log imports are dropped: their f (`:start`, `:stop`, ...) means whatever that test's
nemesis made it mean, so they carry no fault windows in our sense.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from chaos.history import INVOKE, NEMESIS, TYPES, HistoryError, Op, iter_jsonl, pair_ops

from . import edn

JSONL, EDN, JEPSEN_LOG = "jsonl", "edn", "jepsen-log"

_JEPSEN_LINE = re.compile(r"jepsen\.util - (\S+)\s+(:[\w-]+)\s+(:[\w-]+)\s*(.*)$", re.M)


def resolve_path(path: str) -> str:
    """A run folder means its history.jsonl."""
    if os.path.isdir(path):
        candidate = os.path.join(path, "history.jsonl")
        if not os.path.exists(candidate):
            raise HistoryError(None, "run folder has no history.jsonl", path)
        return candidate
    return path


def detect_format(text: str) -> str:
    head = text[:65536]
    if _JEPSEN_LINE.search(head) or (head.strip() and "jepsen.util - " in head):
        return JEPSEN_LOG
    saw_comment = False
    for raw in head.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith(";"):  # an EDN comment (Knossos's test data starts with them)
            saw_comment = True
            continue
        if line.startswith(("[", "(", "#")):
            return EDN
        if line.startswith("{"):
            # '{"' opens a JSON object; '{:' (or '{ :', a symbol, a nested form) an EDN map
            return JSONL if line[1:].lstrip().startswith(('"', "}")) and not saw_comment else EDN
        return EDN if saw_comment else JSONL
    return EDN if saw_comment else JSONL


def load_history(path: str) -> tuple[list[Op], str]:
    """Read a history file (or a run folder); return (ops, format). Raises HistoryError."""
    path = resolve_path(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return parse_history(text, source=path)


def parse_history(text: str, source: str = "history", fmt: str | None = None) -> tuple[list[Op], str]:
    fmt = fmt or detect_format(text)
    if fmt == JSONL:
        ops = list(iter_jsonl(text.splitlines(keepends=True), source=source))
    elif fmt == EDN:
        ops = _parse_edn(text, source)
    elif fmt == JEPSEN_LOG:
        ops = _parse_jepsen_log(text, source)
    else:
        raise ValueError(f"unknown history format {fmt!r}")
    for i, op in enumerate(ops):
        op.index = i
    # validates the client operations: raises HistoryError with the line
    pair_ops([op for op in ops if not op.is_nemesis], source=source)
    return ops, fmt


def plain(value: Any) -> Any:
    """EDN data as JSON-like Python data: keywords to strings, sets to sorted lists."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [plain(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, str):
        return str(value)
    return value


class _Lines:
    """Line numbers of increasing offsets in one text, counted incrementally (linear overall)."""

    def __init__(self, text: str):
        self.text, self.offset, self.line = text, 0, 1

    def of(self, offset: int) -> int:
        if offset < self.offset:  # not expected, but never wrong
            self.offset, self.line = 0, 1
        self.line += self.text.count("\n", self.offset, offset)
        self.offset = offset
        return self.line


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _parse_edn(text: str, source: str) -> list[Op]:
    forms: list[tuple[int, Any, list[int] | None]] = []
    try:
        forms = list(edn.read_forms(text, child_offsets=True))
    except edn.EdnError as e:
        raise HistoryError(_line_of(text, e.offset), f"malformed EDN: {e.problem}", source) from None
    lines = _Lines(text)
    # One vector (or list) holding every op, or one map per line.
    if len(forms) == 1 and isinstance(forms[0][1], list):
        _, items, starts = forms[0]
        assert starts is not None  # read with child_offsets=True
        maps = [(lines.of(start), m) for start, m in zip(starts, items, strict=True)]
    else:
        maps = [(lines.of(start), m) for start, m, _ in forms]
    ops: list[Op] = []
    time_key = edn.Keyword("time")
    use_time = bool(maps) and all(isinstance(m, dict) and type(m.get(time_key)) is int for _, m in maps)
    for seq, (line, m) in enumerate(maps):
        if not isinstance(m, dict):
            raise HistoryError(line, f"expected an EDN map for an operation, got {_describe(m)}", source)
        d = {str(k): v for k, v in m.items()}
        for name in ("process", "type", "f"):
            if name not in d:
                raise HistoryError(line, f"operation has no :{name}", source)
        process = d["process"]
        if isinstance(process, str):
            if str(process) == NEMESIS:
                continue
            raise HistoryError(line, f"process must be an integer or :nemesis, got {process!r}", source)
        if not isinstance(process, int) or isinstance(process, bool):
            raise HistoryError(line, f"process must be an integer or :nemesis, got {process!r}", source)
        type_ = str(d["type"])
        if type_ not in TYPES:
            raise HistoryError(line, f"unknown :type {d['type']!r} (expected :invoke, :ok, :fail or :info)", source)
        t = d["time"] if use_time else seq
        op = Op(process=process, type=type_, f=str(d["f"]), key=plain(d.get("key")),
                value=plain(d.get("value")), time=t)
        if "error" in d:
            op.error = str(plain(d["error"]))
        op.extra["line"] = line
        if not use_time:
            op.extra["order_only_time"] = True
        ops.append(op)
    return ops


def _describe(value: Any) -> str:
    if isinstance(value, edn.Keyword):
        return f"the keyword {value!r}"
    return type(value).__name__


def _parse_jepsen_log(text: str, source: str) -> list[Op]:
    ops: list[Op] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        m = _JEPSEN_LINE.search(raw)
        if not m:
            continue
        process_text, type_kw, f_kw, value_text = m.groups()
        if process_text in (":nemesis", "nemesis"):
            continue
        try:
            process = int(process_text)
        except ValueError:
            raise HistoryError(number, f"process must be an integer or :nemesis, got {process_text!r}",
                               source) from None
        type_ = type_kw[1:]
        if type_ not in TYPES:
            raise HistoryError(number, f"unknown type {type_kw!r}", source)
        value_text = value_text.strip()
        try:
            value = plain(edn.loads(value_text)) if value_text else None
        except edn.EdnError as e:
            raise HistoryError(number, f"malformed value {value_text!r}: {e.problem}", source) from None
        op = Op(process=process, type=type_, f=f_kw[1:], value=value, time=len(ops))
        op.extra["line"] = number
        op.extra["order_only_time"] = True  # log lines carry no clock, only their order
        ops.append(op)
    if not ops and text.strip():
        raise HistoryError(None, "no Jepsen operation lines found", source)
    return ops


def dump_json(ops: list[Op]) -> str:
    return "".join(json.dumps(op.to_dict(), separators=(",", ":"), default=str) + "\n" for op in ops)


__all__ = ["load_history", "parse_history", "detect_format", "resolve_path", "JSONL", "EDN",
           "JEPSEN_LOG", "INVOKE"]
