"""CLI pieces: `splitbrain image build`, `cluster up|status|down`, `clean`.

`cluster up` leaves the cluster running after the command exits (a detached cluster: its
resources say owner pid 0, so `clean` leaves it alone) and records it in a state file that
`cluster status` and `cluster down` read:  $SPLITBRAIN_STATE_DIR (default ~/.cache/splitbrain)
/clusters/<name>.json.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from chaos.interfaces import Node, StatusProbe
from chaos.provision import PROVISIONERS, make_db
from chaos.provision.base import ProvisionError
from chaos.provision.image import register as register_image

EXIT_CRASHED = 255


def state_dir() -> str:
    root = os.environ.get("SPLITBRAIN_STATE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "splitbrain")
    return os.path.join(root, "clusters")


def state_path(name: str) -> str:
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"cluster name must be letters, digits, '-' or '_', got {name!r}")
    return os.path.join(state_dir(), f"{name}.json")


def load_state(name: str) -> dict | None:
    try:
        with open(state_path(name)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def register(subparsers) -> None:
    register_image(subparsers)

    cluster = subparsers.add_parser("cluster", help="start, inspect and stop a cluster that outlives the command")
    sub = cluster.add_subparsers(dest="cluster_command", required=True)
    up = sub.add_parser("up", help="start a cluster and leave it running")
    up.add_argument("--db", default="raftnode", help="the system to run (default raftnode)")
    up.add_argument("--provisioner", choices=PROVISIONERS, default="docker")
    up.add_argument("--nodes", type=int, default=5)
    up.add_argument("--name", default="default", help="several clusters can be up under different names")
    up.add_argument("--subnet", default="10.77.0.0/24", help="docker: the run's internal network")
    up.add_argument("--base-address", default="127.0.0.11", help="local: the first node's loopback address")
    up.add_argument("--bug", default=None, help="start the nodes with a seeded bug")
    up.add_argument("--node-option", dest="node_options", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting of the system (raftnode: election-timeout=150-300, heartbeat=50, ...)")
    up.add_argument("--election-timeout", default=None, metavar="MIN-MAX", help="raftnode: election timeout (ms)")
    up.add_argument("--heartbeat", type=int, default=None, metavar="MS", help="raftnode: heartbeat interval (ms)")
    up.add_argument("--json", action="store_true", help='print {"nodes": [{"id", "url"}, ...]}')
    up.set_defaults(func=cmd_up)
    for name, func, text in (("status", cmd_status, "each node's role, term and leader"),
                             ("down", cmd_down, "remove the cluster")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--name", default="default")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)

    clean = subparsers.add_parser("clean", help="remove what crashed runs left behind (containers, networks, "
                                                "local processes, iptables chains)")
    clean.add_argument("--all", action="store_true",
                       help="remove every splitbrain resource, including live runs and detached clusters")
    clean.add_argument("--ssh", metavar="INVENTORY", help="clean the SSH hosts of this inventory instead: the node "
                       "processes, iptables chains and files of runs whose controller (on this machine) is gone")
    clean.add_argument("--json", action="store_true")
    clean.set_defaults(func=cmd_clean)


def _config(state: dict):
    from chaos.config import RunConfig
    return RunConfig.from_dict(state["config"])


def cmd_up(args) -> int:
    from chaos.config import RunConfig

    path = state_path(args.name)
    if os.path.exists(path):
        print(f"splitbrain cluster up: cluster {args.name!r} is already up ({path}); "
              "`splitbrain cluster down` first", file=sys.stderr)
        return EXIT_CRASHED
    options = {}
    for item in args.node_options:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"splitbrain cluster up: --node-option expects NAME=VALUE, got {item!r}", file=sys.stderr)
            return EXIT_CRASHED
        options[key.strip()] = value.strip()
    if args.election_timeout:
        options["election-timeout"] = args.election_timeout
    if args.heartbeat:
        options["heartbeat"] = args.heartbeat
    extra = {"subnet": args.subnet} if args.provisioner == "docker" else {"base_address": args.base_address}
    run_id = f"cluster-{args.name}"
    try:
        config = RunConfig(db=args.db, nodes=args.nodes, provisioner=args.provisioner, bug=args.bug,
                           node_options=options, nemesis=["partition", "kill", "pause"],
                           provisioner_options=extra).validate()
        db = make_db(config, run_id)
        db.detached = True
        nodes = db.setup(args.nodes)
    except (ProvisionError, ValueError) as e:
        print(f"splitbrain cluster up: {e}", file=sys.stderr)
        return EXIT_CRASHED
    record_cluster(args.name, db, config, nodes, run_id=run_id)
    if args.json:
        print(json.dumps({"nodes": [{"id": n.id, "url": n.client_url} for n in nodes]}))
    else:
        for n in nodes:
            print(f"{n.id}  {n.client_url}")
        print(f"cluster {args.name!r} is up ({args.db} on {args.provisioner}); `splitbrain cluster down` removes it")
    return 0


def record_cluster(name: str, db, config, nodes, run_id: str | None = None) -> str:
    """The state file of a cluster that outlives its command (`cluster up`, `run
    --leave-db-running`): what `cluster status|down` and `run --cluster NAME` read."""
    path = state_path(name)
    state = {"name": name, "run_id": run_id or db.run_id, "provisioner": config.provisioner, "count": len(nodes),
             "db": config.db, "subnet": getattr(db, "subnet", None) if config.provisioner == "docker" else None,
             "config": {k: v for k, v in config.to_dict().items() if k != "schedule"},
             "provisioner_settings": {k: str(getattr(db, k)) for k in ("subnet", "base_address")
                                      if getattr(db, k, None) is not None},
             "nodes": [{"id": n.id, "url": n.client_url, "address": n.address,
                        "client_port": n.client_port, "peer_port": n.peer_port} for n in nodes]}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(path + ".tmp", path)
    return path


def cmd_status(args) -> int:
    state = load_state(args.name)
    if state is None:
        print(f"splitbrain cluster status: no cluster {args.name!r} is up", file=sys.stderr)
        return EXIT_CRASHED
    db = make_db(_config(state), state["run_id"]) if "config" in state else None
    rows: list[dict[str, Any]] = []
    for entry in state["nodes"]:
        node = Node(entry["id"], entry["url"], entry["address"], entry.get("peer_port", 9000),
                    entry.get("client_port", 8000))
        status = db.probe(node, 1.0) if isinstance(db, StatusProbe) else None
        rows.append({"id": node.id, "url": node.client_url, "status": status})
    if args.json:
        print(json.dumps({"name": state["name"], "provisioner": state["provisioner"], "nodes": rows}))
    else:
        for row in rows:
            st = row["status"]
            text = (" ".join(f"{k} {st.get(k)}" for k in ("role", "term", "leader", "commit_index") if k in st)
                    if st else "no answer")
            print(f"{row['id']}  {row['url']}  {text}")
    return 0 if any(r["status"] for r in rows) else 1


def teardown_state(state: dict) -> None:
    if state["provisioner"] == "docker":
        db = make_db(_config(state), state["run_id"]) if "config" in state else None
        if db is None:
            from chaos.provision.docker import ContainerDB
            db = ContainerDB(state["run_id"], nodes=state.get("count", 3),
                             subnet=state.get("subnet") or "10.77.0.0/24")
        db.teardown()
    elif state["provisioner"] == "ssh":
        make_db(_config(state), state["run_id"]).teardown()
    else:
        from chaos.provision.local import destroy_state, read_states
        for local in read_states():
            if local.get("run") == state["run_id"]:
                destroy_state(local)


def cmd_down(args) -> int:
    state = load_state(args.name)
    if state is None:
        print(f"splitbrain cluster down: no cluster {args.name!r} is up", file=sys.stderr)
        return EXIT_CRASHED
    from chaos.provision.allocate import release

    teardown_state(state)
    release(state["run_id"])
    os.remove(state_path(args.name))
    if args.json:
        print(json.dumps({"removed": state["name"]}))
    else:
        print(f"cluster {args.name!r} removed")
    return 0


def cmd_clean(args) -> int:
    from chaos.provision.cleanup import clean

    if args.ssh:
        return _clean_ssh(args)
    removed = clean(all=args.all)
    if args.all:
        # every detached cluster went too: forget them
        for name in os.listdir(state_dir()) if os.path.isdir(state_dir()) else []:
            if name.endswith(".json"):
                os.remove(os.path.join(state_dir(), name))
    if args.json:
        print(json.dumps(removed))
    else:
        items = [f"{kind[:-1] if kind.endswith('s') else kind} {name}"
                 for kind, names in removed.items() if isinstance(names, list) for name in names]
        print("\n".join(items) if items else "nothing to clean")
        if removed.get("docker_error"):
            print(f"(docker: {removed['docker_error']})", file=sys.stderr)
    return 0


def _clean_ssh(args) -> int:
    from chaos.provision.ssh import clean_hosts

    try:
        removed = clean_hosts(args.ssh, all=args.all)
    except ValueError as e:  # a bad inventory: its file and entry are named
        print(f"splitbrain clean: {e}", file=sys.stderr)
        return EXIT_CRASHED
    if args.json:
        print(json.dumps(removed))
    else:
        for host in removed["ssh"]:
            items = ([f"run {r}" for r in host["runs"]] + [f"process {p}" for p in host["processes"]]
                     + [f"chain {c}" for c in host["chains"]])
            print(f"{host['host']}: {', '.join(items) if items else 'nothing to clean'}")
            for error in host["errors"]:
                print(f"{host['host']}: {error}", file=sys.stderr)
    return 1 if any(h["errors"] for h in removed["ssh"]) else 0
