"""What every provisioner shares: labels and ownership of resources, clock faults through the
clock shim (chaos.provision.clockshim), start hooks, and the template a system fills in (its
command line).

A provisioner knows how to run *a* service on nodes (containers, local processes, SSH hosts);
what service is the system's business: a DB subclasses a provisioner's DB class and says its
command line, its ports and files, and how to tell it is ready (systems/raftnode for ours,
examples/etcd for etcd).
"""

from __future__ import annotations

import functools
import os
import socket
import time
from typing import Callable

from chaos.interfaces import DB, Clock, Node
from chaos.provision.clockshim import REAL_TIME, ClockSpec

#: every Docker resource and local chain of a run carries these (see chaos.provision.cleanup)
LABEL = "splitbrain"
LABEL_RUN = "splitbrain.run"
LABEL_OWNER = "splitbrain.owner-pid"
LABEL_OWNER_START = "splitbrain.owner-start"


class ProvisionError(RuntimeError):
    """The cluster could not be provisioned; the message says what is missing or wrong."""


def node_ids(count: int, allowed=None) -> list[str]:
    """n1..nN; `allowed` (a DB's node_counts) restricts the count."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"a cluster has at least one node, got {count!r}")
    if allowed is not None and count not in allowed:
        raise ValueError(f"this system runs with {', '.join(map(str, allowed))} nodes, got {count}")
    return [f"n{i}" for i in range(1, count + 1)]


def process_start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None.

    Stored next to an owner pid so that a recycled pid is not mistaken for a live owner.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def is_zombie(pid: int) -> bool:
    """True if the process has exited and waits to be reaped (or is gone altogether)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def owner_alive(pid: int | str | None, start: str | None = None) -> bool:
    """True while the controller that owns a run is still running. A zombie owner is dead: a
    controller killed with its worker is reparented to an init that may never reap it."""
    try:
        pid = int(pid)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    if start:
        current = process_start_ticks(pid)
        if current is not None and current != start:
            return False  # the pid was recycled by another process
    return not is_zombie(pid)


def run_labels(run_id: str, detached: bool = False) -> dict:
    """Labels of a run's resources. A detached cluster (`splitbrain cluster up`) outlives its
    controller: owner pid 0 says so, and `clean` keeps it unless asked to remove everything."""
    pid = 0 if detached else os.getpid()
    return {LABEL: "1", LABEL_RUN: run_id, LABEL_OWNER: str(pid),
            LABEL_OWNER_START: (process_start_ticks(pid) or "") if pid else ""}


def port_open(address: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class ProvisionedDB(DB, Clock):
    """Shared state of our provisioners' DBs: the nodes, node options, start hooks, clock specs.

    Subclasses (one per provisioner) run the service; a system fills in the template:

        command(node, nodes) -> argv      the service's command line on that node
        environment(node) -> dict         extra environment
        wait_ready(nodes, timeout)        block until the service answers (default: TCP port)
        client_url(node) -> str           where clients connect

    Start hooks run after a node's environment was recreated (a restarted container has a
    fresh network namespace without our iptables rules).
    """

    client_port = 8000
    peer_port = 9000
    #: the provisioner this class runs on ("docker", "local"): what --provisioner names
    provisioner = ""
    #: the seeded bugs of the system (--bug NAME reaches it as node option "bug")
    seeded_bugs: tuple[str, ...] = ()
    #: seconds per client request: from_config sets the run's (a system may give a default)
    request_timeout: float

    @classmethod
    def from_config(cls, config, run_id: str, **overrides) -> "ProvisionedDB":
        """Build the DB from a run's config: node count, node options (with --bug as option
        "bug" for a system that has seeded bugs), provisioner options checked against the
        constructor (a clear error naming the valid ones), the docker subnet, the clock shim only
        for runs with clock faults, and the client request timeout."""
        import inspect

        if config.bug and config.bug not in cls.seeded_bugs:
            valid = ", ".join(cls.seeded_bugs) or "none"
            raise ValueError(f"{cls.name} has no seeded bug {config.bug!r} (its seeded bugs: {valid})")
        options = dict(config.node_options)
        if config.bug:
            options["bug"] = config.bug
        accepted = set()
        for klass in cls.__mro__:
            if "__init__" in klass.__dict__:
                accepted |= {name for name, p in inspect.signature(klass.__dict__["__init__"]).parameters.items()
                             if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                             and name not in ("self", "run_id", "nodes", "node_options")}
        kw = dict(config.provisioner_options)
        if "leader_timeout" in kw:  # its name before it was the generic readiness bound
            kw.setdefault("ready_timeout", kw.pop("leader_timeout"))
        for key in kw:
            if key not in accepted:
                raise ValueError(f"the {cls.provisioner or cls.name} provisioner has no option {key!r} "
                                 f"(its options: {', '.join(sorted(accepted))})")
        if config.subnet and "subnet" in accepted:
            kw["subnet"] = config.subnet
        if "clock" in accepted:
            kw.setdefault("clock", "clock" in config.faults_in_use)
        if "lazy_disk" in accepted:  # the lazy disk is mounted only for runs that lose unsynced writes
            kw.setdefault("lazy_disk", "lose-unsynced" in config.faults_in_use)
        kw.update(overrides)
        db = cls(run_id, config.nodes, options, **kw)
        db.request_timeout = config.request_timeout
        return db

    def __init__(self, run_id: str, nodes: int = 3, node_options: dict | None = None,
                 detached: bool = False, ready_timeout: float = 30.0):
        if not run_id or not all(c.isalnum() or c in "-_." for c in run_id):
            raise ValueError(f"run id must be non-empty letters, digits, '-', '_' or '.', got {run_id!r}")
        node_ids(nodes, self.node_counts)
        self.run_id = run_id
        self.count = nodes
        self.detached = detached
        self.ready_timeout = ready_timeout
        self.node_options = self.check_node_options(node_options or {})
        self.nodes: list[Node] = []
        self._start_hooks: list[Callable[[Node], None]] = []
        self._clock_specs: dict[str, ClockSpec] = {}   # node id -> what its clock file says
        self._clock_verified: set[str] = set()   # nodes whose running service has the shim loaded
        # Where a failed setup leaves each node's logs before tearing down (the runner sets it):
        # a cluster that never became ready is exactly when they are needed.
        self.failed_setup_log_dir: Callable[[str], str] | None = None

    # -- the template a system fills in ---------------------------------------------------------
    def command(self, node: Node, nodes: list[Node]) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__} must say how to start its service (command)")

    def environment(self, node: Node) -> dict[str, str]:
        return {}

    def client_url(self, node: Node) -> str:
        return f"http://{node.address}:{self.client_port}"

    def wait_ready(self, nodes: list[Node], timeout: float) -> None:
        """Default readiness: every node's client port accepts connections."""
        for node in nodes:
            if not wait_until(functools.partial(port_open, node.address, self.client_port), timeout):
                raise ProvisionError(f"{node.id}: nothing listens on {node.address}:{self.client_port} "
                                     f"after {timeout:.0f} s")

    @classmethod
    def check_node_options(cls, options: dict) -> dict:
        unknown = sorted(set(options) - set(cls.node_option_help))
        if unknown:
            valid = ", ".join(sorted(cls.node_option_help)) or "none"
            raise ValueError(f"{cls.name} has no node option {unknown[0]!r} (valid: {valid})")
        return dict(options)

    # -- shared machinery -------------------------------------------------------------------------
    def salvage_logs(self) -> None:
        """Copy every node's logs to failed_setup_log_dir(node id), best effort."""
        if self.failed_setup_log_dir is None:
            return
        for node in self.nodes:
            try:
                self.collect_logs(node, self.failed_setup_log_dir(node.id))  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - diagnostics only; teardown must still run
                pass

    def add_start_hook(self, hook: Callable[[Node], None]) -> None:
        self._start_hooks.append(hook)

    def remove_start_hook(self, hook: Callable[[Node], None]) -> None:
        if hook in self._start_hooks:
            self._start_hooks.remove(hook)

    def _run_start_hooks(self, node: Node) -> None:
        for hook in list(self._start_hooks):
            hook(node)

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(f"no node {node_id!r} (nodes: {', '.join(n.id for n in self.nodes)})")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.teardown()

    # -- clocks: one ClockSpec per node, in a file the node's clock shim reads -----------------
    # A spec is anchored to the real CLOCK_MONOTONIC, which the controller shares with every node
    # (same kernel), so the skew a spec gives at any instant is known here exactly: a change
    # continues from it, a restarted process keeps it, and nothing has to be measured.
    #: the real CLOCK_MONOTONIC that specs are anchored to (the nodes share it)
    monotonic = staticmethod(time.monotonic)

    def set_clock(self, node: Node, text: str) -> None:
        """Write the node's clock file (ClockSpec.text()); provisioners implement it."""
        raise NotImplementedError

    def clock_loaded(self, node: Node) -> bool | None:
        """Whether the node's running service has the clock shim mapped (None: not running, or
        cannot tell); provisioners implement it."""
        return None

    def clock_state(self, node: Node) -> ClockSpec:
        return self._clock_specs.get(node.id, REAL_TIME)

    def clock_skew(self, node: Node) -> tuple[float, float]:
        spec = self.clock_state(node)
        return spec.skew_at(self.monotonic()), spec.rate

    def set_skew(self, node: Node, skew: float, rate: float = 1.0) -> str:
        """Skew the node's clocks (monotonic and wall) to `skew` s from now on, running at `rate`;
        a strobe that is running ends (its current flip is part of `skew` as clock_skew says)."""
        if not (skew == 0 and rate == 1):
            self._check_clock_reaches(node)
        # Anchored after any check, at the last moment before the write: the write itself takes
        # microseconds, so a rate change is continuous in the node's clock.
        now = self.monotonic()
        spec = ClockSpec(anchor=now, skew=float(skew), rate=float(rate), mono_offset=self.clock_state(node).mono_offset)
        self._write_clock(node, REAL_TIME if spec == ClockSpec(anchor=now) else spec)
        return spec.describe(now)

    def reset_clock(self, node: Node) -> str:
        """Real time again: the wall clock back to real, every clock at real speed, no strobe. The
        monotonic clock does not go back (which would hold every timer of the service for as
        long): what a bump forward added stays as a constant offset; after a slowdown it
        catches up at once."""
        now = self.monotonic()
        ahead = max(0.0, self.clock_state(node).mono_skew_at(now))
        spec = ClockSpec(mono_offset=ahead) if ahead else REAL_TIME
        self._write_clock(node, spec)
        return spec.describe(now)

    def strobe_clock(self, node: Node, delta: float, period: float, count: int) -> str:
        """From now, alternate the node's clocks between their skew + delta and their skew every
        `period` s, `count` periods (the shim flips them inside the process), keeping the rate."""
        if not period > 0 or not (isinstance(count, int) and count >= 1):
            raise ValueError(f"a strobe needs a positive period and count, got {period!r}, {count!r}")
        self._check_clock_reaches(node)
        now = self.monotonic()
        current = self.clock_state(node)
        spec = ClockSpec(anchor=now, skew=current.skew_at(now), rate=current.rate, strobe_start=now,
                         strobe_delta=float(delta), strobe_period=float(period), strobe_count=count,
                         mono_offset=current.mono_offset)
        self._write_clock(node, spec)
        return spec.describe(now)

    def _check_clock_reaches(self, node: Node) -> None:
        """A service that does not load the shim (a static or Go binary) would ignore a clock
        fault silently: refuse it instead (checked once per service process)."""
        if node.id in self._clock_verified:
            return
        loaded = self.clock_loaded(node)
        if loaded is False:
            raise ProvisionError(f"{node.id}: the clock shim is not loaded in its service process, so "
                                 "clock faults cannot reach it (a statically linked or Go binary? "
                                 "such a DB declares clock_via_libc = False)")
        if loaded:
            self._clock_verified.add(node.id)

    def _write_clock(self, node: Node, spec: ClockSpec) -> None:
        self.set_clock(node, spec.text())
        self._clock_specs[node.id] = spec

    def _process_started_now(self, node: Node) -> None:
        """A new service process: whether it loaded the shim is checked again at the next fault."""
        self._clock_verified.discard(node.id)


def db_factory(*classes: type[ProvisionedDB]) -> "Callable":
    """A `splitbrain.dbs` registry entry over DB classes, one per provisioner they run on:

        make_db = db_factory(EtcdDB)                         # docker only
        make_db = db_factory(RaftnodeDocker, RaftnodeLocal)  # --provisioner docker|local
    """
    by_provisioner = {cls.provisioner: cls for cls in classes}

    def make_db(config, run_id: str, **overrides):
        cls = by_provisioner.get(config.provisioner)
        if cls is None:
            name = classes[0].name
            raise ValueError(f"{name} runs on the provisioners {', '.join(by_provisioner)}, "
                             f"not {config.provisioner!r}")
        return cls.from_config(config, run_id, **overrides)

    make_db.classes = classes  # type: ignore[attr-defined]
    return make_db


def docker_client():
    """A Docker SDK client that negotiates the API version (the daemon may be older than the SDK)."""
    try:
        import docker
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise ProvisionError("the docker Python SDK is missing: pip install 'docker>=7'") from e
    try:
        client = docker.from_env(version="auto", timeout=120)
        client.ping()
    except Exception as e:  # docker.errors.DockerException and connection errors alike
        raise ProvisionError(f"the Docker engine does not answer ({e}); start dockerd "
                             "(as root on Debian: apt-get install docker.io && dockerd &)") from e
    return client
