"""What the generator interpreter costs: ops/s through chaos.generator.run against the runner's
hand-written load loop, with the same workload, the history streamed to disk in both.

  trivial   the worker answers ok at once (no I/O): the framework's own cost per operation
            interpreter: run(register ops) -> HistoryWriter      runner: Runner's load phase
  http      bench_client's fast fake node on loopback and the workload's RegisterClient

Usage: python bench/bench_generator.py [--seconds 5] [--workers 1,10,32] [--modes trivial,http]
          [--rounds 3]
Each cell is the median of --rounds alternating runs (the machine is shared: single runs vary by
2x). Loopback only; bounded in time; prints a table. Not a test: figures go into the README.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "node_image"), os.path.join(ROOT, "bench")]

from chaos.generator import Worker, WorkerFactory, run, time_limit  # noqa: E402
from chaos.history import OK, HistoryWriter, Op, read_jsonl  # noqa: E402
from workloads.register import register_generator  # noqa: E402


def register_client_class():
    """The workload's HTTP register client, wherever this checkout keeps it."""
    try:
        from workloads.register import RegisterClient
    except ImportError:
        from systems.raftnode.client import RegisterClient
    return RegisterClient


# -- workers ---------------------------------------------------------------------------------------

class TrivialWorker(Worker):
    def invoke(self, op: Op) -> Op:
        return Op(process=op.process, type=OK, f=op.f, key=op.key, value=op.value)


class TrivialFactory(WorkerFactory):
    def open(self, thread, process):
        return TrivialWorker()


class ClientWorker(Worker):
    def __init__(self, client):
        self.client = client

    def invoke(self, op: Op) -> Op:
        return self.client.invoke(op)

    def close(self) -> None:
        self.client.close()


class HttpFactory(WorkerFactory):
    def __init__(self, nodes):
        self.nodes = nodes
        self.client_class = register_client_class()

    def open(self, thread, process):
        node = self.nodes[thread % len(self.nodes)]
        return ClientWorker(self.client_class(f"bench-{process}", 3.0).open(self.nodes, node))


def ok_rate(ops: list[Op]) -> float:
    ok = [op for op in ops if op.type == OK and not op.extra.get("final")]
    invokes = [op for op in ops if op.type == "invoke" and not op.extra.get("final")]
    span = (max(op.time for op in ok) - min(op.time for op in invokes)) / 1e9
    return len(ok) / span


def bench_interpreter(factory: WorkerFactory, workers: int, seconds: float) -> float:
    cfg = SimpleNamespace(keys=5, ops_per_key=10**9, rate=None)
    with tempfile.TemporaryDirectory(prefix="splitbrain-bench-") as tmp:
        path = os.path.join(tmp, "history.jsonl")
        with HistoryWriter(path) as history:
            run(time_limit(seconds, register_generator(cfg)), concurrency=workers, workers=factory,
                record=history.append, seed=1)
        return ok_rate(read_jsonl(path))


# -- the runner's load loop with a trivial client ----------------------------------------------------

def bench_runner_trivial(nodes, workers: int, seconds: float) -> float:
    from bench_client import FixedDB

    from chaos.config import RunConfig
    from chaos.runner import Runner
    from workloads.register import RegisterWorkload

    class TrivialClient:
        def open(self, nodes, node):
            return self

        def invoke(self, op):
            return Op(process=op.process, type=OK, f=op.f, key=op.key, value=op.value,
                      time=time.monotonic_ns(), extra=dict(op.extra))

        def close(self):
            pass

    class TrivialWorkload(RegisterWorkload):
        def client(self, *_):  # (client_id) before the DB boundary moved, (db, client_id) after
            return TrivialClient()

    with tempfile.TemporaryDirectory(prefix="splitbrain-bench-") as store:
        cfg = RunConfig(test_name="bench", nodes=len(nodes), nemesis=[], time_limit=seconds, concurrency=workers,
                        seed=1, provisioner="local", store=store, recovery_timeout=2, final_read_timeout=2,
                        ops_per_key=10**9)
        runner = Runner(cfg, db_factory=lambda c, r: FixedDB(nodes), workload=TrivialWorkload(cfg),
                        checker=lambda ops, **kw: {"valid": True, "checkers": {}},
                        render=lambda path: None, out=io.StringIO(), progress_stream=io.StringIO(),
                        progress_tty=False, install_signal_handlers=False)
        runner.execute()
        return ok_rate(read_jsonl(runner.run.history_path))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--workers", default="1,10,32")
    ap.add_argument("--modes", default="trivial,http")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    modes = args.modes.split(",")
    unknown = [m for m in modes if m not in ("trivial", "http")]
    if unknown:
        print(f"unknown mode {unknown[0]!r} (valid: trivial, http)", file=sys.stderr)
        return 2
    from bench_client import bench_runner, free_ports, serve

    from chaos.interfaces import Node
    ports = free_ports(3)
    ready = multiprocessing.Event()
    budget = (args.seconds * 2 + 10) * 2 * args.rounds * len(worker_counts) * len(modes) + 30
    server = multiprocessing.Process(target=serve, args=(ports, ready, budget), daemon=True)
    server.start()
    try:
        if not ready.wait(10):
            print("the fake node did not start", file=sys.stderr)
            return 1
        nodes = [Node(f"n{i + 1}", f"http://127.0.0.1:{p}", "127.0.0.1", client_port=p) for i, p in enumerate(ports)]
        print(f"ok ops/s, median of {args.rounds} x {args.seconds:g} s, {os.cpu_count()} CPU(s), "
              f"load {os.getloadavg()[0]:.1f}")
        print(f"{'mode':>8} {'workers':>8} {'runner':>10} {'interpreter':>12} {'ratio':>7}")
        for mode in modes:
            for w in worker_counts:
                runner, interpreter = [], []
                for _ in range(args.rounds):
                    if mode == "trivial":
                        runner.append(bench_runner_trivial(nodes, w, args.seconds))
                        interpreter.append(bench_interpreter(TrivialFactory(), w, args.seconds))
                    else:
                        runner.append(bench_runner(nodes, w, args.seconds))
                        interpreter.append(bench_interpreter(HttpFactory(nodes), w, args.seconds))
                r, i = statistics.median(runner), statistics.median(interpreter)
                print(f"{mode:>8} {w:>8} {r:>10,.0f} {i:>12,.0f} {i / r:>7.2f}", flush=True)
    finally:
        server.terminate()
        server.join(5)
    print(f"load at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
