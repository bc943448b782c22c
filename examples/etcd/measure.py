"""How often a scenario comes out invalid on etcd, per read mode, over a range of seeds.

    python examples/etcd/measure.py                      # follower-isolation, both read modes, seeds 1-10
    python examples/etcd/measure.py --modes linearizable --scenario examples/etcd/leader-faults.yaml --seeds 5

Each run is `splitbrain run --db etcd --scenario FILE --node-option read-mode=MODE --seed N` (the
command is printed); the table gives its verdict, the ok operations and the exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from chaos.history import read_jsonl

HERE = os.path.dirname(os.path.abspath(__file__))


def run_once(scenario: str, mode: str, seed: int, store: str, subnet: str) -> dict:
    argv = [sys.executable, "-m", "chaos.cli", "run", "--db", "etcd", "--scenario", scenario,
            "--node-option", f"read-mode={mode}", "--seed", str(seed), "--store", store, "--subnet", subnet]
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    run_dir = os.path.realpath(os.path.join(store, "latest"))
    results, ok = {}, 0
    try:
        with open(os.path.join(run_dir, "results.json")) as f:
            results = json.load(f)
        ok = sum(1 for op in read_jsonl(os.path.join(run_dir, "history.jsonl"))
                 if op.type == "ok" and not op.is_nemesis)
    except (OSError, ValueError):
        pass
    return {"mode": mode, "seed": seed, "exit": proc.returncode, "valid": results.get("valid"), "ok": ok,
            "seconds": round(time.monotonic() - started, 1), "run": run_dir,
            "command": " ".join(["splitbrain", "run"] + argv[4:]), "stderr": proc.stderr[-2000:]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default=os.path.join(HERE, "follower-isolation.yaml"))
    p.add_argument("--modes", default="serializable,linearizable", help="comma-separated read modes")
    p.add_argument("--seeds", type=int, default=10, help="seeds 1..N (default 10)")
    p.add_argument("--store", help="the run store (default: a fresh temporary folder)")
    p.add_argument("--subnet", default="10.77.244.0/24")
    args = p.parse_args(argv)
    store = args.store or tempfile.mkdtemp(prefix="splitbrain-etcd-measure-")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    print(f"scenario {args.scenario}, store {store}", flush=True)
    tally: dict[str, dict[str, int]] = {m: {} for m in modes}
    for mode in modes:
        for seed in range(1, args.seeds + 1):
            r = run_once(args.scenario, mode, seed, store, args.subnet)
            verdict = {True: "valid", False: "invalid"}.get(r["valid"], "unknown")
            tally[mode][verdict] = tally[mode].get(verdict, 0) + 1
            print(f"{mode:13} seed {seed:3}  {verdict:8} exit {r['exit']:3}  ok {r['ok']:6}  {r['seconds']:5.1f} s  "
                  f"{r['command']}", flush=True)
            if r["exit"] not in (0, 1):
                print(r["stderr"], file=sys.stderr)
    for mode in modes:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(tally[mode].items()))
        print(f"{mode}: {counts} (of {args.seeds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
