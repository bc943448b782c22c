"""Findings about the nodes themselves, beside the client history's checkers:

- node-health: a node that a heal brought back (start after kill, resume after pause, heal of
  a partition, clock reset, the end of the run) but that exited or did not answer. The nemesis
  records it in its completion's "down" ({"n3": "the process exited: ...last stderr lines"}).
  A node that cannot restart after a fault is a bug of the system, however linearizable the
  client history looks: the run is invalid, and this reason comes first.
- log-patterns: lines of a node's logs matching a pattern its DB names as fatal (a Traceback,
  a "fatal" event, a Go panic): each match makes the run invalid and is quoted.
- node-log checkers a DB provides (e.g. the bundled node's election safety), merged by
  add_checks() with the same rule: invalid beats unknown beats valid.

Nemesis "down" entries a fault caused on purpose (a node whose files a disk fault damaged is
expected not to start) carry "expected": they are shown, but are not findings.
"""

from __future__ import annotations

import os
import re
from typing import Iterable

from chaos.history import Op
from chaos.interfaces import merge_valid

MAX_MATCHES = 50
MAX_LINE = 400


def check_down_nodes(ops: Iterable[Op]) -> dict:
    """node-health over the nemesis completions of a history."""
    findings, expected = [], []
    for op in ops:
        if not op.is_nemesis or op.type == "invoke" or not isinstance(op.value, dict):
            continue
        down = op.value.get("down")
        if not isinstance(down, dict):
            continue
        deliberate = set(op.value.get("expected_down") or ())
        for node, why in sorted(down.items()):
            entry = {"node": node, "after": op.f, "index": op.index, "why": str(why)}
            (expected if node in deliberate else findings).append(entry)
    result = {"name": "node-health", "valid": not findings, "down": findings, "expected_down": expected}
    if findings:
        first = findings[0]
        last_line = _last_line(first["why"])
        when = ("was down at the end of the run" if first["after"] == "health"
                else f"could not restart after {first['after']}")
        result["reason"] = f"{first['node']} {when}: {last_line}"
        if len(findings) > 1:
            result["reason"] += f" (and {len(findings) - 1} more)"
    return result


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else text)[:MAX_LINE]


def check_log_patterns(run_dir: str, patterns: Iterable[str], skip_nodes: Iterable[str] = ()) -> dict | None:
    """log-patterns over every file in run_dir/nodes/<id>/; None when there are no patterns
    or no collected logs. `skip_nodes`: nodes a fault damaged on purpose."""
    compiled = [re.compile(p, re.MULTILINE) for p in patterns]
    root = os.path.join(run_dir, "nodes")
    if not compiled or not os.path.isdir(root):
        return None
    skip = set(skip_nodes)
    matches = []
    files = 0
    for node in sorted(os.listdir(root)):
        folder = os.path.join(root, node)
        if node in skip or not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                continue
            files += 1
            with open(path, encoding="utf-8", errors="replace") as f:
                for number, line in enumerate(f, start=1):
                    for pattern in compiled:
                        if pattern.search(line):
                            matches.append({"node": node, "file": f"nodes/{node}/{name}", "line": number,
                                            "text": line.rstrip("\n")[:MAX_LINE], "pattern": pattern.pattern})
                            break
                    if len(matches) >= MAX_MATCHES:
                        break
    if not files:
        return None
    result = {"name": "log-patterns", "valid": not matches, "matches": matches, "files": files,
              "patterns": [p.pattern for p in compiled]}
    if matches:
        m = matches[0]
        result["reason"] = f"{m['node']} logged {m['text'].strip()[:200]!r} ({m['file']} line {m['line']})"
    return result


# Findings about a node come before findings about the history: a node that cannot restart is
# the first thing a reader must see.
PRIORITY = ("node-health", "log-patterns")


def add_checks(results: dict, checks: Iterable[dict | None]) -> dict:
    """Merge extra checker results ({"name", "valid", "reason"?, ...}) into a results dict."""
    checks = [c for c in checks if c is not None]
    if not checks:
        return results
    parts = results.setdefault("checkers", {})
    for check in checks:
        parts[check["name"]] = check
    before = results.get("valid")
    results["valid"] = merge_valid([before] + [c["valid"] for c in checks])
    failed = [c for c in checks if c["valid"] is False]
    failed.sort(key=lambda c: PRIORITY.index(c["name"]) if c["name"] in PRIORITY else len(PRIORITY))
    if failed and (before is not False or failed[0]["name"] in PRIORITY):
        first = failed[0]
        previous = results.get("reason") if before is False else None
        results["reason"] = f"{first['name']}: {first.get('reason', 'invalid')}." + (
            f" Also: {previous}" if previous else "")
    elif results["valid"] == "unknown" and before is True:
        unknown = next(c for c in checks if c["valid"] != True)  # noqa: E712
        results["reason"] = f"{unknown['name']}: {unknown.get('reason', 'could not decide')}."
    return results
