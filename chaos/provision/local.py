"""Local provisioner: a service as plain processes on loopback addresses (127.0.0.11, .12, ...).

ProcessDB is the generic local DB: a system says its command line and environment per node and
gets kill, pause, clock faults (our clock shim, when the host has a C compiler), partitions (as
root) and log collection. Fast, for development and tests: our 3-node cluster is ready in about a second.

- kill, pause: signals to the node's pid;
- clock: in runs with clock faults, the clock shim (chaos.provision.clockshim) preloaded into each
  process, reading a spec file (<data_root>/<n>/clock) we rewrite live;
- partition: only as root, with chaos.net.CgroupNet: each node runs in a cgroup (v2) of its
  own and "n1 stops hearing n2" drops what n2's sockets send to n1's address, in a chain of our
  own (SB<owner pid>-<run>) jumped to from OUTPUT. Without a cgroup v2 hierarchy the rules match
  source and destination addresses instead, and setup() checks on the live sockets that the
  nodes bind their own address, withdrawing "partition" (with the reason) when they do not.

Files of node n: <data_root>/<n>/data (the service's data), <data_root>/<n>/logs (its logs,
stderr.log included: collected into the run's store). Each run leaves a state file
(STATE_DIR/<run>.json: owner, pids, chain, data dir) so that `splitbrain clean` can remove what
a crashed controller left behind.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from chaos.interfaces import Disk, Exec, LogFiles, Network, Node, Pause, Process
from chaos.net.iptables import CgroupNet, host_iptables, remove_host_chain
from chaos.provision import clockshim
from chaos.provision.base import (LABEL_OWNER, ProvisionedDB, ProvisionError, node_ids, owner_alive,
                                  is_zombie, process_start_ticks)
from chaos.provision.docker import check_clock_spec
from chaos.provision.lazy import LazyDisks
from chaos.provision.lazy import unavailable as lazy_unavailable

STATE_DIR = os.path.join(tempfile.gettempdir(), "splitbrain-local")
MAX_LOCAL_NODES = 32


def chain_name(run_id: str, owner_pid: int | None = None) -> str:
    """Our iptables chain for a run; it names the owner's pid so `clean` can tell dead runs."""
    import hashlib
    digest = hashlib.sha1(run_id.encode()).hexdigest()[:8]
    return f"SB{owner_pid if owner_pid is not None else os.getpid()}-{digest}"  # at most 18 characters


def iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        return host_iptables(*args, check=check)
    except RuntimeError as e:
        raise ProvisionError(str(e)) from None


remove_chain = remove_host_chain


def cgroup2_root() -> str | None:
    """Where the cgroup v2 hierarchy is mounted (pure v2 or the hybrid "unified"), or None."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[2] == "cgroup2":
                    return fields[1]
    except OSError:
        pass
    return None


def remove_cgroups(path: str) -> None:
    """rmdir a tree of (empty) cgroups, leaves first; cgroup files cannot be deleted, only dirs."""
    if not path or not os.path.isdir(path):
        return
    for dirpath, _dirnames, _ in sorted(os.walk(path), key=lambda t: -t[0].count(os.sep)):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def _hex_ip(address: str) -> str:
    """An IPv4 address as /proc/net/tcp writes it (little-endian hex)."""
    return "".join(f"{b:02X}" for b in reversed(ipaddress.ip_address(address).packed))


class ProcessDB(ProvisionedDB, Process, Pause, Network, LogFiles, Exec, Disk):
    name = "process"
    provisioner = "local"

    def __init__(self, run_id: str, nodes: int = 3, node_options: dict | None = None,
                 base_address: str = "127.0.0.11", client_port: int | None = None,
                 peer_port: int | None = None, data_root: str | None = None,
                 ready_timeout: float = 30.0, wait_ready: bool = True, clock: bool = True,
                 detached: bool = False, lazy_disk: bool = False):
        super().__init__(run_id, nodes, node_options, detached=detached, ready_timeout=ready_timeout)
        # lose-unsynced runs: each node's data dir is a lazy disk (chaos.lazydisk)
        self.lazy_disk_enabled = lazy_disk
        self._lazy = LazyDisks(run_id, detached)
        try:
            base = ipaddress.ip_address(base_address)
        except ValueError:
            raise ValueError(f"base_address {base_address!r} is not an IPv4 address") from None
        loopback = ipaddress.ip_network("127.0.0.0/8")
        if base not in loopback or base + nodes - 1 not in loopback or nodes > MAX_LOCAL_NODES:
            raise ValueError(f"base_address must leave room for {nodes} nodes inside 127.0.0.0/8, "
                             f"got {base_address}")
        self.base_address = base
        if client_port is not None:
            self.client_port = client_port
        if peer_port is not None:
            self.peer_port = peer_port
        self.data_root = data_root
        self._own_data_root = data_root is None
        self.wait_ready_at_setup = wait_ready
        self.clock_enabled = clock
        self.chain = chain_name(run_id, 0 if self.detached else None)
        self.procs: dict[str, subprocess.Popen] = {}
        self.retired_nodes: list[Node] = []   # removed mid-run: stopped, files kept until teardown
        self.partition_note: str | None = None
        self.cgroup_mount: str | None = None
        self.cgroup_root: str | None = None   # our run's cgroup dir (one child per node)
        if os.geteuid() == 0 and shutil.which("iptables"):
            mount = cgroup2_root()
            if mount:
                self.cgroup_mount = mount
                self.cgroup_root = os.path.join(mount, "splitbrain", self.chain)
        else:
            self.partition_note = "partitions need root and iptables"
        self._net: CgroupNet | None = None

    def unavailable(self) -> dict[str, str]:
        missing = {}
        if self.partition_note:
            missing["partition"] = self.partition_note
            missing["loss"] = missing["delay"] = self.partition_note
        # Host safety: a qdisc on the host's loopback would shape every process of the host.
        missing["bandwidth"] = CgroupNet.link_unavailable["bandwidth"]
        if not self.clock_enabled:
            missing["clock"] = "the clock shim is loaded only into runs that ask for clock faults"
        elif reason := clockshim.unavailable_reason():
            missing["clock"] = reason
        lazy = lazy_unavailable(self.lazy_disk_enabled)
        if lazy:
            missing["lose-unsynced"] = lazy
        return missing

    # -- paths and state ------------------------------------------------------------------------
    def node_dir(self, node: Node) -> str:
        if self.data_root is None:
            raise ProvisionError("the cluster is not set up: it has no data directory yet")
        return os.path.join(self.data_root, node.id)

    def data_dir(self, node: Node) -> str:
        return os.path.join(self.node_dir(node), "data")

    def log_dir(self, node: Node) -> str:
        return os.path.join(self.node_dir(node), "logs")

    def _clock_file(self, node: Node) -> str:
        return os.path.join(self.node_dir(node), "clock")

    def _stderr_file(self, node: Node) -> str:
        return os.path.join(self.log_dir(node), "stderr.log")

    @property
    def state_file(self) -> str:
        return os.path.join(STATE_DIR, f"{self.run_id}.json")

    _state_lock = threading.Lock()  # nodes are started in parallel (a fault on several at once)

    def _save_state(self) -> None:
        with self._state_lock:
            self._write_state()

    def _write_state(self) -> None:
        os.makedirs(STATE_DIR, exist_ok=True)
        owner = 0 if self.detached else os.getpid()
        state = {"run": self.run_id, LABEL_OWNER: owner, "owner_start": process_start_ticks(owner) if owner else None,
                 "data_root": self.data_root, "own_data_root": self._own_data_root,
                 "chain": self.chain if self._net is not None else None,
                 "cgroup": self.cgroup_root,
                 "nodes": [{"id": n.id, "url": n.client_url, "pid": p.pid, "start": process_start_ticks(p.pid)}
                           for n in self.nodes for p in [self.procs.get(n.id)] if p is not None]}
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1)
        os.replace(tmp, self.state_file)

    # -- lifecycle -------------------------------------------------------------------------------
    def setup(self, count: int | None = None) -> list[Node]:
        count = count or self.count
        ids = node_ids(count, self.node_counts)
        self.count = count
        self.nodes = [Node(id=nid, client_url="", address=str(self.base_address + i),
                           peer_port=self.peer_port, client_port=self.client_port,
                           meta={"provisioner": "local"})
                      for i, nid in enumerate(ids)]
        for node in self.nodes:
            node.client_url = self.client_url(node)
        existing = os.path.join(STATE_DIR, f"{self.run_id}.json")
        if os.path.exists(existing):
            raise ProvisionError(f"a local run {self.run_id!r} already exists ({existing}); "
                                 "`splitbrain cluster down` or `splitbrain clean` first")
        self._check_ports_free()
        try:
            if self.data_root is None:
                self.data_root = tempfile.mkdtemp(prefix=f"splitbrain-{self.run_id}-")
            for node in self.nodes:
                os.makedirs(self.data_dir(node), exist_ok=True)
                os.makedirs(self.log_dir(node), exist_ok=True)
                with open(self._clock_file(node), "w") as f:
                    f.write(self.clock_state(node).text() + "\n")
                if self.lazy_disk_enabled:
                    self._lazy.mount(node, self.data_dir(node), os.path.join(self.node_dir(node), "lazydisk.sock"),
                                     os.path.join(self.log_dir(node), "lazydisk.log"))
            if "partition" not in self.unavailable():
                self._net = CgroupNet(self.nodes, self.chain, self._cgroup_rel)
            self._save_state()
            if self._net is not None:
                self._net.install()
                if self.cgroup_root:
                    for node in self.nodes:
                        os.makedirs(os.path.join(self.cgroup_root, node.id), exist_ok=True)
            for node in self.nodes:
                self._start_process(node)
            self._save_state()
            if self.wait_ready_at_setup:
                self.wait_ready(self.nodes, self.ready_timeout)
                self._check_source_binding()
        except BaseException:
            self.salvage_logs()
            self.teardown()
            raise
        return self.nodes

    # -- nodes added and retired mid-run (a system's Membership capability uses these) ----------
    def add_node(self) -> Node:
        """Provision and start one more node after setup: the next id and address (never one
        used before in this run), fresh directories, its own cgroup, in the network layer and in
        the state file, so that partitions, teardown and `splitbrain clean` include it.
        node.meta["joined"] tells the system's command() that it joins a running cluster."""
        index = len(self.nodes) + len(self.retired_nodes)
        if index >= MAX_LOCAL_NODES:
            raise ProvisionError(f"a local run has at most {MAX_LOCAL_NODES} nodes over its lifetime")
        node = Node(id=f"n{index + 1}", client_url="", address=str(self.base_address + index),
                    peer_port=self.peer_port, client_port=self.client_port,
                    meta={"provisioner": "local", "joined": True})
        node.client_url = self.client_url(node)
        self._check_ports_free([node])
        os.makedirs(self.data_dir(node), exist_ok=True)
        os.makedirs(self.log_dir(node), exist_ok=True)
        with open(self._clock_file(node), "w") as f:
            f.write(self.clock_state(node).text() + "\n")
        if self.lazy_disk_enabled:
            self._lazy.mount(node, self.data_dir(node), os.path.join(self.node_dir(node), "lazydisk.sock"),
                             os.path.join(self.log_dir(node), "lazydisk.log"))
        if self._net is not None and self.cgroup_root:
            os.makedirs(os.path.join(self.cgroup_root, node.id), exist_ok=True)
        self.nodes.append(node)
        if self._net is not None:
            self._net.add_node(node)
        self._start_process(node)
        self._save_state()
        return node

    def retire_node(self, node: Node) -> None:
        """Stop a node for good (removed from the cluster): SIGKILL, out of the network layer
        and the node list; its files stay until teardown (its logs are collected)."""
        self.kill(node)
        if self._net is not None:
            self._net.remove_node(node.id)
        self.nodes = [n for n in self.nodes if n.id != node.id]
        self.retired_nodes.append(node)
        self._save_state()

    def _cgroup_rel(self, node: Node) -> str | None:
        if not self.cgroup_root:
            return None
        return os.path.relpath(os.path.join(self.cgroup_root, node.id), self.cgroup_mount)

    def _check_ports_free(self, nodes: list[Node] | None = None) -> None:
        for node in self.nodes if nodes is None else nodes:
            for port in (node.client_port, node.peer_port):
                with socket.socket() as s:
                    # as the node binds: connections in TIME_WAIT from a previous run do not count
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        s.bind((node.address, port))
                    except OSError as e:
                        raise ProvisionError(f"{node.address}:{port} is in use ({e.strerror}); another local "
                                             "cluster? pick another --base-address") from None

    def _start_process(self, node: Node) -> None:
        argv = self.command(node, self.nodes)
        env = dict(os.environ)
        env.update(self.environment(node))
        env.update(self.clock_environment(node, env.get("LD_PRELOAD")))
        if self.cgroup_root and self._net is not None:
            # The shell moves itself into the node's cgroup, then becomes the service: every
            # socket the service creates belongs to that cgroup.
            procs = os.path.join(self.cgroup_root, node.id, "cgroup.procs")
            argv = ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh"] + list(argv)
        stderr = open(self._stderr_file(node), "ab")
        try:
            # Own session: a Ctrl-C to the controller's terminal does not reach the nodes; the
            # controller's teardown stops them.
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                    start_new_session=True, cwd=self.node_dir(node))
        finally:
            stderr.close()
        self.procs[node.id] = proc
        node.meta["pid"] = proc.pid
        self._process_started_now(node)

    def _check_source_binding(self) -> None:
        """Withdraw partitions if a node's peer connections do not leave from its own address
        (only matters without cgroups: cgroup rules do not depend on source addresses)."""
        if self._net is None or self.cgroup_root:
            return
        peers = {(_hex_ip(n.address), f"{n.peer_port:04X}") for n in self.nodes}
        for node in self.nodes:
            inodes = set()
            proc = self.procs.get(node.id)
            if proc is None:
                continue  # not started: no connections to look at
            try:
                for fd in os.listdir(f"/proc/{proc.pid}/fd"):
                    link = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
                with open("/proc/net/tcp") as f:
                    rows = [line.split() for line in f.readlines()[1:]]
            except OSError:
                continue
            own = _hex_ip(node.address)
            for row in rows:
                local, remote, inode = row[1], row[2], row[9]
                if inode in inodes and tuple(remote.split(":")) in peers and local.split(":")[0] != own:
                    self.partition_note = (f"{node.id}'s peer connections leave from "
                                           f"{socket.inet_ntoa(bytes.fromhex(local.split(':')[0])[::-1])}, "
                                           f"not its own {node.address}: address rules cannot cut it off")
                    return

    def is_running(self, node: Node) -> bool:
        proc = self.procs.get(node.id)
        return proc is not None and proc.poll() is None

    def exit_report(self, node: Node, lines: int = 20) -> str:
        proc = self.procs.get(node.id)
        status = "" if proc is None or proc.poll() is None else f"exit status {proc.returncode}\n"
        try:
            with open(self._stderr_file(node), "rb") as f:
                tail = f.read()[-8192:].decode("utf-8", "replace").splitlines()[-lines:]
        except OSError as e:
            tail = [f"(cannot read {self._stderr_file(node)}: {e.strerror})"]
        return status + "\n".join(tail)

    def start(self, node: Node) -> None:
        if self.is_running(node):
            return
        self._start_process(node)
        self._save_state()

    def kill(self, node: Node) -> None:
        proc = self.procs.get(node.id)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def pause(self, node: Node) -> None:
        if self.is_running(node):
            self.procs[node.id].send_signal(signal.SIGSTOP)

    def resume(self, node: Node) -> None:
        if self.is_running(node):
            self.procs[node.id].send_signal(signal.SIGCONT)

    def teardown(self) -> None:
        for proc in list(self.procs.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)  # also ends a stopped (paused) process
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        self.procs.clear()
        self._lazy.stop_all()  # after the nodes, before their data dirs go
        if self._net is not None:
            self._net.close()  # the delay program, if a delay is in force
        if os.geteuid() == 0 and shutil.which("iptables"):
            remove_chain(self.chain)  # ours by name; absent when partitions were never supported
        if self.cgroup_root:
            remove_cgroups(self.cgroup_root)
        if self._own_data_root and self.data_root and os.path.isdir(self.data_root):
            shutil.rmtree(self.data_root, ignore_errors=True)
        try:
            os.remove(self.state_file)
        except FileNotFoundError:
            pass

    # -- faults --------------------------------------------------------------------------------
    def net(self) -> CgroupNet:
        if self._net is None or self.partition_note:
            raise ProvisionError(f"the local provisioner cannot partition: {self.partition_note or 'not set up'}")
        return self._net

    def clock_environment(self, node: Node, inherited_preload: str | None = None) -> dict[str, str]:
        """The variables that put a process under the node's clock faults (the service gets them;
        so does a probe started beside it); {} without clock faults."""
        if not self.clock_enabled or clockshim.unavailable_reason():
            return {}
        return clockshim.environment(clockshim.ensure_library(), self._clock_file(node), inherited_preload)

    def clock_loaded(self, node: Node) -> bool | None:
        proc = self.procs.get(node.id)
        if proc is None or proc.poll() is not None:
            return None
        try:
            with open(f"/proc/{proc.pid}/maps") as f:
                return clockshim.LIBRARY_NAME in f.read()
        except OSError:
            return None

    def set_clock(self, node: Node, text: str) -> None:
        check_clock_spec(text)
        path = self._clock_file(node)
        with open(path + ".tmp", "w") as f:
            f.write(text + "\n")
        os.replace(path + ".tmp", path)  # the shim never reads a half-written spec

    # -- disk faults ---------------------------------------------------------------------------
    def data_path(self, node: Node) -> str:
        return self.data_dir(node)

    def lose_unsynced_writes(self, node: Node, tear_seed: int | None = None) -> dict:
        if self.is_running(node):
            raise ProvisionError(f"{node.id}: its service is running; stop it before dropping its unsynced writes")
        return self._lazy.lose(node, tear_seed)

    # -- commands and logs ---------------------------------------------------------------------
    def exec(self, node: Node, argv: list[str], check: bool = True) -> str:
        """Run a command on the host; with cgroups, inside the node's cgroup, so that the
        partition rules treat its traffic as the node's."""
        if self.cgroup_root and os.path.isdir(os.path.join(self.cgroup_root, node.id)):
            procs = os.path.join(self.cgroup_root, node.id, "cgroup.procs")
            argv = ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh"] + list(argv)
        proc = subprocess.run(argv, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise ProvisionError(f"{node.id}: {' '.join(argv)} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def collect_logs(self, node: Node, dest_dir: str) -> list[str]:
        os.makedirs(dest_dir, exist_ok=True)
        written: list[str] = []
        source_dir = self.log_dir(node) if self.data_root else None
        if not source_dir or not os.path.isdir(source_dir):
            return written
        for name in sorted(os.listdir(source_dir)):
            source = os.path.join(source_dir, name)
            if os.path.isfile(source):
                shutil.copyfile(source, os.path.join(dest_dir, name))
                written.append(os.path.join(dest_dir, name))
        return written


def read_states() -> list[dict]:
    """Every local run's state file (for `splitbrain clean` and `cluster status`)."""
    states: list[dict] = []
    if not os.path.isdir(STATE_DIR):
        return states
    for name in sorted(os.listdir(STATE_DIR)):
        if name.endswith(".json"):
            try:
                with open(os.path.join(STATE_DIR, name)) as f:
                    state = json.load(f)
                state["_path"] = os.path.join(STATE_DIR, name)
                states.append(state)
            except (OSError, ValueError):
                continue
    return states


def _alive_not_zombie(pid: int) -> bool:
    return not is_zombie(pid)


def state_owner_alive(state: dict) -> bool:
    return owner_alive(state.get(LABEL_OWNER), state.get("owner_start"))


def destroy_state(state: dict) -> list[str]:
    """Remove what a local run's state file names: its node processes (checked by start time, so
    a recycled pid is never signalled), its iptables chain, its data dir and the file itself."""
    removed = []
    killed = []
    for node in state.get("nodes", []):
        pid, start = node.get("pid"), node.get("start")
        if pid and start and process_start_ticks(pid) == start:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                removed.append(f"process {pid} ({node.get('id')})")
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    while killed and time.monotonic() < deadline:  # exited (zombies have left their cgroup)
        killed = [pid for pid in killed if _alive_not_zombie(pid)]
        if killed:
            time.sleep(0.02)
    chain = state.get("chain")
    if chain and os.geteuid() == 0 and shutil.which("iptables"):
        if iptables("-S", chain, check=False).returncode == 0:
            remove_chain(chain)
            removed.append(f"chain {chain}")
    if state.get("cgroup"):
        remove_cgroups(state["cgroup"])
    if state.get("own_data_root") and state.get("data_root") and os.path.isdir(state["data_root"]):
        shutil.rmtree(state["data_root"], ignore_errors=True)
        removed.append(f"dir {state['data_root']}")
    try:
        os.remove(state["_path"])
    except (KeyError, FileNotFoundError):
        pass
    return removed
