#!/usr/bin/env python3
"""Micro-benchmark of the node's write path before the core: `parse_write_body` calls per second.

Every client write goes through it once on the leader (decode the body, check it, build the
command and the bytes that go into the log and to the followers), so its cost bounds the write
rate of the event loop. Bodies: the benchmark's typical small put (what wrk's put_unique.lua
sends), a put with a session, a cas, a 1 KiB string value and a 16 KiB list value.

    python bench/bench_write_parse.py               # about 15 s
    python bench/bench_write_parse.py --seconds 0.5 --json out.json
    python bench/bench_write_parse.py --node-path /tmp/old   # another checkout's raftnode package
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_PATH = os.path.join(os.path.dirname(HERE), "node_image")
if "--node-path" in sys.argv:  # before the import: compare with another version of the node
    NODE_PATH = sys.argv[sys.argv.index("--node-path") + 1]
sys.path.insert(0, NODE_PATH)

from raftnode.server import parse_write_body  # noqa: E402

BODIES = {
    "small put": ("put", b'{"value": 123456}'),
    "put with session": ("put", b'{"value": "v-42", "client_id": "client-7", "seq": 1234}'),
    "cas": ("cas", b'{"expected": 17, "value": 18}'),
    "1 KiB string": ("put", json.dumps({"value": "x" * 1024}).encode()),
    "16 KiB list": ("put", json.dumps({"value": list(range(3000))}).encode()),
}


def calls_per_second(op: str, body: bytes, seconds: float) -> float:
    """Calls per second of this process's CPU time (not wall time: on a machine shared with
    other work, wall time mostly measures the other work)."""
    calls = 0
    start = time.process_time()
    deadline = start + seconds
    while True:
        for _ in range(200):
            command, problem = parse_write_body(op, "key-1", body)
        calls += 200
        now = time.process_time()
        if now >= deadline:
            break
    if problem is not None:
        raise SystemExit(f"benchmark body refused: {problem}")
    return calls / (now - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="CPU time per measurement (default 0.5)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="measurements per body; the best is reported, which is what a busy machine "
                             "distorts least (default 5)")
    parser.add_argument("--json", default=None, help="write the figures here as JSON")
    parser.add_argument("--node-path", default=NODE_PATH, help="directory holding the raftnode package")
    args = parser.parse_args()
    results = {}
    for name, (op, body) in BODIES.items():
        rate = max(calls_per_second(op, body, args.seconds) for _ in range(args.repeat))
        results[name] = round(rate)
        print(f"{name:>18} ({len(body):>6} bytes): {rate:>10,.0f} calls/s  {1e6 / rate:7.2f} us/call")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
