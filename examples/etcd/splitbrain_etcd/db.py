"""etcd 3.4 (Debian's etcd-server) as a splitbrain DB: a ContainerDB plus who leads.

Registered as `splitbrain.dbs: etcd` (this package's pyproject.toml), so after
`pip install -e examples/etcd`:

    splitbrain image build --db etcd
    splitbrain run --db etcd --nodes 3 --nemesis partition,kill,pause --time-limit 30
    splitbrain run --db etcd --node-option read-mode=serializable --scenario examples/etcd/follower-isolation.yaml

Kill, pause, partitions, logs and exec come from ContainerDB; this module says how etcd is
started, how to ask it who leads (its own maintenance API), and which client speaks to it.
Clock faults are refused: etcd is a Go binary, which reads time through the vDSO rather than
libc, so the clock shim cannot reach it.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import tempfile

from chaos.interfaces import Client, Node, Primaries, StatusProbe, StatusView, Unsupported
from chaos.provision.base import ProvisionError, db_factory, wait_until
from chaos.provision.docker import ContainerDB
from chaos.provision.image import build_image

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGE_TAG = "splitbrain-etcd:latest"

NODE_OPTION_HELP = {
    "read-mode": "linearizable (default) or serializable: how the register client reads",
    "election-timeout": "etcd's --election-timeout in ms (default 1000)",
    "heartbeat-interval": "etcd's --heartbeat-interval in ms (default 100)",
    "leader": "a node id (e.g. n1) that leads once the cluster is up (etcd's move-leader)",
}


def build_images(force: bool = False) -> list[str]:
    """The image: the splitbrain base plus the host's etcd binary (no registry, no network)."""
    binary = os.environ.get("SPLITBRAIN_ETCD_BINARY") or shutil.which("etcd") or "/usr/bin/etcd"
    if not os.path.isfile(binary):
        raise ProvisionError(f"no etcd binary at {binary}: install Debian's etcd-server "
                             "(apt-get install etcd-server) or set SPLITBRAIN_ETCD_BINARY")
    with tempfile.TemporaryDirectory(prefix="splitbrain-etcd-image-") as context:
        shutil.copy(os.path.join(HERE, "Dockerfile"), context)
        shutil.copy(binary, os.path.join(context, "etcd"))
        return [build_image(context, IMAGE_TAG, include=("etcd",), force=force)]


def _ms(name: str, value) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"node option {name} must be a positive number of ms, got {value!r}")
    return number


class EtcdDB(ContainerDB, Primaries, StatusProbe):
    name = "etcd"
    node_option_help = NODE_OPTION_HELP
    client_port, peer_port = 2379, 2380
    data_dir, log_dir = "/var/lib/etcd", "/var/log/etcd"
    process_match = "etcd"
    clock_via_libc = False  # Go: no clock faults (refused at validation, with this reason)
    fatal_log_patterns = (r"^panic:", r'"level":"(fatal|panic)"')
    request_timeout = 3.0

    def __init__(self, run_id: str, nodes: int = 3, node_options: dict | None = None, **kw):
        super().__init__(run_id, nodes, node_options, **kw)
        opts = self.node_options
        self.read_mode = str(opts.get("read-mode", "linearizable"))
        if self.read_mode not in ("linearizable", "serializable"):
            raise ValueError(f"node option read-mode must be linearizable or serializable, got {self.read_mode!r}")
        self.timing = [f"--{name}={_ms(name, opts[name])}" for name in ("election-timeout", "heartbeat-interval")
                       if name in opts]
        self.initial_leader = opts.get("leader")
        if self.initial_leader is not None and self.initial_leader not in [f"n{i}" for i in range(1, nodes + 1)]:
            raise ValueError(f"node option leader must name a node n1..n{nodes}, got {self.initial_leader!r}")
        self.token = f"{run_id}-{secrets.token_hex(4)}"  # a fresh cluster id for every run
        self.names: dict[str, str] = {}  # etcd member id -> our node id

    def image_tag(self) -> str:
        return self.image or build_images()[0]

    def command(self, node: Node, nodes: list[Node]) -> list[str]:
        peer, client = f"http://{node.address}:{self.peer_port}", f"http://{node.address}:{self.client_port}"
        cluster = ",".join(f"{n.id}=http://{n.address}:{self.peer_port}" for n in nodes)
        return ["/usr/local/bin/etcd", "--name", node.id, "--data-dir", self.data_dir,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--initial-cluster", cluster, "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new", "--logger", "zap", *self.timing]

    # -- status and leader, from etcd's own API ------------------------------------------------
    def _post(self, node: Node, path: str, body: dict, timeout: float) -> dict | None:
        conn = http.client.HTTPConnection(node.address, self.client_port, timeout=timeout)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            return json.loads(data) if response.status == 200 else None
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            conn.close()

    def _name(self, node: Node, member_id: str | None, timeout: float) -> str | None:
        if member_id and member_id not in self.names:
            members = self._post(node, "/v3/cluster/member/list", {}, timeout) or {}
            self.names.update({m["ID"]: m["name"] for m in members.get("members", []) if m.get("name")})
        return self.names.get(member_id) if member_id else None

    def probe(self, node: Node, timeout: float) -> dict | None:
        status = self._post(node, "/v3/maintenance/status", {}, timeout)
        if status is None:
            return None
        me, leader = status.get("header", {}).get("member_id"), status.get("leader")  # 0 is omitted
        return {"role": "leader" if leader and leader == me else "follower",
                "term": int(status.get("raftTerm", 0)), "leader": self._name(node, leader, timeout),
                "member_id": me, "leader_id": leader, "raft_index": int(status.get("raftIndex", 0))}

    def primaries(self, view: StatusView | None) -> list[str]:
        statuses = view.fresh_statuses() if view is not None else \
            {n.id: s for n in self.nodes if (s := self.probe(n, 0.5))}
        leaders = sorted((s["term"], nid) for nid, s in statuses.items() if s.get("role") == "leader")
        return [leaders[-1][1]] if leaders else []  # a deposed leader has the lower term

    def wait_ready(self, nodes: list[Node], timeout: float) -> None:
        """Until every node answers and all name the same leader (which then says it leads)."""
        last: list = []

        def agreed() -> bool:
            last[:] = [self.probe(n, 1.0) for n in nodes]
            leaders = {s["leader"] if s else None for s in last}
            return len(leaders) == 1 and None not in leaders
        if not wait_until(agreed, timeout, interval=0.1):
            states = ", ".join(f"{n.id}: {s['role']} term {s['term']} leader {s['leader']}" if s
                               else f"{n.id}: no answer" for n, s in zip(nodes, last, strict=True))
            raise ProvisionError(f"etcd elected no leader that every node names within {timeout:.0f} s ({states})")
        if self.initial_leader:
            self._move_leader(nodes, self.initial_leader, timeout)

    def _move_leader(self, nodes: list[Node], target: str, timeout: float) -> None:
        by_id = {n.id: n for n in nodes}
        target_id = next(mid for mid, name in self.names.items() if name == target)

        def moved() -> bool:
            leaders = self.primaries(None)
            if leaders and leaders != [target]:  # only the leader can hand over
                self._post(by_id[leaders[0]], "/v3/maintenance/transfer-leadership", {"targetID": target_id}, 5.0)
            return self.primaries(None) == [target]
        if not wait_until(moved, timeout, interval=0.2):
            raise ProvisionError(f"etcd did not hand leadership to {target} within {timeout:.0f} s")

    # -- clients and report ----------------------------------------------------------------------
    def client(self, workload: str, client_id: str) -> Client:
        if workload != "register":
            raise Unsupported(f"etcd has a client for the register workload only, not {workload!r}")
        from splitbrain_etcd.client import EtcdRegisterClient
        return EtcdRegisterClient(self.request_timeout, serializable=self.read_mode == "serializable")

    def describe(self) -> dict:
        return {"system": "etcd 3.4 (Debian's etcd-server)", "reads": self.read_mode,
                "node options": {k: str(v) for k, v in sorted(self.node_options.items())}}


# The registry's entry (splitbrain.dbs: etcd): --provisioner docker, node options, provisioner
# options and the request timeout from the run's config.
make_db = db_factory(EtcdDB)
make_db.build_images = build_images  # `splitbrain image build --db etcd`
