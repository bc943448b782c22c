"""`python -m raftnode`: run one Raft key-value node (flags: docs/contracts.md §2; see --help)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .server import KNOWN_BUGS, NodeOptions, parse_cluster, run_node
from .storage import StorageCorruption


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def _range_ms(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        lo, hi = (int(low), int(high)) if sep else (int(low), int(low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not MIN-MAX in milliseconds") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"election timeout {text!r} needs 0 < MIN <= MAX")
    return lo, hi


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="raftnode",
        description="A Raft replicated key-value node with an HTTP/JSON client API "
                    "(GET/PUT/DELETE /kv/<key>, POST /kv/<key>/cas, POST /kv/<key>/append, GET /status).",
        epilog="Example: python -m raftnode --id n1 --cluster "
               "n1=127.0.0.1:9001/127.0.0.1:8001,n2=127.0.0.1:9002/127.0.0.1:8002,n3=127.0.0.1:9003/127.0.0.1:8003 "
               "--client-listen 127.0.0.1:8001 --peer-listen 127.0.0.1:9001 --data-dir /tmp/n1. "
               "Exit codes: 0 stopped by SIGTERM/SIGINT; 1 cannot start (e.g. address in use); 2 bad flags "
               "or a corrupt data directory (the message names the file and byte offset); 3 the node "
               "stopped itself on an internal failure (disk error, broken invariant).")
    p.add_argument("--id", required=True, help="this node's id; must appear in --cluster")
    p.add_argument("--cluster", required=True,
                   help="every voter as id=peer_host:peer_port/client_host:client_port, comma-separated; "
                        "the client address is what redirects (307 Location, leader_url) point to")
    p.add_argument("--client-listen", type=_hostport, default=None,
                   help="HTTP client API listen address host:port (default: this node's client address, all interfaces)")
    p.add_argument("--peer-listen", type=_hostport, default=None,
                   help="peer protocol listen address host:port (default: this node's peer address, all interfaces)")
    p.add_argument("--data-dir", required=True, help="directory for the log, hard state and snapshots")
    p.add_argument("--log-file", default=None, help="append structured JSON event lines here (also written to stderr)")
    p.add_argument("--election-timeout", type=_range_ms, default=(150, 300), metavar="MIN-MAX",
                   help="randomized election timeout range in ms (default 150-300)")
    p.add_argument("--heartbeat", type=_positive, default=50, metavar="MS", help="heartbeat interval in ms (default 50)")
    p.add_argument("--tick", type=_positive, default=10, metavar="MS", help="logical clock tick in ms (default 10)")
    p.add_argument("--request-timeout", type=_positive, default=2000, metavar="MS",
                   help="client request deadline in ms; a write past it gets 504 timeout (default 2000)")
    p.add_argument("--no-pre-vote", action="store_true", help="disable the pre-vote phase")
    p.add_argument("--no-check-quorum", action="store_true", help="disable check-quorum (leader step-down)")
    p.add_argument("--snapshot-every", type=int, default=10000, metavar="N",
                   help="snapshot the state machine (and compact the log) every N applied entries; 0 disables (default 10000)")
    p.add_argument("--bug", action="append", default=[], choices=KNOWN_BUGS, metavar="NAME",
                   help="enable a seeded bug (repeatable), for testing the test framework: " + ", ".join(KNOWN_BUGS))
    p.add_argument("--no-storage-thread", action="store_true",
                   help="fsync on the event loop instead of a storage thread (slower; for comparison)")
    p.add_argument("--seed", type=int, default=None, help="seed of the election-timeout randomness (default: random)")
    p.add_argument("--quiet", action="store_true", help="do not copy log lines to stderr")
    return p


def options_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> NodeOptions:
    try:
        cluster = parse_cluster(args.cluster)
    except ValueError as exc:
        parser.error(f"--cluster: {exc}")
    if args.id not in cluster:
        parser.error(f"--id {args.id!r} is not in --cluster ({', '.join(cluster)})")
    me = cluster[args.id]
    for tick_name, value in (("--heartbeat", args.heartbeat), ("--election-timeout", args.election_timeout[0])):
        if value < args.tick:
            parser.error(f"{tick_name} ({value} ms) must be at least one --tick ({args.tick} ms)")
    return NodeOptions(
        node_id=args.id, cluster=cluster,
        client_listen=args.client_listen or ("0.0.0.0", me.client_port),
        peer_listen=args.peer_listen or ("0.0.0.0", me.peer_port),
        data_dir=args.data_dir, log_file=args.log_file, election_timeout_ms=args.election_timeout,
        heartbeat_ms=args.heartbeat, tick_ms=args.tick, request_timeout_ms=args.request_timeout,
        pre_vote=not args.no_pre_vote, check_quorum=not args.no_check_quorum,
        snapshot_every=args.snapshot_every, bugs=frozenset(args.bug), seed=args.seed,
        log_stderr=not args.quiet, storage_thread=not args.no_storage_thread)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 stopped by SIGTERM/SIGINT, 1 cannot start (address in use...), 2 bad flags or a
    corrupt data directory, 3 stopped itself on an internal failure (disk error, broken invariant)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    opts = options_from_args(args, parser)
    try:
        return asyncio.run(run_node(opts))
    except StorageCorruption as exc:
        print(f"raftnode: fatal: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"raftnode: fatal: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
