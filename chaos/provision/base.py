"""What every provisioner shares: labels and ownership of resources, clock skew on top of a
libfaketime spec, start hooks, and the template a system fills in (its command line).

A provisioner knows how to run *a* service on nodes (containers, local processes, SSH hosts);
what service is the system's business: a DB subclasses a provisioner's DB class and says its
command line, its ports and files, and how to tell it is ready (systems/raftnode for ours,
examples/etcd for etcd).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Callable

from chaos.interfaces import DB, Clock, Node, StatusProbe

#: every Docker resource and local chain of a run carries these (see chaos.provision.cleanup)
LABEL = "splitbrain"
LABEL_RUN = "splitbrain.run"
LABEL_OWNER = "splitbrain.owner-pid"
LABEL_OWNER_START = "splitbrain.owner-start"


class ProvisionError(RuntimeError):
    """The cluster could not be provisioned; the message says what is missing or wrong."""


def faketime_env(lib: str, timestamp_file: str) -> dict[str, str]:
    """The environment that runs a process under libfaketime with a spec we can rewrite live.

    FAKETIME_FORCE_MONOTONIC_FIX=0: libfaketime's fix for pthread_cond_timedwait makes every
    timed wait of a Python thread hand-off take ~50 ms instead of ~0.05 ms (measured), which
    starves a Python service's threads. CLOCK_MONOTONIC stays real (see chaos.nemesis.clock)."""
    return {"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": timestamp_file, "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_FORCE_MONOTONIC_FIX": "0"}


def node_ids(count: int, allowed=None) -> list[str]:
    """n1..nN; `allowed` (a DB's node_counts) restricts the count."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"a cluster has at least one node, got {count!r}")
    if allowed is not None and count not in allowed:
        raise ValueError(f"this system runs with {', '.join(map(str, allowed))} nodes, got {count}")
    return [f"n{i}" for i in range(1, count + 1)]


def _number(x: float) -> str:
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def clock_spec(offset: float, rate: float = 1.0) -> str:
    """A libfaketime relative spec: clock_spec(5, 1) == "+5 x1", clock_spec(-2.5, 0.5) == "-2.5 x0.5"."""
    text = _number(offset)
    if not text.startswith("-"):
        text = "+" + text
    return f"{text} x{_number(rate)}"


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


def owner_alive(pid: int | str | None, start: str | None = None) -> bool:
    """True while the controller that owns a run is still running."""
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
    return True


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
    """Shared state of our provisioners' DBs: the nodes, node options, start hooks, clock skew.

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

    @classmethod
    def from_config(cls, config, run_id: str, **overrides) -> "ProvisionedDB":
        """Build the DB from a run's config: node count, node options (with --bug as option
        "bug" for a system that has seeded bugs), provisioner options checked against the
        constructor (a clear error naming the valid ones), the docker subnet, libfaketime only
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
                accepted |= {name for name, p in inspect.signature(klass.__init__).parameters.items()
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
        self._process_started: dict[str, float] = {}   # node id -> monotonic start of its process
        self._clock_state: dict[str, tuple[float, float]] = {}  # node id -> (spec offset, rate)
        self._clock_calibrated: set[str] = set()  # nodes whose process start was measured
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
            if not wait_until(lambda: port_open(node.address, self.client_port), timeout):
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

    # -- clock skew on top of set_clock(spec) ----------------------------------------------------
    # libfaketime computes fake = S + offset + (now - S) * rate, S being the process start, so a
    # rate set at time now would jump the clock by (now - S) * (rate - 1). We compensate in the
    # offset to make the skew continuous when the rate changes.
    def set_clock(self, node: Node, spec: str) -> None:
        """Write the node's libfaketime spec (e.g. "+5 x0.5"); provisioners implement it."""
        raise NotImplementedError

    def process_elapsed(self, node: Node) -> float:
        """Seconds since the node process started (libfaketime applies rates from then)."""
        return time.monotonic() - self._process_started.get(node.id, time.monotonic())

    def clock_skew(self, node: Node) -> tuple[float, float]:
        offset, rate = self._clock_state.get(node.id, (0.0, 1.0))
        return offset + self.process_elapsed(node) * (rate - 1.0), rate

    def set_skew(self, node: Node, skew: float, rate: float = 1.0) -> str:
        if not rate > 0:
            raise ValueError(f"clock rate must be positive, got {rate!r}")
        spec = self._write_skew(node, skew, rate)
        if rate != 1.0 and node.id not in self._clock_calibrated:
            written = time.monotonic()
            if self._calibrate_start(node):
                # again with the measured start, continuing the skew the first write meant
                spec = self._write_skew(node, skew + (time.monotonic() - written) * (rate - 1.0), rate)
        return spec

    def _write_skew(self, node: Node, skew: float, rate: float) -> str:
        offset = skew - self.process_elapsed(node) * (rate - 1.0)
        spec = clock_spec(offset, rate)
        self.set_clock(node, spec)
        self._clock_state[node.id] = (offset, rate)
        return spec

    def clock_sample(self, node: Node) -> tuple[float, float] | None:
        """(the service's wall clock, the real CLOCK_MONOTONIC), read together by the service,
        or None. From a status probe's wall_time and monotonic_time when it reports them."""
        if not isinstance(self, StatusProbe):
            return None
        status = self.probe(node, 1.0)
        if not status or not isinstance(status.get("wall_time"), (int, float)) \
                or not isinstance(status.get("monotonic_time"), (int, float)):
            return None
        return float(status["wall_time"]), float(status["monotonic_time"])

    def _calibrate_start(self, node: Node) -> bool:
        """Measure when libfaketime started in the service process (our estimate is the exec
        call; the library starts a little later, when the program loads, by up to a second on a
        loaded machine, and a rate multiplies that error).

        With spec offset o and rate r, the clock reads S + o + (t - S) * r at real time t, so
        one sample (wall time and the real monotonic time, read together) gives S. Returns
        True when the estimate changed.
        """
        offset, rate = self._clock_state[node.id]
        sample = self.clock_sample(node)
        if sample is None:
            return False  # paused, or a service that does not report its clocks
        wall, mono = sample
        actual_skew = wall - (mono + time.time() - time.monotonic())
        start = mono - (actual_skew - offset) / (rate - 1.0)
        self._clock_calibrated.add(node.id)
        if abs(start - self._process_started.get(node.id, start)) < 0.01 or not 0 <= mono - start < 86400 * 365:
            return False
        self._process_started[node.id] = start
        return True

    def _clock_before_start(self, node: Node) -> str | None:
        """Before (re)starting a node's process: keep its current skew and rate for the new
        process (whose libfaketime start time is now); return the spec to write, if any."""
        if node.id not in self._clock_state:
            return None
        skew, rate = self.clock_skew(node)
        self._clock_state[node.id] = (skew, rate)
        return clock_spec(skew, rate)

    def _process_started_now(self, node: Node) -> None:
        self._process_started[node.id] = time.monotonic()
        self._clock_calibrated.discard(node.id)


def db_factory(*classes: type) -> "Callable":
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
