"""A probe of a node's clocks from inside its environment: a tiny Python program started the way
the node's service is (in its container or cgroup, with the same clock environment), so it sees
exactly the clocks the node sees, never the node's own /status.

It reads the faked clocks through libc (what the shim moves) and the real ones with raw system
calls (which no LD_PRELOAD library can touch), so skew and rate are measured without any latency
between the controller and the node in the figures.
"""

from __future__ import annotations

import json

PROBE = r'''
import asyncio, ctypes, json, platform, select, sys, threading, time
# raw system call numbers: clock_gettime, nanosleep
CALLS = {"x86_64": (228, 35), "aarch64": (113, 101)}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
class TS(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]
def raw(clock):
    ts = TS()
    if libc.syscall(CALLS[0], clock, ctypes.byref(ts)) != 0:
        raise OSError(ctypes.get_errno(), "clock_gettime")
    return ts.sec + ts.nsec / 1e9
def raw_sleep(seconds):
    ts = TS(int(seconds), int((seconds % 1) * 1e9))
    libc.syscall(CALLS[1], ctypes.byref(ts), None)
def read():
    real_mono = raw(1)
    out = {"mono": time.monotonic(), "wall": time.time(), "real_mono": real_mono, "real_wall": raw(0)}
    out["mono_skew"] = out["mono"] - real_mono
    out["wall_skew"] = out["wall"] - out["real_wall"]
    return out
def timed(wait):
    real, cpu = raw(1), time.process_time()
    wait()
    return {"real": raw(1) - real, "cpu": time.process_time() - cpu}
def waits(d):
    locked = threading.Lock(); locked.acquire()
    poller = select.epoll()
    return {"sleep": timed(lambda: time.sleep(d)),
            "event": timed(lambda: threading.Event().wait(d)),
            "lock": timed(lambda: locked.acquire(timeout=d)),
            "asyncio": timed(lambda: asyncio.run(asyncio.sleep(d))),
            "epoll": timed(lambda: poller.poll(d)),
            "select": timed(lambda: select.select([], [], [], d))}
mode = sys.argv[1]
if mode == "read":
    result = read()
elif mode == "series":          # count samples, interval s of real time apart
    count, interval = int(sys.argv[2]), float(sys.argv[3])
    result = []
    for _ in range(count):
        result.append(read())
        raw_sleep(interval)
elif mode == "waits":           # how long timed waits of d s (of the process's clock) really take
    result = waits(float(sys.argv[2]))
else:
    raise SystemExit(f"probe: unknown mode {mode}")
print(json.dumps(result))
'''


def run_probe(db, node, *args, python: str = "python3"):
    """Run the probe beside the node's service, under the node's clock environment."""
    env = [f"{k}={v}" for k, v in db.clock_environment(node).items()]
    return json.loads(db.exec(node, ["env", *env, python, "-c", PROBE, *map(str, args)]))


def skews(db, node, python: str = "python3") -> tuple[float, float]:
    """(monotonic skew, wall skew) that a process in the node's environment sees right now."""
    sample = run_probe(db, node, "read", python=python)
    return sample["mono_skew"], sample["wall_skew"]
