"""`python -m raftnode`: run one Raft key-value node (flags: docs/contracts.md §2; see --help)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from .codec import MAX_ID_BYTES
from .http import IDLE_TIMEOUT_S, MAX_OPEN_CONNECTIONS
from .membership import id_problem
from .server import KNOWN_BUGS, Member, NodeOptions, parse_cluster, run_node
from .storage import IdentityMismatch, StorageCorruption

SECRET_ENV = "RAFTNODE_PEER_SECRET"
MIN_SECRET_BYTES = 16
FD_RESERVE = 64  # descriptors kept for peer links, log and data files beyond the client connections


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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="raftnode",
        description="A Raft replicated key-value node with an HTTP/JSON client API "
                    "(GET/PUT/DELETE /kv/<key>, POST /kv/<key>/cas, POST /kv/<key>/append, GET /status).",
        epilog="Example: python -m raftnode --id n1 --cluster "
               "n1=127.0.0.1:9001/127.0.0.1:8001,n2=127.0.0.1:9002/127.0.0.1:8002,n3=127.0.0.1:9003/127.0.0.1:8003 "
               "--client-listen 127.0.0.1:8001 --peer-listen 127.0.0.1:9001 --data-dir /tmp/n1 "
               "--peer-secret-file /etc/raftnode/peer-secret (the same file on every node). "
               "Exit codes: 0 stopped by SIGTERM/SIGINT; 1 cannot start (e.g. address in use); 2 bad flags "
               "or a corrupt data directory (the message names the file and byte offset); 3 the node "
               "stopped itself on an internal failure (disk error, broken invariant).")
    p.add_argument("--id", required=True, help="this node's id; must appear in --cluster (or be new, with --join)")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--cluster",
                       help="bootstrap: every voter as id=peer_host:peer_port/client_host:client_port, "
                            "comma-separated (the same on every bootstrap member); the client address is "
                            "what redirects (307 Location, leader_url) point to")
    start.add_argument("--join", metavar="PEER_HOST:PORT/CLIENT_HOST:PORT",
                       help="join a running cluster: start with no configuration, advertising these "
                            "addresses; the node never campaigns until the leader adds it "
                            "(POST /cluster/learners with the incarnation in this node's GET /status) "
                            "and a committed configuration names it a voter")
    p.add_argument("--client-listen", type=_hostport, default=None,
                   help="HTTP client API listen address host:port "
                        "(default: this node's client address, all interfaces)")
    p.add_argument("--peer-listen", type=_hostport, default=None,
                   help="peer protocol listen address host:port (default: this node's peer address, all interfaces)")
    p.add_argument("--data-dir", required=True, help="directory for the log, hard state and snapshots")
    p.add_argument("--log-file", default=None, help="append structured JSON event lines here (also written to stderr)")
    p.add_argument("--election-timeout", type=_range_ms, default=(150, 300), metavar="MIN-MAX",
                   help="randomized election timeout range in ms (default 150-300)")
    p.add_argument("--heartbeat", type=_positive, default=50, metavar="MS",
                   help="heartbeat interval in ms (default 50)")
    p.add_argument("--tick", type=_positive, default=10, metavar="MS", help="logical clock tick in ms (default 10)")
    p.add_argument("--request-timeout", type=_positive, default=2000, metavar="MS",
                   help="client request deadline in ms; a write past it gets 504 timeout (default 2000)")
    p.add_argument("--no-pre-vote", action="store_true", help="disable the pre-vote phase")
    p.add_argument("--no-check-quorum", action="store_true", help="disable check-quorum (leader step-down)")
    p.add_argument("--snapshot-every", type=int, default=10000, metavar="N",
                   help="snapshot the state machine (and compact the log) every N applied entries; "
                        "0 disables (default 10000)")
    p.add_argument("--bug", action="append", default=[], choices=KNOWN_BUGS, metavar="NAME",
                   help="enable a seeded bug (repeatable), for testing the test framework: " + ", ".join(KNOWN_BUGS))
    p.add_argument("--no-storage-thread", action="store_true",
                   help="fsync on the event loop instead of a storage thread (slower; for comparison)")
    p.add_argument("--seed", type=int, default=None, help="seed of the election-timeout randomness (default: random)")
    p.add_argument("--quiet", action="store_true", help="do not copy log lines to stderr")
    p.add_argument("--peer-secret-file", default=None, metavar="FILE",
                   help="file holding the cluster's peer secret (at least 16 bytes; surrounding whitespace "
                        f"is ignored); peers prove they hold it when they connect. Or set {SECRET_ENV}. "
                        "Without either the node refuses to start, unless --insecure-peers")
    p.add_argument("--insecure-peers", action="store_true",
                   help="accept peer connections without a secret: anyone who reaches the peer port can "
                        "then act as a member (for trusted, isolated networks only)")
    p.add_argument("--max-client-connections", type=_positive, default=MAX_OPEN_CONNECTIONS, metavar="N",
                   help=f"client connections served at once; more are answered 503 and closed (default "
                        f"{MAX_OPEN_CONNECTIONS}, lowered to fit the open-files limit)")
    p.add_argument("--client-idle-timeout", type=_seconds, default=IDLE_TIMEOUT_S, metavar="SECONDS",
                   help="close a client connection after this long without a request in flight "
                        f"(default {IDLE_TIMEOUT_S:g})")
    return p


def read_peer_secret(args: argparse.Namespace, parser: argparse.ArgumentParser) -> bytes | None:
    """The peer secret from --peer-secret-file or the environment; None for --insecure-peers."""
    env_secret = os.environ.get(SECRET_ENV)
    if args.insecure_peers:
        if args.peer_secret_file or env_secret:
            parser.error(f"--insecure-peers contradicts --peer-secret-file / {SECRET_ENV}: choose one")
        return None
    if args.peer_secret_file:
        try:
            with open(args.peer_secret_file, "rb") as f:
                secret = f.read().strip()
        except OSError as exc:
            parser.error(f"--peer-secret-file: cannot read {args.peer_secret_file}: {exc.strerror}")
        where = f"--peer-secret-file {args.peer_secret_file}"
    elif env_secret:
        secret, where = env_secret.strip().encode("utf-8"), SECRET_ENV
    else:
        parser.error(f"no peer secret: give --peer-secret-file FILE or set {SECRET_ENV} (the same secret on "
                     "every node of the cluster), or run with --insecure-peers to accept any peer")
    if len(secret) < MIN_SECRET_BYTES:
        parser.error(f"the peer secret from {where} is {len(secret)} bytes; it needs at least {MIN_SECRET_BYTES}")
    return secret


def client_connection_limit(wanted: int, peers: int) -> int:
    """`wanted`, lowered if needed so that client connections can never take the descriptors that
    peer links, the log and the data files need (after raising the soft open-files limit)."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        if soft != resource.RLIM_INFINITY and soft < target:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
    except ImportError:  # not a POSIX system
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - FD_RESERVE - 4 * peers))


def options_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> NodeOptions:
    join = None
    if args.join is not None:
        peer, sep, client = args.join.partition("/")
        if not sep:
            parser.error(f"--join {args.join!r} is not PEER_HOST:PORT/CLIENT_HOST:PORT")
        problem = id_problem(args.id)
        if problem:
            parser.error(f"--id: {problem}")
        try:
            join = Member.from_addresses(args.id, peer, client)
        except ValueError as exc:
            parser.error(f"--join: {exc}")
        cluster, me = {}, join
    else:
        try:
            cluster = parse_cluster(args.cluster)
        except ValueError as exc:
            parser.error(f"--cluster: {exc}")
        if args.id not in cluster:
            parser.error(f"--id {args.id!r} is not in --cluster ({', '.join(cluster)})")
        me = cluster[args.id]
    for node_id in cluster:
        if len(node_id.encode("utf-8")) > MAX_ID_BYTES:
            parser.error(f"--cluster: node id {node_id[:40]!r}... is longer than {MAX_ID_BYTES} bytes")
    secret = read_peer_secret(args, parser)
    for tick_name, value in (("--heartbeat", args.heartbeat), ("--election-timeout", args.election_timeout[0])):
        if value < args.tick:
            parser.error(f"{tick_name} ({value} ms) must be at least one --tick ({args.tick} ms)")
    return NodeOptions(
        node_id=args.id, cluster=cluster, join=join,
        client_listen=args.client_listen or ("0.0.0.0", me.client_port),
        peer_listen=args.peer_listen or ("0.0.0.0", me.peer_port),
        data_dir=args.data_dir, log_file=args.log_file, election_timeout_ms=args.election_timeout,
        heartbeat_ms=args.heartbeat, tick_ms=args.tick, request_timeout_ms=args.request_timeout,
        pre_vote=not args.no_pre_vote, check_quorum=not args.no_check_quorum,
        snapshot_every=args.snapshot_every, bugs=frozenset(args.bug), seed=args.seed,
        log_stderr=not args.quiet, storage_thread=not args.no_storage_thread,
        peer_secret=secret, insecure_peers=args.insecure_peers,
        max_client_connections=args.max_client_connections,
        client_idle_timeout_s=args.client_idle_timeout)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 stopped by SIGTERM/SIGINT, 1 cannot start (address in use...), 2 bad flags or a
    corrupt data directory, 3 stopped itself on an internal failure (disk error, broken invariant)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    opts = options_from_args(args, parser)
    opts.max_client_connections = client_connection_limit(opts.max_client_connections, max(len(opts.cluster), 8))
    try:
        return asyncio.run(run_node(opts))
    except (StorageCorruption, IdentityMismatch) as exc:
        print(f"raftnode: fatal: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"raftnode: fatal: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
