"""The small protocols a test is composed of, in the spirit of Jepsen.

    DB        - lifecycle of the system under test (setup, teardown), plus optional capabilities
    Client    - one worker's connection to the system: open, invoke, close
    Nemesis   - injects and heals faults
    Checker   - decides whether a history is correct
    (generators, the fourth part, are values: see chaos.generator)

A DB implements `setup` and `teardown`; everything else is an optional capability, declared by
inheriting the protocol class below, like Jepsen's optional protocols (`db/Kill`, `db/Pause`,
`db/Primary`, `db/LogFiles`). The runner refuses, before anything starts, a fault or a feature
whose capability the DB lacks, and says which one:

    capability   protocol       used by
    kill         Process        kill/start faults; a node that cannot restart is a finding
    pause        Pause          pause/resume faults
    partition    Network        partition faults (chaos.net applies the grudges)
    loss         Network        packet loss on links (chaos.net link faults)
    delay        Network        packet delay and jitter on links
    bandwidth    Network        bandwidth caps on links
    clock        Clock          clock faults
    leader       Primaries      every leader-aimed fault, waiting for recovery, final reads
    status       StatusProbe    status.jsonl, the report's leadership timeline
    logs         LogFiles       node logs in the store, log-pattern and node-log checkers
    exec         Exec           running a command in a node's environment (tests, probes)
    lose-unsynced Disk          lose-unsynced faults (a lazy disk under the data directory)
    corrupt      Disk           corrupt faults (bit flips, truncation of the node's data files)
    membership   Membership     membership faults: nodes added, promoted, removed, leadership moved

A DB may know at run time that it cannot offer a capability its class has (no C compiler for the
clock shim on the host, no root for iptables): `unavailable()` names each such capability with the
reason.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from chaos.history import Op


@dataclass
class Node:
    """One node of a running cluster, as the framework sees it."""

    id: str
    client_url: str              # where clients connect, e.g. http://10.77.0.12:8000
    address: str                 # the node's IP on the test network (or 127.0.0.x for local)
    peer_port: int = 9000
    client_port: int = 8000
    meta: dict = field(default_factory=dict)  # provisioner specifics (container id, pid, ...)


class Roster(list):
    """The run's nodes, one list shared by the runner, the nemeses and the clients (a node added
    mid-run is appended, a removed one taken out), with the nodes removed so far in `retired`
    (their logs are still collected)."""

    def __init__(self, nodes=()):
        super().__init__(nodes)
        self.retired: list[Node] = []


class Unsupported(RuntimeError):
    """A capability the DB does not have (or cannot offer on this host)."""


class DB(abc.ABC):
    """Lifecycle of the system under test on a set of nodes."""

    #: a short name (the registry's), shown in reports and used by `reproduce`
    name: str = "db"
    #: the node counts this DB can run; None means any count from 1
    node_counts: Iterable[int] | None = None
    #: a node option name -> one-line help (`--node-option NAME=VALUE`, a scenario's `node:`)
    node_option_help: dict[str, str] = {}

    @abc.abstractmethod
    def setup(self, count: int) -> list[Node]:
        """Create the nodes, start the service on each, wait until it is ready; return them."""

    @abc.abstractmethod
    def teardown(self) -> None:
        """Remove everything setup created. Idempotent; safe after a partial setup."""

    def capabilities(self) -> frozenset[str]:
        """The capabilities this DB offers now: its protocols minus unavailable() ones."""
        have = {name for name, proto in CAPABILITIES.items() if isinstance(self, proto)}
        return frozenset(have - set(self.unavailable()))

    def unavailable(self) -> dict[str, str]:
        """Capabilities the class has but cannot offer here, each with the reason."""
        return {}

    def describe(self) -> dict:
        """What the report shows about the system under test (settings worth knowing)."""
        return {}

    def client(self, workload: str, client_id: str) -> "Client":
        """A client of this system for a workload by name ("register", "set", ...); a DB
        offers clients for the workloads it can run (a Workload may bring its own instead)."""
        raise Unsupported(f"{self.name!r} has no client for the {workload!r} workload")


# -- optional capabilities ---------------------------------------------------------------------

class Process(abc.ABC):
    """kill: end the service process abruptly; start it again (data and address survive)."""

    @abc.abstractmethod
    def kill(self, node: Node) -> None:
        """SIGKILL the service process (nothing if it is not running)."""

    @abc.abstractmethod
    def start(self, node: Node) -> None:
        """Start the service process if it is not running (leave a running one alone)."""

    def is_running(self, node: Node) -> bool:
        """Whether the service process exists (running or stopped by SIGSTOP)."""
        return True

    def exit_report(self, node: Node) -> str:
        """Why the process is not running, for a finding: its last stderr lines, exit status."""
        return ""


class Pause(abc.ABC):
    """pause: stop the service process (SIGSTOP) and let it go on (SIGCONT)."""

    @abc.abstractmethod
    def pause(self, node: Node) -> None: ...

    @abc.abstractmethod
    def resume(self, node: Node) -> None: ...


class Network(abc.ABC):
    """partition, loss, delay, bandwidth: the DB hands out the network layer that reaches its
    nodes (chaos.net); unavailable() names the link faults that layer cannot apply here."""

    @abc.abstractmethod
    def net(self):  # -> chaos.net.Net
        """The chaos.net.Net that applies grudges and link faults to this DB's nodes."""


class Clock(abc.ABC):
    """clock: skew the service's clocks (its monotonic clock and its timers too, where the
    mechanism allows), offset and rate, while it runs."""

    @abc.abstractmethod
    def set_skew(self, node: Node, skew: float, rate: float = 1.0) -> str:
        """Make the node's clock `skew` s ahead (negative: behind), running at `rate`; return
        a short description of what was written. Ends a strobe."""

    @abc.abstractmethod
    def clock_skew(self, node: Node) -> tuple[float, float]:
        """(seconds the node's clock is ahead now, its rate)."""

    @abc.abstractmethod
    def strobe_clock(self, node: Node, delta: float, period: float, count: int) -> str:
        """Alternate the node's clock between its skew + delta and its skew every `period` s,
        `count` periods, starting now, at its rate; return a short description."""

    def reset_clock(self, node: Node) -> str:
        """Back to real time (clock-reset); a DB whose monotonic clock moves may keep it from
        going back."""
        return self.set_skew(node, 0.0, 1.0)


class Primaries(abc.ABC):
    """leader: which nodes the system itself names as its leader(s) right now."""

    @abc.abstractmethod
    def primaries(self, view: "StatusView | None") -> list[str]:
        """Node ids of the current leader(s), best first; [] while there is none. `view` holds
        the latest status probes (when the DB has StatusProbe), so this need not ask again."""


class StatusProbe(abc.ABC):
    """status: one node's own view of itself, polled every 50 ms into status.jsonl.

    The framework reads only these optional fields of the dict: `role` ("leader", ...),
    `term` (an int), `leader` (a node id), `wall_time` (the node's clock, seconds); everything
    else is stored for the report as it is."""

    @abc.abstractmethod
    def probe(self, node: Node, timeout: float) -> dict | None:
        """The node's status, or None when it does not answer within timeout."""


class LogFiles(abc.ABC):
    """logs: the node's log files, collected into the run's store before teardown."""

    #: regular expressions that must never appear in a node log (a crash, a fatal error);
    #: each match makes the run invalid and is quoted in the report
    fatal_log_patterns: tuple[str, ...] = ()

    @abc.abstractmethod
    def collect_logs(self, node: Node, dest_dir: str) -> list[str]:
        """Copy the node's log files into dest_dir; return the paths written."""

    def node_log_checkers(self) -> list[Callable[[str], dict]]:
        """Checkers over a run directory's collected node logs (`nodes/<id>/...`): each takes
        the run directory and returns {"name", "valid", "reason", ...} (see checkers.node_logs)."""
        return []


class Exec(abc.ABC):
    """exec: run a command in the node's environment (its network namespace, its files)."""

    @abc.abstractmethod
    def exec(self, node: Node, argv: list[str], check: bool = True) -> str:
        """Run argv; return its stdout (raise on a non-zero exit when check)."""


class Disk(abc.ABC):
    """lose-unsynced, corrupt: the node's data files, changed while its service is stopped.

    Two capabilities share this protocol: "corrupt" needs only data_path(); "lose-unsynced"
    needs the data directory on a lazy disk (chaos.lazydisk), which a DB mounts only for runs
    that use it, so unavailable() withdraws it from other runs."""

    @abc.abstractmethod
    def data_path(self, node: Node) -> str:
        """Where the node's data directory can be read and written from the controller's host."""

    @abc.abstractmethod
    def lose_unsynced_writes(self, node: Node, tear_seed: int | None = None) -> dict:
        """Forget every write to the node's data directory that was not fsynced (and every
        create, rename and unlink not followed by a directory fsync), as a power loss would;
        with tear_seed, a random prefix of each file's last unsynced write survives. The
        service must be stopped. Returns what was lost (unsynced_bytes, files, dirs)."""


#: the outcomes of a membership change, as a client's: it happened, it certainly did not, unknown
CHANGE_OK, CHANGE_FAIL, CHANGE_UNKNOWN = "ok", "fail", "unknown"


class Membership(abc.ABC):
    """membership: the cluster's configuration changes while it runs (Jepsen's membership
    nemesis; etcd's learners, our node's admin API). A new node starts outside the cluster and
    joins as a non-voting learner; a learner is promoted to voter; a member is removed and its
    node retired; leadership is handed to another voter.

    Each change returns {"outcome": "ok" | "fail" | "unknown", "detail": str, ...}: ok = the
    change committed, fail = it certainly did not happen, unknown = it may have (a timeout);
    after an unknown outcome the caller reads configuration() to learn which."""

    @abc.abstractmethod
    def provision_node(self) -> Node:
        """Provision and start a fresh node (a new id, address, empty data) that is not yet a
        member; it is part of the DB from now on (its network layer, teardown and clean-up)."""

    @abc.abstractmethod
    def add_learner(self, node: Node) -> dict:
        """Ask the cluster to add a node from provision_node() as a non-voting member."""

    @abc.abstractmethod
    def promote(self, node_id: str, wait: bool = True) -> dict:
        """Make a learner a voter (a DB may refuse it until the learner has caught up: fail).
        wait=False: send the change and do not wait for it to commit (a leader cut off from
        its majority appends it and may never commit it): ok or fail only if the answer comes
        at once, unknown otherwise."""

    @abc.abstractmethod
    def remove(self, node_id: str) -> dict:
        """Remove a member (voter or learner) from the configuration."""

    @abc.abstractmethod
    def retire_node(self, node: Node) -> None:
        """Stop a removed node's service and take it out of the network layer; its logs stay
        collectable and teardown still removes what is left of it."""

    @abc.abstractmethod
    def transfer_leadership(self, to: str | None = None) -> dict:
        """Hand the leadership to voter `to` (None: the DB's choice); ok once it leads."""

    @abc.abstractmethod
    def configuration(self) -> dict | None:
        """The configuration in force as the cluster's leader says it: {"voters": [ids],
        "learners": [ids], "committed": bool}; None when no leader answers."""


CAPABILITIES: dict[str, type] = {
    "kill": Process, "pause": Pause, "partition": Network, "clock": Clock,
    "leader": Primaries, "status": StatusProbe, "logs": LogFiles, "exec": Exec,
    "loss": Network, "delay": Network, "bandwidth": Network,
    "lose-unsynced": Disk, "corrupt": Disk, "membership": Membership,
}


class StatusView(abc.ABC):
    """The controller's latest view of every node's status (chaos.cluster_view)."""

    @abc.abstractmethod
    def fresh_statuses(self) -> dict[str, dict]:
        """node id -> its latest status, for nodes that answered within the last second."""


def require(db: DB, capability: str, purpose: str) -> None:
    """Raise Unsupported naming the DB, the capability and what needed it."""
    if capability in db.capabilities():
        return
    reason = db.unavailable().get(capability)
    if reason is None:
        proto = CAPABILITIES[capability]
        reason = f"it does not implement {proto.__module__}.{proto.__name__}"
    raise Unsupported(f"{purpose} needs the {capability!r} capability, which {db.name!r} lacks: {reason}")


# -- clients, nemeses, checkers ----------------------------------------------------------------

class ClientBug(RuntimeError):
    """The system rejected a request as malformed: a bug in the client, not in the system.
    Raised from Client.invoke, it aborts the run (exit 255) instead of recording a misleading
    history."""


class Client(abc.ABC):
    """One worker's view of the system. invoke() never raises for an expected failure: it
    returns the completion (type ok/fail/info) for the given invocation, by Jepsen's rules:
    ok = it happened, fail = it certainly did not happen, info = unknown."""

    @abc.abstractmethod
    def open(self, nodes: list[Node], node: Node) -> "Client":
        """Return a client bound to `node` (its preferred node; it may follow redirects)."""

    @abc.abstractmethod
    def invoke(self, op: Op) -> Op:
        """Perform the operation; return its completion."""

    def backoff_after(self, completion: Op) -> float:
        """Seconds this worker waits before its next operation (e.g. after "no leader"), so an
        unavailable system is not hammered. 0 by default."""
        return 0.0

    def close(self) -> None:
        pass


class Nemesis(abc.ABC):
    #: the ops this nemesis handles, e.g. {"partition", "heal"} (f names in the history)
    fs: frozenset = frozenset()

    def setup(self, db: DB, nodes: list[Node]) -> None:
        pass

    @abc.abstractmethod
    def invoke(self, op: Op) -> Op:
        """Inject or heal; return the completion op (type info, value = what was done)."""

    def heal_all(self) -> None:
        """Undo every fault this nemesis injected."""

    def teardown(self) -> None:
        self.heal_all()


class Checker(abc.ABC):
    @abc.abstractmethod
    def check(self, history: list[Op], opts: dict | None = None) -> dict:
        """Return at least {"valid": True | False | "unknown"} plus details."""


def merge_valid(values: Iterable[Any]) -> Any:
    """Combine verdicts as Jepsen does: invalid beats unknown beats valid."""
    values = list(values)
    if any(v is False for v in values):
        return False
    if any(v != True for v in values):  # noqa: E712 - "unknown" and anything odd count as unknown
        return "unknown"
    return True
