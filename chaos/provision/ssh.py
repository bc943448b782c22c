"""SSH provisioner: the service on real hosts (one node per host), driven over SSH with paramiko.

SSHHostDB is the generic SSH DB, the third beside ContainerDB (docker) and ProcessDB (local): a
system says what to upload, its command line and environment, and gets kill, pause, partitions,
clock skew, commands and log collection on hosts it reaches by SSH (systems/raftnode/db.py):

    class MyDB(SSHHostDB):
        name = "mydb"; process_match = "mydb"
        def uploads(self, node): return [("/path/to/mydb", "pkg/mydb")]     # -> package_dir
        def command(self, node, nodes): return ["python3", "-m", "mydb", "--data", self.data_dir(node)]

Hosts come from flags or a YAML inventory (load_inventory):

    --provisioner ssh --provisioner-option inventory=hosts.yaml
    --provisioner ssh --provisioner-option hosts=root@10.0.0.1,root@10.0.0.2:2222 \
                      --provisioner-option key=~/.ssh/id_ed25519

- Authentication by key only (ed25519; RSA with rsa-sha2-256/512 signatures, never SHA-1); no
  agent, no default keys, no passwords. Host keys are checked against known_hosts (default
  ~/.ssh/known_hosts); host_key_policy=accept-new records an unknown host's key but still
  refuses a host whose key differs from the one recorded (any key type).
- One connection per host, reused by every command (each a channel of its own), commands on
  different hosts in parallel. Commands that need root (iptables) go through `sudo -n` when the
  user is not root, so a password prompt fails at once with sudo's own message.
- Files of node n on its host: <remote_dir>/<run>/<n>/ (mode 700): pkg/ (the uploads), data/,
  logs/ (stderr.log included), clock (and the clock shim), service.pid, owner.json (who owns the run, for `splitbrain
  clean --ssh`). Teardown kills the service, removes our chain and that directory: nothing of
  ours stays on a host. A crashed controller's leftovers go with `splitbrain clean --ssh INV`.
- kill, pause: signals to the pid in service.pid (only if that process's command line has
  process_match, so a recycled pid is never signalled).
- partition: chaos.net.NamespaceNet on each host, through run(node, script) over SSH, in a chain
  of this run's own. Rules drop by the peer nodes' addresses only, and the chain's first rule
  accepts the controller's own SSH connection (its address and the SSH port, as the host sees
  them), so that no grudge can cut the controller off.
- clock: our clock shim (chaos.provision.clockshim, built on the controller, uploaded into the
  node's directory) preloaded into the service, reading the node's clock file, as with the
  local and docker provisioners; nothing touches a host's system clock. The file's times are the
  host's CLOCK_MONOTONIC: the controller translates its own by the offset measured at connect
  (zero when the host runs on the controller's kernel, as network namespaces do).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import posixpath
import re
import shlex
import socket
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from chaos.interfaces import Exec, LogFiles, Network, Node, Pause, Process
from chaos.net.iptables import NamespaceNet
from chaos.provision.base import (
    ProvisionedDB,
    ProvisionError,
    node_ids,
    owner_alive,
    process_start_ticks,
)

DEFAULT_REMOTE_DIR = "/tmp/splitbrain-ssh"
HOST_KEY_POLICIES = ("strict", "accept-new")
INVENTORY_KEYS = ("hosts", "defaults", "known_hosts", "host_key_policy", "remote_dir")
HOST_KEYS = ("address", "user", "port", "key", "node_address")
MIN_PYTHON = (3, 11)
_NOT_RUNNING = 3
#: our chains on a host: SBS + 8 hex digits of the run id (`splitbrain clean --ssh` finds them)
CHAIN_RE = re.compile(r"^SBS[0-9a-f]{8}K?$")


# -- hosts and inventories ----------------------------------------------------------------------------

@dataclass
class Host:
    address: str
    user: str = "root"
    port: int = 22
    key: str | None = None
    #: where peers and clients reach the service (the test network); the SSH address by default
    node_address: str | None = None

    @property
    def name(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"

    @property
    def service_address(self) -> str:
        return self.node_address or self.address


def _port(value, where: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: port must be a number, got {value!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{where}: port must be 1..65535, got {port}")
    return port


def parse_hosts(text: str, user: str = "root", port: int = 22, key: str | None = None) -> list[Host]:
    """`root@10.0.0.1,10.0.0.2:2222,alice@h3` -> hosts (user and port default as given)."""
    hosts = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        who, _, rest = item.rpartition("@")
        address, sep, port_text = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
        if not address:
            raise ValueError(f"hosts: {item!r} names no address (expected [USER@]ADDRESS[:PORT])")
        hosts.append(Host(address=address, user=who or user, port=_port(port_text, f"hosts: {item!r}") if sep else port,
                          key=key))
    if not hosts:
        raise ValueError("hosts: no host given (expected [USER@]ADDRESS[:PORT],...)")
    return hosts


def load_inventory(path: str) -> tuple[list[Host], dict]:
    """A YAML inventory:

        defaults: {user: root, port: 22, key: ~/.ssh/id_ed25519}
        known_hosts: ~/.ssh/known_hosts      # optional
        host_key_policy: strict               # or accept-new
        hosts:
          - {address: 10.0.0.1}
          - {address: 10.0.0.2, port: 2222, node_address: 192.168.5.2}

    Returns the hosts and the inventory's settings (known_hosts, host_key_policy, remote_dir).
    Errors name the file and the entry."""
    import yaml

    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ValueError(f"inventory {path}: cannot read it: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"inventory {path}: not YAML: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("hosts"), list) or not data["hosts"]:
        raise ValueError(f"inventory {path}: expected a mapping with hosts: [{{address: ...}}, ...]")
    for key in data:
        if key not in INVENTORY_KEYS:
            raise ValueError(f"inventory {path}: unknown key {key!r} (valid: {', '.join(INVENTORY_KEYS)})")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ValueError(f"inventory {path}: defaults must be a mapping")
    hosts = []
    for i, entry in enumerate(data["hosts"]):
        where = f"inventory {path}: hosts[{i}]"
        if isinstance(entry, str):
            hosts.extend(parse_hosts(entry, defaults.get("user", "root"), int(defaults.get("port", 22)),
                                     defaults.get("key")))
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping like {{address: 10.0.0.1}}")
        merged = {**defaults, **entry}
        for key in merged:
            if key not in HOST_KEYS:
                raise ValueError(f"{where}: unknown key {key!r} (valid: {', '.join(HOST_KEYS)})")
        if not merged.get("address"):
            raise ValueError(f"{where}: no address")
        hosts.append(Host(address=str(merged["address"]), user=str(merged.get("user", "root")),
                          port=_port(merged.get("port", 22), where), key=merged.get("key"),
                          node_address=merged.get("node_address")))
    settings = {k: data[k] for k in ("known_hosts", "host_key_policy", "remote_dir") if data.get(k) is not None}
    return hosts, settings


def fingerprint(key) -> str:
    """OpenSSH's SHA256 fingerprint of a paramiko key."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def known_hosts_name(host: Host) -> str:
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


# -- one connection per host ----------------------------------------------------------------------------

class HostKeyRefused(Exception):
    def __init__(self, message: str):
        super().__init__(message)


def _host_key_policy(policy: str, known_hosts: str, lock: threading.Lock):
    import paramiko

    class Strict(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            raise HostKeyRefused(
                f"unknown host key {key.get_name()} {fingerprint(key)}: {hostname} is not in {known_hosts}. "
                f"Check the fingerprint and add it (ssh-keyscan -p PORT ADDRESS >> {known_hosts}), or pass "
                "--provisioner-option host_key_policy=accept-new to record unknown hosts' keys")

    class AcceptNew(paramiko.MissingHostKeyPolicy):
        """Record a host seen for the first time; refuse one whose recorded key (of any type)
        differs (paramiko would otherwise treat a key of another type as unknown)."""

        def missing_host_key(self, client, hostname, key):
            known = client.get_host_keys().lookup(hostname)
            if known:
                recorded = ", ".join(f"{k.get_name()} {fingerprint(k)}" for k in known.values())
                raise HostKeyRefused(
                    f"the host key changed: {known_hosts} records {recorded} for {hostname}, the host offered "
                    f"{key.get_name()} {fingerprint(key)}. Refusing to connect (a reinstalled host, or a "
                    f"man in the middle: if you trust the new key, `ssh-keygen -R '{hostname}' -f {known_hosts}`)")
            with lock:
                directory = os.path.dirname(known_hosts)
                if directory:
                    os.makedirs(directory, mode=0o700, exist_ok=True)
                fd = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a") as f:
                    f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            client.get_host_keys().add(hostname, key.get_name(), key)

    return {"strict": Strict, "accept-new": AcceptNew}[policy]()


def load_key(path: str):
    import paramiko

    full = os.path.expanduser(path)
    try:
        return paramiko.PKey.from_path(full)
    except FileNotFoundError:
        raise ProvisionError(f"SSH key {path}: no such file") from None
    except paramiko.PasswordRequiredException:
        raise ProvisionError(f"SSH key {path} is encrypted; give an unencrypted key for test hosts") from None
    except (paramiko.SSHException, ValueError, OSError) as e:
        raise ProvisionError(f"SSH key {path}: cannot load it ({e})") from None


class SSHConnection:
    """One SSH connection to a host, reused: each command is a channel of its own (channels of
    one connection run concurrently); SFTP through one session, under a lock."""

    def __init__(self, host: Host, known_hosts: str, policy: str = "strict", timeout: float = 10.0,
                 known_hosts_lock: threading.Lock | None = None):
        if policy not in HOST_KEY_POLICIES:
            raise ValueError(f"host_key_policy must be one of {', '.join(HOST_KEY_POLICIES)}, got {policy!r}")
        if not host.key:
            raise ValueError(f"{host.name}: no SSH key given (--provisioner-option key=PATH, or key: in the "
                             "inventory); agents and default keys are not used")
        self.host = host
        self.known_hosts = os.path.expanduser(known_hosts)
        self.policy = policy
        self.timeout = timeout
        self._known_lock = known_hosts_lock or threading.Lock()
        self._client = None
        self._sftp = None
        self._sftp_lock = threading.Lock()
        self._connect_lock = threading.Lock()
        # sshd allows 10 sessions per connection by default (MaxSessions): stay below it
        self._slots = threading.BoundedSemaphore(8)
        self.uid: int | None = None
        #: the controller's address and the SSH server's port, as the host sees this connection
        self.peer: tuple[str, int] | None = None

    def connect(self) -> SSHConnection:
        import paramiko

        with self._connect_lock:
            if self._client is not None:
                return self
            pkey = load_key(self.host.key)
            client = paramiko.SSHClient()
            if os.path.exists(self.known_hosts):
                try:
                    client.load_host_keys(self.known_hosts)
                except (OSError, paramiko.SSHException) as e:
                    raise ProvisionError(f"known_hosts {self.known_hosts}: cannot read it ({e})") from None
            client.set_missing_host_key_policy(_host_key_policy(self.policy, self.known_hosts, self._known_lock))
            name = self.host.name
            try:
                client.connect(self.host.address, port=self.host.port, username=self.host.user, pkey=pkey,
                               allow_agent=False, look_for_keys=False, timeout=self.timeout,
                               banner_timeout=self.timeout, auth_timeout=self.timeout,
                               # RSA keys sign with rsa-sha2-256/512, never SHA-1 ssh-rsa
                               disabled_algorithms={"pubkeys": ["ssh-rsa"]})
            except HostKeyRefused as e:
                client.close()
                raise ProvisionError(f"{name}: {e}") from None
            except paramiko.BadHostKeyException as e:
                client.close()
                raise ProvisionError(
                    f"{name}: the host key changed: {self.known_hosts} records {e.expected_key.get_name()} "
                    f"{fingerprint(e.expected_key)}, "
                    f"the host offered {e.key.get_name()} {fingerprint(e.key)}. Refusing to connect (if you trust "
                    f"the new key: ssh-keygen -R '{known_hosts_name(self.host)}' -f {self.known_hosts})") from None
            except paramiko.AuthenticationException as e:
                client.close()
                raise ProvisionError(f"{name}: the host refused the key {self.host.key} "
                                     f"({pkey.get_name()} {fingerprint(pkey)}) for user {self.host.user}: "
                                     f"{e}") from None
            except (paramiko.ssh_exception.NoValidConnectionsError, TimeoutError, OSError) as e:
                client.close()
                raise ProvisionError(f"{name}: unreachable: {e}") from None
            except paramiko.SSHException as e:
                client.close()
                raise ProvisionError(f"{name}: SSH failed: {e}") from None
            client.get_transport().set_keepalive(15)
            self._client = client
        return self

    @property
    def connected(self) -> bool:
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and transport.is_active()

    def run(self, script: str, check: bool = True, timeout: float = 60.0, root: bool = False,
            stdin: bytes | None = None) -> tuple[int, str, str]:
        """Run a shell script on the host: (exit code, stdout, stderr). root=True goes through
        `sudo -n` for a user that is not root (no prompt: a missing rule fails at once)."""

        if self._client is None:
            self.connect()
        command = f"sh -c {shlex.quote(script)}"
        if root and self.uid != 0:
            command = f"sudo -n {command}"
        with self._slots:
            return self._run(command, script, check, timeout, stdin)

    def _run(self, command: str, script: str, check: bool, timeout: float,
             stdin: bytes | None) -> tuple[int, str, str]:
        import paramiko

        try:
            channel = self._client.get_transport().open_session(timeout=self.timeout)
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            out = channel.makefile("rb").read()
            err = channel.makefile_stderr("rb").read()
            code = channel.recv_exit_status()
            channel.close()
        except TimeoutError:
            raise ProvisionError(f"{self.host.name}: no answer within {timeout:.0f} s to: {script[:200]}") from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise ProvisionError(f"{self.host.name}: the SSH connection failed ({e}) running: {script[:200]}") from None
        out_text, err_text = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        if check and code != 0:
            raise ProvisionError(f"{self.host.name}: command failed (exit {code}): {script[:300]}\n{err_text.strip()}")
        return code, out_text, err_text

    def sftp(self):
        if self._sftp is None:
            if self._client is None:
                self.connect()
            self._sftp = self._client.open_sftp()
        return self._sftp

    def put_bytes(self, data: bytes, remote: str, mode: int = 0o600) -> None:
        with self._sftp_lock:
            sftp = self.sftp()
            with sftp.open(remote, "wb") as f:
                sftp.chmod(remote, mode)  # before the content: a secret is never readable by others
                f.write(data)

    def get_file(self, remote: str, local: str) -> None:
        with self._sftp_lock:
            self.sftp().get(remote, local)

    def listdir(self, remote: str) -> list[str]:
        with self._sftp_lock:
            try:
                return sorted(self.sftp().listdir(remote))
            except FileNotFoundError:
                return []

    def close(self) -> None:
        with self._connect_lock:
            if self._sftp is not None:
                try:
                    self._sftp.close()
                except Exception:  # noqa: BLE001, S110 - closing a dead connection
                    pass
                self._sftp = None
            if self._client is not None:
                self._client.close()
                self._client = None


def _parallel(fn, items):
    items = list(items)
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(fn, items))


# -- what a host has ---------------------------------------------------------------------------------

PREFLIGHT = r"""
echo "uid=$(id -u)"
echo "ssh=$SSH_CONNECTION"
if command -v python3 >/dev/null 2>&1; then
  echo "python=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>&1)"
fi
PATH="$PATH:/usr/sbin:/sbin"
command -v iptables >/dev/null 2>&1 && command -v iptables-restore >/dev/null 2>&1 &&
    echo "iptables=$(command -v iptables)"
command -v setsid >/dev/null 2>&1 && echo "setsid=yes"
echo "arch=$(uname -m)"
echo "boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
if [ "$(id -u)" != 0 ]; then
  if out=$(sudo -n true 2>&1 </dev/null); then echo "sudo=ok"; else echo "sudo=no $out" | tr '\n' ' '; echo; fi
fi
true
"""


def parse_preflight(text: str) -> dict:
    facts: dict = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            facts[key.strip()] = value.strip()
    return facts


# -- partitions over SSH ----------------------------------------------------------------------------------

def guard_script(chain: str, rules: list[str]) -> str:
    """Our guard chain (<chain>K), jumped to first from INPUT: ACCEPT rules for the controller's
    own SSH connection, ahead of every grudge (an ACCEPT in it ends INPUT for that packet)."""
    guard = chain + "K"
    lines = ["*filter", f":{guard} - [0:0]"] + [f"-A {guard} {spec} -j ACCEPT" for spec in rules] + ["COMMIT"]
    text = "\n".join(lines) + "\n"
    return (f"iptables -w -N {guard} 2>/dev/null || true; "
            f"printf '%s' {shlex.quote(text)} | iptables-restore -w --noflush && "
            f"while iptables -w -D INPUT -j {guard} 2>/dev/null; do :; done; iptables -w -I INPUT 1 -j {guard}")


def remove_chain_script(chain: str) -> str:
    """Every INPUT rule that names our chain (its jump, its conntrack switch, the guard's jump),
    then the chain and its guard: nothing of this run stays in the host's iptables."""
    return (f"iptables -w -S INPUT 2>/dev/null | grep -F -- {shlex.quote(chain)} | sed 's/^-A INPUT //' | "
            f"while read -r rule; do eval \"iptables -w -D INPUT $rule\" 2>/dev/null; done; "
            f"for c in {chain} {chain}K; do iptables -w -F $c 2>/dev/null; iptables -w -X $c 2>/dev/null; done; true")


def chain_for(run_id: str) -> str:
    return "SBS" + hashlib.sha1(run_id.encode()).hexdigest()[:8]


def signal_script(pid_file: str, signal: str, process_match: str) -> str:
    """Signal the process named in the pid file; exit 3 when it is not running (or is not ours)."""
    match = shlex.quote(process_match)
    pid_file = shlex.quote(pid_file)
    return (f"pid=$(cat {pid_file} 2>/dev/null) || exit {_NOT_RUNNING}; "
            f"[ -n \"$pid\" ] && [ -d /proc/$pid ] || exit {_NOT_RUNNING}; "
            f"tr '\\0' ' ' < /proc/$pid/cmdline 2>/dev/null | grep -q -- {match} || exit {_NOT_RUNNING}; "
            f"state=$(sed 's/.*) //' /proc/$pid/stat | cut -d' ' -f1); "
            f"[ \"$state\" = Z ] && exit {_NOT_RUNNING}; "
            f"kill -s {signal} $pid")


# -- the DB ---------------------------------------------------------------------------------------

class SSHHostDB(ProvisionedDB, Process, Pause, Network, LogFiles, Exec):
    """A service on hosts reached over SSH; see the module docstring."""

    name = "ssh-host"
    provisioner = "ssh"
    #: a word of the service's command line: signals go only to a process whose cmdline has it
    process_match: str | None = None

    def __init__(self, run_id: str, nodes: int = 3, node_options: dict | None = None,
                 hosts: str | list | None = None, inventory: str | None = None, user: str = "root",
                 port: int = 22, key: str | None = None, known_hosts: str | None = None,
                 host_key_policy: str | None = None, remote_dir: str | None = None,
                 connect_timeout: float = 10.0, ready_timeout: float = 30.0, wait_ready: bool = True,
                 clock: bool = True, detached: bool = False):
        super().__init__(run_id, nodes, node_options, detached=detached, ready_timeout=ready_timeout)
        settings: dict = {}
        if inventory and hosts:
            raise ValueError("give hosts or an inventory, not both")
        if inventory:
            host_list, settings = load_inventory(str(inventory))
            if key:
                for h in host_list:
                    h.key = h.key or key
        elif hosts:
            host_list = hosts if isinstance(hosts, list) else parse_hosts(str(hosts), user, _port(port, "port"), key)
        else:
            raise ValueError("the ssh provisioner needs hosts: --provisioner-option inventory=hosts.yaml or "
                             "--provisioner-option hosts=USER@ADDRESS[:PORT],... (with key=PATH)")
        if len(host_list) < nodes:
            raise ValueError(f"{nodes} nodes need {nodes} SSH hosts; {len(host_list)} given")
        self.hosts = host_list[:nodes]
        addresses = [h.service_address for h in self.hosts]
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"two nodes would share the address {min(a for a in addresses if addresses.count(a) > 1)}:"
                             " one node per host")
        self.known_hosts = os.path.expanduser(known_hosts or settings.get("known_hosts") or "~/.ssh/known_hosts")
        self.host_key_policy = host_key_policy or settings.get("host_key_policy") or "strict"
        if self.host_key_policy not in HOST_KEY_POLICIES:
            raise ValueError(f"host_key_policy must be one of {', '.join(HOST_KEY_POLICIES)}, "
                             f"got {self.host_key_policy!r}")
        self.remote_dir = remote_dir or settings.get("remote_dir") or DEFAULT_REMOTE_DIR
        if not posixpath.isabs(self.remote_dir) or self.remote_dir.rstrip("/") in ("", "/tmp", "/"):
            raise ValueError(f"remote_dir must be an absolute directory of our own, got {self.remote_dir!r}")
        self.connect_timeout = float(connect_timeout)
        self.wait_ready_at_setup = wait_ready
        self.clock_enabled = clock
        self.chain = chain_for(run_id)
        self._known_lock = threading.Lock()
        self._conns: dict[str, SSHConnection] = {}
        self._facts: dict[str, dict] = {}
        self._preflight_error: ProvisionError | None = None
        self._net: NamespaceNet | None = None
        self._lock = threading.Lock()
        self._mono_offset: dict[str, float] = {}   # host name -> its CLOCK_MONOTONIC minus ours

    # -- what a system fills in ----------------------------------------------------------------------
    def uploads(self, node: Node) -> list[tuple[str, str]]:
        """(local file or directory, path relative to the node's directory) to install; a
        directory's Python sources and data go, not its caches."""
        return []

    def files(self, node: Node) -> dict[str, tuple[str, int]]:
        """Small files to write into the node's directory: relative name -> (text, mode)."""
        return {}

    # -- paths ----------------------------------------------------------------------------------------
    def run_dir(self) -> str:
        return posixpath.join(self.remote_dir, self.run_id)

    def node_dir(self, node: Node) -> str:
        return posixpath.join(self.run_dir(), node.id)

    def package_dir(self, node: Node) -> str:
        return posixpath.join(self.node_dir(node), "pkg")

    def data_dir(self, node: Node) -> str:
        return posixpath.join(self.node_dir(node), "data")

    def log_dir(self, node: Node) -> str:
        return posixpath.join(self.node_dir(node), "logs")

    def _pid_file(self, node: Node) -> str:
        return posixpath.join(self.node_dir(node), "service.pid")

    def _clock_file(self, node: Node) -> str:
        return posixpath.join(self.node_dir(node), "clock")

    def _clock_library(self, node: Node) -> str:
        return posixpath.join(self.node_dir(node), _clockshim().LIBRARY_NAME)

    def _stderr_file(self, node: Node) -> str:
        return posixpath.join(self.log_dir(node), "stderr.log")

    # -- connections ------------------------------------------------------------------------------------
    def connection(self, node_or_host) -> SSHConnection:
        host = node_or_host.meta["host"] if isinstance(node_or_host, Node) else node_or_host
        with self._lock:
            conn = self._conns.get(host.name)
            if conn is None:
                conn = self._conns[host.name] = SSHConnection(host, self.known_hosts, self.host_key_policy,
                                                              self.connect_timeout, self._known_lock)
        return conn.connect()

    def _sh(self, node: Node, script: str, check: bool = True, root: bool = False,
            timeout: float = 60.0) -> tuple[int, str]:
        code, out, _ = self.connection(node).run(script, check=check, root=root, timeout=timeout)
        return code, out

    def _preflight(self) -> None:
        """Connect to every host (in parallel) and find what each has: python3, iptables, sudo,
        its CPU, its kernel's boot, the controller's address as the host sees it. Once per DB."""
        if self._facts or self._preflight_error:
            if self._preflight_error:
                raise self._preflight_error

            return

        def one(host: Host):
            conn = self.connection(host)
            _, out, _ = conn.run(PREFLIGHT, check=False, timeout=30)
            facts = parse_preflight(out)
            try:
                conn.uid = int(facts.get("uid", ""))
            except ValueError:
                raise ProvisionError(f"{host.name}: cannot tell the user id "
                                     f"(`id -u` said {facts.get('uid')!r})") from None
            words = facts.get("ssh", "").split()
            if len(words) == 4:
                conn.peer = (words[0], int(words[3]))
            return host.name, facts

        try:
            self._facts = dict(_parallel(one, self.hosts))
        except ProvisionError as e:
            self._preflight_error = e
            raise
        controller = {self.connection(h).peer[0] for h in self.hosts if self.connection(h).peer}
        clash = controller & {h.service_address for h in self.hosts}
        if clash:
            self._preflight_error = ProvisionError(
                f"the controller ({', '.join(sorted(clash))}) is one of the hosts: its own traffic would be cut "
                "by partitions; run the controller elsewhere")
            raise self._preflight_error

    def _host_problem(self, what: str) -> str | None:
        """Why some host cannot do `what` ("python", "partition", "clock"), or None."""
        for host in self.hosts:
            facts = self._facts.get(host.name, {})
            if what == "python":
                version = facts.get("python")
                if not version:
                    return f"{host.name} has no python3 (apt-get install python3)"
                try:
                    if tuple(int(x) for x in version.split(".")) < MIN_PYTHON:
                        needed = ".".join(map(str, MIN_PYTHON))
                        return f"{host.name} has python3 {version}; the node needs {needed} or newer"
                except ValueError:
                    return f"{host.name}: python3 does not run ({version})"
            elif what == "partition":
                if not facts.get("iptables"):
                    return f"{host.name} has no iptables (apt-get install iptables)"
                if facts.get("uid") != "0" and facts.get("sudo") != "ok":
                    detail = facts.get("sudo", "no sudo")[3:].strip() or "sudo is not installed"
                    return (f"{host.name}: {host.user} is not root and cannot run iptables through `sudo -n` "
                            f"({detail}); give {host.user} passwordless sudo (NOPASSWD) or connect as root")
                if len(facts.get("ssh", "").split()) != 4:
                    return f"{host.name}: the host does not say where the controller connects from ($SSH_CONNECTION)"
            elif what == "clock":
                reason = _clockshim().unavailable_reason()
                if reason:
                    return reason
                if facts.get("arch") != os.uname().machine:
                    return (f"{host.name} is {facts.get('arch') or 'of an unknown CPU'}; the clock shim is built "
                            f"here for {os.uname().machine}")
        return None

    def unavailable(self) -> dict[str, str]:
        missing = {}
        try:
            self._preflight()
        except ProvisionError:
            return missing  # setup() raises it, with the host's name
        for capability in ("partition", "clock"):
            problem = self._host_problem(capability)
            if problem:
                missing[capability] = problem
        if "clock" not in missing and not self.clock_enabled:
            missing["clock"] = "the clock shim is loaded only into runs that ask for clock faults"
        return missing

    # -- lifecycle ------------------------------------------------------------------------------------
    def setup(self, count: int | None = None) -> list[Node]:
        count = count or self.count
        ids = node_ids(count, self.node_counts)
        if count > len(self.hosts):
            raise ProvisionError(f"{count} nodes need {count} SSH hosts; {len(self.hosts)} given")
        self.count = count
        self.nodes = [Node(id=nid, client_url="", address=host.service_address, peer_port=self.peer_port,
                           client_port=self.client_port, meta={"provisioner": "ssh", "host": host,
                                                                "ssh": host.name})
                      for nid, host in zip(ids, self.hosts, strict=False)]
        for node in self.nodes:
            node.client_url = self.client_url(node)
        try:
            self._preflight()
            problem = self._host_problem("python")
            if problem:
                raise ProvisionError(problem)
            if "partition" not in self.unavailable():
                self._net = NamespaceNet(self.nodes, run=lambda n, s: self._sh(n, s, root=True)[1],
                                         chain=self.chain)
            _parallel(self._install, self.nodes)
            if self._net is not None:
                self._net.install()  # before the services start (conntrack must see their connections)
                _parallel(lambda n: self._sh(n, guard_script(self.chain, self._controller_rules(n)), root=True),
                          self.nodes)
            _parallel(self._start_process, self.nodes)
            if self.wait_ready_at_setup:
                try:
                    self.wait_ready(self.nodes, self.ready_timeout)
                except ProvisionError as e:
                    tails = "\n".join(f"--- {n.id} stderr ---\n{self.exit_report(n, 5) or '(empty)'}"
                                      for n in self.nodes)
                    raise ProvisionError(f"{e}\n{tails}") from None
        except BaseException:
            self.salvage_logs()
            self.teardown()
            raise
        return self.nodes

    def attach(self, nodes: list[Node]) -> list[Node]:
        """Take over a cluster another controller set up and left running (`cluster up`,
        `run --leave-db-running`): its hosts, pid files, chain and peer secret stay as they are."""
        by_address = {h.service_address: h for h in self.hosts}
        self.nodes = []
        for entry in nodes:
            host = by_address.get(entry.address)
            if host is None:
                raise ProvisionError(f"{entry.id} ({entry.address}) is on none of the inventory's hosts")
            self.nodes.append(Node(id=entry.id, client_url=entry.client_url, address=entry.address,
                                   peer_port=entry.peer_port, client_port=entry.client_port,
                                   meta={"provisioner": "ssh", "host": host, "ssh": host.name}))
        self.hosts = [n.meta["host"] for n in self.nodes]
        self.count = len(self.nodes)
        self._preflight()
        if "partition" not in self.unavailable():
            self._net = NamespaceNet(self.nodes, run=lambda n, s: self._sh(n, s, root=True)[1], chain=self.chain)
            # this controller's own connection, ahead of every grudge (it may not be the one that set up)
            _parallel(lambda n: self._sh(n, guard_script(self.chain, self._controller_rules(n)), root=True),
                      self.nodes)
        return self.nodes

    def _controller_rules(self, node: Node) -> list[str]:
        peer = self.connection(node).peer
        return [f"-s {peer[0]}/32 -p tcp --dport {peer[1]}"] if peer else []

    def _owner(self, node: Node) -> dict:
        owner = 0 if self.detached else os.getpid()
        return {"run": self.run_id, "node": node.id, "controller": socket.gethostname(), "owner_pid": owner,
                "owner_start": process_start_ticks(owner) if owner else None, "chain": self.chain,
                "match": self._match(node), "created": time.time()}

    def _install(self, node: Node) -> None:
        """The node's directory (700), owner.json first (so that clean finds even a half-made
        node), the uploads as one archive unpacked by the host's python3, the small files."""
        conn = self.connection(node)
        root, run, mine = (shlex.quote(p) for p in (self.remote_dir, self.run_dir(), self.node_dir(node)))
        conn.run(f"umask 077; mkdir -p {root} {run} && [ -O {root} ] && [ -O {run} ] || "
                 f"{{ echo '{self.remote_dir} or {self.run_dir()} belongs to another user' >&2; exit 1; }}; "
                 f"rm -rf {mine} && mkdir -m 700 {mine} {mine}/data {mine}/logs {mine}/pkg")
        conn.put_bytes(json.dumps(self._owner(node)).encode(), posixpath.join(self.node_dir(node), "owner.json"))
        uploads = self.uploads(node)
        if uploads:
            archive = posixpath.join(self.node_dir(node), "upload.tar")
            conn.put_bytes(_tar(uploads), archive)
            conn.run(f"cd {mine} && python3 -m tarfile -e upload.tar . && rm -f upload.tar")
        for name, (text, mode) in self.files(node).items():
            conn.put_bytes(text.encode(), posixpath.join(self.node_dir(node), name), mode)
        if self._uses_clock_shim():
            with open(_clockshim().ensure_library(), "rb") as f:
                conn.put_bytes(f.read(), self._clock_library(node), 0o700)
            self._measure_clock_offset(node)
        conn.put_bytes((self._host_clock_text(node, self.clock_state(node).text()) + "\n").encode(),
                       self._clock_file(node), 0o600)

    def _match(self, node: Node) -> str:
        if self.process_match:
            return self.process_match
        return posixpath.basename(self.command(node, self.nodes)[0])

    def _start_process(self, node: Node) -> None:
        argv = self.command(node, self.nodes)
        env = dict(self.environment(node))
        facts = self._facts.get(node.meta["host"].name, {})
        env.update(self.clock_environment(node))
        env_text = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items())
        inner = (f"echo $$ > {shlex.quote(self._pid_file(node))}; exec env {env_text} "
                 f"{shlex.join(argv)} >> {shlex.quote(self._stderr_file(node))} 2>&1")
        # Its own session, stdin and stdout away from the channel: the command returns at once
        # and the service outlives the SSH channel that started it.
        detach = "setsid " if facts.get("setsid") else "nohup "
        self._sh(node, f"cd {shlex.quote(self.node_dir(node))} && "
                       f"{detach}sh -c {shlex.quote(inner)} </dev/null >/dev/null 2>&1 &")
        self._process_started_now(node)
        deadline = time.monotonic() + 10
        while not self.is_running(node):
            if time.monotonic() > deadline:
                raise ProvisionError(f"{node.id}: the service process did not start on {node.meta['ssh']}:\n"
                                     f"{self.exit_report(node)}")
            time.sleep(0.05)

    # -- clocks ---------------------------------------------------------------------------------------
    def _uses_clock_shim(self) -> bool:
        return self.clock_enabled and "clock" not in self.unavailable()

    def clock_environment(self, node: Node) -> dict[str, str]:
        """The variables that put the service under its clock faults; {} without clock faults."""
        if not self._uses_clock_shim():
            return {}
        return _clockshim().environment(self._clock_library(node), self._clock_file(node))

    def clock_loaded(self, node: Node) -> bool | None:
        code, _ = self._sh(node, f"pid=$(cat {shlex.quote(self._pid_file(node))}) && [ -d /proc/$pid ] || exit 3; "
                                 f"grep -q {shlex.quote(_clockshim().LIBRARY_NAME)} /proc/$pid/maps", check=False)
        return None if code == 3 else code == 0

    def _measure_clock_offset(self, node: Node) -> None:
        """The host's CLOCK_MONOTONIC minus ours: zero on our own kernel (same boot id: network
        namespaces, containers), else the best of three round trips."""
        host = node.meta["host"]
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                ours = f.read().strip()
        except OSError:
            ours = None
        if ours and self._facts.get(host.name, {}).get("boot") == ours:
            self._mono_offset[host.name] = 0.0
            return
        samples = []
        for _ in range(3):
            asked = time.monotonic()
            _, out = self._sh(node, "python3 -c 'import time; print(repr(time.monotonic()))'")
            answered = time.monotonic()
            samples.append((answered - asked, float(out.strip()) - (asked + answered) / 2))
        self._mono_offset[host.name] = min(samples)[1]

    def _host_clock_text(self, node: Node, text: str) -> str:
        """A clock file's text with its times (anchor, strobe start) on the host's clock."""
        offset = self._mono_offset.get(node.meta["host"].name, 0.0)
        if not offset:
            return text
        words = []
        for word in text.split():
            key, _, value = word.partition("=")
            if key in ("anchor", "strobe_start"):
                value = f"{float(value) + offset:.9f}".rstrip("0").rstrip(".")
            words.append(f"{key}={value}")
        return " ".join(words)

    def is_running(self, node: Node) -> bool:
        code, _ = self._sh(node, signal_script(self._pid_file(node), "0", self._match(node)), check=False)
        return code == 0

    def pid(self, node: Node) -> int | None:
        """The service's pid on its host (tests, reports), or None."""
        code, out = self._sh(node, f"cat {shlex.quote(self._pid_file(node))}", check=False)
        try:
            return int(out.strip()) if code == 0 else None
        except ValueError:
            return None

    def exit_report(self, node: Node, lines: int = 20) -> str:
        try:
            return self._sh(node, f"tail -n {int(lines)} {shlex.quote(self._stderr_file(node))} 2>/dev/null",
                            check=False)[1].rstrip()
        except ProvisionError as e:
            return f"(cannot read {self._stderr_file(node)}: {e})"

    def teardown(self) -> None:
        """Kill the services, remove our chain and every file of ours on every host; then close
        the connections. Idempotent; a host that cannot be reached is named in the error after
        the others were cleaned."""
        errors = []

        def one(host: Host):
            try:
                conn = self.connection(host)
            except ProvisionError as e:
                return str(e)
            node_dir = posixpath.join(self.run_dir(), self._node_id_of(host))
            script = (f"d={shlex.quote(node_dir)}; "
                      f"pid=$(cat \"$d/service.pid\" 2>/dev/null) && [ -n \"$pid\" ] && "
                      f"tr '\\0' ' ' < /proc/$pid/cmdline 2>/dev/null | "
                      f"grep -q -- {shlex.quote(self._match_for(host))} "
                      f"&& kill -s KILL $pid; "
                      f"for i in $(seq 1 100); do [ -n \"$pid\" ] && [ -d /proc/$pid ] && "
                      f"[ \"$(sed 's/.*) //' /proc/$pid/stat 2>/dev/null | cut -d' ' -f1)\" != Z ] || break; "
                      f"sleep 0.05; done; "
                      f"rm -rf \"$d\"; rmdir {shlex.quote(self.run_dir())} 2>/dev/null; "
                      f"rmdir {shlex.quote(self.remote_dir)} 2>/dev/null; true")
            try:
                conn.run(script, check=True, timeout=60)
                facts = self._facts.get(host.name)
                if facts is None:  # a fresh DB tearing down a cluster it did not set up
                    facts = parse_preflight(conn.run(PREFLIGHT, check=False, timeout=30)[1])
                    conn.uid = int(facts["uid"]) if facts.get("uid", "").isdigit() else None
                if facts.get("iptables") and (facts.get("uid") == "0" or facts.get("sudo") == "ok"):
                    conn.run(remove_chain_script(self.chain), root=True, check=True, timeout=60)
            except ProvisionError as e:
                return str(e)
            return None

        if self._net is not None:
            try:
                self._net.uninstall()  # whatever the network layer keeps besides rules (helpers, qdiscs)
            except Exception as e:  # noqa: BLE001 - our own removal below still runs
                errors.append(f"network layer: {e}")
        errors += [e for e in _parallel(one, self.hosts) if e]  # also from a fresh DB (`cluster down`)
        self._net = None
        self._clock_specs.clear()
        self._mono_offset.clear()
        for conn in list(self._conns.values()):
            conn.close()
        self._conns.clear()
        self._facts = {}
        self._preflight_error = None
        if errors:
            raise ProvisionError("teardown could not clean every host (`splitbrain clean --ssh INVENTORY` "
                                 "removes what is left): " + "; ".join(errors))

    def _node_id_of(self, host: Host) -> str:
        return f"n{self.hosts.index(host) + 1}"

    def _match_for(self, host: Host) -> str:
        for node in self.nodes:
            if node.meta.get("host") is host:
                return self._match(node)
        return self.process_match or "."

    # -- faults --------------------------------------------------------------------------------------
    def _signal(self, node: Node, signal: str) -> bool:
        code, _ = self._sh(node, signal_script(self._pid_file(node), signal, self._match(node)), check=False)
        if code not in (0, _NOT_RUNNING):
            raise ProvisionError(f"{node.id}: sending SIG{signal} on {node.meta['ssh']} failed (exit {code})")
        return code == 0

    def kill(self, node: Node) -> None:
        self._signal(node, "KILL")
        deadline = time.monotonic() + 10
        while self.is_running(node):
            if time.monotonic() > deadline:
                raise ProvisionError(f"{node.id}: the service process survived SIGKILL for 10 s")
            time.sleep(0.05)

    def start(self, node: Node) -> None:
        if self.is_running(node):
            return
        self._start_process(node)

    def pause(self, node: Node) -> None:
        self._signal(node, "STOP")

    def resume(self, node: Node) -> None:
        self._signal(node, "CONT")

    def net(self) -> NamespaceNet:
        if self._net is None:
            reason = self.unavailable().get("partition") or "the cluster is not set up"
            raise ProvisionError(f"the ssh provisioner cannot partition: {reason}")
        return self._net

    def set_clock(self, node: Node, text: str) -> None:
        from chaos.provision.docker import check_clock_spec

        check_clock_spec(text)
        path = shlex.quote(self._clock_file(node))
        # rename() so the shim never reads a half-written spec
        self._sh(node, f"printf '%s\\n' {shlex.quote(self._host_clock_text(node, text))} > {path}.tmp && "
                       f"mv {path}.tmp {path}")

    # -- commands and logs ---------------------------------------------------------------------------
    def exec(self, node: Node, argv: list[str], check: bool = True) -> str:
        return self._sh(node, f"cd {shlex.quote(self.node_dir(node))} && {shlex.join(argv)}", check=check)[1]

    def collect_logs(self, node: Node, dest_dir: str) -> list[str]:
        os.makedirs(dest_dir, exist_ok=True)
        conn = self.connection(node)
        written = []
        for name in conn.listdir(self.log_dir(node)):
            local = os.path.join(dest_dir, name)
            conn.get_file(posixpath.join(self.log_dir(node), name), local)
            written.append(local)
        return written


def _clockshim():
    # imported when used: the shim is built with the host's C compiler only for clock faults
    from chaos.provision import clockshim
    return clockshim


def _tar(uploads: list[tuple[str, str]]) -> bytes:
    """The uploads as one tar archive (sources and data; no caches, no compiled files)."""
    buffer = io.BytesIO()

    def skip(info: tarfile.TarInfo):
        base = posixpath.basename(info.name)
        if base == "__pycache__" or base.endswith((".pyc", ".pyo")):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for local, remote in uploads:
            if not os.path.exists(local):
                raise ProvisionError(f"upload {local}: no such file or directory")
            tar.add(local, arcname=remote, filter=skip)
    return buffer.getvalue()


# -- cleaning hosts after a crashed controller ------------------------------------------------------------

def clean_hosts(inventory: str, all: bool = False, **options) -> dict:
    """`splitbrain clean --ssh INVENTORY`: on every host, the node directories, processes and
    chains of runs whose controller (on this machine) is gone; with all=True every run of ours.
    A run owned by a controller on another machine is left alone unless all=True."""
    hosts, settings = load_inventory(inventory)
    known_hosts = os.path.expanduser(options.get("known_hosts") or settings.get("known_hosts") or "~/.ssh/known_hosts")
    policy = options.get("host_key_policy") or settings.get("host_key_policy") or "strict"
    remote_dir = options.get("remote_dir") or settings.get("remote_dir") or DEFAULT_REMOTE_DIR
    me = socket.gethostname()
    lock = threading.Lock()

    def one(host: Host) -> dict:
        done = {"host": host.name, "runs": [], "processes": [], "chains": [], "errors": []}
        conn = SSHConnection(host, known_hosts, policy, 10.0, lock)
        try:
            conn.connect()
            _, facts_text, _ = conn.run(PREFLIGHT, check=False)
            facts = parse_preflight(facts_text)
            conn.uid = int(facts.get("uid", "-1"))
            _, out, _ = conn.run(f"for f in {shlex.quote(remote_dir)}/*/*/owner.json; do [ -f \"$f\" ] && "
                                 "{ printf '%s\\t' \"$f\"; tr -d '\\n' < \"$f\"; echo; }; done; true")
            live_chains = set()
            for line in out.splitlines():
                path, _, text = line.partition("\t")
                try:
                    owner = json.loads(text)
                except ValueError:
                    owner = {}
                node_dir = posixpath.dirname(path)
                dead = owner.get("controller") == me and owner.get("owner_pid") != 0 and \
                    not owner_alive(owner.get("owner_pid"), owner.get("owner_start"))
                if not (all or dead or not owner):
                    if owner.get("chain"):
                        live_chains.add(owner["chain"])
                    continue
                match = owner.get("match") or "."
                _, killed, _ = conn.run(
                    f"d={shlex.quote(node_dir)}; pid=$(cat \"$d/service.pid\" 2>/dev/null) && [ -n \"$pid\" ] && "
                    f"tr '\\0' ' ' < /proc/$pid/cmdline 2>/dev/null | grep -q -- {shlex.quote(match)} && "
                    f"kill -s KILL $pid && echo $pid; rm -rf \"$d\"; rmdir \"$(dirname \"$d\")\" 2>/dev/null; true")
                if killed.strip():
                    done["processes"].append(int(killed.split()[0]))
                done["runs"].append(f"{owner.get('run', '?')}/{owner.get('node', posixpath.basename(node_dir))}")
            conn.run(f"rmdir {shlex.quote(remote_dir)} 2>/dev/null; true")
            can_root = facts.get("iptables") and (conn.uid == 0 or facts.get("sudo") == "ok")
            if can_root:
                _, listing, _ = conn.run("iptables -w -S", root=True, check=False)
                for rule in listing.splitlines():
                    if (rule.startswith("-N ") and CHAIN_RE.match(rule.split()[1])
                            and rule.split()[1] not in live_chains):
                        conn.run(remove_chain_script(rule.split()[1]), root=True)
                        done["chains"].append(rule.split()[1])
        except (ProvisionError, ValueError) as e:
            done["errors"].append(str(e))
        finally:
            conn.close()
        return done

    return {"ssh": _parallel(one, hosts)}
