"""The SSH provisioner beside the local one on this machine: set-up time and ok ops/s.

    python bench/bench_ssh.py --hosts 5 --time-limit 20 --trials 2

SSH hosts are network namespaces of our own running sshd (tests/ssh_hosts.py), as in the tests.
Each trial runs `splitbrain run` (register workload, no faults, 10 workers) once over SSH and
once locally, and reads the set-up time (config.json timings) and the ok client operations per
second of the load phase (history.jsonl).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "node_image")]

from chaos.history import read_jsonl  # noqa: E402
from ssh_hosts import SSHHosts  # noqa: E402


def one_run(provisioner_args: list[str], nodes: int, time_limit: float, store: str, seed: int) -> dict:
    argv = [sys.executable, "-m", "chaos.cli", "run", "--nodes", str(nodes), "--nemesis", "none",
            "--time-limit", str(time_limit), "--seed", str(seed), "--store", store, *provisioner_args]
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env)
    run_dir = os.path.realpath(os.path.join(store, "latest"))
    config = json.load(open(os.path.join(run_dir, "config.json")))
    ops = read_jsonl(os.path.join(run_dir, "history.jsonl"))
    ok = sum(1 for op in ops if op.type == "ok" and op.process != "nemesis" and not op.extra.get("final"))
    return {"exit": proc.returncode, "setup_s": config["timings"].get("setup_s"), "ok": ok,
            "ops_per_s": ok / time_limit}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--time-limit", type=float, default=20)
    parser.add_argument("--trials", type=int, default=2)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-ssh-")
    rows = []
    with SSHHosts(args.hosts, folder) as hosts:
        inventory = hosts.inventory()
        for trial in range(args.trials):
            for name, extra in (("ssh", ["--provisioner", "ssh", "--provisioner-option", f"inventory={inventory}"]),
                                ("local", ["--provisioner", "local"])):
                result = one_run(extra, args.hosts, args.time_limit, os.path.join(folder, f"store-{name}"), trial + 1)
                rows.append((name, result))
                print(f"{name} trial {trial + 1}: exit {result['exit']}, set-up {result['setup_s']} s, "
                      f"{result['ok']} ok ops = {result['ops_per_s']:.0f} ok ops/s, load {os.getloadavg()[0]:.1f}",
                      flush=True)
    print(f"\n| provisioner ({args.hosts} nodes) | set-up | ok ops/s |\n|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['setup_s']} s | {r['ops_per_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
