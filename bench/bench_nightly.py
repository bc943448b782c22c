"""Nightly matrix throughput on the embedded Dask cluster: runs per hour at 1, 2, 3 runs at once.

    python bench/bench_nightly.py                                  # the shipped matrix, as it is
    python bench/bench_nightly.py --runs 6 --time-limit 20 --provisioner local --concurrency 1,2,3

A bounded subset takes the matrix's first --runs runs (entries expanded by their seeds) and
overrides their time limit. Prints, per concurrency, wall time, runs per hour, the verdicts, the
machine's CPU use during the matrix (from /proc/stat) and the load average, which say what
limits it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def subset(matrix: str, runs: int | None, time_limit: float | None, folder: str) -> str:
    with open(matrix) as f:
        data = yaml.safe_load(f)
    base = os.path.dirname(os.path.abspath(matrix))
    entries = []
    for entry in data["runs"]:
        for seed in entry.get("seeds", [None]):
            one = {k: v for k, v in entry.items() if k != "seeds"}
            if "scenario" in one and not os.path.isabs(one["scenario"]):
                one["scenario"] = os.path.join(base, one["scenario"])
            if seed is not None:
                one["seeds"] = [seed]
            entries.append(one)
    if runs:
        entries = entries[:runs]
    data["runs"] = entries
    data.pop("time_budget", None)
    if time_limit:
        data.setdefault("defaults", {})["time_limit"] = time_limit
    path = os.path.join(folder, "matrix.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", default=os.path.join(ROOT, "scenarios", "nightly-matrix.yaml"))
    parser.add_argument("--runs", type=int, help="the first N runs only")
    parser.add_argument("--time-limit", type=float, help="override every run's time limit (s)")
    parser.add_argument("--provisioner", help="override every run's provisioner")
    parser.add_argument("--concurrency", default="1,2,3")
    args = parser.parse_args()
    rows = []
    for c in [int(x) for x in args.concurrency.split(",")]:
        folder = tempfile.mkdtemp(prefix=f"bench-nightly-{c}-")
        path = subset(args.matrix, args.runs, args.time_limit, folder)
        argv = [sys.executable, "-m", "chaos.cli", "nightly", path, "--store", os.path.join(folder, "store"),
                "--concurrency", str(c)]
        if args.provisioner:
            argv += ["--provisioner", args.provisioner]
        busy0, total0 = cpu_busy()
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        wall = time.monotonic() - started
        busy1, total1 = cpu_busy()
        summary = [line.strip() for line in proc.stdout.splitlines() if line.startswith("  ") and
                   line.split()[0] in ("valid", "INVALID", "unknown", "CRASHED", "skipped")]
        count = len(summary)
        rows.append((c, count, wall, 3600 * count / wall, 100 * (busy1 - busy0) / max(1, total1 - total0),
                     os.getloadavg()[0], summary))
        print(f"concurrency {c}: {count} runs in {wall:.0f} s = {3600 * count / wall:.0f} runs/h, "
              f"CPU busy {rows[-1][4]:.0f} %, load {rows[-1][5]:.1f}, exit {proc.returncode}", flush=True)
        for line in summary:
            print(f"    {line}")
    print("\n| runs at once | runs | wall | runs/hour | CPU busy | load (1 min) |\n|---|---|---|---|---|---|")
    for c, count, wall, rate, cpu, load, _ in rows:
        print(f"| {c} | {count} | {wall:.0f} s | {rate:.0f} | {cpu:.0f} % | {load:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
