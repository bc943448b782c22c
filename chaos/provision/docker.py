"""Docker provisioner: one container per node on a run's own `--internal` network.

ContainerDB is the generic container DB: a system says which image, which command line, which
ports and where its data and logs live, and gets kill, pause, partitions, clock skew, commands
and log collection (systems/raftnode/db.py, examples/etcd/db.py):

    class EtcdDB(ContainerDB):
        name = "etcd"; client_port = 2379; peer_port = 2380
        data_dir = "/var/lib/etcd"; log_dir = "/var/log/etcd"
        def image_tag(self): return build_etcd_image()
        def command(self, node, nodes): return ["etcd", "--name", node.id, ...]

Each container runs tini as PID 1 (`sleep infinity` under it) and the service is started beside
it with `docker exec`. Killing, pausing and restarting therefore act on the service *process*:
the container, its network namespace, fixed address, iptables rules, clock file and data
directory survive. If the container itself was restarted (new network namespace, no rules),
start() re-applies the run's partition before starting the service.

Inside a container:
- partition: chaos.net.NamespaceNet (our chain SPLITBRAIN, jumped to first from INPUT);
- clock: in runs with clock faults the service runs under our clock shim
  (chaos.provision.clockshim), which reads CLOCK_FILE about every millisecond, so rewriting that
  file moves its wall and monotonic clocks and its timers while it runs; strobes flip inside the
  process. CLOCK_DIR (the spec and the host's build of the shim) is a host folder bind-mounted
  read-only, so the controller writes specs without a `docker exec`. A service that does not read
  time through libc (Go) declares `clock_via_libc = False` and has no clock capability.
"""

from __future__ import annotations

import io
import ipaddress
import os
import shlex
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

from chaos.interfaces import Disk, Exec, LogFiles, Network, Node, Pause, Process
from chaos.net.iptables import NamespaceNet
from chaos.provision import clockshim
from chaos.provision.base import (LABEL, LABEL_RUN, ProvisionedDB, ProvisionError, docker_client,
                                  node_ids, run_labels)
from chaos.provision.clockshim import ClockSpec
from chaos.provision.lazy import LazyDisks, host_root
from chaos.provision.lazy import unavailable as lazy_unavailable

PID_FILE = "/run/splitbrain-service.pid"
CLOCK_DIR = "/var/lib/splitbrain/clock"
CLOCK_FILE = f"{CLOCK_DIR}/spec"
CLOCK_LIB = f"{CLOCK_DIR}/{clockshim.LIBRARY_NAME}"
FIRST_HOST = 11  # n1 is .11 in the subnet, n2 .12, ...

# Exit code of our signal script when the service process is not running.
_NOT_RUNNING = 3


def check_clock_spec(text: str) -> str:
    """A clock file's text as ClockSpec.text() writes it (ValueError naming what is wrong)."""
    if not isinstance(text, str) or "\n" in text:
        raise ValueError(f"a clock spec is one line of text, got {text!r}")
    ClockSpec.parse(text)
    return text


def signal_script(signal: str, process_match: str) -> str:
    """Send a signal to the process named in the pid file; exit 3 when it is not running."""
    match = shlex.quote(process_match)
    return (f"pid=$(cat {PID_FILE} 2>/dev/null) || exit {_NOT_RUNNING}; "
            f"[ -n \"$pid\" ] && [ -d /proc/$pid ] || exit {_NOT_RUNNING}; "
            f"grep -q -- {match} /proc/$pid/cmdline 2>/dev/null || exit {_NOT_RUNNING}; "
            f"state=$(sed 's/.*) //' /proc/$pid/stat | cut -d' ' -f1); "
            f"[ \"$state\" = Z ] && exit {_NOT_RUNNING}; "
            f"kill -s {signal} $pid")


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


class ContainerDB(ProvisionedDB, Process, Pause, Network, LogFiles, Exec, Disk):
    """A service in containers on an internal network; see the module docstring."""

    name = "container"
    provisioner = "docker"
    image: str | None = None          # the image to run; or override image_tag()
    data_dir = "/var/lib/service"
    log_dir = "/var/log/service"
    #: a word of the service's command line: signals go only to a process whose cmdline has it
    process_match: str | None = None
    #: False for a service that does not read time through libc (a Go binary): the clock shim
    #: cannot reach it, so it has no clock faults
    clock_via_libc = True   # the service reads time through libc, where the clock shim sits

    def __init__(self, run_id: str, nodes: int = 3, node_options: dict | None = None,
                 subnet: str = "10.77.0.0/24", image: str | None = None, ready_timeout: float = 30.0,
                 wait_ready: bool = True, clock: bool = True, docker=None, detached: bool = False,
                 lazy_disk: bool = False):
        super().__init__(run_id, nodes, node_options, detached=detached, ready_timeout=ready_timeout)
        # lose-unsynced runs: each node's data dir is a lazy disk on the host, bind-mounted in
        self.lazy_disk_enabled = lazy_disk
        self._lazy = LazyDisks(run_id, detached)
        self.subnet = subnet
        node_addresses(subnet, nodes)
        if image is not None:
            self.image = image
        self.wait_ready_at_setup = wait_ready
        self.clock_enabled = clock
        self._docker = docker
        self.network_name = f"splitbrain-{run_id}"
        self._net: NamespaceNet | None = None
        self.retired_nodes: list[Node] = []   # removed mid-run: stopped, kept until teardown

    # -- what a system may override ------------------------------------------------------------
    def image_tag(self) -> str:
        """The image to run (build it here when needed)."""
        if not self.image:
            raise ProvisionError(f"{type(self).__name__} names no image (set `image` or override image_tag)")
        return self.image

    @property
    def stderr_file(self) -> str:
        return f"{self.log_dir}/stderr.log"

    # -- capabilities ----------------------------------------------------------------------------
    def unavailable(self) -> dict[str, str]:
        missing: dict[str, str] = {}
        if not self.clock_via_libc:
            missing["clock"] = (f"{self.name} does not read its clock through libc, so the clock shim "
                                "cannot reach it")
        elif not self.clock_enabled:
            missing["clock"] = "the clock shim is loaded only into runs that ask for clock faults"
        elif reason := clockshim.unavailable_reason():
            missing["clock"] = reason
        lazy = lazy_unavailable(self.lazy_disk_enabled)
        if lazy:
            missing["lose-unsynced"] = lazy
        if os.geteuid() != 0:
            missing["corrupt"] = "reaching a container's data files from the host needs root"
        return missing

    # -- plumbing --------------------------------------------------------------------------
    @property
    def docker(self):
        """The Docker SDK client (named so that DB.client(), a system's clients, stays free)."""
        if self._docker is None:
            self._docker = docker_client()
        return self._docker

    def container_name(self, node_id: str) -> str:
        return f"splitbrain-{self.run_id}-{node_id}"

    def _container(self, node: Node):
        return self.docker.containers.get(node.meta.get("container") or self.container_name(node.id))

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

    def _match(self, node: Node) -> str:
        if self.process_match:
            return self.process_match
        return os.path.basename(self.command(node, self.nodes)[0])

    # -- lifecycle ---------------------------------------------------------------------------
    def setup(self, count: int | None = None) -> list[Node]:
        count = count or self.count
        ids = node_ids(count, self.node_counts)
        addresses = node_addresses(self.subnet, count)
        self.count = count
        image = self.image_tag()
        try:
            self._create_network()
            self.nodes = [Node(id=nid, client_url="", address=addr, peer_port=self.peer_port,
                               client_port=self.client_port,
                               meta={"container": self.container_name(nid), "provisioner": "docker"})
                          for nid, addr in zip(ids, addresses, strict=True)]
            for node in self.nodes:
                node.client_url = self.client_url(node)
            self._net = NamespaceNet(self.nodes, run=lambda n, s: self._sh(n, s)[1],
                                     reachable=self._container_running, netns=self._netns_path)
            if self.lazy_disk_enabled:
                root = host_root(self.run_id)
                self._parallel(lambda n: self._lazy.mount(n, os.path.join(root, n.id), os.path.join(
                    root, f"{n.id}.sock"), os.path.join(root, f"{n.id}.log")), self.nodes)
            if self._uses_clock_shim():
                clockshim.make_run_dir(self.run_id, 0 if self.detached else os.getpid())
            self._parallel(lambda n: self._create_container(n, image), self.nodes)
            self._parallel(self._start_process, self.nodes)
            if self.wait_ready_at_setup:
                try:
                    self.wait_ready(self.nodes, self.ready_timeout)
                except ProvisionError as e:
                    raise ProvisionError(f"{e}\n{self._stderr_tails()}") from None
        except BaseException:
            self.salvage_logs()
            self.teardown()
            raise
        return self.nodes

    # -- nodes added and retired mid-run (a system's Membership capability uses these) ----------
    def add_node(self) -> Node:
        """Provision and start one more node after setup: the next id and address of the subnet
        (never one used before in this run), a container with the run's labels (teardown and
        `splitbrain clean` remove it), in the network layer before its rules are put on it.
        node.meta["joined"] tells the system's command() that it joins a running cluster."""
        if self._net is None:
            raise ProvisionError("the cluster is not set up: no network to add a node to")
        index = len(self.nodes) + len(self.retired_nodes)
        address = node_addresses(self.subnet, index + 1)[index]
        node_id = f"n{index + 1}"
        node = Node(id=node_id, client_url="", address=address, peer_port=self.peer_port,
                    client_port=self.client_port,
                    meta={"container": self.container_name(node_id), "provisioner": "docker", "joined": True})
        node.client_url = self.client_url(node)
        if self.lazy_disk_enabled:
            root = host_root(self.run_id)
            self._lazy.mount(node, os.path.join(root, node.id), os.path.join(root, f"{node.id}.sock"),
                             os.path.join(root, f"{node.id}.log"))
        self._net.add_node(node)
        self.nodes.append(node)
        self._create_container(node, self.image_tag())
        self._start_process(node)
        return node

    def retire_node(self, node: Node) -> None:
        """Stop a node for good (removed from the cluster): its service killed, out of the
        network layer and the node list, its container stopped (kept until teardown, so that
        its logs are collected)."""
        import docker.errors

        self.kill(node)
        self.net().remove_node(node.id)
        self.nodes = [n for n in self.nodes if n.id != node.id]
        self.retired_nodes.append(node)
        try:
            self._container(node).stop(timeout=0)
        except docker.errors.NotFound:
            pass

    def _stderr_tails(self, lines: int = 5) -> str:
        """The last lines each node wrote to stderr: why a cluster did not come up."""
        return "\n".join(f"--- {node.id} stderr ---\n{self.exit_report(node, lines) or '(empty)'}"
                         for node in self.nodes)

    def exit_report(self, node: Node, lines: int = 20) -> str:
        try:
            return self._sh(node, f"tail -n {lines} {self.stderr_file} 2>/dev/null", check=False)[1].rstrip()
        except Exception as e:  # noqa: BLE001 - diagnostics only
            return f"(cannot read {self.stderr_file}: {e})"

    def _create_network(self):
        import docker.errors
        import docker.types

        labels = run_labels(self.run_id, self.detached)
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=self.subnet)])
        try:
            self.docker.networks.create(self.network_name, driver="bridge", internal=True, ipam=ipam,
                                        labels=labels, check_duplicate=True)
        except docker.errors.APIError as e:
            text = str(e)
            if "overlap" in text.lower():
                raise ProvisionError(f"subnet {self.subnet} is already used by another Docker network "
                                     "(another run?); choose another with --subnet, or `splitbrain clean` "
                                     f"a crashed run's leftovers ({e.explanation})") from None
            raise ProvisionError(f"cannot create network {self.network_name}: {e.explanation or e}") from None

    def _create_container(self, node: Node, image: str):
        import docker.errors

        api = self.docker.api
        labels = dict(run_labels(self.run_id, self.detached), **{"splitbrain.node": node.id})
        lazy = self._lazy.mountpoint(node)
        # The lazy disk is mounted on the host: the container only gets it bound as its data dir.
        binds = {lazy: {"bind": self.data_dir, "mode": "rw"}} if lazy else {}
        if self._uses_clock_shim():
            binds[self._clock_host_dir(node)] = {"bind": CLOCK_DIR, "mode": "ro"}
        host_config = api.create_host_config(cap_add=["NET_ADMIN"], network_mode=self.network_name,
                                             binds=binds or None)
        networking = api.create_networking_config(
            {self.network_name: api.create_endpoint_config(ipv4_address=node.address)})
        try:
            created = api.create_container(image, name=self.container_name(node.id), hostname=node.id,
                                           labels=labels, host_config=host_config,
                                           networking_config=networking, detach=True)
        except docker.errors.ImageNotFound:
            raise ProvisionError(f"image {image} is missing: build it first (`splitbrain image build`)") from None
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
        """Our chain, this run's rules for the node, the clock shim and the node's clock file:
        after every container start."""
        self.net().reapply(node)
        if self._uses_clock_shim():
            clockshim.write_spec(os.path.join(self._clock_host_dir(node), "spec"), self.clock_state(node).text())
        # The container start this preparation belongs to: another start means a fresh netns.
        node.meta["prepared_start"] = self._started_at(node)

    def _uses_clock_shim(self) -> bool:
        return self.clock_enabled and self.clock_via_libc and clockshim.unavailable_reason() is None

    def _clock_host_dir(self, node: Node) -> str:
        return clockshim.node_dir(self.run_id, node.id, clockshim.ensure_library())

    def clock_environment(self, node: Node) -> dict[str, str]:
        """The variables that put a process in the node's container under its clock faults (the
        service gets them; so does a probe started beside it); {} without clock faults."""
        return clockshim.environment(CLOCK_LIB, CLOCK_FILE) if self._uses_clock_shim() else {}

    def clock_loaded(self, node: Node) -> bool | None:
        code, _ = self._sh(node, f"pid=$(cat {PID_FILE} 2>/dev/null) && [ -r /proc/$pid/maps ] || exit 3; "
                                 f"grep -q {shlex.quote(clockshim.LIBRARY_NAME)} /proc/$pid/maps", check=False)
        return {0: True, 1: False}.get(code)

    def _start_process(self, node: Node):
        argv = self.command(node, self.nodes)
        env = dict(self.environment(node))
        env.update(self.clock_environment(node))
        env_text = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items())
        script = (f"mkdir -p {self.data_dir} {self.log_dir} && echo $$ > {PID_FILE} && "
                  f"exec env {env_text} {' '.join(shlex.quote(a) for a in argv)} >> {self.stderr_file} 2>&1")
        self._container(node).exec_run(["sh", "-c", script], detach=True)
        self._process_started_now(node)
        # The pid file is written by the exec'd shell; wait for it so kill/pause right after
        # start find the process.
        deadline = time.monotonic() + 10
        while not self.is_running(node):
            if time.monotonic() > deadline:
                raise ProvisionError(f"{node.id}: the service process did not start:\n{self.exit_report(node)}")
            time.sleep(0.05)

    def is_running(self, node: Node) -> bool:
        """True while the service process exists (running or stopped by SIGSTOP), not a zombie."""
        code, _ = self._sh(node, signal_script("0", self._match(node)), check=False)
        return code == 0

    def teardown(self) -> None:
        import docker.errors

        if self._net is not None:
            self._net.close()  # delay programs run on the host, in the containers' namespaces
        try:
            _ = self.docker  # connects to the engine: raises ProvisionError without one
        except ProvisionError:
            return  # no engine: nothing of ours can exist
        flt = {"label": [f"{LABEL}=1", f"{LABEL_RUN}={self.run_id}"]}
        for container in self.docker.containers.list(all=True, filters=flt):
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:
                if "already in progress" not in str(e):
                    raise
        for network in self.docker.networks.list(filters=flt):
            try:
                network.remove()
            except docker.errors.NotFound:
                pass
        # after the containers, which bind-mount them
        self._lazy.stop_all()
        self._lazy.remove_host_root()
        self._clock_specs.clear()
        clockshim.remove_run_dir(self.run_id)  # after the containers that mount it

    # -- process faults ------------------------------------------------------------------------
    def _signal(self, node: Node, signal: str) -> bool:
        code, _ = self._sh(node, signal_script(signal, self._match(node)), check=False)
        if code not in (0, _NOT_RUNNING):
            raise ProvisionError(f"{node.id}: sending SIG{signal} failed (exit {code})")
        return code == 0

    def kill(self, node: Node) -> None:
        if not self._container_running(node):
            return
        self._signal(node, "KILL")
        deadline = time.monotonic() + 10
        while self.is_running(node):  # reaped by tini; ports free once it is gone
            if time.monotonic() > deadline:
                raise ProvisionError(f"{node.id}: the service process survived SIGKILL for 10 s")
            time.sleep(0.05)

    def pause(self, node: Node) -> None:
        self._signal(node, "STOP")

    def resume(self, node: Node) -> None:
        if self._container_running(node):
            self._signal(node, "CONT")

    def _netns_path(self, node: Node) -> str:
        """The container's network namespace as the host sees it (where delay programs run)."""
        pid = self._container(node).attrs["State"].get("Pid")
        if not pid:
            raise ProvisionError(f"{node.id}: container {self.container_name(node.id)} is not running")
        return f"/proc/{pid}/ns/net"

    def _container_running(self, node: Node) -> bool:
        import docker.errors

        try:
            container = self._container(node)
        except docker.errors.NotFound:
            raise ProvisionError(f"{node.id}: container {self.container_name(node.id)} is gone") from None
        return container.status == "running"

    def start(self, node: Node) -> None:
        """Start the service process; first restart its container (and re-apply rules) if needed."""
        if not self._container_running(node):
            self._container(node).start()
        if self._started_at(node) != node.meta.get("prepared_start"):
            # restarted since we prepared it (by us or anyone): its rules are gone
            self._prepare_container(node)
            self._run_start_hooks(node)
        elif self.is_running(node):
            return
        self._start_process(node)

    # -- network and clock -------------------------------------------------------------------------
    def net(self) -> NamespaceNet:
        if self._net is None:
            raise ProvisionError("the cluster is not set up: no network to partition")
        return self._net

    def set_clock(self, node: Node, text: str) -> None:
        check_clock_spec(text)
        if not self._uses_clock_shim():
            if ClockSpec.parse(text).is_real_time:
                return  # nothing to undo in a run without clock faults
            raise ProvisionError(f"{node.id}: this run has no clock faults ({self.unavailable().get('clock')})")
        clockshim.write_spec(os.path.join(self._clock_host_dir(node), "spec"), text)

    # -- disk faults -------------------------------------------------------------------------------
    def data_path(self, node: Node) -> str:
        """The lazy disk's mount point, else the container's data dir through /proc/PID/root
        (the engine runs on this host; reading it needs root)."""
        lazy = self._lazy.mountpoint(node)
        if lazy:
            return lazy
        pid = self._container(node).attrs["State"].get("Pid") or 0
        if not pid:
            raise ProvisionError(f"{node.id}: its container is not running, so its files cannot be reached")
        return f"/proc/{pid}/root{self.data_dir}"

    def lose_unsynced_writes(self, node: Node, tear_seed: int | None = None) -> dict:
        if self.is_running(node):
            raise ProvisionError(f"{node.id}: its service is running; stop it before dropping its unsynced writes")
        return self._lazy.lose(node, tear_seed)

    # -- commands and logs -------------------------------------------------------------------------
    def exec(self, node: Node, argv: list[str], check: bool = True) -> str:
        return self._sh(node, " ".join(shlex.quote(a) for a in argv), check=check)[1]

    def collect_logs(self, node: Node, dest_dir: str) -> list[str]:
        import docker.errors

        os.makedirs(dest_dir, exist_ok=True)
        try:
            stream, _ = self._container(node).get_archive(self.log_dir)
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
