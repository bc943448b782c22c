#!/usr/bin/env python3
"""Membership changes of real raftnode processes on loopback (issue 12), timed:

1. Learner catch-up: a 3-node cluster holds K keys (values of B bytes, so a state of stated size
   in MiB); a fourth node starts with --join and is added (POST /cluster/learners); the time to a
   caught-up learner is until the leader's GET /cluster says caught_up for it (the thesis's rounds,
   the last shorter than an election timeout), and to a successful POST /cluster/promote. With
   compaction on (--snapshot-every 1000: the learner gets a snapshot) and off (0: the whole log),
   with and without a write load (one writer thread, PUTs of fresh keys, during the catch-up).
2. Leadership transfer: from POST /cluster/transfer-leader to its 200 answer, and to the first
   write acknowledged by the new leader (N trials, between voters of a 3-node cluster).
3. Convergence after a change: removing the leader (POST /cluster/remove of itself), the time until
   the rest agree on one leader that serves a write; and after adding a voter, until a write.

Bounded: every wait has a timeout; only 127.0.0.1 is used; every process started is killed by its
pid (LocalCluster); temporary directories are removed.

    python bench/bench_membership.py                     # 10,000 keys of 100 B, 5 transfer trials
    python bench/bench_membership.py --keys 2000 --value-bytes 50 --trials 3    # quicker
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "node_image"))

from raftnode.localcluster import LocalCluster  # noqa: E402

ELECTION = "150-300"


def fill(cluster: LocalCluster, keys: int, value_bytes: int, threads: int = 8) -> None:
    """K keys through the leader, a few writers at once (keep-alive would be faster; this is set-up)."""
    leader = cluster.wait_for_leader()
    value = "v" * value_bytes
    errors = []

    def writer(start):
        for i in range(start, keys, threads):
            code = cluster.request(leader, "PUT", f"/kv/fill{i}", {"value": value})[0]
            if code != 200:
                errors.append(code)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise RuntimeError(f"{len(errors)} fill writes were not acknowledged: {errors[:5]}")


class Load:
    """One writer of fresh keys through whoever leads, while it runs."""

    def __init__(self, cluster: LocalCluster):
        self.cluster, self.stop, self.acked = cluster, threading.Event(), 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i, leader = 0, None
        while not self.stop.is_set():
            leader = leader or self.cluster.current_leader()
            try:
                if leader and self.cluster.request(leader, "PUT", f"/kv/load{i}", {"value": i}, timeout=2)[0] == 200:
                    self.acked += 1
                    i += 1
                    continue
            except OSError:
                pass
            leader = None
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def learner_caught_up(cluster: LocalCluster, node: str) -> bool:
    code, body = cluster.admin("/cluster", timeout=2)
    return code == 200 and bool(((body or {}).get("progress") or {}).get(node, {}).get("caught_up"))


def catch_up(keys: int, value_bytes: int, snapshot_every: int, load: bool) -> dict:
    with LocalCluster(3, election_timeout=ELECTION, extra_args=("--snapshot-every", str(snapshot_every))) as c:
        fill(c, keys, value_bytes)
        leader = c.wait_for_leader()
        disk = c.status(leader)["disk_bytes"]
        c.start_joining("n4")
        c.wait_until(lambda: c.status("n4"), 10, what="n4 answering")
        with Load(c) if load else _Nothing() as writer:
            t0 = time.monotonic()
            code, body = c.add_learner("n4")
            if code != 200:
                raise RuntimeError(f"add learner: {code} {body}")
            added = time.monotonic()
            c.wait_until(lambda: learner_caught_up(c, "n4"), 120, interval=0.02, what="n4 caught up")
            caught = time.monotonic()
            code, body = c.admin("/cluster/promote", {"id": "n4"}, timeout=60)
            promoted = time.monotonic()
            if code != 200:
                raise RuntimeError(f"promote: {code} {body}")
            acked = writer.acked if load else 0
        status = c.status("n4")
        return {"keys": keys, "state_mib": round(disk / 2**20, 2), "snapshot_every": snapshot_every, "load": load,
                "add_s": round(added - t0, 3), "caught_up_s": round(caught - t0, 3),
                "promoted_s": round(promoted - t0, 3), "learner_snapshot_index": status["snapshot_index"],
                "writes_during": acked}


class _Nothing:
    acked = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def write_via(cluster: LocalCluster, node: str, key: str, timeout: float = 10.0) -> float:
    """Seconds until a write through `node` is acknowledged (it must lead)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        try:
            if cluster.request(node, "PUT", f"/kv/{key}", {"value": 1}, timeout=2)[0] == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.002)
    raise TimeoutError(f"no write through {node} within {timeout} s")


def transfers(trials: int) -> dict:
    answered, serving = [], []
    with LocalCluster(3, election_timeout=ELECTION) as c:
        for trial in range(trials):
            leader = c.wait_for_leader()
            write_via(c, leader, f"warm{trial}")
            to = sorted(n for n in c.ids if n != leader)[trial % 2]
            t0 = time.monotonic()
            code, body, _ = c.request(leader, "POST", "/cluster/transfer-leader", {"to": to}, timeout=10)
            t1 = time.monotonic()
            if code != 200:
                raise RuntimeError(f"transfer to {to}: {code} {body}")
            write_via(c, to, f"after-transfer{trial}")
            t2 = time.monotonic()
            answered.append(t1 - t0)
            serving.append(t2 - t0)
            time.sleep(0.3)
    return {"trials": trials, "answered_ms": _ms(answered), "new_leader_writes_ms": _ms(serving)}


def _ms(values: list[float]) -> dict:
    values = sorted(values)
    return {"median": round(statistics.median(values) * 1000, 1), "max": round(values[-1] * 1000, 1)}


def convergence(trials: int) -> dict:
    removed_leader, added_voter = [], []
    for trial in range(trials):
        with LocalCluster(3, election_timeout=ELECTION) as c:
            code, body = c.add_learner("n4")
            t0 = time.monotonic()
            code, body = c.admin("/cluster/promote", {"id": "n4"}, timeout=30)
            if code != 200:
                raise RuntimeError(f"promote: {code} {body}")
            write_via(c, c.current_leader(), f"after-add{trial}")
            added_voter.append(time.monotonic() - t0)
            leader = c.wait_for_leader()
            rest = [n for n in c.ids if n != leader]
            t0 = time.monotonic()
            code, _, _ = c.request(leader, "POST", "/cluster/remove", {"id": leader}, timeout=10)
            new = c.wait_for_leader(15, among=rest)
            write_via(c, new, f"after-remove{trial}")
            removed_leader.append(time.monotonic() - t0)
    return {"trials": trials, "remove_leader_to_write_ms": _ms(removed_leader),
            "promote_to_write_ms": _ms(added_voter)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=10000)
    p.add_argument("--value-bytes", type=int, default=100)
    p.add_argument("--trials", type=int, default=5)
    args = p.parse_args()
    print(f"learner catch-up, {args.keys:,} keys of {args.value_bytes} B (election timeout {ELECTION} ms):")
    print(f"{'compaction':>12} {'load':>5} {'state MiB':>9} {'caught up s':>11} {'promoted s':>10} "
          f"{'learner snapshot':>16} {'writes meanwhile':>16}")
    for snapshot_every in (1000, 0):
        for load in (False, True):
            r = catch_up(args.keys, args.value_bytes, snapshot_every, load)
            label = f"every {snapshot_every}" if snapshot_every else "off"
            print(f"{label:>12} {'yes' if load else 'no':>5} {r['state_mib']:>9} {r['caught_up_s']:>11} "
                  f"{r['promoted_s']:>10} {r['learner_snapshot_index']:>16} {r['writes_during']:>16}", flush=True)
    t = transfers(args.trials)
    print(f"leadership transfer, {t['trials']} trials: answered in {t['answered_ms']['median']} ms median "
          f"({t['answered_ms']['max']} max), new leader's first write {t['new_leader_writes_ms']['median']} ms "
          f"median ({t['new_leader_writes_ms']['max']} max)", flush=True)
    c = convergence(max(1, args.trials // 2 + 1))
    print(f"convergence, {c['trials']} trials: leader removed -> a write by the next leader "
          f"{c['remove_leader_to_write_ms']['median']} ms median ({c['remove_leader_to_write_ms']['max']} max); "
          f"promote -> a write {c['promote_to_write_ms']['median']} ms median ({c['promote_to_write_ms']['max']} max)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
