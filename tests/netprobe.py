"""Probes that measure a link from inside a node's network namespace: round-trip time, loss
rate, throughput. Each probe is a small python3 program (PROBE below) run where the node's
packets are: a Docker node's network namespace (nsenter, from the host) or a local node's
cgroup (where the local provisioner's rules see it as the node). Every probe ends by itself.

    probe = Probes.docker(db)            # or Probes.local(db)
    with probe.echo(n2, port) as _:       # a TCP echo server in n2's namespace
        rtt = probe.rtt(n1, n2, port)     # {"median_ms": ..., "p10_ms": ..., "p90_ms": ..., "n": ...}
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys

PROBE = r'''
import json, socket, statistics, sys, threading, time

def ready():
    print("ready", flush=True)

mode, args = sys.argv[1], sys.argv[2:]
if mode == "echo":                      # ADDR PORT SECONDS: TCP echo, each connection in a thread
    addr, port, seconds = args[0], int(args[1]), float(args[2])
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port)); srv.listen(64); srv.settimeout(0.2); ready()
    def serve(c):
        c.settimeout(seconds)
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    return
                c.sendall(data)
        except OSError:
            return
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            c, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(c,), daemon=True).start()
elif mode == "rtt":                     # SRC DST PORT COUNT TIMEOUT: 1-byte round trips on one connection
    src, dst, port, count, timeout = args[0], args[1], int(args[2]), int(args[3]), float(args[4])
    c = socket.socket(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); c.settimeout(timeout)
    if src:
        c.bind((src, 0))
    c.connect((dst, port))
    samples = []
    for i in range(count):
        t = time.monotonic(); c.sendall(b"x")
        if c.recv(1) != b"x":
            raise SystemExit("echo broke")
        samples.append((time.monotonic() - t) * 1000)
    q = statistics.quantiles(samples, n=10)
    print(json.dumps({"median_ms": statistics.median(samples), "p10_ms": q[0], "p90_ms": q[-1],
                      "min_ms": min(samples), "max_ms": max(samples), "n": count}))
elif mode == "udp-sink":                # ADDR PORT SECONDS: count datagrams (distinct sequence numbers)
    addr, port, seconds = args[0], int(args[1]), float(args[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((addr, port)); s.settimeout(0.2); ready()
    seen, end = set(), time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = s.recv(64)
        except socket.timeout:
            continue
        if data == b"end":
            break
        seen.add(int(data))
    print(json.dumps({"received": len(seen)}))
elif mode == "udp-send":                # SRC DST PORT COUNT GAP_S: numbered datagrams, then "end"s
    src, dst, port, count, gap = args[0], args[1], int(args[2]), int(args[3]), float(args[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if src:
        s.bind((src, 0))
    for i in range(count):
        try:
            s.sendto(str(i).encode(), (dst, port))
        except OSError:  # dropped in OUTPUT (a local node's rules): the sender hears EPERM
            pass
        if gap:
            time.sleep(gap)
    print(json.dumps({"sent": count}))
elif mode == "sink":                    # ADDR PORT SECONDS WARMUP: bytes per second after warmup
    addr, port, seconds, warmup = args[0], int(args[1]), float(args[2]), float(args[3])
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port)); srv.listen(1); srv.settimeout(seconds); ready()
    c, _ = srv.accept(); c.settimeout(1.0)
    start = time.monotonic(); counted = 0; t0 = None
    while time.monotonic() - start < seconds:
        try:
            data = c.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        now = time.monotonic()
        if now - start >= warmup:
            if t0 is None:
                t0 = now
            else:
                counted += len(data)
    elapsed = time.monotonic() - t0 if t0 else 0.0
    print(json.dumps({"kbit_per_s": counted * 8 / 1000 / elapsed if elapsed else 0.0, "seconds": elapsed}))
elif mode == "blast":                   # SRC DST PORT SECONDS: send as fast as TCP lets us
    src, dst, port, seconds = args[0], args[1], int(args[2]), float(args[3])
    c = socket.socket(); c.settimeout(seconds + 5)
    if src:
        c.bind((src, 0))
    c.connect((dst, port))
    chunk, end = b"\0" * 16384, time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            c.sendall(chunk)
    except OSError:
        pass
    print(json.dumps({"done": True}))
'''


class Probes:
    def __init__(self, prefix, bind_source: bool):
        self.prefix = prefix            # node -> argv prefix that puts a program where the node is
        self.bind_source = bind_source  # local nodes share the host's addresses: bind the node's own

    @classmethod
    def docker(cls, db):
        return cls(lambda node: ["nsenter", f"--net={db._netns_path(node)}", "--"], bind_source=False)

    @classmethod
    def local(cls, db):
        def prefix(node):
            if not db.cgroup_root:
                return []
            procs = os.path.join(db.cgroup_root, node.id, "cgroup.procs")
            return ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh"]
        return cls(prefix, bind_source=True)

    def _argv(self, node, mode, *args) -> list[str]:
        return self.prefix(node) + [sys.executable, "-c", PROBE, mode, *map(str, args)]

    def _src(self, node) -> str:
        return node.address if self.bind_source else ""

    def run(self, node, mode, *args, timeout: float = 60.0) -> dict:
        proc = subprocess.run(self._argv(node, mode, *args), capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"probe {mode} on {node.id} failed: {proc.stderr.strip()[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    @contextlib.contextmanager
    def server(self, node, mode, *args):
        """A probe server (echo, udp-sink, sink) in the node's namespace; yields a function that
        waits for its result line."""
        proc = subprocess.Popen(self._argv(node, mode, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 20)
            line = proc.stdout.readline() if ready else ""
            if line.strip() != "ready":
                proc.kill()
                raise AssertionError(f"probe {mode} on {node.id} did not start: {line!r} {proc.stderr.read()[-2000:]}")

            def result(timeout: float = 60.0) -> dict:
                out, err = proc.communicate(timeout=timeout)
                if proc.returncode != 0:
                    raise AssertionError(f"probe {mode} on {node.id} failed: {err.strip()[-2000:]}")
                return json.loads(out.strip().splitlines()[-1])
            yield result
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    # -- measurements -----------------------------------------------------------------------------
    def rtt(self, src, dst, port: int, count: int = 20, timeout: float = 10.0) -> dict:
        """Round trips from src to an echo server on dst (runs one for the measurement)."""
        with self.server(dst, "echo", dst.address, port, 30):
            return self.run(src, "rtt", self._src(src), dst.address, port, count, timeout)

    def delivered(self, src, dst, port: int, count: int = 2000, gap_s: float = 0.0005, sent=None) -> float:
        """The share of `count` numbered UDP datagrams from src that dst received; `sent()`
        runs once they are all sent, before the receiver is told to stop counting."""
        with self.server(dst, "udp-sink", dst.address, port, count * gap_s + 10) as result:
            self.run(src, "udp-send", self._src(src), dst.address, port, count, gap_s)
            if sent is not None:
                sent()
            _end(self, src, dst, port)
            return result()["received"] / count

    def throughput(self, src, dst, port: int, seconds: float = 4.0, warmup: float = 1.0) -> float:
        """kbit/s of a bulk TCP transfer from src to dst, measured at dst after a warm-up."""
        with self.server(dst, "sink", dst.address, port, seconds, warmup) as result:
            self.run(src, "blast", self._src(src), dst.address, port, seconds, timeout=seconds + 30)
            return result(timeout=seconds + 30)["kbit_per_s"]


def _end(probes: Probes, src, dst, port: int) -> None:
    """Tell a udp-sink to stop: a few "end" datagrams after everything else has had time to land."""
    script = ("import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
              "src=sys.argv[1]\nif src: s.bind((src,0))\n"
              "time.sleep(float(sys.argv[4]))\n"
              "for _ in range(50):\n"
              "    try: s.sendto(b'end',(sys.argv[2],int(sys.argv[3])))\n"
              "    except OSError: pass\n"
              "    time.sleep(0.02)\n")
    subprocess.run(probes.prefix(src) + [sys.executable, "-c", script, probes._src(src), dst.address, str(port),
                                         "1.5"], check=True, timeout=30)
