"""Benchmark: our EDN reader (checkers.edn) vs the edn_format package, on real Jepsen data.

    pip install edn-format   # only for this comparison; splitbrain does not depend on it
    python bench/bench_edn.py [--data /work/shared/data/porcupine] [--repeat 5]

Prints, per porcupine kv history (EDN, one map per line) and for that data repeated 30 times
(8.5 MB, about 100k operations, the size of a long Jepsen run), the best-of-repeat time to read
every form; then the time to read the values of every Jepsen etcd log line one by one, as the log
importer does. Both readers get the same text and must produce the same number of forms.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from checkers import edn  # noqa: E402

JEPSEN_LINE = re.compile(r"jepsen\.util - (\S+)\s+(:[\w-]+)\s+(:[\w-]+)\s*(.*)$")


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/porcupine")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    try:
        import edn_format
    except ImportError:
        print("edn_format is not installed (pip install edn-format): nothing to compare with", file=sys.stderr)
        return 2
    edn_format.loads_all("{:a 1}")  # builds PLY's tables once, outside the measurement
    texts = {os.path.basename(p): open(p, encoding="utf-8").read()
             for p in sorted(glob.glob(os.path.join(args.data, "kv", "*.txt")))}
    if not texts:
        print(f"no kv histories under {args.data}", file=sys.stderr)
        return 2
    texts["c50-ok.txt x30"] = texts["c50-ok.txt"] * 30
    print(f"{'history':16s} {'bytes':>9s} {'ops':>7s} {'ours':>10s} {'edn_format':>11s} {'ratio':>6s}")
    for name, text in texts.items():
        repeat = 1 if len(text) > 1_000_000 else args.repeat
        n_ours = sum(1 for _ in edn.iter_forms(text))
        n_theirs = len(edn_format.loads_all(text))
        assert n_ours == n_theirs, (name, n_ours, n_theirs)
        ours = best(lambda text=text: list(edn.iter_forms(text)), repeat)
        theirs = best(lambda text=text: edn_format.loads_all(text), repeat)
        print(f"{name:16s} {len(text):9d} {n_ours:7d} {ours * 1000:8.1f}ms {theirs * 1000:9.1f}ms "
              f"{theirs / ours:5.1f}x")
    values = []
    for path in sorted(glob.glob(os.path.join(args.data, "jepsen", "*.log"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                m = JEPSEN_LINE.search(line)
                if m and m.group(4).strip():
                    values.append(m.group(4).strip())
    ours = best(lambda: [edn.loads(v) for v in values], args.repeat)
    theirs = best(lambda: [edn_format.loads(v) for v in values], 1)
    print(f"{len(values)} Jepsen log values one by one: ours {ours * 1000:.1f} ms, "
          f"edn_format {theirs * 1000:.1f} ms ({theirs / ours:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
