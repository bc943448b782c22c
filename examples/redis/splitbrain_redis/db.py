"""One redis-server as the system under test, a local process on 127.0.0.x.

    splitbrain run --db redis --provisioner local --nodes 1 --workload register \
        --nemesis kill --node-option appendonly=no

Node options are Redis's own persistence settings: `appendonly=yes|no` and
`fsync=always|everysec|no` (appendfsync). RDB snapshots are always off, so that what survives a
kill depends on the append-only file alone, not on when a snapshot happened to run.
"""

from __future__ import annotations

import os

from chaos.interfaces import Node
from chaos.provision.base import db_factory
from chaos.provision.local import ProcessDB
from splitbrain_redis.client import RegisterClient

CHOICES = {"appendonly": ("yes", "no"), "fsync": ("always", "everysec", "no")}


class RedisDB(ProcessDB):
    name = "redis"
    node_counts = (1,)                # no replication here: one server is the whole system
    client_port = peer_port = 6379    # no peer port either
    node_option_help = {"appendonly": "yes (default) or no: keep an append-only file",
                        "fsync": "appendfsync: always (default), everysec or no"}
    fatal_log_patterns = (r"REDIS BUG REPORT", r"Bad file format reading the append only file")

    def __init__(self, run_id: str, nodes: int = 1, node_options: dict | None = None, **kw):
        super().__init__(run_id, nodes, node_options, **kw)
        self.persistence = {"appendonly": "yes", "fsync": "always"}
        for name, value in self.node_options.items():
            if str(value) not in CHOICES[name]:
                raise ValueError(f"node option {name} must be one of {', '.join(CHOICES[name])}, got {value!r}")
            self.persistence[name] = str(value)
        # withdraws the partition capability, with this reason: nothing to partition
        self.partition_note = "a single redis-server has no peers to cut off"
        self.request_timeout = 3.0

    def _start_process(self, node: Node) -> None:
        # Redis 7.0 mkdir()s its appendonlydir/ without fsyncing the data directory, so a power
        # loss soon after the first start loses the whole append-only file, whatever appendfsync
        # says (measured with lose-unsynced: every acknowledged write gone with fsync=always). An
        # installer that creates the directory durably closes that gap; this DB does it.
        aof_dir = os.path.join(self.data_dir(node), "appendonlydir")
        if self.persistence["appendonly"] == "yes" and not os.path.isdir(aof_dir):
            os.makedirs(aof_dir)
            fd = os.open(self.data_dir(node), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        super()._start_process(node)

    def command(self, node: Node, nodes: list[Node]) -> list[str]:
        return ["redis-server", "--bind", node.address, "--port", str(self.client_port),
                "--dir", self.data_dir(node), "--save", "",
                "--appendonly", self.persistence["appendonly"], "--appendfsync", self.persistence["fsync"]]

    def client_url(self, node: Node) -> str:
        return f"redis://{node.address}:{self.client_port}"

    def client(self, workload: str, client_id: str) -> RegisterClient:
        if workload != "register":
            return super().client(workload, client_id)  # Unsupported, naming the workload
        return RegisterClient(self.request_timeout)

    def describe(self) -> dict:
        return {"system": "redis-server (Debian)", "node options": dict(self.persistence)}


# The registry's entry (splitbrain.dbs: redis): --provisioner local, node options and the
# request timeout from the run's config.
make_db = db_factory(RedisDB)
make_db.defaults = {"provisioner": "local", "nodes": 1}  # a single server, on this machine
