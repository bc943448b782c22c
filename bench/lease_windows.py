"""How long a slowed leader outlives its successor, per fault cycle of a stored run.

    python bench/lease_windows.py store/clock-skew-leader/RUN_DIR [RUN_DIR ...]

For every `clock-skew` op of the controller log that put one node on a rate (as
scenarios/clock-skew-leader.yaml does to the leader), prints how long after it the other nodes
elected a new leader and when the slowed node stepped down on check-quorum. The slowed node's log
timestamps come from its own (slowed) wall clock, so they are turned back into real time: its
clock was real at the op (a clock-reset puts the wall clock back) and ran at the rate after it.
Between the two moments the old leader still trusts its lease: that is the window in which the
seeded bug lease-read answers stale reads.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import glob
import json
import os
import re

RATE_OP = re.compile(r"^(\S+) .*nemesis clock-skew \{.*'mode': 'rate'.*\} -> (\{.*\})$")
# a later cycle starts within this many seconds; a step-down later than that belongs to it
MAX_WINDOW_S = 9.0


def rate_ops(run_dir: str) -> list[tuple[float, str, float]]:
    """(real time, node, rate) of each clock-skew op that slowed exactly one node."""
    ops = []
    for line in open(os.path.join(run_dir, "controller.log")):
        m = RATE_OP.match(line.strip())
        if not m:
            continue
        nodes = ast.literal_eval(m.group(2)).get("nodes", {})
        if len(nodes) != 1:
            continue
        (node, described), = nodes.items()
        rate = float(described.split(" x")[1].split()[0])
        at = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
        ops.append((at, node, rate))
    return ops


def node_events(run_dir: str) -> list[dict]:
    events = []
    for path in glob.glob(os.path.join(run_dir, "nodes", "*", "node.log")):
        for line in open(path):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") in ("election_won", "step_down"):
                events.append(event)
    return events


def windows(run_dir: str) -> list[tuple[str, float | None, float | None]]:
    """(slowed node, new leader elected s after the op, old leader stepped down s after the op)."""
    events = node_events(run_dir)
    out = []
    for at, slow, rate in rate_ops(run_dir):
        elected = [e["ts"] - at for e in events
                   if e["event"] == "election_won" and e["node"] != slow and 0 < e["ts"] - at < MAX_WINDOW_S]
        deposed = [(e["ts"] - at) / rate for e in events
                   if e["event"] == "step_down" and e.get("reason") == "check_quorum" and e["node"] == slow
                   and 0 < (e["ts"] - at) / rate < MAX_WINDOW_S]
        out.append((slow, min(elected, default=None), min(deposed, default=None)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders of the store")
    args = parser.parse_args()
    for run_dir in args.runs:
        if not os.path.isfile(os.path.join(run_dir, "controller.log")):
            parser.error(f"{run_dir}: not a run folder (no controller.log)")
        cells = []
        for slow, elected, deposed in windows(run_dir):
            def fmt(x):
                return "-" if x is None else f"+{x:.2f} s"
            cells.append(f"{slow}: new leader {fmt(elected)}, old one deposed {fmt(deposed)}")
        print(f"{os.path.basename(os.path.normpath(run_dir))}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
