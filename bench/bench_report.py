"""Benchmark of the HTML reports: render time and page size for 10k and 100k operations, and
the time headless Chromium takes to load the page (navigation start to the end of the load event).

    python bench/bench_report.py                    # 10k and 100k ops, with the browser if present
    python bench/bench_report.py --ops 10000 250000 --repeat 3 --no-browser

Runs are synthetic (tests/fixtures/run_factory.py): a 5-node cluster with a mixed fault schedule,
10 clients, register workload, one injected stale read, in exactly the formats of a real run.
Prints figures; asserts nothing (speed is judged here, never in tests). "render s" is wall-clock
time, "cpu s" the process's CPU time (less sensitive to a busy machine).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from reports import render_index, render_run  # noqa: E402
from reports.browser import find_chromium  # noqa: E402
from tests.fixtures.run_factory import build_run  # noqa: E402


def file_size(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, nargs="+", default=[10_000, 100_000], help="operations per run")
    ap.add_argument("--repeat", type=int, default=3, help="renders per size (the median is printed)")
    ap.add_argument("--no-browser", action="store_true", help="skip the Chromium load-time measurement")
    ap.add_argument("--index-runs", type=int, default=20, help="runs in the store for the index timing")
    args = ap.parse_args()

    browser = None
    if not args.no_browser:
        _, _, reason = find_chromium()
        if reason:
            print(f"(no browser figures: {reason})")
        else:
            browser = True

    tmp = tempfile.mkdtemp(prefix="splitbrain-bench-report-")
    try:
        print(f"{'ops':>8} {'history':>9} {'build s':>8} {'render s':>9} {'cpu s':>7} {'page KB':>8} {'load ms':>8}")
        results = []
        for n in args.ops:
            t = time.monotonic()
            run = build_run(tmp, test=f"bench-{n}", ops=n, seed=7, stale_read_key=True)
            built = time.monotonic() - t
            times, cpu = [], []
            for _ in range(max(1, args.repeat)):
                t, c = time.monotonic(), time.process_time()
                page = render_run(run)
                times.append(time.monotonic() - t)
                cpu.append(time.process_time() - c)
            load = None
            if browser:
                from reports.browser import chromium, console_errors, load_time_ms
                with chromium() as driver:
                    loads = []
                    for _ in range(3):
                        driver.get(f"file://{page}")
                        loads.append(load_time_ms(driver))
                    errors = console_errors(driver)
                    if errors:
                        print(f"  console errors: {errors}")
                    load = statistics.median(loads)
            hist = file_size(os.path.join(run, "history.jsonl"))
            results.append((n, hist, built, statistics.median(times), file_size(page), load))
            print(f"{n:>8,} {hist / 1e6:>7.1f}MB {built:>8.2f} {statistics.median(times):>9.2f} "
                  f"{statistics.median(cpu):>7.2f} "
                  f"{file_size(page) / 1024:>8.0f} {'' if load is None else f'{load:.0f}':>8}", flush=True)

        # The index over a store of many runs: summaries are cached, so a re-render is cheap.
        store = os.path.join(tmp, "index-store")
        for i in range(args.index_runs):
            build_run(store, test=f"scenario-{i % 4}", timestamp=f"202611{1 + i // 4:02d}T0{i % 4}0000",
                      ops=2000, seed=i, stale_read_key=(i % 5 == 0))
        t = time.monotonic()
        render_index(store)
        first = time.monotonic() - t
        t = time.monotonic()
        render_index(store)
        again = time.monotonic() - t
        print(f"index of {args.index_runs} runs of 2,000 ops: {first:.2f} s with every report rendered, "
              f"{again:.3f} s re-rendered from cached summaries")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
