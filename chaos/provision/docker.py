"""Docker provisioner: one container per node on a run's own `--internal` network.

Each container runs tini as PID 1 (`sleep infinity` under it) and the node is started beside it
with `docker exec`. Killing, pausing and restarting therefore act on the node *process*: the
container, its network namespace, fixed address, iptables rules, faketime file and data
directory survive. If the container itself was restarted (new network namespace, no rules),
start() re-applies the run's partition before starting the node.

Faults inside a container:
- partition: our own iptables chain SPLITBRAIN, jumped to first from INPUT and OUTPUT, holding a
  DROP per blocked peer address in each direction; replaced atomically with iptables-restore.
- clock: the node runs under libfaketime reading FAKETIME_TIMESTAMP_FILE on every call
  (FAKETIME_NO_CACHE=1), so rewriting that file changes its wall clock while it runs.
  CLOCK_MONOTONIC is left real (FAKETIME_DONT_FAKE_MONOTONIC=1): libfaketime 0.9.10 faking it
  hangs Python's timed waits (Event.wait, Lock.acquire(timeout)) forever.
"""

from __future__ import annotations

import io
import ipaddress
import os
import re
import shlex
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from chaos.interfaces import Node
from chaos.provision.base import (ALL_FAULTS, LABEL, LABEL_RUN, NodeOptions, ProvisionError, Provisioner, faketime_env,
                                  docker_client, node_argv, node_ids, run_labels)

CHAIN = "SPLITBRAIN"
DATA_DIR = "/var/lib/raftnode"
LOG_DIR = "/var/log/raftnode"
LOG_FILE = f"{LOG_DIR}/node.log"
STDERR_FILE = f"{LOG_DIR}/stderr.log"
PID_FILE = "/run/raftnode.pid"
FAKETIME_FILE = "/var/lib/splitbrain/faketime"
FAKETIME_LIB = "/usr/local/lib/libfaketime.so.1"
CLIENT_PORT, PEER_PORT = 8000, 9000
FIRST_HOST = 11  # n1 is .11 in the subnet, n2 .12, ...

#: a libfaketime relative spec as we write it: "+5", "-2.5", "+0 x1", "+3 x0.5"
CLOCK_SPEC = re.compile(r"^[+-]\d+(\.\d+)?( x\d+(\.\d+)?)?$")

# Exit code of our signal script when the node process is not running.
_NOT_RUNNING = 3


def check_clock_spec(spec: str) -> str:
    if not isinstance(spec, str) or not CLOCK_SPEC.match(spec):
        raise ValueError(f"clock spec must look like '+5', '-2.5' or '+0 x0.5' "
                         f"(offset seconds, optional rate), got {spec!r}")
    return spec


def chain_setup_script() -> str:
    """Create our chain and jump to it first from INPUT and OUTPUT (idempotent)."""
    return (f"iptables -w -N {CHAIN} 2>/dev/null || true; "
            f"iptables -w -C INPUT -j {CHAIN} 2>/dev/null || iptables -w -I INPUT 1 -j {CHAIN}; "
            f"iptables -w -C OUTPUT -j {CHAIN} 2>/dev/null || iptables -w -I OUTPUT 1 -j {CHAIN}")


def chain_rules(blocked_addresses) -> str:
    """iptables-restore input replacing our chain's rules with a DROP each way per address."""
    lines = ["*filter", f":{CHAIN} - [0:0]"]
    for address in sorted(blocked_addresses, key=ipaddress.ip_address):
        lines.append(f"-A {CHAIN} -s {address}/32 -j DROP")
        lines.append(f"-A {CHAIN} -d {address}/32 -j DROP")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def signal_script(signal: str) -> str:
    """Send a signal to the node process named in the pid file; exit 3 when it is not running."""
    return (f"pid=$(cat {PID_FILE} 2>/dev/null) || exit {_NOT_RUNNING}; "
            f"[ -n \"$pid\" ] && [ -d /proc/$pid ] || exit {_NOT_RUNNING}; "
            f"grep -q raftnode /proc/$pid/cmdline 2>/dev/null || exit {_NOT_RUNNING}; "
            f"state=$(sed 's/.*) //' /proc/$pid/stat | cut -d' ' -f1); "
            f"[ \"$state\" = Z ] && exit {_NOT_RUNNING}; "
            f"kill -s {signal} $pid")


def blocked_by_node(cut, nodes: list[Node]) -> dict[str, set[str]]:
    """For each node id, the addresses of the peers it must not exchange packets with."""
    address = {n.id: n.address for n in nodes}
    blocked: dict[str, set[str]] = {n.id: set() for n in nodes}
    for a, b in cut:
        if a not in address or b not in address:
            unknown = a if a not in address else b
            raise ValueError(f"partition names unknown node {unknown!r} (nodes: {', '.join(address)})")
        blocked[a].add(address[b])
        blocked[b].add(address[a])
    return blocked


def node_addresses(subnet: str, count: int) -> list[str]:
    try:
        network = ipaddress.ip_network(subnet, strict=True)
    except ValueError as e:
        raise ValueError(f"subnet {subnet!r} is not a network in CIDR form (e.g. 10.77.0.0/24): {e}") from None
    if network.version != 4 or not network.is_private or network.overlaps(ipaddress.ip_network("127.0.0.0/8")):
        raise ValueError(f"subnet {subnet} must be a private IPv4 network outside 127.0.0.0/8")
    if network.num_addresses < FIRST_HOST + count + 1:
        raise ValueError(f"subnet {subnet} is too small for {count} nodes from .{FIRST_HOST}")
    return [str(network.network_address + FIRST_HOST + i) for i in range(count)]


class DockerDB(Provisioner):
    """Nodes as containers on an internal network; see the module docstring."""

    supported_faults = ALL_FAULTS

    def __init__(self, run_id: str, options: NodeOptions | None = None, nodes: int = 5,
                 subnet: str = "10.77.0.0/24", image: str | None = None, leader_timeout: float = 30.0,
                 wait_leader: bool = True, client=None, detached: bool = False):
        super().__init__(run_id, options, detached=detached)
        self.count = nodes
        node_ids(nodes)  # validates the count early
        self.subnet = subnet
        node_addresses(subnet, nodes)
        self.image = image  # None: build_image() at setup (a no-op when the image is up to date)
        self.leader_timeout = leader_timeout
        self.wait_leader = wait_leader
        self._client = client
        self.network_name = f"splitbrain-{run_id}"
        self.cut: list[tuple[str, str]] = []
        self.clock: dict[str, str] = {}
        self._lock = threading.Lock()
        if not self.options.clock:
            self.supported_faults = ALL_FAULTS - {"clock"}

    # -- plumbing --------------------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            self._client = docker_client()
        return self._client

    def container_name(self, node_id: str) -> str:
        return f"splitbrain-{self.run_id}-{node_id}"

    def _container(self, node: Node):
        return self.client.containers.get(node.meta.get("container") or self.container_name(node.id))

    def _sh(self, node: Node, script: str, check: bool = True) -> tuple[int, str]:
        container = self._container(node)
        code, output = container.exec_run(["sh", "-c", script], demux=True)
        out, err = output if isinstance(output, tuple) else (output, None)
        out_text = (out or b"").decode("utf-8", "replace")
        err_text = (err or b"").decode("utf-8", "replace")
        if check and code != 0:
            raise ProvisionError(f"{node.id}: command failed (exit {code}): {script[:200]}\n{err_text.strip()}")
        return code, out_text

    def _parallel(self, fn, nodes):
        nodes = list(nodes)
        if len(nodes) <= 1:
            return [fn(n) for n in nodes]
        with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
            return list(pool.map(fn, nodes))

    # -- lifecycle ---------------------------------------------------------------------------
    def setup(self, nodes: int | None = None) -> list[Node]:
        count = nodes or self.count
        ids = node_ids(count)
        addresses = node_addresses(self.subnet, count)
        self.count = count
        if self.image is None:
            from chaos.provision.image import build_image
            self.image = build_image()
        try:
            self._create_network()
            self.nodes = [Node(id=nid, client_url=f"http://{addr}:{CLIENT_PORT}", address=addr,
                               peer_port=PEER_PORT, client_port=CLIENT_PORT,
                               meta={"container": self.container_name(nid), "provisioner": "docker"})
                          for nid, addr in zip(ids, addresses)]
            self._parallel(self._create_container, self.nodes)
            self._parallel(self._start_process, self.nodes)
            if self.wait_leader:
                try:
                    self.wait_for_leader(self.leader_timeout)
                except ProvisionError as e:
                    raise ProvisionError(f"{e}\n{self._stderr_tails()}") from None
        except BaseException:
            self.salvage_logs()
            self.teardown()
            raise
        return self.nodes

    def _stderr_tails(self, lines: int = 5) -> str:
        """The last lines each node wrote to stderr: why a cluster did not come up."""
        parts = []
        for node in self.nodes:
            try:
                tail = self._sh(node, f"tail -n {lines} {STDERR_FILE} 2>/dev/null", check=False)[1].rstrip()
            except Exception as e:  # noqa: BLE001 - diagnostics only
                tail = f"(cannot read: {e})"
            parts.append(f"--- {node.id} stderr ---\n{tail or '(empty)'}")
        return "\n".join(parts)

    def _create_network(self):
        import docker.errors
        import docker.types

        labels = run_labels(self.run_id, self.detached)
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=self.subnet)])
        try:
            self.client.networks.create(self.network_name, driver="bridge", internal=True, ipam=ipam,
                                        labels=labels, check_duplicate=True)
        except docker.errors.APIError as e:
            text = str(e)
            if "overlap" in text.lower():
                raise ProvisionError(f"subnet {self.subnet} is already used by another Docker network "
                                     "(another run?); choose another with --subnet, or `splitbrain clean` "
                                     f"a crashed run's leftovers ({e.explanation})") from None
            raise ProvisionError(f"cannot create network {self.network_name}: {e.explanation or e}") from None

    def _create_container(self, node: Node):
        import docker.errors

        api = self.client.api
        labels = dict(run_labels(self.run_id, self.detached), **{"splitbrain.node": node.id})
        host_config = api.create_host_config(cap_add=["NET_ADMIN"], network_mode=self.network_name)
        networking = api.create_networking_config(
            {self.network_name: api.create_endpoint_config(ipv4_address=node.address)})
        try:
            created = api.create_container(self.image, name=self.container_name(node.id), hostname=node.id,
                                           labels=labels, host_config=host_config,
                                           networking_config=networking, detach=True)
        except docker.errors.ImageNotFound:
            raise ProvisionError(f"image {self.image} is missing: run `splitbrain image build`") from None
        except docker.errors.APIError as e:
            if e.status_code == 409:
                raise ProvisionError(f"container {self.container_name(node.id)} already exists (a crashed run "
                                     "with the same id? `splitbrain clean` removes it)") from None
            raise
        node.meta["container_id"] = created["Id"]
        api.start(created["Id"])
        self._prepare_container(node)

    def _started_at(self, node: Node) -> str:
        return self._container(node).attrs["State"].get("StartedAt", "")

    def _prepare_container(self, node: Node):
        """Our chain, this run's rules for the node, and its clock file: after every container start."""
        with self._lock:
            blocked = blocked_by_node(self.cut, self.nodes)[node.id] if self.cut else set()
            spec = self.clock.get(node.id, "+0 x1")
        script = chain_setup_script()
        if blocked:
            script += f"; printf '%s' {shlex.quote(chain_rules(blocked))} | iptables-restore -w --noflush"
        script += f"; printf '%s\\n' {shlex.quote(spec)} > {FAKETIME_FILE}"
        self._sh(node, script)
        # The container start this preparation belongs to: another start means a fresh netns.
        node.meta["prepared_start"] = self._started_at(node)

    def _start_process(self, node: Node):
        argv = node_argv(node, self.nodes, self.options, DATA_DIR, LOG_FILE)
        env = " ".join(f"{k}={v}" for k, v in faketime_env(FAKETIME_LIB, FAKETIME_FILE).items()) \
            if self.options.clock else ""
        script = (f"mkdir -p {DATA_DIR} {LOG_DIR} && echo $$ > {PID_FILE} && "
                  f"exec env {env} {' '.join(shlex.quote(a) for a in argv)} >> {STDERR_FILE} 2>&1")
        spec = self._clock_before_start(node)
        if spec is not None:
            self.set_clock(node, spec)
        self._container(node).exec_run(["sh", "-c", script], detach=True)
        self._process_started_now(node)
        # The pid file is written by the exec'd shell; wait for it so kill/pause right after
        # start find the process.
        deadline = time.monotonic() + 10
        while not self.is_running(node):
            if time.monotonic() > deadline:
                tail = self._sh(node, f"tail -n 20 {STDERR_FILE} 2>/dev/null", check=False)[1]
                raise ProvisionError(f"{node.id}: the node process did not start:\n{tail}")
            time.sleep(0.05)
        self._measure_process_age(node)

    def _measure_process_age(self, node: Node) -> None:
        """Date the process's start from the kernel (not from when our exec call returned, which
        a loaded machine delays): libfaketime applies clock rates from that instant."""
        script = (f"pid=$(cat {PID_FILE}) && cut -d' ' -f1 /proc/uptime && "
                  f"sed 's/.*) //' /proc/$pid/stat | cut -d' ' -f20 && getconf CLK_TCK")
        asked = time.monotonic()
        code, out = self._sh(node, script, check=False)
        answered = time.monotonic()
        try:
            uptime, start_ticks, hz = out.split()
            age = float(uptime) - int(start_ticks) / int(hz)
        except ValueError:
            return  # keep the estimate from the exec call
        if code == 0 and 0 <= age < 60:
            self._process_started[node.id] = (asked + answered) / 2 - age

    def is_running(self, node: Node) -> bool:
        """True while the node process exists (running or stopped by SIGSTOP), not a zombie."""
        code, _ = self._sh(node, signal_script("0"), check=False)
        return code == 0

    def teardown(self) -> None:
        import docker.errors

        try:
            self.client
        except ProvisionError:
            return  # no engine: nothing of ours can exist
        flt = {"label": [f"{LABEL}=1", f"{LABEL_RUN}={self.run_id}"]}
        for container in self.client.containers.list(all=True, filters=flt):
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:
                if "already in progress" not in str(e):
                    raise
        for network in self.client.networks.list(filters=flt):
            try:
                network.remove()
            except docker.errors.NotFound:
                pass
        self.cut, self.clock = [], {}
        self._clock_state.clear()

    # -- process faults ------------------------------------------------------------------------
    def _signal(self, node: Node, signal: str) -> bool:
        code, _ = self._sh(node, signal_script(signal), check=False)
        if code not in (0, _NOT_RUNNING):
            raise ProvisionError(f"{node.id}: sending SIG{signal} failed (exit {code})")
        return code == 0

    def kill(self, node: Node) -> None:
        if not self._container_running(node):
            return
        self._signal(node, "KILL")
        deadline = time.monotonic() + 10
        while self.is_running(node):  # reaped by docker's shim; ports free once it is gone
            if time.monotonic() > deadline:
                raise ProvisionError(f"{node.id}: the node process survived SIGKILL for 10 s")
            time.sleep(0.05)

    def pause(self, node: Node) -> None:
        self._signal(node, "STOP")

    def resume(self, node: Node) -> None:
        if self._container_running(node):
            self._signal(node, "CONT")

    def _container_running(self, node: Node) -> bool:
        import docker.errors

        try:
            container = self._container(node)
        except docker.errors.NotFound:
            raise ProvisionError(f"{node.id}: container {self.container_name(node.id)} is gone") from None
        return container.status == "running"

    def start(self, node: Node) -> None:
        """Start the node process; first restart its container (and re-apply rules) if needed."""
        if not self._container_running(node):
            self._container(node).start()
        if self._started_at(node) != node.meta.get("prepared_start"):
            # restarted since we prepared it (by us or anyone): its rules are gone
            self._prepare_container(node)
            self._run_start_hooks(node)
        elif self.is_running(node):
            return
        self._start_process(node)

    # -- network and clock faults ----------------------------------------------------------------
    def partition(self, cut) -> None:
        """Drop traffic between each pair in `cut` (replaces the previous partition)."""
        cut = [tuple(sorted(pair)) for pair in cut]
        blocked = blocked_by_node(cut, self.nodes)
        with self._lock:
            self.cut = cut

        def apply(node):
            if self._container_running(node):
                script = f"printf '%s' {shlex.quote(chain_rules(blocked[node.id]))} | iptables-restore -w --noflush"
                self._sh(node, script)
        self._parallel(apply, self.nodes)

    def heal_partition(self) -> None:
        with self._lock:
            self.cut = []

        def flush(node):
            if self._container_running(node):
                self._sh(node, f"iptables -w -F {CHAIN} 2>/dev/null || true")
        self._parallel(flush, self.nodes)

    def chain_rules_of(self, node: Node) -> list[str]:
        """The rules currently in the node's chain (iptables -S form), for tests and reports."""
        out = self._sh(node, f"iptables -w -S {CHAIN} 2>/dev/null || true")[1]
        return [line for line in out.splitlines() if line.startswith("-A ")]

    def set_clock(self, node: Node, spec: str) -> None:
        check_clock_spec(spec)
        with self._lock:
            self.clock[node.id] = spec
        if self._container_running(node):
            tmp = FAKETIME_FILE + ".tmp"
            # rename() so the node never reads a half-written spec
            self._sh(node, f"printf '%s\\n' {shlex.quote(spec)} > {tmp} && mv {tmp} {FAKETIME_FILE}")

    # -- commands and logs -------------------------------------------------------------------------
    def exec(self, node: Node, argv: list[str], check: bool = True) -> str:
        return self._sh(node, " ".join(shlex.quote(a) for a in argv), check=check)[1]

    def collect_logs(self, node: Node, dest_dir: str) -> list[str]:
        import docker.errors

        os.makedirs(dest_dir, exist_ok=True)
        try:
            stream, _ = self._container(node).get_archive(LOG_DIR)
        except docker.errors.NotFound:
            return []
        buffer = io.BytesIO(b"".join(stream))
        written = []
        with tarfile.open(fileobj=buffer) as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                name = os.path.basename(member.name)
                path = os.path.join(dest_dir, name)
                source = tar.extractfile(member)
                if source is None:
                    continue
                with open(path, "wb") as out:
                    out.write(source.read())
                written.append(path)
        return sorted(written)
