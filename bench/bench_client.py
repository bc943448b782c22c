"""How many ops/s the controller's client side can drive before it is the bottleneck.

A trivial, fast fake node (asyncio, raw HTTP/1.1 keep-alive, fixed answers, in its own process
so it does not share our GIL) listens on 127.0.0.1. We measure, for several worker counts:

  client   - the bundled node's RegisterClient.invoke in C threads (HTTP + outcome mapping only)
  runner   - the runner's whole load phase: the generator interpreter, history streamed to
             disk, clients, the status poller and progress, exactly as `splitbrain run` drives
             a cluster

Usage: python bench/bench_client.py [--seconds 5] [--workers 1,10,32]
Loopback only; bounded in time; prints a table. Not a test: figures go into the README.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import socket
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "node_image")]

from chaos.config import RunConfig  # noqa: E402
from chaos.history import Op, read_jsonl  # noqa: E402
from chaos.interfaces import DB, Node, Primaries, StatusProbe  # noqa: E402
from chaos.runner import Runner  # noqa: E402
from systems.raftnode.client import RegisterClient  # noqa: E402
from systems.raftnode.db import StatusFetcher, leader_of  # noqa: E402


# -- the fast fake node --------------------------------------------------------------------------

def _answer(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


READ_REPLY = _answer(b'{"value": 1}')
WRITE_REPLY = _answer(b"{}")


def status_reply(port: int, first_port: int) -> bytes:
    node = f"n{port - first_port + 1}"
    return _answer(json.dumps({"id": node, "role": "leader" if node == "n1" else "follower", "term": 1,
                               "leader": "n1", "commit_index": 0, "last_applied": 0}).encode())


class FastNode(asyncio.Protocol):
    def __init__(self, status: bytes):
        self.buffer = b""
        self.status = status

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        self.buffer += data
        out = []
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                break
            head = self.buffer[:head_end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(self.buffer) < head_end + 4 + length:
                break
            request_line = head.split(b"\r\n", 1)[0]
            self.buffer = self.buffer[head_end + 4 + length:]
            if request_line.startswith(b"GET /status"):
                out.append(self.status)
            elif request_line.startswith(b"GET"):
                out.append(READ_REPLY)
            else:
                out.append(WRITE_REPLY)
        if out:
            self.transport.write(b"".join(out))


def serve(ports: list[int], ready, stop_after: float) -> None:
    async def main():
        loop = asyncio.get_running_loop()
        servers = [await loop.create_server(lambda p=p: FastNode(status_reply(p, ports[0])), "127.0.0.1", p,
                                            backlog=512) for p in ports]
        ready.set()
        await asyncio.sleep(stop_after)  # bounded: the server ends by itself
        for s in servers:
            s.close()
    asyncio.run(main())


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


# -- measurements --------------------------------------------------------------------------------

def bench_client(nodes: list[Node], workers: int, seconds: float) -> float:
    counts = [0] * workers
    stop = threading.Event()

    def work(w: int):
        client = RegisterClient(f"bench-{w}", 3.0).open(nodes, nodes[w % len(nodes)])
        i = 0
        while not stop.is_set():
            i += 1
            f, value = ("read", None) if i % 2 else ("write", i)
            done = client.invoke(Op(process=w, type="invoke", f=f, key="r0", value=value, time=0, node="n1"))
            if done.type == "ok":
                counts[w] += 1
        client.close()

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(workers)]
    start = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=5)
    return sum(counts) / (time.monotonic() - start)


class FixedDB(DB, StatusProbe, Primaries):
    """A DB whose nodes are the fake fast nodes: nothing to set up; the bundled node's client,
    status probe and leader lookup (the fake speaks its API)."""

    name = "fixed"

    def __init__(self, nodes):
        self.nodes = nodes
        self.status = StatusFetcher()

    def setup(self, n):
        return self.nodes

    def teardown(self):
        self.status.close()

    def probe(self, node, timeout):
        return self.status.get(node, timeout)

    def primaries(self, view):
        leader = leader_of(view.fresh_statuses()) if view is not None else None
        return [leader] if leader else []

    def client(self, workload, client_id):
        return RegisterClient(client_id, 3.0)


def bench_runner(nodes: list[Node], workers: int, seconds: float) -> float:
    with tempfile.TemporaryDirectory(prefix="splitbrain-bench-") as store:
        cfg = RunConfig(test_name="bench", nodes=len(nodes), nemesis=[], time_limit=seconds, concurrency=workers,
                        seed=1, provisioner="local", store=store, recovery_timeout=2, final_read_timeout=2,
                        ops_per_key=10**9)
        runner = Runner(cfg, db_factory=lambda c, r: FixedDB(nodes),
                        checker=lambda ops, **kw: {"valid": True, "checkers": {}},
                        render=lambda path: None, out=io.StringIO(), progress_stream=io.StringIO(),
                        progress_tty=False, install_signal_handlers=False)
        runner.execute()
        ops = read_jsonl(runner.run.history_path)
        ok = [op for op in ops if op.type == "ok" and not op.extra.get("final")]
        invokes = [op for op in ops if op.type == "invoke" and not op.extra.get("final")]
        span = (max(op.time for op in ok) - min(op.time for op in invokes)) / 1e9
        return len(ok) / span


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--workers", default="1,10,32")
    args = ap.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    ports = free_ports(3)
    ready = multiprocessing.Event()
    budget = (args.seconds * 2 + 10) * len(worker_counts) + 30
    server = multiprocessing.Process(target=serve, args=(ports, ready, budget), daemon=True)
    server.start()
    try:
        if not ready.wait(10):
            print("the fake node did not start", file=sys.stderr)
            return 1
        nodes = [Node(f"n{i + 1}", f"http://127.0.0.1:{p}", "127.0.0.1", client_port=p) for i, p in enumerate(ports)]
        print(f"client side vs a trivial fake node on loopback, {args.seconds:.0f} s each, "
              f"{os.cpu_count()} CPU(s)")
        print(f"{'workers':>8} {'client ops/s':>14} {'runner ops/s':>14}")
        for w in worker_counts:
            c = bench_client(nodes, w, args.seconds)
            r = bench_runner(nodes, w, args.seconds)
            print(f"{w:>8} {c:>14,.0f} {r:>14,.0f}", flush=True)
    finally:
        server.terminate()
        server.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
