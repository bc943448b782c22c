"""Reading a run directory (docs/contracts.md §3) into plain Python data for the report.

Every file except the history is optional: a run that crashed half-way still gets a report that
says what is missing. A file that exists but is malformed is an error naming the file and line,
never something to skip silently (a report that hides a broken history would mislead).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from chaos.history import HistoryError, Op, read_jsonl


class ReportError(ValueError):
    """A run directory the report cannot be built from; the message names the file and problem."""


@dataclass
class StatusPoll:
    """One `/status` poll by the controller: `status` is None when the node did not answer."""

    time: int                   # controller monotonic ns
    node: str
    status: dict | None
    error: str | None = None


@dataclass
class NodeLogEvent:
    node: str
    event: str
    ts: float | None            # node wall clock (may be skewed)
    mono: float | None          # node monotonic clock (may be skewed by the clock shim)
    fields: dict
    line: int
    path: str = ""              # the log file it is in, relative to the run directory


@dataclass
class NodeLog:
    """Everything collected of one node: its files, and the events of those that are JSON lines
    with an "event" field (docs/contracts.md §2; other systems' logs are listed, not parsed)."""

    node: str
    path: str                   # the file with the node's events (or its first), relative to the run
    events: list[NodeLogEvent] = field(default_factory=list)   # all but commit advances
    counts: dict[str, int] = field(default_factory=dict)       # lines per event kind
    lines: int = 0
    unparsed: int = 0           # lines that were not JSON objects (stack traces, stderr noise)
    files: list[str] = field(default_factory=list)  # every collected file, relative to the run


# Commit advances are the bulk of a busy node's log and play no part in the timeline: they are
# counted from the raw line without decoding it.
_COMMIT_LINE = re.compile(r'^\{.*"event"\s*:\s*"commit"\s*[,}]')


@dataclass
class RunData:
    run_dir: str
    config: dict
    ops: list[Op]
    polls: list[StatusPoll]
    results: dict | None
    node_logs: dict[str, NodeLog]
    missing: list[str]          # expected files that are absent, for the report to mention


def _read_json_object(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_status(path: str) -> list[StatusPoll]:
    polls: list[StatusPoll] = []
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                d = json.loads(text)
            except json.JSONDecodeError as e:
                if not raw.endswith("\n"):
                    break  # the controller died mid-line: the last poll is lost, the rest is fine
                raise ReportError(f"{path}:{number}: not valid JSON: {e.msg}") from None
            if not isinstance(d, dict):
                raise ReportError(f"{path}:{number}: expected a JSON object")
            t, node = d.get("time"), d.get("node")
            if not isinstance(t, int) or isinstance(t, bool):
                raise ReportError(f"{path}:{number}: time must be an integer of nanoseconds, got {t!r}")
            if not isinstance(node, str):
                raise ReportError(f"{path}:{number}: node must be a string, got {node!r}")
            status = d.get("status")
            if status is not None and not isinstance(status, dict):
                raise ReportError(f"{path}:{number}: status must be an object or null")
            polls.append(StatusPoll(t, node, status, d.get("error")))
    polls.sort(key=lambda p: p.time)
    return polls


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def read_node_log(path: str, node: str, rel: str, log: NodeLog | None = None) -> NodeLog:
    log = log or NodeLog(node=node, path=rel)
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, raw in enumerate(f, start=1):
            log.lines += 1
            text = raw.strip()
            if not text:
                continue
            if _COMMIT_LINE.match(text) and text.endswith("}"):
                log.counts["commit"] = log.counts.get("commit", 0) + 1
                continue
            try:
                d = json.loads(text)
            except json.JSONDecodeError:
                log.unparsed += 1
                continue
            if not isinstance(d, dict) or not isinstance(d.get("event"), str):
                log.unparsed += 1
                continue
            log.counts[d["event"]] = log.counts.get(d["event"], 0) + 1
            fields = {k: v for k, v in d.items() if k not in ("ts", "mono", "node", "event")}
            log.events.append(NodeLogEvent(node=str(d.get("node", node)), event=d["event"],
                                           ts=_number(d.get("ts")), mono=_number(d.get("mono")),
                                           fields=fields, line=number, path=rel))
    return log


def load_run(run_dir: str | os.PathLike) -> RunData:
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise ReportError(f"{run_dir}: not a directory (expected a run directory of the store)")
    missing: list[str] = []

    def path(*parts: str) -> str:
        return os.path.join(run_dir, *parts)

    history_path = path("history.jsonl")
    if not any(os.path.exists(path(name)) for name in ("history.jsonl", "config.json", "results.json")):
        raise ReportError(f"{run_dir}: not a run directory (no history.jsonl, config.json or results.json)")
    ops: list[Op] = []
    if os.path.exists(history_path):
        try:
            ops = read_jsonl(history_path)
        except HistoryError as e:
            raise ReportError(str(e)) from None
    else:
        missing.append("history.jsonl")  # a run that crashed before its first operation

    config: dict = {}
    if os.path.exists(path("config.json")):
        config = _read_json_object(path("config.json"))
    else:
        missing.append("config.json")

    results = None
    if os.path.exists(path("results.json")):
        results = _read_json_object(path("results.json"))
    else:
        missing.append("results.json")

    polls: list[StatusPoll] = []
    if os.path.exists(path("status.jsonl")):
        polls = read_status(path("status.jsonl"))
    else:
        missing.append("status.jsonl")

    node_logs: dict[str, NodeLog] = {}
    nodes_dir = path("nodes")
    if os.path.isdir(nodes_dir):
        for node in sorted(os.listdir(nodes_dir)):
            folder = os.path.join(nodes_dir, node)
            names = sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n))) \
                if os.path.isdir(folder) else []
            names.sort(key=lambda n: n != "node.log")  # the bundled node's event log first
            if not names:
                continue
            log = NodeLog(node=node, path=f"nodes/{node}/{names[0]}")
            for name in names:
                rel = f"nodes/{node}/{name}"
                log.files.append(rel)
                before = len(log.events)
                read_node_log(os.path.join(folder, name), node, rel, log)
                if len(log.events) > before and log.path != rel and not any(e.path == log.path for e in log.events):
                    log.path = rel
            node_logs[node] = log
    if not node_logs:
        missing.append("nodes/*")
    return RunData(run_dir=run_dir, config=config, ops=ops, polls=polls, results=results,
                   node_logs=node_logs, missing=missing)
