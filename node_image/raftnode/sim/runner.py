"""One randomized simulation run per seed: a cluster, clients and a nemesis, all from the seed.

    result = run_seed(seed, nodes=5, seconds=30, bug=None)
    result.ok, result.violation, result.stats, result.command()

The nemesis runs one fault at a time (sometimes with a lossy network on top): partitions (random
split, isolated leader), crashes (leader, random node, minority, rarely all nodes; half of them
in the middle of the victim's next storage or snapshot job), a lossy network (loss, duplication,
long delays), and a leader whose clock runs slow while it is isolated.
The first partition and the first crash are always scheduled in the first ten seconds.

In about half of the seeds (decided by the seed alone) membership changes run beside the faults,
as the admin API makes them: new nodes start empty and are added as learners, learners are
promoted once caught up, members (the leader among them) are removed and then retired, and
leadership is transferred. In some of those seeds the receivers do not apply the transport's
admission rule, so removed nodes reach the others and only the core's own defences (pre-vote,
the leader lease) stand between them and the cluster.

After `seconds` everything heals, the clients stop, and the cluster must converge: a leader,
every member of the newest configuration applied the same entries, every acknowledged write
applied.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..core import KNOWN_BUGS
from ..membership import PROMOTE, REMOVE, ConfChange
from ..storage import DEFAULT_SEGMENT_BYTES
from .checks import Violation
from .cluster import US, Cluster, NetConfig
from .workload import SimClient

SETTLE_SECONDS = 4.0
FAULTS = ("partition", "isolate-leader", "crash-leader", "crash-random", "crash-minority",
          "crash-all", "lossy", "slow-isolated-leader")
FAULT_WEIGHTS = (3, 3, 3, 2, 2, 0.4, 2, 1.2)
MEMBERSHIP_OPS = ("add-learner", "promote", "remove", "transfer")
MEMBERSHIP_WEIGHTS = (3, 3, 2, 1.5)
MAX_EXTRA_NODES = 3        # nodes added over a run, at most
MIN_VOTERS = 3
MAX_VOTERS = 7


@dataclass
class SimResult:
    seed: int
    nodes: int
    seconds: float
    bug: str | None
    ok: bool
    violation: str | None
    stats: object
    options: dict = field(default_factory=dict)
    trace: list = field(default_factory=list)

    def command(self) -> str:
        cmd = f"python -m raftnode.sim --seed {self.seed} --nodes {self.nodes} --seconds {self.seconds:g}"
        if self.bug:
            cmd += f" --bug {self.bug}"
        return cmd

    def summary(self) -> str:
        s = self.stats
        head = "OK" if self.ok else f"FAILED: {self.violation}"
        return (f"seed {self.seed}: {head}\n"
                f"  nodes={self.nodes} seconds={self.seconds:g} bug={self.bug} options={self.options}\n"
                f"  writes acked={s.writes_acked} failed={s.writes_failed} reads ok={s.reads_ok} "
                f"failed={s.reads_failed}\n"
                f"  crashes={s.crashes} restarts={s.restarts} partitions={s.partitions} "
                f"elections={s.elections} snapshots={s.snapshots} installs={s.snapshot_installs}\n"
                f"  membership changes={s.changes} transfers={s.transfers} refused messages={s.refused}\n"
                f"  messages={sum(s.messages.values())} delivered={s.delivered} dropped={s.dropped} "
                f"events={s.events}")


def default_nodes(seed: int) -> int:
    return (3, 5, 3, 5, 7)[seed % 5]


def run_seed(seed: int, nodes: int | None = None, seconds: float = 30.0, bug: str | None = None,
             trace: bool = False) -> SimResult:
    if bug is not None and bug not in KNOWN_BUGS:
        raise ValueError(f"unknown bug {bug!r}; known: {', '.join(sorted(KNOWN_BUGS))}")
    if nodes is not None and not 3 <= nodes <= 9:
        raise ValueError(f"a randomized run needs 3 to 9 nodes, got {nodes}")
    if seconds < 5:
        raise ValueError(f"a run needs at least 5 simulated seconds, got {seconds}")
    nodes = nodes or default_nodes(seed)
    rng = random.Random(f"splitbrain-sim-{seed}")
    options = {
        "max_entries_per_append": rng.choice((1, 8, 64, 512)),
        "pre_vote": rng.random() < 0.85,
        "check_quorum": rng.random() < 0.85,
        "snapshot_every": rng.choice((0, 0, 25, 100)),
        # Small segments make the storage roll over and compact (create, unlink, fsync the
        # directory) often; crashes in the middle of installing a leader's snapshot test its
        # atomicity (the nemesis's crashes rarely land there).
        "segment_bytes": rng.choice((2048, 65536, DEFAULT_SEGMENT_BYTES)),
        "install_crash_rate": rng.choice((0.0, 0.3)),
    }
    if bug == "lease-read":
        options["check_quorum"] = True  # the bug leans on it: keep the run about the lease
    # Drawn apart from the generator above, so that seeds without membership changes replay
    # exactly as they did before membership existed.
    membership_rng = random.Random(f"splitbrain-sim-{seed}-membership")
    options["membership"] = membership_rng.random() < 0.5
    # Without the admission rule only the lease keeps removed nodes out: it needs check-quorum.
    options["admission"] = not (options["membership"] and options["check_quorum"]
                                and membership_rng.random() < 0.3)
    cluster = Cluster(
        nodes, seed=rng.randrange(1 << 30), bugs=(bug,) if bug else (), trace=trace,
        snapshot_every=options["snapshot_every"], segment_bytes=options["segment_bytes"],
        install_crash_rate=options["install_crash_rate"], admission=options["admission"],
        config_overrides={k: options[k] for k in ("max_entries_per_append", "pre_vote", "check_quorum")},
        net=NetConfig())
    keys = [f"k{i}" for i in range(3)]
    end_us = int(seconds * US)
    for i in range(3 if nodes < 7 else 4):
        client = SimClient(cluster, f"c{i + 1}", keys, random.Random(rng.random()))
        client.start(rng.randint(100_000, 300_000), end_us)
    Nemesis(cluster, random.Random(rng.random()), end_us).plan()
    if options["membership"]:
        MembershipNemesis(cluster, membership_rng, end_us).plan()
    violation = None
    try:
        cluster.run_until(end_us)
        cluster.call_at(end_us, cluster.heal)
        _recover(cluster)
        cluster.run_until(end_us + int(SETTLE_SECONDS * US))
        _converged(cluster)
        cluster.checker.final()
    except Violation as exc:
        violation = str(exc)
    return SimResult(seed, nodes, seconds, bug, violation is None, violation, cluster.stats,
                     options, cluster.trace)


def _recover(cluster: Cluster) -> None:
    cluster.heal()
    cluster.install_crash_rate = 0.0
    cluster.net.drop = cluster.net.duplicate = 0.0
    cluster.net.delay_max_us = NetConfig().delay_max_us
    for node in cluster.nodes.values():
        node.clock_rate = 1.0
        if not node.up:
            cluster.start(node.id)


def _converged(cluster: Cluster) -> None:
    leader = cluster.leader()
    if leader is None:
        raise Violation("liveness", f"no leader {SETTLE_SECONDS:g}s after every fault healed")
    height = len(cluster.checker.ledger)
    members = [cluster.nodes[i] for i in sorted(cluster.nodes[leader].core.configuration.members)]
    down = [n.id for n in members if not n.up]
    if down:
        raise Violation("liveness", f"members {down} of the configuration are not running")
    behind = {n.id: n.kv.last_applied for n in members if n.kv.last_applied != height}
    if behind:
        raise Violation("liveness", f"replicas did not converge {SETTLE_SECONDS:g}s after healing: "
                        f"applied {behind}, the cluster applied {height}")
    data = [n.kv.data for n in members]
    if any(d != data[0] for d in data):
        raise Violation("state machine safety", "replicas applied the same entries but hold different data")


class Nemesis:
    """Schedules one fault at a time over [1 s, end - 1 s]."""

    def __init__(self, cluster: Cluster, rng: random.Random, end_us: int):
        self.cluster = cluster
        self.rng = rng
        self.end_us = end_us

    def plan(self) -> None:
        rng = self.rng
        first = ["partition", rng.choice(("crash-leader", "crash-random"))]
        rng.shuffle(first)
        t = rng.randint(500_000, 2_000_000)
        while True:
            kind = first.pop(0) if first else rng.choices(FAULTS, FAULT_WEIGHTS)[0]
            duration = rng.randint(300_000, 3_000_000 if kind != "crash-all" else 1_000_000)
            if t + duration > self.end_us - 500_000:
                break
            self.cluster.call_at(t, self.start_fault, kind, t + duration)
            if kind not in ("lossy", "slow-isolated-leader") and rng.random() < 0.2:
                self.cluster.call_at(t, self.start_fault, "lossy", t + duration)
            t += duration + rng.randint(200_000, 1_500_000)

    def start_fault(self, kind: str, end_us: int) -> None:
        c = self.cluster
        rng = self.rng
        c.log(f"nemesis {kind}")
        leader = c.leader()
        if kind == "partition":
            ids = list(c.ids)
            rng.shuffle(ids)
            cut = rng.randint(1, len(ids) - 1)
            c.partition(ids[:cut], ids[cut:])
            c.call_at(end_us, c.heal)
        elif kind == "isolate-leader":
            c.isolate(leader or rng.choice(c.ids))
            c.call_at(end_us, c.heal)
        elif kind == "slow-isolated-leader":
            victim = leader or rng.choice(c.ids)
            c.nodes[victim].clock_rate = rng.uniform(4.0, 10.0)
            c.isolate(victim)
            c.call_at(end_us, self.unslow, victim)
        elif kind.startswith("crash"):
            if kind == "crash-leader":
                victims = [leader or rng.choice(c.ids)]
            elif kind == "crash-random":
                victims = [rng.choice(c.ids)]
            elif kind == "crash-minority":
                victims = rng.sample(c.ids, (len(c.ids) - 1) // 2 or 1)
            else:
                victims = list(c.ids)
            for v in victims:
                how = rng.random()
                if how < 0.3 or (how < 0.5 and not c.snapshot_every):
                    c.crash_during_io(v, min(end_us, c.now + 300_000), "storage")
                elif how < 0.5:  # snapshots are rarer: wait for one as long as the fault lasts
                    c.crash_during_io(v, end_us, "snapshot")
                else:
                    c.crash(v)
            for v in victims:
                c.call_at(end_us + rng.randint(0, 200_000), c.start, v)
        elif kind == "lossy":
            net = c.net
            net.drop = rng.uniform(0.05, 0.3)
            net.duplicate = rng.uniform(0.0, 0.1)
            net.delay_max_us = rng.randint(5_000, 40_000)
            c.call_at(end_us, self.reliable)

    def unslow(self, node_id: str) -> None:
        self.cluster.nodes[node_id].clock_rate = 1.0
        self.cluster.heal()

    def reliable(self) -> None:
        net = self.cluster.net
        net.drop = net.duplicate = 0.0
        net.delay_max_us = NetConfig().delay_max_us


class MembershipNemesis:
    """Membership changes beside the faults, one at a time, every 0.8-3 s, each retried (as an
    operator retries a 409 or a 503) until it is appended or its window closes. Removed nodes
    are retired a little later, as a provisioner would."""

    TRANSIENT = ("no leader", "node down", "change_in_progress", "leader_not_ready", "not_caught_up")

    def __init__(self, cluster: Cluster, rng: random.Random, end_us: int):
        self.cluster = cluster
        self.rng = rng
        self.end_us = end_us
        self.added = 0

    def plan(self) -> None:
        rng = self.rng
        t = rng.randint(1_000_000, 3_000_000)
        while t < self.end_us - 1_500_000:
            self.cluster.call_at(t, self.start_op, rng.choices(MEMBERSHIP_OPS, MEMBERSHIP_WEIGHTS)[0],
                                 min(t + rng.randint(500_000, 2_000_000), self.end_us - 500_000))
            t += rng.randint(800_000, 3_000_000)

    def _configuration(self):
        leader = self.cluster.leader()
        return self.cluster.nodes[leader].core.configuration if leader else None

    def start_op(self, op: str, until_us: int) -> None:
        c, rng = self.cluster, self.rng
        conf = self._configuration()
        if conf is None:
            return
        c.log(f"membership {op}")
        if op == "add-learner":
            if self.added >= MAX_EXTRA_NODES:
                return
            self.added += 1
            node_id = f"n{len(c.ids) + 1}"
            c.add_node(node_id)
            self._attempt(lambda: c.learner_change(node_id), until_us)
        elif op == "promote":
            learners = sorted(conf.learners)
            if learners and len(conf.voters) < MAX_VOTERS:
                target = rng.choice(learners)
                self._attempt(lambda: ConfChange(PROMOTE, target), until_us)
        elif op == "remove":
            voters, learners = sorted(conf.voters), sorted(conf.learners)
            choices = learners + (voters if len(voters) > MIN_VOTERS else [])
            if choices:
                leader = c.leader()
                target = leader if leader in choices and rng.random() < 0.3 else rng.choice(choices)
                self._attempt(lambda: ConfChange(REMOVE, target), until_us, removal=target)
        elif op == "transfer":
            leader = c.leader()
            others = [v for v in sorted(conf.voters) if v != leader]
            if others:
                c.transfer(rng.choice(others + [None]))

    def _attempt(self, make_change, until_us: int, removal: str | None = None) -> None:
        c = self.cluster
        outcome = c.change(make_change())
        if isinstance(outcome, tuple):
            if removal is not None:
                self._retire_when_removed(removal, until_us + 3_000_000)
            return
        transient = outcome in self.TRANSIENT or outcome.startswith(("NotLeader", "TransferInProgress"))
        if transient and c.now + 100_000 < until_us:
            c.call_at(c.now + 100_000, self._attempt, make_change, until_us, removal)

    def _retire_when_removed(self, node_id: str, until_us: int) -> None:
        """Once the removal is committed (the leader's configuration lacks it), retire the node
        after a while; a removal a truncation undid is left alone."""
        c = self.cluster
        leader = c.leader()
        if leader is not None and leader != node_id:
            core = c.nodes[leader].core
            if node_id not in core.configuration.members and core.conf_committed:
                c.call_at(c.now + self.rng.randint(100_000, 1_500_000), c.retire, node_id)
                return
        if c.now + 100_000 < until_us:
            c.call_at(c.now + 100_000, self._retire_when_removed, node_id, until_us)
