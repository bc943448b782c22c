"""Network partitions: a topology (chaos.nemesis.topology) resolved to a grudge, applied by the
DB's network layer (chaos.net). The layer keeps the grudge in force and re-applies it when a
node's namespace is recreated (a restarted container), so a node restarted while partitioned
stays partitioned.

One-way topologies (leader-deaf, leader-mute, deaf-one, mute-one, one-way) are grudges in one
direction only; the layer applies them per connection (chaos.net.iptables), so the deaf node's
own messages still arrive while it hears nothing its peers send."""

from __future__ import annotations

from chaos.faults import LEADER_TOPOLOGIES
from chaos.history import Op
from chaos.interfaces import Nemesis, require
from chaos.nemesis.common import complete, current_leader, down_nodes, with_down
from chaos.nemesis.topology import make_partition


class PartitionNemesis(Nemesis):
    fs = frozenset({"partition", "heal"})

    def __init__(self, db, nodes, view, rng):
        require(db, "partition", "the partition fault")
        # the run's roster, shared: a partition drawn after a node joined includes it
        self.db, self.nodes, self.view, self.rng = db, nodes, view, rng
        self.active = None

    def invoke(self, op: Op) -> Op:
        if op.f == "partition":
            ids = [n.id for n in self.nodes]
            value = op.value if op.value is not None else {"topology": "random-halves"}
            leader = (current_leader(self.db, self.view)
                      if isinstance(value, dict) and value.get("topology") in LEADER_TOPOLOGIES else None)
            partition = make_partition(value, ids, self.rng, leader=leader)
            self.db.net().drop(partition.grudge(ids))
            self.active = partition
            return complete(op, partition.to_value())
        if op.f == "heal":
            self.db.net().drop({})  # the partition only: link faults of other kinds stay
            self.active = None
            return complete(op, with_down({"healed": "partition"}, down_nodes(self.db, self.nodes)))
        raise ValueError(f"the partition nemesis does not handle {op.f!r} (it handles partition, heal)")

    def heal_all(self) -> None:
        self.db.net().drop({})
        self.active = None
