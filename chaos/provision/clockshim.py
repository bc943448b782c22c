"""The clock shim: our LD_PRELOAD library (clockshim.c) that moves a service's clocks, its
CLOCK_MONOTONIC included, and keeps its timed waits on the moved clock.

Why our own: libfaketime 0.9.10 can fake the wall clock only for a Python service (faking
CLOCK_MONOTONIC hangs Python's timed waits, and its timed-wait fix made every thread hand-off take
~50 ms), so a slowed clock never reached the node's timers. A time namespace fixes one monotonic
offset at its creation and changes neither rates nor durations. The shim interposes the clock
reads (clock_gettime, gettimeofday, time) and every libc call that waits for a time — absolute
deadlines (pthread_cond_timedwait/clockwait, sem_timedwait/clockwait,
pthread_mutex_timedlock/clocklock, clock_nanosleep) and relative timeouts (nanosleep, usleep,
sleep, epoll_wait/pwait/pwait2, poll, ppoll, select, pselect) — and translates each into real time
by the rate, in slices of at most 50 ms so that a change of the spec is felt within one slice.
Not interposed: timerfd, POSIX timers, alarm/setitimer, raw futex calls and anything that does
not read time through libc (a Go binary: such a system declares `clock_via_libc = False`).

The spec file (SPLITBRAIN_CLOCK_FILE), one line of key=value, seconds as decimals:

    anchor=<real CLOCK_MONOTONIC s> skew=<s> rate=<r> [strobe_start=<s> strobe_delta=<s>
    strobe_period=<s> strobe_count=<n>] [mono_offset=<s>]

With t the real CLOCK_MONOTONIC (the host's and every container's: they share the kernel's
clock), the service's wall clock reads real + skew(t) and its monotonic clock real + skew(t) +
mono_offset, where

    skew(t) = skew + (t - anchor) * (rate - 1) + (strobe_delta if the strobe is up at t)

and the strobe is up in its even periods counted from strobe_start, for strobe_count periods,
then stays as its last period left it. mono_offset is what a reset leaves: the wall clock goes
back to real time, but the monotonic clock never goes back at a reset (that would hold every
timer of the service for as long), so it keeps what a bump forward added. The anchor is absolute,
so a restarted process continues the same skew, and strobe flips happen inside the process on
time, with nobody writing the file and nothing left running to clean up. ClockSpec below mirrors the C arithmetic.

The library is built once with the host's C compiler into the cache (like the porcupine helper),
named by a hash of its source, and used as it is by local nodes and copied into containers.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clockshim.c")
#: the environment variable naming the spec file (the shim is inert without it)
SPEC_ENV = "SPLITBRAIN_CLOCK_FILE"
#: the library's file name wherever it is installed (containers: /usr/local/lib/splitbrain/)
LIBRARY_NAME = "libsplitbrain-clock.so"
CFLAGS = ("-std=gnu11", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall", "-Wextra", "-Werror",
          # no _chk variants: they would tie the library to the host's glibc version
          "-U_FORTIFY_SOURCE", "-D_FORTIFY_SOURCE=0")
LDFLAGS = ("-Wl,--no-as-needed", "-l:libdl.so.2")   # dlsym lives there before glibc 2.34


class ShimUnavailable(RuntimeError):
    """No C compiler, or the shim failed to build; the message says which."""


def cache_dir() -> str:
    return os.environ.get("SPLITBRAIN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "splitbrain")


def source_hash() -> str:
    digest = hashlib.sha256()
    with open(SOURCE, "rb") as f:
        digest.update(f.read())
    digest.update(" ".join(CFLAGS + LDFLAGS).encode())
    return digest.hexdigest()[:16]


def library_path() -> str:
    return os.path.join(cache_dir(), f"clockshim-{source_hash()}", LIBRARY_NAME)


def find_compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


_failed: dict[str, str] = {}


def ensure_library() -> str:
    """The shim's path, built on first use (ShimUnavailable when it cannot be)."""
    path = library_path()
    if os.path.isfile(path):
        return path
    if path in _failed:
        raise ShimUnavailable(_failed[path])
    try:
        return _build(path)
    except ShimUnavailable as e:
        _failed[path] = str(e)
        raise


def unavailable_reason() -> str | None:
    """Why clock faults cannot be offered on this host, or None."""
    try:
        ensure_library()
        return None
    except ShimUnavailable as e:
        return str(e)


def _build(path: str) -> str:
    compiler = find_compiler()
    if compiler is None:
        raise ShimUnavailable("the clock shim needs a C compiler to build (apt-get install gcc libc6-dev)")
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        lock = open(os.path.join(folder, ".lock"), "a")  # noqa: SIM115 - held through the build below
    except OSError as e:
        raise ShimUnavailable(f"cannot write the clock shim into {folder}: {e} "
                              "(set SPLITBRAIN_CACHE to a writable folder)") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # concurrent first uses build it once
        if os.path.isfile(path):
            return path
        fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=folder)
        os.close(fd)
        try:
            proc = subprocess.run([compiler, *CFLAGS, "-o", tmp, SOURCE, *LDFLAGS],
                                  capture_output=True, text=True, timeout=120, check=False)
            if proc.returncode != 0:
                raise ShimUnavailable(f"building the clock shim failed:\n{proc.stderr.strip()[-2000:]}")
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)
        except subprocess.TimeoutExpired:
            raise ShimUnavailable("building the clock shim took over 120 s") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


def environment(library: str, spec_file: str, inherited: str | None = None) -> dict[str, str]:
    """The variables that run a process under the shim reading `spec_file`."""
    preload = library if not inherited else f"{library}:{inherited}"
    return {"LD_PRELOAD": preload, SPEC_ENV: spec_file}


# -- host folders of docker runs ------------------------------------------------------------------
# A docker node's clock file lives in a host folder bind-mounted into its container, so the
# controller rewrites it directly: a spec reaches the shim within a millisecond, not after a
# `docker exec` (whose latency, times 1 - rate, would be a jump back at every rate change).
RUNS_DIR = os.path.join(tempfile.gettempdir(), "splitbrain-clock")
OWNER_FILE = "owner"


def run_dir(run_id: str) -> str:
    return os.path.join(RUNS_DIR, run_id)


def make_run_dir(run_id: str, owner_pid: int) -> str:
    """The run's folder, recording its owner (pid 0: a detached cluster) for `splitbrain clean`."""
    from chaos.provision.base import process_start_ticks

    folder = run_dir(run_id)
    os.makedirs(folder, mode=0o755, exist_ok=True)
    start = (process_start_ticks(owner_pid) or "") if owner_pid else ""
    with open(os.path.join(folder, OWNER_FILE), "w") as f:
        f.write(f"{owner_pid} {start}\n")
    return folder


def node_dir(run_id: str, node_id: str, library: str) -> str:
    """A node's folder (its spec file and a copy of the shim), made when missing."""
    folder = os.path.join(run_dir(run_id), node_id)
    os.makedirs(folder, mode=0o755, exist_ok=True)
    target = os.path.join(folder, LIBRARY_NAME)
    if not os.path.isfile(target):
        shutil.copyfile(library, target + ".tmp")
        os.chmod(target + ".tmp", 0o755)
        os.replace(target + ".tmp", target)
    return folder


def write_spec(path: str, text: str) -> None:
    """Replace a spec file whole (rename), so the shim never reads half of one."""
    with open(path + ".tmp", "w") as f:
        f.write(text + "\n")
    os.replace(path + ".tmp", path)


def remove_run_dir(run_id: str) -> None:
    shutil.rmtree(run_dir(run_id), ignore_errors=True)


def clean_run_dirs(all: bool = False) -> list[str]:
    """Folders of runs whose owner is gone (every one with all=True; a detached cluster's, owner
    0, only then). Their containers, which alone read them, are `splitbrain clean`'s too."""
    from chaos.provision.base import owner_alive

    removed: list[str] = []
    if not os.path.isdir(RUNS_DIR):
        return removed
    for name in sorted(os.listdir(RUNS_DIR)):
        folder = os.path.join(RUNS_DIR, name)
        try:
            with open(os.path.join(folder, OWNER_FILE)) as f:
                pid, _, start = f.read().strip().partition(" ")
        except OSError:
            pid, start = "", ""
        if all or (pid != "0" and not owner_alive(pid, start or None)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(name)
    return removed


def _decimal(x: float) -> str:
    text = f"{x:.9f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


@dataclass(frozen=True)
class ClockSpec:
    """What the shim reads: see the module docstring. Times are real CLOCK_MONOTONIC seconds."""

    anchor: float = 0.0
    skew: float = 0.0
    rate: float = 1.0
    strobe_start: float = 0.0
    strobe_delta: float = 0.0
    strobe_period: float = 0.0
    strobe_count: int = 0
    mono_offset: float = 0.0

    def __post_init__(self):
        if not self.rate > 0:
            raise ValueError(f"clock rate must be positive, got {self.rate!r}")
        if self.strobe_count < 0 or self.strobe_period < 0:
            raise ValueError("a strobe needs a positive period and count")

    @property
    def is_real_time(self) -> bool:
        """No fault in force: the wall clock is real and every clock runs at real speed (the
        monotonic clock may still be ahead by a constant, which no program can tell)."""
        return self.skew == 0 and self.rate == 1 and not self.strobing

    @property
    def strobing(self) -> bool:
        return self.strobe_count > 0 and self.strobe_period > 0

    def strobe_up(self, t: float) -> bool:
        if not self.strobing:
            return False
        flip = int((t - self.strobe_start) // self.strobe_period) if t > self.strobe_start else 0
        return min(flip, self.strobe_count - 1) % 2 == 0

    def base_skew(self, t: float) -> float:
        """The skew at real monotonic time t without the strobe's square wave."""
        return self.skew + (t - self.anchor) * (self.rate - 1.0)

    def skew_at(self, t: float) -> float:
        """Seconds the service's wall clock is ahead of real time at real monotonic time t."""
        return self.base_skew(t) + (self.strobe_delta if self.strobe_up(t) else 0.0)

    def mono_skew_at(self, t: float) -> float:
        """Seconds the service's monotonic clock is ahead of the real one at t."""
        return self.skew_at(t) + self.mono_offset

    def text(self) -> str:
        parts = [f"anchor={_decimal(self.anchor)}", f"skew={_decimal(self.skew)}", f"rate={_decimal(self.rate)}"]
        if self.strobing:
            parts += [f"strobe_start={_decimal(self.strobe_start)}", f"strobe_delta={_decimal(self.strobe_delta)}",
                      f"strobe_period={_decimal(self.strobe_period)}", f"strobe_count={self.strobe_count}"]
        if self.mono_offset:
            parts.append(f"mono_offset={_decimal(self.mono_offset)}")
        return " ".join(parts)

    def describe(self, t: float) -> str:
        """Short words for a history op: the skew at t and the rate ("+5 x1", "-2.5 x0.5"),
        and the strobe when there is one."""
        skew = _decimal(round(self.base_skew(t), 3))
        text = f"{skew if skew.startswith('-') else '+' + skew} x{_decimal(round(self.rate, 3))}"
        if self.strobing:
            text += (f" (strobe {self.strobe_delta:+g} s every {self.strobe_period:g} s, "
                     f"{self.strobe_count} flips)")
        return text

    @classmethod
    def parse(cls, text: str) -> ClockSpec:
        """The spec in a file's text; ValueError naming what is wrong (the shim's own rules)."""
        names = {"anchor", "skew", "rate", "strobe_start", "strobe_delta", "strobe_period", "strobe_count",
                 "mono_offset"}
        fields: dict[str, float] = {}
        for item in text.split():
            key, sep, value = item.partition("=")
            if not sep or key not in names:
                raise ValueError(f"clock spec: unknown item {item!r} (keys: {', '.join(sorted(names))})")
            try:
                fields[key] = float(value)
            except ValueError:
                raise ValueError(f"clock spec: {key} must be a number, got {value!r}") from None
        if "rate" not in fields:
            raise ValueError("clock spec: rate is missing")
        count = fields.pop("strobe_count", 0)
        if count != int(count):
            raise ValueError(f"clock spec: strobe_count must be an integer, got {count!r}")
        return cls(strobe_count=int(count), **fields)


#: real time: what a reset writes
REAL_TIME = ClockSpec()
