"""Local provisioner: the nodes as plain processes on loopback addresses (127.0.0.11, .12, ...).

Fast, for development and tests. Faults:
- kill, pause: signals to the node's pid (always);
- clock: libfaketime preloaded into each node, as in the containers (when the host has it);
- partition: only as root, with iptables DROP rules in a chain of our own (SB<owner pid>-<run>),
  jumped to from OUTPUT (every loopback packet passes it). On loopback a node's outgoing
  connections leave from 127.0.0.1 unless it binds its own address, so addresses alone cannot
  tell nodes apart. Each node therefore runs in its own cgroup (v2) and a cut between A and B
  drops what A's sockets send to B's address and what B's send to A's (`-m cgroup --path`).
  Without a cgroup v2 hierarchy the rules match source and destination addresses instead, and
  setup() checks on the live sockets that the nodes bind their own address, withdrawing
  "partition" from supported_faults (with the reason) when they do not.

Each run leaves a state file (STATE_DIR/<run>.json: owner, pids, chain, data dir) so that
`splitbrain clean` can remove what a crashed controller left behind.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from chaos.interfaces import Node
from chaos.provision.base import (LABEL_OWNER, NodeOptions, ProvisionError, Provisioner, faketime_env, node_argv,
                                  node_ids, owner_alive, process_start_ticks)
from chaos.provision.docker import check_clock_spec

STATE_DIR = os.path.join(tempfile.gettempdir(), "splitbrain-local")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE_PATH = os.path.join(REPO_ROOT, "node_image")
FAKETIME_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
                       "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
                       "/usr/local/lib/faketime/libfaketimeMT.so.1",
                       "/usr/lib/faketime/libfaketimeMT.so.1")


def find_libfaketime() -> str | None:
    for path in FAKETIME_CANDIDATES:
        if os.path.exists(path):
            return path
    return None


def chain_name(run_id: str, owner_pid: int | None = None) -> str:
    """Our iptables chain for a run; it names the owner's pid so `clean` can tell dead runs."""
    import hashlib
    digest = hashlib.sha1(run_id.encode()).hexdigest()[:8]
    return f"SB{owner_pid or os.getpid()}-{digest}"  # at most 2+7+1+8 = 18 < 29 characters


def iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise ProvisionError(f"iptables {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def remove_chain(chain: str) -> None:
    while iptables("-D", "OUTPUT", "-j", chain, check=False).returncode == 0:
        pass
    iptables("-F", chain, check=False)
    iptables("-X", chain, check=False)


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
    for dirpath, dirnames, _ in sorted(os.walk(path), key=lambda t: -t[0].count(os.sep)):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def _hex_ip(address: str) -> str:
    """An IPv4 address as /proc/net/tcp writes it (little-endian hex)."""
    return "".join(f"{b:02X}" for b in reversed(ipaddress.ip_address(address).packed))


class LocalDB(Provisioner):

    def __init__(self, run_id: str, options: NodeOptions | None = None, nodes: int = 5,
                 base_address: str = "127.0.0.11", client_port: int = 8000, peer_port: int = 9000,
                 data_root: str | None = None, leader_timeout: float = 30.0, wait_leader: bool = True,
                 python: str = sys.executable, detached: bool = False):
        super().__init__(run_id, options, detached=detached)
        node_ids(nodes)
        self.count = nodes
        try:
            base = ipaddress.ip_address(base_address)
        except ValueError:
            raise ValueError(f"base_address {base_address!r} is not an IPv4 address") from None
        if base not in ipaddress.ip_network("127.0.0.0/8") or base + 7 not in ipaddress.ip_network("127.0.0.0/8"):
            raise ValueError(f"base_address must leave room for 7 nodes inside 127.0.0.0/8, got {base_address}")
        self.base_address = base
        self.client_port, self.peer_port = client_port, peer_port
        self.data_root = data_root
        self._own_data_root = data_root is None
        self.leader_timeout = leader_timeout
        self.wait_leader = wait_leader
        self.python = python
        self.faketime = find_libfaketime()
        self.chain = chain_name(run_id, 0 if self.detached else None)
        self.procs: dict[str, subprocess.Popen] = {}
        self.cut: list[tuple[str, str]] = []
        self.partition_note: str | None = None
        self.cgroup_root: str | None = None   # our run's cgroup dir (one child per node)
        faults = {"kill", "pause"}
        if self.faketime and self.options.clock:
            faults.add("clock")
        if os.geteuid() == 0 and shutil.which("iptables"):
            faults.add("partition")
            mount = cgroup2_root()
            if mount:
                self.cgroup_mount = mount
                self.cgroup_root = os.path.join(mount, "splitbrain", self.chain)
        else:
            self.partition_note = "partitions need root and iptables"
        self.supported_faults = frozenset(faults)

    # -- paths and state ------------------------------------------------------------------------
    def _node_dir(self, node: Node) -> str:
        return os.path.join(self.data_root, node.id)

    def _clock_file(self, node: Node) -> str:
        return os.path.join(self._node_dir(node), "faketime")

    def log_file(self, node: Node) -> str:
        return os.path.join(self._node_dir(node), "node.log")

    @property
    def state_file(self) -> str:
        return os.path.join(STATE_DIR, f"{self.run_id}.json")

    def _save_state(self) -> None:
        os.makedirs(STATE_DIR, exist_ok=True)
        owner = 0 if self.detached else os.getpid()
        state = {"run": self.run_id, LABEL_OWNER: owner, "owner_start": process_start_ticks(owner) if owner else None,
                 "data_root": self.data_root, "own_data_root": self._own_data_root,
                 "chain": self.chain if "partition" in self.supported_faults else None,
                 "cgroup": self.cgroup_root,
                 "nodes": [{"id": n.id, "url": n.client_url, "pid": p.pid, "start": process_start_ticks(p.pid)}
                           for n in self.nodes for p in [self.procs.get(n.id)] if p is not None]}
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1)
        os.replace(tmp, self.state_file)

    # -- lifecycle -------------------------------------------------------------------------------
    def setup(self, nodes: int | None = None) -> list[Node]:
        count = nodes or self.count
        ids = node_ids(count)
        self.count = count
        self.nodes = [Node(id=nid, client_url=f"http://{self.base_address + i}:{self.client_port}",
                           address=str(self.base_address + i), peer_port=self.peer_port,
                           client_port=self.client_port, meta={"provisioner": "local"})
                      for i, nid in enumerate(ids)]
        existing = os.path.join(STATE_DIR, f"{self.run_id}.json")
        if os.path.exists(existing):
            raise ProvisionError(f"a local run {self.run_id!r} already exists ({existing}); "
                                 "`splitbrain cluster down` or `splitbrain clean` first")
        self._check_ports_free()
        try:
            if self.data_root is None:
                self.data_root = tempfile.mkdtemp(prefix=f"splitbrain-{self.run_id}-")
            for node in self.nodes:
                os.makedirs(self._node_dir(node), exist_ok=True)
                with open(self._clock_file(node), "w") as f:
                    f.write("+0 x1\n")
            self._save_state()
            if "partition" in self.supported_faults:
                self.install_chain()
                if self.cgroup_root:
                    for node in self.nodes:
                        os.makedirs(os.path.join(self.cgroup_root, node.id), exist_ok=True)
            for node in self.nodes:
                self._start_process(node)
            self._save_state()
            if self.wait_leader:
                self.wait_for_leader(self.leader_timeout)
                self._check_source_binding()
        except BaseException:
            self.salvage_logs()
            self.teardown()
            raise
        return self.nodes

    def install_chain(self) -> None:
        """Our (empty) chain, jumped to first from OUTPUT: loopback packets all pass OUTPUT."""
        iptables("-N", self.chain, check=False)
        iptables("-F", self.chain)
        if iptables("-C", "OUTPUT", "-j", self.chain, check=False).returncode != 0:
            iptables("-I", "OUTPUT", "1", "-j", self.chain)

    def _check_ports_free(self) -> None:
        for node in self.nodes:
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
        argv = node_argv(node, self.nodes, self.options, os.path.join(self._node_dir(node), "data"),
                         self.log_file(node), python=self.python)
        env = dict(os.environ)
        env["PYTHONPATH"] = NODE_PATH + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        if self.faketime and self.options.clock:
            env.update(faketime_env(self.faketime, self._clock_file(node)))
            spec = self._clock_before_start(node)
            if spec is not None:
                self.set_clock(node, spec)
        if self.cgroup_root and "partition" in self.supported_faults:
            # The shell moves itself into the node's cgroup, then becomes the node: every
            # socket the node creates belongs to that cgroup.
            procs = os.path.join(self.cgroup_root, node.id, "cgroup.procs")
            argv = ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh"] + argv
        stderr = open(os.path.join(self._node_dir(node), "stderr.log"), "ab")
        try:
            # Own session: a Ctrl-C to the controller's terminal does not reach the nodes; the
            # controller's teardown stops them.
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                    start_new_session=True)
        finally:
            stderr.close()
        self.procs[node.id] = proc
        node.meta["pid"] = proc.pid
        self._process_started_now(node)

    def _check_source_binding(self) -> None:
        """Drop partition support if a node's peer connections do not leave from its own address
        (only matters without cgroups: cgroup rules do not depend on source addresses)."""
        if "partition" not in self.supported_faults or self.cgroup_root:
            return
        peers = {(_hex_ip(n.address), f"{n.peer_port:04X}") for n in self.nodes}
        for node in self.nodes:
            inodes = set()
            proc = self.procs.get(node.id)
            try:
                for fd in os.listdir(f"/proc/{proc.pid}/fd"):
                    link = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
                with open("/proc/net/tcp") as f:
                    rows = [line.split() for line in f.readlines()[1:]]
            except (OSError, AttributeError):
                continue
            own = _hex_ip(node.address)
            for row in rows:
                local, remote, inode = row[1], row[2], row[9]
                if inode in inodes and tuple(remote.split(":")) in peers and local.split(":")[0] != own:
                    self.partition_note = (f"{node.id}'s peer connections leave from "
                                           f"{socket.inet_ntoa(bytes.fromhex(local.split(':')[0])[::-1])}, "
                                           f"not its own {node.address}: address rules cannot cut it off")
                    self.supported_faults = self.supported_faults - {"partition"}
                    return

    def is_running(self, node: Node) -> bool:
        proc = self.procs.get(node.id)
        return proc is not None and proc.poll() is None

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
        for node_id, proc in list(self.procs.items()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)  # also ends a stopped (paused) process
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        self.procs.clear()
        if os.geteuid() == 0 and shutil.which("iptables"):
            remove_chain(self.chain)  # ours by name; absent when partitions were never supported
        if self.cgroup_root:
            remove_cgroups(self.cgroup_root)
        self.cut = []
        if self._own_data_root and self.data_root and os.path.isdir(self.data_root):
            shutil.rmtree(self.data_root, ignore_errors=True)
        try:
            os.remove(self.state_file)
        except FileNotFoundError:
            pass

    # -- faults --------------------------------------------------------------------------------
    def partition(self, cut) -> None:
        if "partition" not in self.supported_faults:
            raise ProvisionError(f"the local provisioner cannot partition: {self.partition_note}")
        address = {n.id: n.address for n in self.nodes}
        lines = ["*filter", f":{self.chain} - [0:0]"]
        pairs = []
        for a, b in cut:
            if a not in address or b not in address:
                raise ValueError(f"partition names unknown node {a if a not in address else b!r}")
            pairs.append(tuple(sorted((a, b))))
            for src, dst in ((a, b), (b, a)):
                if self.cgroup_root:
                    path = os.path.relpath(os.path.join(self.cgroup_root, src), self.cgroup_mount)
                    lines.append(f"-A {self.chain} -m cgroup --path {path} -d {address[dst]}/32 -j DROP")
                else:
                    lines.append(f"-A {self.chain} -s {address[src]}/32 -d {address[dst]}/32 -j DROP")
        lines.append("COMMIT")
        proc = subprocess.run(["iptables-restore", "-w", "--noflush"], input="\n".join(lines) + "\n",
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise ProvisionError(f"iptables-restore failed: {proc.stderr.strip()}")
        self.cut = pairs

    def heal_partition(self) -> None:
        if "partition" in self.supported_faults:
            iptables("-F", self.chain, check=False)
        self.cut = []

    def chain_rules(self) -> list[str]:
        out = iptables("-S", self.chain, check=False).stdout
        return [line for line in out.splitlines() if line.startswith("-A ")]

    def set_clock(self, node: Node, spec: str) -> None:
        if not self.faketime:
            raise NotImplementedError("libfaketime is not installed on this host (apt-get install faketime)")
        check_clock_spec(spec)
        path = self._clock_file(node)
        with open(path + ".tmp", "w") as f:
            f.write(spec + "\n")
        os.replace(path + ".tmp", path)  # the node never reads a half-written spec

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
        written = []
        for name in ("node.log", "stderr.log"):
            source = os.path.join(self._node_dir(node), name)
            if self.data_root and os.path.exists(source):
                shutil.copyfile(source, os.path.join(dest_dir, name))
                written.append(os.path.join(dest_dir, name))
        return written


def read_states() -> list[dict]:
    """Every local run's state file (for `splitbrain clean` and `cluster status`)."""
    states = []
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
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


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
