"""Structured node log: one JSON object per line, to --log-file and stderr (docs/contracts.md §2).

    {"ts": <wall seconds>, "mono": <monotonic seconds>, "node": "n1", "event": <kind>, ...}

Commit advances happen thousands of times per second under load; `commit()` only remembers the
latest one and `flush_commit()` (called by the driver's timer) writes at most one commit line per
interval, so the log stays small while the timeline still shows commit progress.
"""

from __future__ import annotations

import json
import os
import sys
import time


class NodeLog:
    def __init__(self, node_id: str, path: str | None = None, stderr: bool = True,
                 commit_interval: float = 0.5):
        self.node_id = node_id
        self.stderr = stderr
        self.commit_interval = commit_interval
        self._file = None
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._file = open(path, "a", buffering=1, encoding="utf-8")
        self._pending_commit: tuple[int, int] | None = None
        self._last_commit_write = 0.0

    def event(self, kind: str, **fields) -> None:
        record = {"ts": time.time(), "mono": time.monotonic(), "node": self.node_id, "event": kind}
        record.update(fields)
        line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
        if self._file is not None:
            self._file.write(line)
        if self.stderr:
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass  # stderr closed by the parent: the log file still has it

    def commit(self, index: int, term: int) -> None:
        self._pending_commit = (index, term)
        now = time.monotonic()
        if now - self._last_commit_write >= self.commit_interval:
            self.flush_commit(now)

    def flush_commit_if_due(self, now: float) -> None:
        if self._pending_commit is not None and now - self._last_commit_write >= self.commit_interval:
            self.flush_commit(now)

    def flush_commit(self, now: float | None = None) -> None:
        if self._pending_commit is None:
            return
        index, term = self._pending_commit
        self._pending_commit = None
        self._last_commit_write = time.monotonic() if now is None else now
        self.event("commit", index=index, term=term)

    def close(self) -> None:
        self.flush_commit()
        if self._file is not None:
            self._file.close()
            self._file = None
