"""Network partitions: DROP rules in a chain of our own, applied by the provisioner.

The provisioner (DockerDB / LocalDB) owns the rules: `db.partition(cut)` replaces the current
partition, `db.heal_partition()` flushes it, and the DB re-applies the current partition when it
has to recreate a node's network namespace (a restarted container). So a node restarted while
partitioned stays partitioned.
"""

from __future__ import annotations

from chaos.history import Op
from chaos.interfaces import Nemesis
from chaos.nemesis.common import complete, current_leader
from chaos.nemesis.topology import make_partition


class PartitionNemesis(Nemesis):
    fs = frozenset({"partition", "heal"})

    def __init__(self, db, nodes, view, rng):
        if not (hasattr(db, "partition") and hasattr(db, "heal_partition")):
            raise ValueError(f"{type(db).__name__} cannot partition the network "
                             "(it needs partition(cut) and heal_partition())")
        self.db, self.nodes, self.view, self.rng = db, list(nodes), view, rng
        self.active = None

    def invoke(self, op: Op) -> Op:
        if op.f == "partition":
            ids = [n.id for n in self.nodes]
            value = op.value if op.value is not None else {"topology": "random-halves"}
            leader = current_leader(self.view) if isinstance(value, dict) and value.get("topology") == "isolate-leader" else None
            partition = make_partition(value, ids, self.rng, leader=leader)
            self.db.partition([tuple(pair) for pair in partition.cut])
            self.active = partition
            return complete(op, partition.to_value())
        if op.f == "heal":
            self.db.heal_partition()
            self.active = None
            return complete(op, {"healed": "partition"})
        raise ValueError(f"the partition nemesis does not handle {op.f!r} (it handles partition, heal)")

    def heal_all(self) -> None:
        self.db.heal_partition()
        self.active = None
