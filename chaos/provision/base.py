"""What every provisioner shares: node options, labels, the node command line, leader waiting."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Iterable

from chaos.interfaces import DB, Node

#: every Docker resource and local chain of a run carries these (see chaos.provision.cleanup)
LABEL = "splitbrain"
LABEL_RUN = "splitbrain.run"
LABEL_OWNER = "splitbrain.owner-pid"
LABEL_OWNER_START = "splitbrain.owner-start"

NODE_COUNTS = (3, 5, 7)
ALL_FAULTS = frozenset({"partition", "kill", "pause", "clock"})


class ProvisionError(RuntimeError):
    """The cluster could not be provisioned; the message says what is missing or wrong."""


@dataclass
class NodeOptions:
    """Flags for every node of a cluster (docs/contracts.md section 2)."""

    election_timeout: str = "150-300"   # ms, "MIN-MAX"
    heartbeat_ms: int = 50
    bug: str | None = None               # a seeded bug name, None for the correct node
    pre_vote: bool = True
    check_quorum: bool = True
    extra_args: tuple = ()
    # Preload libfaketime so clock faults can reach the node. Off for runs without clock faults:
    # every clock read then costs a file read (FAKETIME_NO_CACHE), which a fast node notices.
    clock: bool = True

    def __post_init__(self):
        parts = str(self.election_timeout).split("-")
        try:
            low, high = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, -1)
        except ValueError:
            low, high = 0, -1
        if not 0 < low <= high:
            raise ValueError(f"election_timeout must be 'MIN-MAX' milliseconds with 0 < MIN <= MAX, "
                             f"got {self.election_timeout!r}")
        if not isinstance(self.heartbeat_ms, int) or self.heartbeat_ms <= 0:
            raise ValueError(f"heartbeat_ms must be a positive integer, got {self.heartbeat_ms!r}")
        if self.heartbeat_ms >= low:
            raise ValueError(f"heartbeat_ms ({self.heartbeat_ms}) must be below the election "
                             f"timeout's minimum ({low})")
        self.extra_args = tuple(str(a) for a in self.extra_args)

    def args(self) -> list[str]:
        argv = ["--election-timeout", str(self.election_timeout), "--heartbeat", str(self.heartbeat_ms)]
        if not self.pre_vote:
            argv.append("--no-pre-vote")
        if not self.check_quorum:
            argv.append("--no-check-quorum")
        if self.bug:
            argv += ["--bug", self.bug]
        return argv + list(self.extra_args)


def faketime_env(lib: str, timestamp_file: str) -> dict[str, str]:
    """The environment that runs a node under libfaketime with a spec we can rewrite live.

    FAKETIME_FORCE_MONOTONIC_FIX=0: libfaketime's fix for pthread_cond_timedwait makes every
    timed wait of a Python thread hand-off take ~50 ms instead of ~0.05 ms (measured), which
    starves the node's storage thread and stalls elections. CLOCK_MONOTONIC stays real (see
    chaos.nemesis.clock)."""
    return {"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": timestamp_file, "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_FORCE_MONOTONIC_FIX": "0"}


def node_ids(count: int) -> list[str]:
    if count not in NODE_COUNTS:
        raise ValueError(f"a cluster has 3, 5 or 7 nodes, got {count!r}")
    return [f"n{i}" for i in range(1, count + 1)]


def cluster_arg(nodes: Iterable[Node]) -> str:
    """The node's --cluster value: id=peer_host:peer_port/client_host:client_port,..."""
    return ",".join(f"{n.id}={n.address}:{n.peer_port}/{n.address}:{n.client_port}" for n in nodes)


def node_argv(node: Node, nodes: list[Node], options: NodeOptions, data_dir: str, log_file: str,
              python: str = "python3") -> list[str]:
    return [python, "-m", "raftnode", "--id", node.id, "--cluster", cluster_arg(nodes),
            "--client-listen", f"{node.address}:{node.client_port}",
            "--peer-listen", f"{node.address}:{node.peer_port}",
            "--data-dir", data_dir, "--log-file", log_file] + options.args()


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


# Nodes are on loopback or our own internal networks: never through an HTTP proxy from the
# environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get_status(url: str, timeout: float = 1.0) -> dict | None:
    """GET <url>/status; None when the node does not answer."""
    try:
        with _DIRECT.open(url.rstrip("/") + "/status", timeout=timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except (OSError, ValueError, urllib.error.URLError):
        return None


def wait_for_leader(nodes: list[Node], timeout: float = 30.0, status: Callable = get_status,
                    interval: float = 0.1) -> str:
    """Poll /status until a majority of nodes agree on one leader that says it leads; return its id."""
    deadline = time.monotonic() + timeout
    last: dict = {}
    while True:
        last = {n.id: status(n.client_url, timeout=min(1.0, max(0.1, deadline - time.monotonic())))
                for n in nodes}
        leaders = [nid for nid, st in last.items() if st and st.get("role") == "leader"]
        if len(leaders) == 1:
            leader = leaders[0]
            agree = sum(1 for st in last.values() if st and st.get("leader") == leader)
            if agree > len(nodes) // 2:
                return leader
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    summary = ", ".join(f"{nid}: " + (f"{st.get('role')} term {st.get('term')} leader {st.get('leader')}"
                                       if st else "no answer") for nid, st in last.items())
    raise ProvisionError(f"no leader elected within {timeout:.0f} s ({summary})")


class Provisioner(DB):
    """Shared state of our provisioners: options, nodes, start hooks.

    Start hooks run after a node's environment was recreated (a restarted container has a fresh
    network namespace without our iptables rules); the partition nemesis registers one to put
    its rules back.
    """

    def __init__(self, run_id: str, options: NodeOptions | None = None, detached: bool = False):
        self.detached = detached
        if not run_id or not all(c.isalnum() or c in "-_." for c in run_id):
            raise ValueError(f"run id must be non-empty letters, digits, '-', '_' or '.', got {run_id!r}")
        self.run_id = run_id
        self.options = options or NodeOptions()
        self.nodes: list[Node] = []
        self._start_hooks: list[Callable[[Node], None]] = []
        self._process_started: dict[str, float] = {}   # node id -> monotonic start of its process
        self._clock_state: dict[str, tuple[float, float]] = {}  # node id -> (spec offset, rate)
        self._clock_calibrated: set[str] = set()  # nodes whose process start was measured
        # Where a failed setup leaves each node's logs before tearing down (the runner sets it):
        # a cluster that never elected a leader is exactly when they are needed.
        self.failed_setup_log_dir: Callable[[str], str] | None = None

    def salvage_logs(self) -> None:
        """Copy every node's logs to failed_setup_log_dir(node id), best effort."""
        if self.failed_setup_log_dir is None:
            return
        for node in self.nodes:
            try:
                self.collect_logs(node, self.failed_setup_log_dir(node.id))
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

    # -- clock skew on top of set_clock(spec) ----------------------------------------------------
    # libfaketime computes fake = S + offset + (now - S) * rate, S being the process start, so a
    # rate set at time now would jump the clock by (now - S) * (rate - 1). We compensate in the
    # offset to make the skew continuous when the rate changes.
    def process_elapsed(self, node: Node) -> float:
        """Seconds since the node process started (libfaketime applies rates from then)."""
        return time.monotonic() - self._process_started.get(node.id, time.monotonic())

    def clock_skew(self, node: Node) -> tuple[float, float]:
        """(seconds the node's wall clock is ahead of real time now, its rate)."""
        offset, rate = self._clock_state.get(node.id, (0.0, 1.0))
        return offset + self.process_elapsed(node) * (rate - 1.0), rate

    def set_skew(self, node: Node, skew: float, rate: float = 1.0) -> str:
        """Make the node's clock `skew` seconds ahead (negative: behind) from now on, running at
        `rate`; return the libfaketime spec written."""
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

    def node_status(self, node: Node) -> dict | None:
        """The node's /status (None when it does not answer)."""
        return get_status(node.client_url, timeout=1.0)

    def _calibrate_start(self, node: Node) -> bool:
        """Measure when libfaketime started in the node process (our estimate is the exec call;
        the library starts a little later, when python3 loads, by up to a second on a loaded
        machine, and a rate multiplies that error).

        With spec offset o and rate r, the node's clock reads S + o + (t - S) * r at real time
        t, so one /status sample (wall_time and the real monotonic_time, read together) gives S.
        Returns True when the estimate changed.
        """
        offset, rate = self._clock_state[node.id]
        status = self.node_status(node)
        if not status or not isinstance(status.get("wall_time"), (int, float)) \
                or not isinstance(status.get("monotonic_time"), (int, float)):
            return False  # paused or not our node: keep the estimate
        mono = status["monotonic_time"]
        actual_skew = status["wall_time"] - (mono + time.time() - time.monotonic())
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

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(f"no node {node_id!r} (nodes: {', '.join(n.id for n in self.nodes)})")

    def wait_for_leader(self, timeout: float = 30.0) -> str:
        return wait_for_leader(self.nodes, timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.teardown()


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
