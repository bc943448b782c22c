"""python -m raftnode.sim --seed N [--nodes 5] [--seconds 30] [--bug NAME] [--quiet]"""

from __future__ import annotations

import argparse
import sys
import time

from ..core import KNOWN_BUGS
from .runner import run_seed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raftnode.sim",
                                     description="Replay one seed of the deterministic Raft simulator.")
    parser.add_argument("--seed", type=int, required=True, help="the seed to run")
    parser.add_argument("--nodes", type=int, default=None, help="cluster size 3-7 (default: from the seed)")
    parser.add_argument("--seconds", type=float, default=30.0, help="simulated seconds of faults (default 30)")
    parser.add_argument("--bug", choices=sorted(KNOWN_BUGS), default=None, help="a seeded bug to switch on")
    parser.add_argument("--seeds", type=int, default=1, help="run this many consecutive seeds from --seed")
    parser.add_argument("--quiet", action="store_true", help="print only the summary, not the trace")
    args = parser.parse_args(argv)
    if args.nodes is not None and not 3 <= args.nodes <= 9:
        parser.error(f"--nodes must be between 3 and 9, got {args.nodes}")
    if args.seconds < 5:
        parser.error(f"--seconds must be at least 5 (simulated), got {args.seconds:g}")
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    failed = 0
    for seed in range(args.seed, args.seed + args.seeds):
        started = time.perf_counter()
        result = run_seed(seed, nodes=args.nodes, seconds=args.seconds, bug=args.bug,
                          trace=not args.quiet and args.seeds == 1)
        for line in result.trace:
            print(line)
        print(result.summary())
        print(f"  wall time {time.perf_counter() - started:.2f}s; replay: {result.command()}")
        failed += not result.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
