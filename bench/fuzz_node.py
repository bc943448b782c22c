#!/usr/bin/env python3
"""Fuzz a local three-node cluster for N minutes (issue 9): schemathesis cases from
docs/openapi.yaml (positive and negative), raw hostile HTTP requests, and hostile peer input, in
rotating batches; after every batch every node must be alive and the cluster must serve a write
and a linearizable read. Prints the figures (requests sent, answers by status, undocumented 5xx,
documented 503/504, conformance failures, nodes alive) and every finding; exits 1 on a finding.

    python bench/fuzz_node.py --minutes 10
    python bench/fuzz_node.py --minutes 1 --seed 7 --json fuzz.json

Only 127.0.0.1 is used; the cluster's processes are killed by pid on exit. The bounded version
that CI runs is tests/test_node_api_fuzz.py and tests/test_node_peer_fuzz.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "node_image"), os.path.join(ROOT, "tests")]

import node_fuzz  # noqa: E402
from raftnode.localcluster import LocalCluster  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to fuzz (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the raw and peer batches (default: random)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    schema = node_fuzz.load_schema()
    stats = node_fuzz.FuzzStats()
    findings: list[str] = []
    started = time.monotonic()
    deadline = started + args.minutes * 60
    print(f"fuzzing for {args.minutes:g} min, seed {seed}", flush=True)
    with LocalCluster(3, spare_members=1, extra_args=("--request-timeout", "5000")) as cluster:
        cluster.wait_for_leader()
        batch = 0
        while time.monotonic() < deadline and not findings:
            kind = ("positive", "negative", "raw", "peer")[batch % 4]
            if kind in ("positive", "negative"):
                node_fuzz.api_batch(cluster, schema, kind, examples=200, stats=stats, seed=rng.randrange(2**32))
            elif kind == "raw":
                node_fuzz.raw_batch(cluster, rng, count=300, stats=stats)
            else:
                node_fuzz.peer_batch(cluster, rng, count=60, stats=stats)
            try:
                node_fuzz.check_cluster_serves(cluster, f"batch {batch} ({kind})")
                stats.health_checks += 1
            except (AssertionError, TimeoutError) as exc:
                findings.append(f"batch {batch} ({kind}): {exc}")
            findings += [f"5xx: {e}" for e in stats.server_errors]
            findings += [f"not as documented: {c}" for c in stats.conformance]
            stats.server_errors.clear()
            stats.conformance.clear()
            batch += 1
            if batch % 8 == 0:
                print(f"  {time.monotonic() - started:6.0f} s  {stats.summary()}", flush=True)
        alive = {n: cluster.running(n) for n in cluster.ids}
    figures = dict(stats.summary(), seed=seed, minutes=round((time.monotonic() - started) / 60, 2),
                   nodes_alive=alive, findings=findings)
    figures["server_errors"] = sum(1 for f in findings if f.startswith("5xx"))
    figures["conformance_failures"] = sum(1 for f in findings if f.startswith("not as documented"))
    print(json.dumps(figures, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    return 1 if findings or not all(alive.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
