"""Live progress of a run: elapsed/remaining, ok/fail/info counts, current faults, leader.

On a terminal one status line is redrawn in place; otherwise (CI logs, pipes) a plain line is
printed every `plain_every` seconds so logs stay readable.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from typing import Callable, TextIO


class ConsoleHandler(logging.Handler):
    """Log lines for the person watching; on a terminal it clears the progress line first so
    the two do not run into each other."""

    def __init__(self, stream: TextIO, tty: bool):
        super().__init__(logging.INFO)
        self.stream, self.tty = stream, tty
        self.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prefix = "\r\033[K" if self.tty else ""
            text = self.format(record)
            if "\n" in text:  # tracebacks go to controller.log only
                text = text.split("\n", 1)[0] + " (details in controller.log)"
            self.stream.write(prefix + text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass


class Counts:
    """Completed client operations by type, updated by the workers."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_type: Counter = Counter()

    def add(self, op_type: str) -> None:
        with self.lock:
            self.by_type[op_type] += 1

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {t: self.by_type.get(t, 0) for t in ("ok", "fail", "info")}


def format_line(elapsed: float, total: float, counts: dict[str, int], faults: list[str],
                leader: str | None, phase: str = "load") -> str:
    remaining = max(0.0, total - elapsed)
    done = sum(counts.values())
    rate = done / elapsed if elapsed > 0 else 0.0
    fault_text = ", ".join(faults) if faults else "none"
    return (f"[{phase}] {elapsed:5.1f}s elapsed, {remaining:5.1f}s left | "
            f"ok {counts.get('ok', 0)} fail {counts.get('fail', 0)} info {counts.get('info', 0)} "
            f"({rate:.0f} ops/s) | faults: {fault_text} | leader: {leader or '-'}")


class Progress:
    def __init__(self, total: float, counts: Counts, faults: Callable[[], list[str]],
                 leader: Callable[[], str | None], stream: TextIO | None = None,
                 tty: bool | None = None, refresh: float = 0.5, plain_every: float = 10.0):
        self.total = total
        self.counts = counts
        self.faults = faults
        self.leader = leader
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.refresh = refresh
        self.plain_every = plain_every
        self.phase = "load"
        self.start_time = time.monotonic()
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.last_len = 0

    def line(self) -> str:
        try:
            leader = self.leader()
        except Exception:  # the display must never take a run down
            leader = None
        return format_line(time.monotonic() - self.start_time, self.total, self.counts.snapshot(),
                           list(self.faults()), leader, self.phase)

    def start(self) -> "Progress":
        self.start_time = time.monotonic()
        self.thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self.thread.start()
        return self

    def _loop(self) -> None:
        every = self.refresh if self.tty else self.plain_every
        while not self.stop_event.wait(every):
            self._emit()

    def _emit(self) -> None:
        text = self.line()
        try:
            if self.tty:
                pad = max(0, self.last_len - len(text))
                self.stream.write("\r" + text + " " * pad)
                self.last_len = len(text)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=2)
            self.thread = None
        self._emit()
        if self.tty:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
