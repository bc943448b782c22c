"""`splitbrain`: run, check, report, reproduce, nightly, serve, image, cluster, clean.

Exit codes as Jepsen's: 0 valid, 1 invalid, 2 unknown, 255 crashed or could not run (a bad
command line or scenario included: argparse's own exit code 2 would read as "unknown").
"""

from __future__ import annotations

import argparse
import json
import random
import sys

from chaos.config import FAULTS, PROVISIONERS, WORKLOADS, ConfigError, RunConfig, parse_nemesis

EXIT_CRASHED = 255


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_CRASHED)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _nemesis_arg(text: str) -> list[str]:
    try:
        return parse_nemesis(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed: int | float | str = int(value)
    except ValueError:
        try:
            parsed = float(value)
        except ValueError:
            parsed = value
    return key.strip(), parsed


def _node_option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. snapshot-every=50), got {text!r}")
    return key.strip(), value.strip()


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The flags of `run` (all default to None so that a scenario's values are kept unless a
    flag is given explicitly)."""
    p.add_argument("--scenario", metavar="FILE", help="a scenario YAML (flags given too override it)")
    p.add_argument("--test-name", help="names the run's folder in the store (default: the workload or scenario)")
    p.add_argument("--db", help="the system under test, by registry name (default raftnode: the bundled node)")
    p.add_argument("--nodes", type=int, help="cluster size (default 5)")
    p.add_argument("--workload", help=f"{' or '.join(WORKLOADS)} (default register), or a plugin's")
    p.add_argument("--nemesis", type=_nemesis_arg, metavar="LIST",
                   help=f"comma list of faults ({','.join(FAULTS)}), 'all' (default) or 'none'")
    p.add_argument("--nemesis-interval", type=_positive_float, metavar="S",
                   help="seconds between fault changes in the random schedule (default 5)")
    p.add_argument("--time-limit", type=_positive_float, metavar="S", help="seconds of load and faults (default 60)")
    p.add_argument("--concurrency", type=int, metavar="C", help="client workers (default 10)")
    p.add_argument("--rate", type=_positive_float, metavar="OPS", help="total client ops/s (default: unlimited)")
    p.add_argument("--seed", type=int, help="seed of the op mix and fault schedule (default: random, recorded)")
    p.add_argument("--provisioner", help=f"{' or '.join(PROVISIONERS)} (default docker), as the DB offers")
    p.add_argument("--bug", help="run the nodes with a seeded bug (raftnode: stale-read, lease-read, ...)")
    p.add_argument("--node-option", dest="node_options", action="append", type=_node_option,
                   metavar="NAME=VALUE", help="a setting of the system under test, repeatable "
                   "(raftnode: snapshot-every=50, election-timeout=150-300, pre-vote=false, ...)")
    p.add_argument("--store", metavar="DIR", help="the run store (default ./store)")
    p.add_argument("--keys", type=int, help="register: keys in use at once (default 5)")
    p.add_argument("--ops-per-key", type=int, help="register: operations per key (default 200)")
    p.add_argument("--request-timeout", type=_positive_float, metavar="S", help="per-request timeout (default 3)")
    p.add_argument("--checker", choices=("auto", "porcupine", "python"), help="linearizability checker")
    p.add_argument("--election-timeout", metavar="MIN-MAX",
                   help="raftnode: election timeout in ms (same as --node-option election-timeout=MIN-MAX)")
    p.add_argument("--no-pre-vote", dest="pre_vote", action="store_false", default=None,
                   help="raftnode: same as --node-option pre-vote=false")
    p.add_argument("--no-check-quorum", dest="check_quorum", action="store_false", default=None,
                   help="raftnode: same as --node-option check-quorum=false")
    p.add_argument("--subnet", help="docker: the run network's subnet (e.g. 10.77.0.0/24)")
    p.add_argument("--provisioner-option", dest="provisioner_options", action="append", type=_key_value,
                   metavar="KEY=VALUE", help="extra provisioner setting, repeatable "
                   "(local: base_address=127.0.0.11; docker: image=NAME; ssh: inventory=hosts.yaml)")


def add_run_only_options(p: argparse.ArgumentParser) -> None:
    """Flags of `run` alone: repetition, the cluster's life, a resolved config."""
    p.add_argument("--test-count", type=int, default=1, metavar="N",
                   help="run the test up to N times (seeds SEED, SEED+1, ...), stopping at the first that is not valid")
    p.add_argument("--leave-db-running", action="store_true",
                   help="keep the cluster up after the run (`splitbrain cluster down --name RUN_ID` removes it)")
    p.add_argument("--cluster", metavar="NAME",
                   help="run against a cluster started with `splitbrain cluster up --name NAME` (it stays up)")
    p.add_argument("--config", metavar="FILE", help="a resolved run config as JSON (what `splitbrain nightly` "
                   "hands its workers); other flags are not allowed with it")
    p.add_argument("--run-name", metavar="NAME", help=argparse.SUPPRESS)   # nightly: the run's folder
    p.add_argument("--no-latest", action="store_true", help=argparse.SUPPRESS)  # nightly: latest is the controller's


RUN_FLAG_FIELDS = ("test_name", "db", "nodes", "workload", "nemesis", "nemesis_interval", "time_limit",
                   "concurrency", "rate", "seed", "provisioner", "bug", "store", "keys", "ops_per_key",
                   "request_timeout", "checker", "subnet", "provisioner_options")
# Flags of the bundled node kept from before node options: flag field -> node option
LEGACY_NODE_FLAGS = {"election_timeout": "election-timeout", "pre_vote": "pre-vote", "check_quorum": "check-quorum"}


def config_from_args(args: argparse.Namespace) -> RunConfig:
    given = {name: getattr(args, name) for name in RUN_FLAG_FIELDS if getattr(args, name, None) is not None}
    if given.get("provisioner_options") is not None:
        given["provisioner_options"] = dict(given["provisioner_options"])
    options = dict(getattr(args, "node_options", None) or [])
    for field, name in LEGACY_NODE_FLAGS.items():
        value = getattr(args, field, None)
        if value is not None:
            options[name] = ("true" if value else "false") if isinstance(value, bool) else value
    if options:
        given["node_options"] = options
    if given.get("seed") is None:
        given["seed"] = random.SystemRandom().randrange(1, 2**31)
    if args.scenario:
        from chaos.scenario import load_scenario

        if "nemesis" in given:
            raise ConfigError("--nemesis and --scenario do not mix: the scenario sets the faults")
        return load_scenario(args.scenario, overrides=given)
    from chaos.registry import db_defaults
    for key, value in db_defaults(given.get("db", "raftnode")).items():
        given.setdefault(key, value)
    given.setdefault("test_name", given.get("workload", "register"))
    return RunConfig(**given).validate()


def cmd_run(args: argparse.Namespace) -> int:
    from chaos.runner import EXIT_VALID, Runner

    if args.test_count < 1:
        raise ConfigError(f"--test-count must be at least 1, got {args.test_count}")
    if args.config:
        given = [f for f in RUN_FLAG_FIELDS + ("scenario", "node_options") if getattr(args, f, None) is not None]
        if given:
            raise ConfigError(f"--config carries the whole config: drop --{given[0].replace('_', '-')}")
        with open(args.config, encoding="utf-8") as f:
            config = RunConfig.from_dict(json.load(f)).validate()
    else:
        config = config_from_args(args)
    attach = None
    if args.cluster:
        config, attach = cluster_config(args.cluster, config)
    kw = {"argv": sys.argv, "run_name": args.run_name, "leave_db_running": args.leave_db_running,
          "update_latest": not args.no_latest, "attach": attach}
    code = EXIT_VALID
    for i in range(args.test_count):
        if args.test_count > 1:
            print(f"splitbrain: test {i + 1} of {args.test_count} (seed {config.seed})", file=sys.stderr, flush=True)
        runner = Runner(config, **kw)
        code = runner.execute()
        if code != EXIT_VALID or runner.interrupted is not None:
            if args.test_count > 1:
                print(f"splitbrain: test {i + 1} of {args.test_count} (seed {config.seed}) ended with exit {code}; "
                      "not running the rest", file=sys.stderr)
            break
        config = RunConfig.from_dict({**config.to_dict(), "seed": config.seed + 1}).validate()
    return code


def cluster_config(name: str, config: RunConfig):
    """The run's config against a cluster of `splitbrain cluster up`: its system, provisioner,
    nodes and their settings; the run's own workload, faults and limits. Returns (config, the
    cluster's state)."""
    from chaos.provision.cli import load_state

    state = load_state(name)
    if state is None:
        raise ConfigError(f"no cluster {name!r} is up (`splitbrain cluster up --name {name}` starts one)")
    cluster = state.get("config") or {}
    fields = config.to_dict()
    for key in ("db", "provisioner", "nodes", "node_options", "bug", "subnet", "provisioner_options"):
        if key in cluster:
            fields[key] = cluster[key]
    fields["provisioner_options"] = {**(cluster.get("provisioner_options") or {}),
                                     **state.get("provisioner_settings", {})}
    fields["nodes"] = len(state["nodes"])
    return RunConfig.from_dict(fields).validate(), state


def reproduce_config(run_dir: str, provisioner: str | None = None, store: str | None = None,
                     provisioner_options: dict | None = None) -> RunConfig:
    """The config of `run_dir` with its executed fault schedule, naming the nodes it hit."""
    from chaos.scenario import validate_steps
    from chaos.store import open_run_dir

    run = open_run_dir(run_dir)
    doc = run.read_json("config.json")
    from chaos.config import LEGACY_NODE_OPTIONS
    fields = {k: v for k, v in doc.items() if k in RunConfig.__dataclass_fields__ or k in LEGACY_NODE_OPTIONS}
    config = RunConfig.from_dict(fields)
    config.scenario = None
    config.reproduces = run.path
    if provisioner:
        config.provisioner = provisioner
    if store:
        config.store = store
    if provisioner_options:
        config.provisioner_options = {**config.provisioner_options, **provisioner_options}
    replay = doc.get("replay_schedule")
    if replay is None:
        raise ConfigError(f"{run.config_path} has no replay_schedule (was it written by splitbrain run?)")
    config.validate()
    config.schedule = validate_steps(replay, config, source=run.config_path)
    return config


def cmd_reproduce(args: argparse.Namespace) -> int:
    from chaos.runner import Runner

    config = reproduce_config(args.run_dir, args.provisioner, args.store,
                              dict(args.provisioner_options or []))
    print(f"splitbrain: reproducing {config.reproduces} (seed {config.seed}, "
          f"{len(config.schedule or ())} fault steps)", file=sys.stderr)
    return Runner(config, argv=sys.argv).execute()


def cmd_nightly(args: argparse.Namespace) -> int:
    from chaos.nightly import run_matrix

    return run_matrix(args.matrix, store=args.store, dry_run=args.dry_run, provisioner=args.provisioner,
                      concurrency=args.concurrency, scheduler=args.scheduler, sequential=args.sequential)


def _missing(name: str, module: str, error: Exception):
    def handler(args):
        print(f"splitbrain {name}: not available in this installation ({module}: {error})", file=sys.stderr)
        return EXIT_CRASHED
    return handler


def _register_external(sub, module: str, names: list[str]) -> None:
    """Let another package add its subcommands; a clear error if it is not there."""
    try:
        mod = __import__(module, fromlist=["register"])
        register = mod.register
    except Exception as e:  # noqa: BLE001 - a broken part must not take the whole CLI down
        for name in names:
            p = sub.add_parser(name, help=f"(unavailable: {module} is missing)")
            p.add_argument("rest", nargs=argparse.REMAINDER)
            p.set_defaults(func=_missing(name, module, e))
        return
    try:
        register(sub)
    except Exception as e:  # noqa: BLE001
        print(f"splitbrain: warning: {module}.register failed: {e}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="splitbrain", description="Jepsen-style fault injection for distributed "
                    "systems, with a Raft key-value store as the first system under test.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("run", help="provision a cluster, drive clients, inject faults, check, report")
    add_run_options(p)
    add_run_only_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("reproduce", help="run a stored run again: same config, seed and fault schedule")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--provisioner")
    p.add_argument("--store", metavar="DIR")
    p.add_argument("--provisioner-option", dest="provisioner_options", action="append", type=_key_value,
                   metavar="KEY=VALUE", help="override a provisioner setting of the original run")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("nightly", help="run a matrix of scenarios/configs, then render the index")
    p.add_argument("matrix", metavar="MATRIX.yaml")
    p.add_argument("--store", metavar="DIR", help="override the matrix's store")
    p.add_argument("--provisioner", help="override every run's provisioner")
    p.add_argument("--dry-run", action="store_true", help="validate and list the runs, run nothing")
    p.add_argument("--concurrency", type=int, default=1, metavar="N",
                   help="runs at once on an embedded Dask LocalCluster of N workers (default 1)")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786", help="a Dask scheduler whose workers run the runs")
    p.add_argument("--sequential", action="store_true",
                   help="no Dask: one run after another in this process")
    p.set_defaults(func=cmd_nightly)

    _register_external(sub, "checkers.cli", ["check"])
    _register_external(sub, "reports.cli", ["report", "serve"])
    _register_external(sub, "chaos.provision.cli", ["image", "cluster", "clean"])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except ConfigError as e:
        print(f"splitbrain: {e}", file=sys.stderr)
        return EXIT_CRASHED
    except ValueError as e:  # ScenarioError and friends carry file:line
        print(f"splitbrain: {e}", file=sys.stderr)
        return EXIT_CRASHED
    except OSError as e:
        print(f"splitbrain: {e}", file=sys.stderr)
        return EXIT_CRASHED
    except KeyboardInterrupt:
        print("splitbrain: interrupted", file=sys.stderr)
        return EXIT_CRASHED
    except Exception:  # noqa: BLE001 - a crash is exit 255, never Python's 1 ("invalid")
        import traceback

        traceback.print_exc()
        print("splitbrain: crashed (exit 255)", file=sys.stderr)
        return EXIT_CRASHED
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
