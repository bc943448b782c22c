"""Delay programs: the queue program (chaos/net/nfqueue.py) running for a network namespace.

The program runs on the host, entering the node's network namespace with nsenter (a container
keeps the image and the privileges it has: NET_ADMIN only), or in the host's own namespace for
local processes. Every program is recorded in RECORD_DIR/<pid>.json with the pid and start time
of the program and of the controller that owns it, so that `splitbrain clean` ends the programs
of a crashed controller (leftovers()) and never a recycled pid.

    program = DelayProgram.start({100: (80.0, 20.0)}, netns="/proc/4242/ns/net", label="n1")
    ...
    program.stop()      # SIGTERM: it lets every held packet go, then exits
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time

from chaos.provision.base import is_zombie, owner_alive, process_start_ticks

RECORD_DIR = os.path.join(tempfile.gettempdir(), "splitbrain-net")
PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nfqueue.py")
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
EXIT_BUSY = 3  # nfqueue.py: a queue number is bound by another program


class DelayError(RuntimeError):
    """The queue program could not be started; the message says why (its own stderr)."""


class QueueBusy(DelayError):
    """A queue number is taken by another program in the same namespace (pick others)."""


class DelayProgram:
    def __init__(self, proc: subprocess.Popen, queues: dict[int, tuple[float, float]], record: str,
                 label: str):
        self.proc = proc
        self.pid = proc.pid
        self.queues = dict(queues)
        self.record = record
        self.label = label

    @classmethod
    def start(cls, queues: dict[int, tuple[float, float]], netns: str | None = None, label: str = "",
              python: str = sys.executable) -> "DelayProgram":
        """Start the program on these queues (number -> (delay ms, jitter ms)) and wait until
        it has bound them all."""
        if not queues:
            raise ValueError("a delay program needs at least one queue")
        argv = [python, "-u", PROGRAM]
        for number, (delay, jitter) in sorted(queues.items()):
            argv += ["--queue", f"{number}:{delay:g}:{jitter:g}"]
        if netns is not None:
            argv = ["nsenter", f"--net={netns}", "--"] + argv  # nsenter execs: the pid is the program's
        os.makedirs(RECORD_DIR, exist_ok=True)
        errors = tempfile.TemporaryFile()
        try:
            # Own session: a Ctrl-C to the controller's terminal does not reach it; the
            # controller ends it (heal, teardown) and `clean` ends a crashed controller's.
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
                                    start_new_session=True)
        except OSError as e:
            errors.close()
            raise DelayError(f"cannot start the delay program ({argv[0]}): {e.strerror}") from None
        record = os.path.join(RECORD_DIR, f"{proc.pid}.json")
        owner = os.getpid()
        with open(record + ".tmp", "w") as f:
            json.dump({"pid": proc.pid, "start": process_start_ticks(proc.pid), "owner": owner,
                       "owner_start": process_start_ticks(owner), "netns": netns, "label": label,
                       "queues": {str(q): list(spec) for q, spec in queues.items()}}, f)
        os.replace(record + ".tmp", record)
        program = cls(proc, queues, record, label)
        try:
            program._wait_ready(errors)
        except BaseException:
            program.stop()
            raise
        finally:
            errors.close()
        return program

    def _wait_ready(self, errors) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        exited = False
        stdout = self.proc.stdout
        assert stdout is not None  # started with stdout=PIPE
        while time.monotonic() < deadline and not exited:
            ready, _, _ = select.select([stdout], [], [], 0.1)
            if ready:
                line = stdout.readline()
                if line.strip() == b"ready":
                    stdout.close()  # it prints nothing more
                    return
                exited = not line
        code = self.proc.wait(timeout=STOP_TIMEOUT_S) if exited else self.proc.poll()
        errors.seek(0)
        why = errors.read().decode("utf-8", "replace").strip() or f"no 'ready' within {READY_TIMEOUT_S:.0f} s"
        if code == EXIT_BUSY:
            raise QueueBusy(why)
        raise DelayError(f"the delay program for {self.label or 'the host'} did not start: {why}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (held packets go through at once), SIGKILL after STOP_TIMEOUT_S; forget it."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=STOP_TIMEOUT_S)
            if self.proc.stdout and not self.proc.stdout.closed:
                self.proc.stdout.close()
        finally:
            try:
                os.remove(self.record)
            except FileNotFoundError:
                pass


def records() -> list[dict]:
    """Every recorded delay program (for clean and for tests)."""
    out: list[dict] = []
    if not os.path.isdir(RECORD_DIR):
        return out
    for name in sorted(os.listdir(RECORD_DIR)):
        if not name.endswith(".json"):
            continue
        path = os.path.join(RECORD_DIR, name)
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, ValueError):
            continue
        record["_path"] = path
        out.append(record)
    return out


def leftovers(all: bool = False) -> list[str]:
    """End the delay programs whose controller is gone (every one with all=True): SIGTERM, then
    SIGKILL; a pid whose start time changed is someone else's now and is left alone. Returns
    what was ended, e.g. ["delay program 4242 (n1)"]."""
    ended = []
    for record in records():
        if not all and owner_alive(record.get("owner"), record.get("owner_start") or None):
            continue
        pid, start = record.get("pid"), record.get("start")
        if isinstance(pid, int) and start and process_start_ticks(pid) == start:
            _end(pid, start)
            ended.append(f"{pid} ({record.get('label') or 'host'})")
        try:
            os.remove(record["_path"])
        except FileNotFoundError:
            pass
    return ended


def _end(pid: int, start: str) -> None:
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if process_start_ticks(pid) != start or is_zombie(pid):
                return
            time.sleep(0.02)


