#!/usr/bin/env python3
"""What the bundled node does with each kind of damage to a follower's files (issue 11).

Per trial: a fresh local 3-node cluster (as root, on 127.0.0.x), a burst of acknowledged writes,
then one follower is killed, one of its files damaged as the corrupt fault does it
(chaos.nemesis.disk.corrupt_files), and it is started again. The outcome, read from its exit and
its node log's "start" event:

    refused      it did not start (a fatal error naming the file and offset)
    backwards    it started with a shorter log than it had made durable, and knows it (its hard
                 state's "acked" is above its last log index): it does not vote until caught up
    unnoticed    it started with a shorter log and does not know it (the lost entries were
                 acknowledged after its last "acked" mark): it votes as usual
    intact       it started with its whole log (the damage hit nothing it needed)

    python bench/bench_disk_corruption.py --trials 20
    python bench/bench_disk_corruption.py --trials 10 --cases truncate-newest-log
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import urllib.request
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "node_image")]

from chaos.nemesis.disk import corrupt_files  # noqa: E402
from systems.raftnode.db import RaftnodeLocal, wait_for_leader  # noqa: E402

CASES = {
    "truncate-newest-log": {"mode": "truncate", "file": "NEWEST"},
    "cut-1-byte-newest-log": {"mode": "truncate", "file": "NEWEST", "bytes": 1},  # the last record only
    "bitflip-newest-log": {"mode": "bitflip", "file": "NEWEST", "flips": 1},
    "bitflip-hardstate": {"mode": "bitflip", "file": "hardstate.json", "flips": 1},
    "truncate-hardstate": {"mode": "truncate", "file": "hardstate.json"},
}


def put(url, key):
    request = urllib.request.Request(f"{url}/kv/{key}", data=b'{"value": 1}', method="PUT")
    with urllib.request.urlopen(request, timeout=5) as resp:
        return resp.status == 200


def start_event(path):
    event = None
    with open(path) as f:
        for line in f:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("event") == "start":
                event = doc
    return event


def trial(case: str, seed: int, writes: int) -> str:
    rng = random.Random(seed)
    db = RaftnodeLocal(f"bdc-{os.getpid()}-{seed}", 3, {"snapshot-every": 0}, base_address="127.0.0.91", clock=False)
    db.setup()
    try:
        leader = db.node(wait_for_leader(db.nodes, timeout=30))
        for i in range(writes):
            put(leader.client_url, f"k{seed}-{i}")
        follower = next(n for n in db.nodes if n.id != leader.id)
        time.sleep(rng.uniform(0, 0.4))  # the kill lands at a random distance from the last mark
        durable = db.probe(follower, 2.0)["last_log_index"]  # persisted: nothing is written meanwhile
        db.kill(follower)
        before = start_event(os.path.join(db.log_dir(follower), "node.log"))
        data = db.data_path(follower)
        spec = dict(CASES[case])
        if spec["file"] == "NEWEST":
            spec["file"] = sorted(f for f in os.listdir(data) if f.endswith(".seg"))[-1]
        done = corrupt_files(data, spec, rng)
        with open(os.path.join(data, "hardstate.json"), "rb") as f:
            stored = f.read()
        db.start(follower)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and db.is_running(follower):
            event = start_event(os.path.join(db.log_dir(follower), "node.log"))
            if event is not before and event is not None and event.get("pid") != (before or {}).get("pid"):
                break
            time.sleep(0.05)
        if not db.is_running(follower):
            return "refused", done
        event = start_event(os.path.join(db.log_dir(follower), "node.log"))
        try:
            acked = json.loads(stored).get("acked", 0)
        except ValueError:  # UnicodeDecodeError included: a damaged hard state the node read anyway
            acked = 0
        if event["last_log_index"] >= durable:
            return "intact", done
        return ("backwards" if acked > event["last_log_index"] else "unnoticed"), done
    finally:
        db.teardown()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20, help="trials per case (default 20)")
    p.add_argument("--writes", type=int, default=300, help="acknowledged writes before the kill (default 300)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated (default: {','.join(CASES)})")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("needs root (the local provisioner's cgroups); run as root")
    for case in args.cases.split(","):
        outcomes = Counter()
        for seed in range(1, args.trials + 1):
            outcome, done = trial(case, seed, args.writes)
            outcomes[outcome] += 1
            print(f"  {case} seed {seed}: {outcome} ({done})", file=sys.stderr, flush=True)
        print(f"{case}: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) + f" (of {args.trials})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
