"""`splitbrain check FILE|RUN_DIR`: check a history from us or from Jepsen.

Exit codes: 0 valid, 1 invalid, 2 unknown, 255 malformed history or the check could not run.
A RUN_DIR check writes results.json there (and porcupine visualizations under report/porcupine/).
Also runnable alone: `python -m checkers.cli check FILE`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN, EXIT_ERROR = 0, 1, 2, 255
DEFAULT_TIME_BUDGET_S = 300.0


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "check", help="check a history (ours, Jepsen EDN or Jepsen log) for linearizability and more",
        description="Check a recorded history. FILE may be our history.jsonl, a Jepsen/Knossos EDN history "
                    "(one map per line or a vector) or Jepsen log lines; RUN_DIR is a run folder "
                    "(results.json is written there). Exit 0 valid, 1 invalid, 2 unknown, 255 bad input.")
    p.add_argument("path", metavar="FILE|RUN_DIR")
    p.add_argument("--model", choices=("register", "kv", "set"), default=None,
                   help="what the history does (default: from the run's config, else from its operations)")
    p.add_argument("--checker", choices=("auto", "porcupine", "python"), default="auto",
                   help="linearizability checker (default auto: exact fast method for unique values, "
                        "porcupine otherwise when Go is available, else our search)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--all-keys", action="store_true", help="check every key, not stopping at the first illegal one")
    p.add_argument("--time-budget", type=float, default=DEFAULT_TIME_BUDGET_S, metavar="SECONDS",
                   help="time budget for the whole check; over budget is 'unknown', never a pass "
                        f"(default {DEFAULT_TIME_BUDGET_S:g}; 0 for none, though each key's search still stops "
                        "after an hour)")
    p.add_argument("--independent", action=argparse.BooleanOptionalAction, default=None,
                   help="a Jepsen independent register history (each value [key value], e.g. :write [1 3], "
                        ":read [2 nil], :cas [1 [3 4]]): check one register per key. Default: only when "
                        "every operation has that shape and a read is invoked with [key nil] (a plain "
                        "register's never is); --no-independent never splits")
    p.add_argument("--append", choices=("concat", "list"), default=None,
                   help="kv append semantics (default: concat for string values, list otherwise)")
    p.set_defaults(func=run_check)
    return p


def _workload_from_config(run_dir: str) -> str | None:
    try:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    w = config.get("workload")
    if isinstance(w, dict):
        w = w.get("name")
    return w if w in ("register", "set", "kv") else None


def run_check(args) -> int:
    from chaos.history import HistoryError

    from . import CheckError, check_history, infer_workload
    from .node_health import add_checks
    from .formats import load_history, resolve_path

    path = args.path
    run_dir = path if os.path.isdir(path) else None
    try:
        ops, fmt = load_history(path)
    except HistoryError as e:
        print(f"splitbrain check: malformed history: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        print(f"splitbrain check: cannot read {path}: {e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    workload = args.model or (run_dir and _workload_from_config(run_dir)) or infer_workload(ops)
    out_dir = os.path.join(run_dir, "report") if run_dir else None
    try:
        result = check_history(ops, workload=workload, checker=args.checker, out_dir=out_dir,
                               time_budget_s=args.time_budget or None, all_keys=args.all_keys,
                               append_mode=args.append, independent=args.independent,
                               source=resolve_path(path))
    except HistoryError as e:
        print(f"splitbrain check: malformed history: {e}", file=sys.stderr)
        return EXIT_ERROR
    except CheckError as e:
        print(f"splitbrain check: {e}", file=sys.stderr)
        return EXIT_ERROR
    result["format"] = fmt
    if run_dir:
        from chaos.checking import db_of_run, node_checks
        add_checks(result, node_checks(run_dir, ops, db_of_run(run_dir)))
        tmp = os.path.join(run_dir, ".results.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, os.path.join(run_dir, "results.json"))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(_summary(result))
    return {True: EXIT_VALID, False: EXIT_INVALID}.get(result["valid"], EXIT_UNKNOWN)


def _summary(result: dict) -> str:
    verdict = {True: "VALID", False: "INVALID"}.get(result["valid"], "UNKNOWN")
    lines = [f"{verdict}: {result['reason']}"]
    lin = result["checkers"].get("linearizable")
    if lin and lin.get("independent", {}).get("independent"):
        split = lin["independent"]
        lines.append(f"  independent history: one register per key, {split['keys']} key(s)"
                     f"{' (detected: every value is [key value])' if split['decided_by'] == 'auto' else ''}")
    if lin:
        for key, r in lin["keys"].items():
            v = {True: "ok", False: "ILLEGAL"}.get(r["valid"], "skipped" if r.get("skipped") else "unknown")
            extra = f"  {r['visualization']}" if r.get("visualization") else ""
            lines.append(f"  key {key}: {v} ({r['ops']} ops, {r.get('ms', 0):.1f} ms, "
                         f"{r.get('checker', '-')}/{r.get('method', '-')}){extra}")
    st = result["checkers"].get("set")
    if st:
        lines.append(f"  set: lost {len(st['lost'])}, duplicated {len(st['duplicated'])}, "
                     f"unexpected {len(st['unexpected'])}, recovered {len(st['recovered'])}")
    av = result["checkers"].get("availability", {})
    for name in ("during_faults", "outside_faults"):
        g = av.get(name)
        if g and g["ops"]:
            lines.append(f"  availability {name.replace('_', ' ')}: {g['availability']:.1%} of {g['ops']} ops ok")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="splitbrain")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
