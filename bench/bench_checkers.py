"""Benchmark: porcupine through our subprocess bridge vs our own Python checkers.

    python bench/bench_checkers.py [--data /work/shared/data/porcupine] [--ops 10000] [--budget 20]

Prints, per suite, the wall-clock time from parsed history to parsed verdict and the peak memory:
- etcd: the 102 Jepsen etcd histories (porcupine: one helper process for all of them);
- kv/*: the porcupine kv histories, key by key (c50-bad with every key, 20 s budget);
- generated: a register history shaped like our workload (5 keys, 10 workers, unique values,
  partitions, >= 5 % info), generated here because no run of ours was recorded yet.
Each measurement runs in a fresh child process, best of --repeat runs; "peak MB" is that child's
peak RSS (for porcupine, the Go helper's), so it includes the interpreter's ~20 MB baseline on the
Python side. The first line is porcupine's own in-process time for the same data (its Go tests,
run now on the same machine), the reference the subprocess path is compared with.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def load_suite(name: str, data: str, n_ops: int):
    from checkers.formats import load_history
    from checkers.generate import register_history
    if name == "etcd":
        with open(os.path.join(data, "expected.csv")) as f:
            files = [r["file"] for r in csv.DictReader(f) if r["file"].startswith("jepsen/")]
        return "register", [(fn, load_history(os.path.join(data, fn))[0]) for fn in files]
    if name.startswith("kv/"):
        return "kv", [(name, load_history(os.path.join(data, name + ".txt"))[0])]
    ops = register_history(2026, n_ops=n_ops, processes=10, keys=5, p_info=0.12, partitions=8,
                           step_ns=2_000_000)
    return "register", [("generated", ops)]


def worker(checker: str, suite: str, data: str, n_ops: int, budget: float, repeat: int) -> dict:
    from checkers import check_linearizable, porcupine
    from checkers.prepare import partition
    model, histories = load_suite(suite, data, n_ops)
    all_keys = suite.startswith("kv/")
    best = float("inf")
    for _attempt in range(repeat):
        verdicts = []
        undecided = 0
        if checker == "porcupine":
            start = time.perf_counter()  # preparing the keys is part of the porcupine path too
            prepared = []
            for name, ops in histories:
                keys, notes = partition(ops, model)
                prepared.append((name, keys, notes["append_mode"]))
            batch = [(name, keys, {}) for name, keys, _ in prepared]
            mode = prepared[0][2]
            answers = porcupine.check_batch(batch, model=model, append_mode=mode,
                                            init="" if mode == "concat" else "null",
                                            key_timeout_s=budget, all_keys=all_keys)
            elapsed = time.perf_counter() - start
            for per_key in answers:
                rs = [a["result"] for a in per_key.values()]
                verdicts.append(False if "illegal" in rs else ("unknown" if "unknown" in rs else True))
            undecided = sum(a["result"] == "unknown" for per_key in answers for a in per_key.values())
        else:
            start = time.perf_counter()
            for _name, ops in histories:
                r = check_linearizable(ops, model=model, checker="python", time_budget_s=budget,
                                       all_keys=all_keys)
                verdicts.append(r["valid"])
                undecided += sum(k["valid"] == "unknown" and not k.get("skipped") for k in r["keys"].values())
            elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        if elapsed > 5:
            break  # slow enough that noise does not matter; do not repeat
    who = resource.RUSAGE_CHILDREN if checker == "porcupine" else resource.RUSAGE_SELF
    peak = resource.getrusage(who).ru_maxrss / 1024
    n = sum(sum(1 for o in ops if o.type == "invoke" and not o.is_nemesis) for _, ops in histories)
    info = sum(1 for _, ops in histories for o in ops if o.type == "info" and not o.is_nemesis)
    return {"suite": suite, "checker": checker, "seconds": best, "peak_mb": peak, "histories": len(histories),
            "ops": n, "info": info, "invalid": sum(v is False for v in verdicts),
            "unknown_histories": sum(v == "unknown" for v in verdicts), "undecided_keys": undecided}


def porcupine_in_process_baseline(pattern: str) -> float | None:
    """Seconds porcupine's own Go tests take for the same data in process (summed per test), as
    the reference our subprocess path is compared with; None when the module source is missing."""
    from checkers import porcupine
    go = porcupine.find_go()
    if go is None:
        return None
    env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="-mod=mod")
    modcache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, env=env).stdout.strip()
    src = os.path.join(modcache, "github.com", "anishathalye", "porcupine@v1.3.1")
    if not os.path.isdir(src):
        return None
    out = subprocess.run([go, "test", "-count=1", "-v", "-run", pattern, "."], cwd=src, env=env,
                         capture_output=True, text=True, timeout=900).stdout
    import re
    times = [float(t) for t in re.findall(r"--- PASS: \S+ \(([0-9.]+)s\)", out)]
    return sum(times) if times else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("SPLITBRAIN_PORCUPINE_DATA", "/work/shared/data/porcupine"))
    ap.add_argument("--ops", type=int, default=10000, help="operations in the generated register history")
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per key for porcupine on kv")
    ap.add_argument("--suites", default="etcd,kv/c01-ok,kv/c01-bad,kv/c10-ok,kv/c10-bad,kv/c50-ok,kv/c50-bad,generated")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs (runs over 5 s are not repeated)")
    ap.add_argument("--no-baseline", action="store_true", help="skip running porcupine's own Go tests")
    ap.add_argument("--worker", nargs=2, metavar=("CHECKER", "SUITE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.data, args.ops, args.budget, args.repeat)))
        return 0
    from checkers import porcupine
    porcupine.ensure_binary()
    if not args.no_baseline:
        runs = [(porcupine_in_process_baseline("TestEtcdJepsen"), porcupine_in_process_baseline("TestKv50ClientsOk$"))
                for _ in range(max(1, args.repeat))]
        etcd = min((r[0] for r in runs if r[0] is not None), default=None)
        c50 = min((r[1] for r in runs if r[1] is not None), default=None)
        print(f"porcupine in process (its own Go tests, same machine now): 102 etcd histories "
              f"{etcd if etcd is not None else float('nan'):.2f} s, kv c50-ok "
              f"{c50 if c50 is not None else float('nan'):.2f} s")
    print(f"{'suite':<12} {'checker':<10} {'hist':>4} {'ops':>6} {'info':>5} {'seconds':>9} {'peak MB':>8} "
          f"{'invalid':>7} {'undecided keys':>14}")
    for suite in args.suites.split(","):
        for checker in ("porcupine", "python"):
            proc = subprocess.run([sys.executable, __file__, "--data", args.data, "--ops", str(args.ops),
                                   "--budget", str(args.budget), "--repeat", str(args.repeat),
                                   "--worker", checker, suite],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{suite:<12} {checker:<10} failed: {proc.stderr.strip()[-300:]}")
                continue
            r = json.loads(proc.stdout)
            print(f"{suite:<12} {checker:<10} {r['histories']:>4} {r['ops']:>6} {r['info']:>5} {r['seconds']:>9.3f} "
                  f"{r['peak_mb']:>8.1f} {r['invalid']:>7} {r['undecided_keys']:>14}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
