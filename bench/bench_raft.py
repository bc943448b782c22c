#!/usr/bin/env python3
"""Benchmark of the raftnode cluster on loopback, side by side with PySyncObj.

What it measures (issue 2):

1. Committed writes/s and p50/p99 latency for 1, 16 and 64 concurrent clients against 3 and 5
   real `python -m raftnode` processes on 127.0.0.1, fsync on (the default). The load generator is
   `wrk` with bench/wrk/put_unique.lua: every request is a PUT of a unique key with a unique value
   over keep-alive HTTP/1.1. Only 2xx answers are counted; every other answer is reported. After
   each run the leader's commit_index must have grown by at least the number of 2xx answers
   (every acknowledged write is a committed entry), or the run is flagged.
2. Leader election after SIGKILL of the leader, over N trials on 3 nodes: time from the SIGKILL to
   the survivors' `election_won` log line, and to the first successful write through a surviving
   node (median and max). The killed node is restarted and caught up between trials.
3. PySyncObj 0.3.17 (optional: `pip install pysyncobj==0.3.17`, the `bench` extra) on the same
   machine in the same run: 3 processes on loopback, appendEntriesUseBatch=False, no journal
   (no fsync), and N client threads inside the leader process calling a replicated `set` with
   sync=True for the same duration, at the same client counts.

Bounded: every run has a fixed duration, every wait a timeout; only 127.0.0.1 is used; every
process started is killed by its pid; temporary directories are removed.

    python bench/bench_raft.py                      # full run (about 4 minutes)
    python bench/bench_raft.py --duration 3 --sizes 3 --clients 1,64 --election-trials 10
    python bench/bench_raft.py --json results.json --profile /tmp/prof   # cProfile every node
    python bench/bench_raft.py --soak 3600 --soak-interval 60  # memory and disk over an hour
    python bench/bench_raft.py --sizes 3 --lazy-disk both --no-pysyncobj --election-trials 0
        # every node's data dir on a lazy disk (chaos.lazydisk, as root), beside the plain disk
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "node_image"))

from raftnode.localcluster import LocalCluster, free_ports  # noqa: E402

WRK_SCRIPT = os.path.join(HERE, "wrk", "put_unique.lua")
NODE_DEFAULT_ELECTION_TIMEOUT = "150-300"  # the node's own default, as users run it
WRK_BOUNDED_SCRIPT = os.path.join(HERE, "wrk", "put_bounded_keys.lua")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ raftnode writes

def run_wrk(url: str, clients: int, duration: float, prefix: str, script: str = WRK_SCRIPT,
            script_args: tuple = ()) -> dict:
    threads = min(clients, 2)
    cmd = ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{max(1, round(duration))}s", "--timeout", "5s",
           "-s", script, url, "--", prefix, *script_args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"wrk printed no RESULT line (exit {out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}")


def lazy_disks(size: int):
    """A base directory whose nodes' data dirs are lazy disks (chaos.lazydisk), and their mounts."""
    sys.path.insert(0, ROOT)
    from chaos.lazydisk import LazyMount
    base = tempfile.mkdtemp(prefix="bench-lazydisk-")
    mounts = [LazyMount.start(os.path.join(base, f"n{i}", "data"), os.path.join(base, f"n{i}.sock"))
              for i in range(1, size + 1)]
    return base, mounts


def bench_writes(size: int, clients_list: list[int], duration: float, profile_dir: str | None,
                 lazy_disk: bool = False) -> list[dict]:
    rows = []
    base, mounts = lazy_disks(size) if lazy_disk else (None, [])
    try:
        return _bench_writes(size, clients_list, duration, profile_dir, base, rows)
    finally:
        for mount in mounts:
            mount.stop()
        if base:
            shutil.rmtree(base, ignore_errors=True)


def _bench_writes(size, clients_list, duration, profile_dir, base_dir, rows):
    disk = "lazy disk" if base_dir else "disk"
    with LocalCluster(size, election_timeout=NODE_DEFAULT_ELECTION_TIMEOUT, base_dir=base_dir,
                      profile_dir=profile_dir and os.path.join(profile_dir, f"{size}nodes")) as cluster:
        leader = cluster.wait_for_leader()
        run_wrk(cluster.url(leader), 16, 1, f"warmup{size}")  # JIT-free, but warms caches and connections
        for clients in clients_list:
            leader = cluster.wait_for_leader()
            before = cluster.status(leader)["commit_index"]
            result = run_wrk(cluster.url(leader), clients, duration, f"s{size}c{clients}")
            cluster.wait_until(lambda leader=leader: cluster.status(leader) is not None, what="status")
            after = cluster.status(leader)["commit_index"]
            seconds = result["duration_us"] / 1e6
            not_ok = {k: v for k, v in result.items() if k.startswith("status_") and v}
            if result["socket_errors"]:
                not_ok["socket_errors"] = result["socket_errors"]
            row = {"system": "raftnode" + (" (lazy disk)" if base_dir else ""), "nodes": size,
                   "clients": clients, "fsync": True,
                   "writes_per_s": round(result["ok"] / seconds), "ok": result["ok"],
                   "p50_ms": result["p50_us"] / 1000, "p99_ms": result["p99_us"] / 1000,
                   "not_2xx": not_ok, "commit_growth": after - before,
                   "commit_check": "ok" if after - before >= result["ok"] else "FAILED"}
            rows.append(row)
            log(f"  raftnode on a {disk}, {size} nodes, {clients:>2} clients: {row['writes_per_s']:>6} writes/s  "
                f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  non-2xx {not_ok or 'none'}  "
                f"commit +{after - before} >= {result['ok']}: {row['commit_check']}")
        if profile_dir:
            for node in cluster.ids:
                cluster.kill(node, signal.SIGTERM)  # cProfile writes its file on a clean exit
    return rows


# ------------------------------------------------------------------------------------ soak

def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def bench_soak(seconds: float, clients: int, keys: int, snapshot_every: int, interval: float) -> dict:
    """Memory and disk over a long write load on a bounded key space (issue 3): with log
    compaction both must level off instead of growing with the number of writes.

    Every chunk writes the same `keys` keys (one prefix for the whole soak): a prefix per chunk
    made the key space, and with it the state machine, grow by `keys` keys a chunk, which read
    as a memory leak. Each sample records the nodes' key counts so that the bound is checked."""
    samples = []
    with LocalCluster(3, election_timeout=NODE_DEFAULT_ELECTION_TIMEOUT,
                      extra_args=("--snapshot-every", str(snapshot_every))) as cluster:
        started = time.monotonic()
        total_ok = 0
        chunk = 0
        while time.monotonic() - started < seconds:
            leader = cluster.wait_for_leader(timeout=20)
            result = run_wrk(cluster.url(leader), clients, min(interval, seconds), "soak",
                             WRK_BOUNDED_SCRIPT, (str(keys),))
            total_ok += result["ok"]
            chunk += 1
            statuses = {n: cluster.status(n) for n in cluster.ids}
            sample = {"t_s": round(time.monotonic() - started, 1), "acked_writes": total_ok,
                      "commit_index": max(s["commit_index"] for s in statuses.values() if s),
                      "rss_mib": {n: round(_rss_kib(cluster.procs[n].pid) / 1024, 1) for n in cluster.ids},
                      "disk_mib": {n: round(s["disk_bytes"] / 2**20, 2) for n, s in statuses.items() if s},
                      "kv_keys": {n: s["kv_keys"] for n, s in statuses.items() if s},
                      "snapshot_index": {n: s["snapshot_index"] for n, s in statuses.items() if s}}
            samples.append(sample)
            log(f"  {sample['t_s']:>7.1f} s  writes {total_ok:>9}  rss MiB {sample['rss_mib']}  "
                f"disk MiB {sample['disk_mib']}  keys {max(sample['kv_keys'].values(), default=None)}")
    return {"seconds": seconds, "clients": clients, "keys": keys, "snapshot_every": snapshot_every,
            "samples": samples}


# ------------------------------------------------------------------------------------ elections

def _try_write(cluster: LocalCluster, node: str, path: str) -> tuple[int, dict | None]:
    conn = http.client.HTTPConnection("127.0.0.1", cluster.client_ports[node], timeout=1.0)
    try:
        conn.request("PUT", path, body=b'{"value": 1}', headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, (json.loads(data) if data else None)
    except (OSError, http.client.HTTPException, ValueError):
        return 0, None
    finally:
        conn.close()


def bench_elections(trials: int, election_timeout: str) -> dict:
    to_election, to_write = [], []
    with LocalCluster(3, election_timeout=election_timeout) as cluster:
        cluster.wait_for_leader()
        for trial in range(trials):
            leader = cluster.wait_for_leader(timeout=20)
            cluster.write(f"/kv/before-{trial}", {"value": trial})
            survivors = [n for n in cluster.ids if n != leader]
            # Let the restarted node from the last trial catch up, then kill at a random phase.
            target = cluster.status(leader)["commit_index"]
            cluster.wait_until(lambda target=target, survivors=survivors:
                               all((s := cluster.status(n)) and s["last_applied"] >= target for n in survivors),
                               timeout=20, what="followers caught up")
            time.sleep(0.2 + 0.05 * (trial % 7))
            killed_at = time.monotonic()
            cluster.kill(leader)
            written_at = None
            target = survivors[0]
            deadline = killed_at + 10
            while time.monotonic() < deadline:
                code, body = _try_write(cluster, target, f"/kv/after-{trial}")
                if code == 200:
                    written_at = time.monotonic()
                    break
                if code == 307 and body and body.get("leader") in survivors:
                    target = body["leader"]
                    continue
                target = survivors[(survivors.index(target) + 1) % len(survivors)]
                time.sleep(0.002)
            if written_at is None:
                raise RuntimeError(f"trial {trial}: no write succeeded within 10 s of killing {leader}")
            won = [e["mono"] for n in survivors for e in cluster.log_events(n)
                   if e["event"] == "election_won" and e["mono"] > killed_at]
            elected = min(won) - killed_at if won else None
            to_write.append(written_at - killed_at)
            if elected is not None:
                to_election.append(elected)
            log(f"  trial {trial + 1:>2}: killed {leader}; elected after "
                f"{elected * 1000 if elected is not None else float('nan'):.0f} ms, first write after "
                f"{(written_at - killed_at) * 1000:.0f} ms")
            cluster.start(leader)
    ms = lambda xs: [round(x * 1000, 1) for x in xs]  # noqa: E731
    return {"trials": trials, "election_timeout_ms": election_timeout,
            "kill_to_elected_ms": {"median": round(statistics.median(to_election) * 1000, 1),
                                   "max": round(max(to_election) * 1000, 1), "all": ms(to_election)},
            "kill_to_first_write_ms": {"median": round(statistics.median(to_write) * 1000, 1),
                                       "max": round(max(to_write) * 1000, 1), "all": ms(to_write)}}


# ------------------------------------------------------------------------------------ PySyncObj

PYSYNCOBJ_NODE = textwrap.dedent('''
    import json, statistics, sys, threading, time
    from pysyncobj import SyncObj, SyncObjConf, replicated

    me, partners = sys.argv[1], sys.argv[2].split(",")
    duration = float(sys.argv[3]); client_counts = [int(c) for c in sys.argv[4].split(",")]
    deadline = time.monotonic() + float(sys.argv[5])

    class KV(SyncObj):
        def __init__(self):
            conf = SyncObjConf(appendEntriesUseBatch=False)  # defaults otherwise (no journal: no fsync)
            super().__init__(me, partners, conf)
            self.data = {}

        @replicated
        def set(self, key, value):
            self.data[key] = value
            return True

    kv = KV()
    while time.monotonic() < deadline and not kv._isReady():
        time.sleep(0.05)
    time.sleep(1.0)
    if not kv._isLeader():
        while time.monotonic() < deadline:
            time.sleep(0.2)
        sys.exit(0)

    def client(n, tid, stop_at, lat, ok, bad):
        i = 0
        while time.monotonic() < stop_at:
            i += 1
            t = time.perf_counter()
            try:
                result = kv.set(f"c{n}-{tid}-{i}", i, sync=True, timeout=5)
            except Exception:
                result = None
            if result:
                lat.append(time.perf_counter() - t)
                ok[0] += 1
            else:
                bad[0] += 1

    for n in client_counts:
        lat, ok, bad = [], [0], [0]
        stop_at = time.monotonic() + duration
        threads = [threading.Thread(target=client, args=(n, t, stop_at, lat, ok, bad)) for t in range(n)]
        start = time.monotonic()
        for t in threads: t.start()
        for t in threads: t.join()
        seconds = time.monotonic() - start
        lat.sort()
        print(json.dumps({"clients": n, "ok": ok[0], "failed": bad[0], "seconds": seconds,
                          "p50_ms": lat[len(lat) // 2] * 1000 if lat else None,
                          "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else None}), flush=True)
''')


def bench_pysyncobj(clients_list: list[int], duration: float) -> list[dict] | str:
    try:
        import pysyncobj  # noqa: F401
    except ImportError:
        return "skipped: pysyncobj is not installed (pip install pysyncobj==0.3.17)"
    workdir = tempfile.mkdtemp(prefix="bench-pysyncobj-")
    script = os.path.join(workdir, "node.py")
    with open(script, "w") as f:
        f.write(PYSYNCOBJ_NODE)
    addrs = [f"127.0.0.1:{p}" for p in free_ports(3)]
    budget = 20 + len(clients_list) * (duration + 3)
    procs = []
    try:
        for me in addrs:
            partners = ",".join(a for a in addrs if a != me)
            procs.append(subprocess.Popen(
                [sys.executable, script, me, partners, str(duration), ",".join(map(str, clients_list)), str(budget)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True))
        rows = []
        outputs = [p.communicate(timeout=budget + 30) for p in procs]
        for out, _ in outputs:
            for line in out.splitlines():
                r = json.loads(line)
                row = {"system": "pysyncobj", "nodes": 3, "clients": r["clients"], "fsync": False,
                       "writes_per_s": round(r["ok"] / r["seconds"]), "ok": r["ok"],
                       "p50_ms": r["p50_ms"] and round(r["p50_ms"], 2), "p99_ms": r["p99_ms"] and round(r["p99_ms"], 2),
                       "not_2xx": {"failed": r["failed"]} if r["failed"] else {}}
                rows.append(row)
                log(f"  pysyncobj 3 nodes, {r['clients']:>2} clients: {row['writes_per_s']:>6} writes/s  "
                    f"p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  failed {r['failed']}")
        return rows or "failed: no PySyncObj process became leader: " + " | ".join(e[-300:] for _, e in outputs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------------------------ main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per write measurement (default 10)")
    p.add_argument("--sizes", default="3,5", help="cluster sizes (default 3,5)")
    p.add_argument("--clients", default="1,16,64", help="concurrent client counts (default 1,16,64)")
    p.add_argument("--election-trials", type=int, default=12, help="leader kills to time (default 12; 0 skips)")
    p.add_argument("--election-timeout", default="150-300", help="election timeout range in ms (default 150-300)")
    p.add_argument("--no-pysyncobj", action="store_true", help="skip the PySyncObj comparison")
    p.add_argument("--json", help="also write all results to this JSON file")
    p.add_argument("--lazy-disk", choices=("no", "yes", "both"), default="no",
                   help="data dirs on lazy disks (chaos.lazydisk; root): yes, or both beside the plain disk")
    p.add_argument("--profile", metavar="DIR", help="run the write benchmark's nodes under cProfile, files in DIR")
    p.add_argument("--soak", type=float, default=0, metavar="SECONDS",
                   help="instead of the rest: write for SECONDS over a bounded key space and sample memory "
                        "and disk of every node (issue 3: both must stay bounded)")
    p.add_argument("--soak-keys", type=int, default=1000, help="key space of --soak (default 1000)")
    p.add_argument("--soak-interval", type=float, default=30, help="seconds between --soak samples (default 30)")
    p.add_argument("--snapshot-every", type=int, default=10000, help="--snapshot-every of the --soak nodes")
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        p.error("wrk is not installed (Debian: apt-get install wrk)")
    if args.soak:
        log(f"== soak: {args.soak:.0f} s of writes over {args.soak_keys} keys, 3 nodes, 16 clients")
        soak = bench_soak(args.soak, 16, args.soak_keys, args.snapshot_every, args.soak_interval)
        first, last = soak["samples"][0], soak["samples"][-1]
        most_keys = max(n for s in soak["samples"] for n in s["kv_keys"].values())
        print(f"soak: {last['acked_writes']} acknowledged writes in {last['t_s']} s; "
              f"RSS MiB first {first['rss_mib']} last {last['rss_mib']}; "
              f"disk MiB first {first['disk_mib']} last {last['disk_mib']}; "
              f"at most {most_keys} keys (key space {args.soak_keys})")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"soak": soak}, f, indent=2)
        if most_keys > args.soak_keys:
            log(f"soak FAILED: a node held {most_keys} keys, more than the key space of {args.soak_keys}, "
                "so its memory measures the state's growth, not the node's")
            return 1
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    clients = [int(c) for c in args.clients.split(",")]
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "writes": []}

    log("== raftnode writes (fsync on), wrk over HTTP keep-alive")
    for size in sizes:
        if args.lazy_disk in ("no", "both"):
            results["writes"] += bench_writes(size, clients, args.duration, args.profile)
        if args.lazy_disk in ("yes", "both"):
            results["writes"] += bench_writes(size, clients, args.duration, args.profile, lazy_disk=True)
    if not args.no_pysyncobj:
        log("== PySyncObj 0.3.17, batching off, no fsync, client threads in the leader process")
        ps = bench_pysyncobj(clients, args.duration)
        if isinstance(ps, str):
            log("  " + ps)
            results["pysyncobj"] = ps
        else:
            results["writes"] += ps
    if args.election_trials:
        log(f"== leader election after SIGKILL of the leader ({args.election_trials} trials, "
            f"election timeout {args.election_timeout} ms)")
        results["elections"] = bench_elections(args.election_trials, args.election_timeout)

    print()
    print(f"{'system':<22} {'nodes':>5} {'clients':>7} {'fsync':>5} {'writes/s':>9} {'p50 ms':>8} {'p99 ms':>8}  notes")
    for r in results["writes"]:
        notes = []
        if r.get("not_2xx"):
            notes.append(f"non-2xx {r['not_2xx']}")
        if r.get("commit_check"):
            notes.append(f"commit check {r['commit_check']}")
        print(f"{r['system']:<22} {r['nodes']:>5} {r['clients']:>7} {'on' if r['fsync'] else 'off':>5} "
              f"{r['writes_per_s']:>9} {r['p50_ms'] if r['p50_ms'] is not None else '-':>8} "
              f"{r['p99_ms'] if r['p99_ms'] is not None else '-':>8}  {'; '.join(notes)}")
    ours = {r["clients"]: r for r in results["writes"] if r["system"] == "raftnode" and r["nodes"] == 3}
    theirs = {r["clients"]: r for r in results["writes"] if r["system"] == "pysyncobj"}
    for c in sorted(set(ours) & set(theirs)):
        if theirs[c]["writes_per_s"]:
            ratio = ours[c]['writes_per_s'] / theirs[c]['writes_per_s']
            print(f"raftnode/PySyncObj at {c} clients, 3 nodes: {ratio:.2f}x")
    if "elections" in results:
        e = results["elections"]
        print(f"election after SIGKILL of the leader ({e['trials']} trials, timeout {e['election_timeout_ms']} ms): "
              f"elected median {e['kill_to_elected_ms']['median']} ms, max {e['kill_to_elected_ms']['max']} ms; "
              f"first write median {e['kill_to_first_write_ms']['median']} ms, "
              f"max {e['kill_to_first_write_ms']['max']} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    failed = [r for r in results["writes"] if r.get("commit_check") == "FAILED"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
