"""Which fault exposes which seeded bug, measured in real runs: `splitbrain run` per cell and seed.

Each cell is a run configuration (provisioner, workload, faults or a schedule) and a node: the
correct one or one with `--bug NAME`. A cell says what we expect: "invalid" (the checker must
catch the bug) or "valid" (the bug is present but this fault cannot show it, or the node is
correct). The script runs every selected cell for every seed, one cluster at a time, and prints
a table: how often the checker said invalid, the seeds, and evidence from the node logs (two
leaders elected in one term = election safety broken; a node that stopped on a safety
violation).

    python bench/bug_matrix.py --list
    python bench/bug_matrix.py --cells stale-read --seeds 1,2,3 --time-limit 30
    python bench/bug_matrix.py --cells all --seeds 1 --json /tmp/matrix.json

Runs are bounded: each has --time-limit seconds of load plus set-up, recovery (<= 30 s), final
reads (<= 30 s) and checking; a run still going after --run-timeout is stopped (SIGTERM, so the
controller tears its cluster down). Local runs rotate over loopback addresses because the
previous run's TIME_WAIT sockets keep its client port busy for a minute.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # run as a script from anywhere: the checkers package is ours
    sys.path.insert(0, REPO_ROOT)

from systems.raftnode.election_safety import check_node_logs  # noqa: E402

# Schedules the shipped scenarios do not have; written to a temporary folder at run time.
EXTRA_SCENARIOS = {
    # A follower (never the leader) cut off for 6 s, every 8 s: with stale-read it keeps
    # answering reads from the state it had when it was cut off.
    "isolate-follower": """
name: isolate-follower
nodes: 5
workload: register
schedule:
  start: 2
  period: 8
  steps:
    - {at: 0, f: partition, topology: isolate-one}
    - {at: 6, f: heal}
""",
    # The leader's clock slowed to a quarter, then the leader cut off: the lease-read bug's
    # textbook trigger (a lease measured by a slow clock outlives the real lease).
    "slow-leader-isolated": """
name: slow-leader-isolated
nodes: 5
workload: register
schedule:
  start: 2
  period: 9
  steps:
    - {at: 0, f: clock-skew, target: leader, mode: rate, rate: 0.25}
    - {at: 0.5, f: partition, topology: isolate-leader}
    - {at: 6, f: heal}
    - {at: 6.5, f: clock-reset}
""",
    # The leader paused (SIGSTOP) long enough for the others to elect a new one, then resumed:
    # its own timers did not run while it was stopped, so it still believes in its lease.
    "pause-leader": """
name: pause-leader
nodes: 5
workload: register
schedule:
  start: 2
  period: 6
  steps:
    - {at: 0, f: pause, target: leader}
    - {at: 3, f: resume}
""",
    # The leader cut off, then at once stopped (SIGSTOP) while the others elect a new leader and
    # write; resumed, it counts the stall as one heartbeat interval (the node caps ticks after a
    # stall), so the lease it measured before the pause still looks valid for a while.
    "isolate-then-pause-leader": """
name: isolate-then-pause-leader
nodes: 5
workload: register
schedule:
  start: 2
  period: 8
  steps:
    - {at: 0, f: partition, topology: isolate-leader}
    - {at: 0.05, f: pause, target: leader}
    - {at: 3, f: resume}
    - {at: 5, f: heal}
""",
    # The same with a 2 s pause, every 6 s: requests queued at the paused leader are still within
    # the clients' 3 s timeout when it resumes, and there are four cycles in 25 s.
    "isolate-then-pause-leader-2s": """
name: isolate-then-pause-leader-2s
nodes: 5
workload: register
schedule:
  start: 2
  period: 6
  steps:
    - {at: 0, f: partition, topology: isolate-leader}
    - {at: 0.05, f: pause, target: leader}
    - {at: 2, f: resume}
    - {at: 4, f: heal}
""",
    # Kill the whole cluster and restart it, repeatedly: every node restarts inside the first
    # elections, the situation in which a forgotten vote can be cast twice in one term.
    "kill-all-loop": """
name: kill-all-loop
nodes: 5
workload: register
schedule:
  start: 2
  period: 5
  steps:
    - {at: 0, f: kill, target: all}
    - {at: 0.5, f: start}
""",
    # A random node killed every 1.5 s and restarted 0.3 s later: elections (when it was the
    # leader) overlap restarts of voters that have just granted a vote.
    "kill-one-fast": """
name: kill-one-fast
workload: register
schedule:
  start: 1
  period: 1.5
  steps:
    - {at: 0, f: kill, target: one}
    - {at: 0.3, f: start}
""",
    # The whole cluster killed and restarted 0.2 s later, every 1.5 s: every node restarts in the
    # same term with its vote forgotten, and the elections right after a restart split votes.
    "kill-all-fast": """
name: kill-all-fast
workload: register
schedule:
  start: 1
  period: 1.5
  steps:
    - {at: 0, f: kill, target: all}
    - {at: 0.2, f: start}
""",
    # Kill a majority, restart, kill the new leader, restart: leaders come and go while parts of
    # the log are on a minority only (the Figure 8 ingredients).
    "kill-leader-and-majority": """
name: kill-leader-and-majority
nodes: 5
workload: register
schedule:
  start: 2
  period: 6
  steps:
    - {at: 0, f: kill, target: leader}
    - {at: 1.5, f: start}
    - {at: 3, f: kill, target: majority}
    - {at: 4, f: start}
""",
}


@dataclass
class Cell:
    name: str
    bug: str | None
    expect: str                  # "invalid" or "valid"
    provisioner: str             # "local" or "docker"
    args: list[str]              # extra `splitbrain run` arguments (nemesis, scenario, workload)
    why: str
    workload: str = "register"
    extra: dict = field(default_factory=dict)

    @property
    def fault(self) -> str:
        a = self.args
        if "--scenario" in a:
            return os.path.splitext(os.path.basename(a[a.index("--scenario") + 1].lstrip("@")))[0]
        if "--nemesis" in a:
            return "nemesis " + a[a.index("--nemesis") + 1]
        return "?"


def _sc(name: str) -> list[str]:
    shipped = os.path.join(REPO_ROOT, "scenarios", f"{name}.yaml")
    return ["--scenario", shipped if os.path.exists(shipped) else f"@{name}"]


CELLS: list[Cell] = [
    # -- the correct node: every run must be valid -----------------------------------------------
    Cell("ok-local-kill", None, "valid", "local", ["--nemesis", "kill"], "correct node, kills"),
    Cell("ok-local-pause", None, "valid", "local", ["--nemesis", "pause"], "correct node, pauses"),
    Cell("ok-local-clock", None, "valid", "local", ["--nemesis", "clock"], "correct node, clock skew"),
    Cell("ok-local-set-kill-pause", None, "valid", "local", ["--nemesis", "kill,pause", "--workload", "set"],
         "correct node, set workload", workload="set"),
    Cell("ok-docker-partition", None, "valid", "docker", ["--nemesis", "partition"], "correct node, partitions"),
    Cell("ok-docker-all", None, "valid", "docker", ["--nemesis", "all"], "correct node, every fault"),
    Cell("ok-docker-set-all", None, "valid", "docker", ["--nemesis", "all", "--workload", "set"],
         "correct node, set workload, every fault", workload="set"),
    Cell("ok-flapping-partitions", None, "valid", "docker", _sc("flapping-partitions"),
         "correct node, shipped scenario"),
    Cell("ok-leader-isolation", None, "valid", "docker", _sc("leader-isolation"), "correct node, shipped scenario"),
    Cell("ok-clock-skew-leader", None, "valid", "docker", _sc("clock-skew-leader"), "correct node, shipped scenario"),
    Cell("ok-everything-mixed", None, "valid", "docker", _sc("everything-mixed"), "correct node, shipped scenario"),
    Cell("ok-pause-storm", None, "valid", "local", _sc("pause-storm"), "correct node, shipped scenario"),
    Cell("ok-leader-kill-loop", None, "valid", "local", _sc("leader-kill-loop"), "correct node, shipped scenario"),
    Cell("ok-isolate-then-pause-leader", None, "valid", "docker", _sc("isolate-then-pause-leader"),
         "correct node, the lease-read trigger (the control of lease-read-isolated-pause)"),
    Cell("ok-isolate-then-pause-leader-2s", None, "valid", "docker", _sc("isolate-then-pause-leader-2s"),
         "correct node, the control of lease-read-isolated-pause-2s"),
    # -- stale-read: any node answers reads from its own applied state ----------------------------
    Cell("stale-read", "stale-read", "invalid", "docker", _sc("isolate-follower"),
         "an isolated follower keeps answering reads while the majority writes"),
    Cell("stale-read-local-pause", "stale-read", "invalid", "local", ["--nemesis", "pause"],
         "a paused follower answers reads from its old state when it resumes"),
    Cell("stale-read-set", "stale-read", "valid", "docker", ["--nemesis", "partition", "--workload", "set"],
         "the set workload reads only at the end, through the leader", workload="set"),
    # -- lease-read: the leader answers reads on a lease counted in its own ticks ------------------
    Cell("lease-read", "lease-read", "valid", "docker", _sc("slow-leader-isolated"),
         "leader's clock slowed, then isolated: the clock fault moves only the wall clock, which "
         "the node's ticks never read"),
    Cell("lease-read-pause", "lease-read", "valid", "local", _sc("pause-leader"),
         "a paused leader resumes, but the new leader's messages are read first and depose it"),
    Cell("lease-read-isolated-pause", "lease-read", "invalid", "docker", _sc("isolate-then-pause-leader"),
         "the isolated leader paused; resumed, its stalled ticks leave its lease valid"),
    Cell("lease-read-isolated-pause-2s", "lease-read", "invalid", "docker", _sc("isolate-then-pause-leader-2s"),
         "as above, pause 2 s every 6 s: the queued reads are answered on resume"),
    Cell("lease-read-clock-only", "lease-read", "valid", "local", ["--nemesis", "clock"],
         "clock skew alone: no other leader exists to make a lease read stale"),
    # -- ack-before-commit: a write is answered once the leader's own log has it ------------------
    Cell("ack-before-commit", "ack-before-commit", "invalid", "docker", _sc("leader-isolation"),
         "the isolated leader acknowledges writes that the majority never sees"),
    Cell("ack-before-commit-kill", "ack-before-commit", "invalid", "local", _sc("leader-kill-loop"),
         "the killed leader acknowledged writes only it had"),
    Cell("ack-before-commit-set", "ack-before-commit", "invalid", "docker",
         _sc("leader-isolation") + ["--workload", "set"], "acknowledged adds lost", workload="set"),
    Cell("ack-before-commit-clock", "ack-before-commit", "invalid", "local", ["--nemesis", "clock"],
         "no fault needed: a cas is answered against the state before the log's earlier writes apply"),
    Cell("ack-before-commit-set-none", "ack-before-commit", "valid", "local",
         ["--nemesis", "none", "--workload", "set"],
         "no leader change: every acknowledged add commits later (and add answers are not checked)",
         workload="set"),
    # -- commit-old-term (Figure 8) --------------------------------------------------------------
    Cell("commit-old-term", "commit-old-term", "invalid", "local", _sc("kill-leader-and-majority"),
         "leaders killed while earlier terms' entries sit on a minority"),
    Cell("commit-old-term-docker", "commit-old-term", "invalid", "docker", ["--nemesis", "partition,kill"],
         "partitions and kills mixed"),
    # -- forget-vote ---------------------------------------------------------------------------
    Cell("forget-vote", "forget-vote", "invalid", "local", _sc("kill-all-loop") + ["--no-pre-vote"],
         "whole cluster killed and restarted during elections"),
    Cell("forget-vote-3", "forget-vote", "invalid", "local",
         _sc("kill-one-fast") + ["--nodes", "3", "--no-pre-vote"],
         "3 nodes: one voter's grant decides an election; kill/restart it every second"),
    Cell("forget-vote-3-all", "forget-vote", "invalid", "local",
         _sc("kill-all-fast") + ["--nodes", "3", "--no-pre-vote", "--no-check-quorum",
                                 "--election-timeout", "150-300"],
         "3 nodes, pre-vote and check-quorum off, whole cluster killed/restarted every 1.5 s"),
    Cell("forget-vote-leader-kill", "forget-vote", "invalid", "local", _sc("leader-kill-loop"),
         "leader killed and restarted"),
    # -- no-fsync: no fault of a real process loses the page cache --------------------------------
    Cell("no-fsync", "no-fsync", "valid", "local", _sc("kill-all-loop"),
         "SIGKILL keeps unsynced writes in the page cache: not exposable by a real process fault"),
    Cell("ok-local-kill-all", None, "valid", "local", _sc("kill-all-loop"),
         "correct node, whole cluster killed every 5 s (the no-fsync cell's control)"),
]


def resolve_args(args: list[str], scenario_dir: str) -> list[str]:
    out = []
    for a in args:
        if a.startswith("@"):
            name = a[1:]
            path = os.path.join(scenario_dir, f"{name}.yaml")
            if not os.path.exists(path):
                with open(path, "w") as f:
                    f.write(EXTRA_SCENARIOS[name].lstrip())
            out.append(path)
        else:
            out.append(a)
    return out


def node_log_evidence(run_dir: str) -> dict:
    """What the node logs say, independent of the client history: the election-safety checker's
    findings (two leaders in a term, a voter granting two candidates in a term: the forget-vote bug
    at work, whether or not both candidates won) and the nodes' fatal errors."""
    election = check_node_logs(run_dir) or {"terms_with_two_leaders": [], "double_votes": [], "elections_won": 0}
    fatal = []
    for path in glob.glob(os.path.join(run_dir, "nodes", "*", "node.log")):
        with open(path, errors="replace") as f:
            for line in f:
                if '"fatal"' not in line:
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("event") == "fatal":
                    fatal.append(f"{ev.get('node')}: {ev.get('error')}")
    return {"terms_with_two_leaders": {t["term"]: t["leaders"] for t in election["terms_with_two_leaders"]},
            "double_votes": [f"{d['voter']} t{d['term']}: {d['candidates']}" for d in election["double_votes"]],
            "fatal": fatal, "elections": election["elections_won"]}


class AddressPool:
    """Loopback bases for local runs, and subnets for docker runs, used in turn."""

    def __init__(self, first_local: int, first_subnet: int):
        self.local = [f"127.0.{b}.{first_local}" for b in range(10, 250, 10)]
        self.subnet = f"10.77.{first_subnet}.0/24"
        self.i = 0

    def local_base(self) -> str:
        self.i += 1
        return self.local[self.i % len(self.local)]


def run_cell(cell: Cell, seed: int, opts, pool: AddressPool, scenario_dir: str) -> dict:
    cmd = [sys.executable, "-m", "chaos.cli", "run",
           "--provisioner", cell.provisioner, "--nodes", str(opts.nodes),
           "--time-limit", str(opts.time_limit), "--seed", str(seed), "--store", opts.store,
           "--test-name", f"qa-{cell.name}"]
    if cell.bug:
        cmd += ["--bug", cell.bug]
    if opts.election_timeout != "default":
        cmd += ["--election-timeout", opts.election_timeout]
    if opts.concurrency:
        cmd += ["--concurrency", str(opts.concurrency)]
    cmd += resolve_args(cell.args, scenario_dir)   # last: a cell's own --nodes etc. win
    if cell.provisioner == "local":
        cmd += ["--provisioner-option", f"base_address={pool.local_base()}"]
    else:
        cmd += ["--subnet", pool.subnet]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=opts.run_timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)   # the controller tears its cluster down on SIGTERM
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    seconds = time.monotonic() - started
    match = re.search(r"^\S+ run (\S+) \(seed", out or "", re.M)
    run_dir = match.group(1) if match else None
    row = {"cell": cell.name, "bug": cell.bug, "expect": cell.expect, "seed": seed, "exit": proc.returncode,
           "seconds": round(seconds, 1), "run_dir": run_dir, "command": " ".join(cmd[2:])}
    results = {}
    if run_dir and os.path.exists(os.path.join(run_dir, "results.json")):
        with open(os.path.join(run_dir, "results.json")) as f:
            results = json.load(f)
    row["reason"] = results.get("reason", (out or "").strip().splitlines()[-1:] or "")
    return describe_run(row, results)


def safety_verdict(results: dict):
    """The verdict of the safety checkers only (see below); "crashed" without results."""
    # "Caught" means a safety checker said invalid. The stats checker also says invalid when some
    # kind of operation never succeeded (Jepsen's rule), which a kill-everything schedule can
    # cause on the correct node: that is unavailability, not a caught bug.
    safety = [c.get("valid") for name, c in (results.get("checkers") or {}).items()
              if name in ("linearizable", "set") and isinstance(c, dict)]
    return (False if False in safety else "unknown" if "unknown" in safety or not safety
            else True) if results else "crashed"


def describe_run(row: dict, results: dict) -> dict:
    """Verdicts, op counts and node-log evidence of the run in row["run_dir"]."""
    run_dir = row.get("run_dir")
    row["valid"] = results.get("valid", "crashed")
    row["safety"] = safety_verdict(results)
    lin = results.get("checkers", {}).get("linearizable", {}) or {}
    row["illegal_key"] = lin.get("first_illegal_key")
    set_res = results.get("checkers", {}).get("set", {}) or {}
    row["lost"] = len(set_res.get("lost", []) or [])
    counts = collections.Counter()
    if run_dir and os.path.exists(os.path.join(run_dir, "history.jsonl")):
        with open(os.path.join(run_dir, "history.jsonl")) as f:
            for line in f:
                try:
                    op = json.loads(line)
                except ValueError:
                    continue
                if op.get("process") != "nemesis" and op.get("type") != "invoke":
                    counts[op.get("type")] += 1
    row["ops"] = dict(counts)
    row.update(node_log_evidence(run_dir) if run_dir else {})
    return row


def trim_history(run_dir: str, out_path: str, keys: list[str] | None = None) -> dict:
    """Keep what a regression test needs of a run: the ops of the keys the checker flagged (the
    first illegal register key, or the set keys with lost/unexpected elements) and the nemesis
    ops, renumbered. Returns a summary of what was kept."""
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    checkers = results.get("checkers", {})
    if not keys:
        lin = checkers.get("linearizable") or {}
        # The first illegal key is enough to keep a verdict; more keys only make the file bigger.
        keys = [lin["first_illegal_key"]] if lin.get("first_illegal_key") else \
            [k for k, r in (lin.get("keys") or {}).items() if r.get("valid") is False][:1]
        set_res = checkers.get("set") or {}
        for kind in ("lost", "unexpected", "duplicated"):
            keys += [str(e["key"]) for e in set_res.get(kind) or [] if str(e["key"]) not in keys]
        keys = keys[:1]
    if not keys:
        raise SystemExit(f"{run_dir}: no key was found invalid ({results.get('reason')}); name keys with --keys")
    kept = []
    with open(os.path.join(run_dir, "history.jsonl")) as f:
        for line in f:
            op = json.loads(line)
            if op.get("process") == "nemesis" or op.get("key") in keys:
                op["index"] = len(kept)
                kept.append(op)
    with open(out_path, "w") as f:
        for op in kept:
            f.write(json.dumps(op, separators=(",", ":")) + "\n")
    return {"keys": keys, "ops": len(kept), "valid": results.get("valid"), "reason": results.get("reason")}


def verdict_word(v) -> str:
    return {True: "valid", False: "INVALID"}.get(v, str(v))


def print_table(rows: list[dict], cells: dict[str, Cell], out=sys.stdout) -> None:
    by_cell: dict[str, list[dict]] = collections.defaultdict(list)
    for r in rows:
        by_cell[r["cell"]].append(r)
    head = (f"{'cell':30} {'bug':18} {'fault':28} {'expect':8} {'caught':7} {'2-ldr':5} {'2-vote':6} "
            f"verdict per seed")
    print(head, file=out)
    print("-" * len(head), file=out)
    for name, rs in by_cell.items():
        cell = cells[name]
        for r in rs:
            r.setdefault("safety", r["valid"])   # rows saved before the safety verdict existed
        caught = sum(1 for r in rs if r["safety"] is False)
        double = sum(1 for r in rs if r.get("terms_with_two_leaders"))
        votes = sum(1 for r in rs if r.get("double_votes"))
        per_seed = ", ".join(f"s{r['seed']}={verdict_word(r['safety'])}"
                             f"{'' if r['valid'] == r['safety'] else '/stats:' + verdict_word(r['valid'])}"
                             f"({r['ops'].get('ok', 0)} ok)" for r in rs)
        print(f"{name:30} {cell.bug or '-':18} {cell.fault:28} {cell.expect:8} {caught}/{len(rs):<5} "
              f"{double:<5} {votes:<6} {per_seed}", file=out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", default="all",
                   help="comma list of cell names or bug names (a bug selects all its cells), 'ok' for the "
                        "correct node's cells, or 'all'. A cell is 'caught' when the linearizable or set "
                        "checker says invalid (not the stats checker)")
    p.add_argument("--seeds", default="1,2,3", help="comma list of seeds (default 1,2,3)")
    p.add_argument("--time-limit", type=int, default=30, help="seconds of load per run (default 30)")
    p.add_argument("--nodes", type=int, default=5, choices=(3, 5, 7))
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--election-timeout", default="500-1000",
                   help="node election timeout MIN-MAX ms, or 'default' for the node's own (150-300). "
                        "The default 500-1000 keeps a loaded 2-core machine from electing forever")
    p.add_argument("--provisioner", choices=("local", "docker"), default=None,
                   help="run every selected cell with this provisioner (docker cells need partitions)")
    p.add_argument("--store", default=os.path.join(tempfile.gettempdir(), "qa-store"))
    p.add_argument("--run-timeout", type=int, default=None, help="stop a run after this many seconds "
                   "(default: time limit + 240)")
    p.add_argument("--json", help="also write every row here")
    p.add_argument("--list", action="store_true", help="list the cells and exit")
    p.add_argument("--trim", nargs=2, metavar=("RUN_DIR", "OUT_JSONL"),
                   help="write the flagged keys' ops and the nemesis ops of a run to OUT_JSONL and exit")
    p.add_argument("--keys", help="with --trim: comma list of keys to keep instead of the flagged ones")
    p.add_argument("--from-json", nargs="+", metavar="FILE",
                   help="print the table of rows saved by earlier --json runs (merged) instead of running")
    p.add_argument("--write-scenarios", metavar="DIR",
                   help="write the matrix's own scenario files (isolate-follower.yaml, ...) to DIR and exit")
    opts = p.parse_args(argv)
    if opts.write_scenarios:
        os.makedirs(opts.write_scenarios, exist_ok=True)
        for name in EXTRA_SCENARIOS:
            print(resolve_args([f"@{name}"], opts.write_scenarios)[0])
        return 0
    if opts.from_json:
        rows, seen = [], set()
        for path in opts.from_json:
            with open(path) as f:
                for row in json.load(f):
                    if row.get("run_dir") not in seen and row.get("cell") in {c.name for c in CELLS}:
                        seen.add(row.get("run_dir"))
                        results_path = os.path.join(row.get("run_dir") or "", "results.json")
                        if os.path.exists(results_path):   # re-read: older rows lack newer fields
                            with open(results_path) as r:
                                describe_run(row, json.load(r))
                        rows.append(row)
        order = {c.name: i for i, c in enumerate(CELLS)}
        rows.sort(key=lambda r: (order[r["cell"]], r["seed"]))
        print_table(rows, {c.name: c for c in CELLS})
        return 0
    if opts.trim:
        keys = [k for k in (opts.keys or "").split(",") if k]
        print(json.dumps(trim_history(opts.trim[0], opts.trim[1], keys or None)))
        return 0
    if opts.list:
        for c in CELLS:
            print(f"{c.name:30} {c.bug or '-':18} {c.provisioner:7} {c.expect:8} {c.fault:28} {c.why}")
        return 0
    try:
        seeds = [int(s) for s in opts.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be a comma list of integers, got {opts.seeds!r}")
    if not seeds:
        p.error("--seeds is empty")
    wanted = [w.strip() for w in opts.cells.split(",") if w.strip()]
    known = {c.name for c in CELLS} | {c.bug for c in CELLS if c.bug} | {"all", "ok"}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        p.error(f"unknown cell(s) {unknown}; valid: {', '.join(sorted(known))}")
    cells = [c for c in CELLS if "all" in wanted or c.name in wanted or (c.bug and c.bug in wanted)
             or ("ok" in wanted and c.bug is None)]
    if opts.provisioner:
        for c in cells:
            c.provisioner = opts.provisioner
    opts.run_timeout = opts.run_timeout or opts.time_limit + 240
    pool = AddressPool(first_local=141, first_subnet=141)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bug-matrix-") as scenario_dir:
        for cell in cells:
            for seed in seeds:
                row = run_cell(cell, seed, opts, pool, scenario_dir)
                rows.append(row)
                print(f"# {cell.name} seed {seed}: safety {verdict_word(row['safety'])} verdict "
                      f"{verdict_word(row['valid'])} exit {row['exit']} "
                      f"{row['seconds']} s ops {row['ops']} two-leader terms {row.get('terms_with_two_leaders')} "
                      f"double votes {row.get('double_votes')} fatal {row.get('fatal')} "
                      f"{row['run_dir']}", flush=True)
                if opts.json:
                    with open(opts.json, "w") as f:
                        json.dump(rows, f, indent=1)
    print()
    print_table(rows, {c.name: c for c in cells})
    # Exit 1 when a cell went against its expectation on every seed, for scripted use.
    surprises = [c.name for c in cells
                 if all((r["safety"] is False) != (c.expect == "invalid") for r in rows if r["cell"] == c.name)]
    if surprises:
        print(f"\nagainst expectation on every seed: {', '.join(surprises)}")
    return 1 if surprises else 0


if __name__ == "__main__":
    sys.exit(main())
