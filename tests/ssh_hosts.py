"""SSH hosts for tests: network namespaces of our own, each running the host's sshd.

    with SSHHosts(5, tmp_path) as hosts:
        hosts.inventory()          # a YAML inventory file naming them, with our key
        hosts.addresses            # ["10.77.N.11", ...] on a bridge of our own
        hosts.netns_exec(0, "iptables -S")

Everything is ours and private: a /24 from chaos.provision.allocate (so concurrent test runs
and Docker networks never collide), a bridge (sbbr<tag>) with the controller at .1, one namespace
(sbh<tag>n<i>) per host joined to it by a veth pair, an sshd per namespace with a config of our
own (its host key, port, authorized keys, no passwords, no PAM, no agent or TCP forwarding) on
a random port of the namespace's own address: nothing is published on the machine's addresses.
The client side uses a fresh key and a temporary known_hosts; no agent and no default keys
(the provisioner never uses them). stop() ends each sshd by its pid, deletes the namespaces,
the bridge and our FORWARD rule, and releases the subnet, whatever happened before.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import time

from chaos.provision.allocate import allocate_subnet, release

SSHD = "/usr/sbin/sshd"


def sh(*argv, check=True, input=None):
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def unavailable() -> str | None:
    """Why namespace SSH hosts cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, a bridge)"
    for tool in ("ip", "iptables", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    if not os.path.exists(SSHD):
        return f"{SSHD} is missing (bootstrap.sh installs Debian's openssh-server)"
    return None


class SSHHosts:
    def __init__(self, count: int, tmp_dir, user: str = "root", key_type: str = "ed25519"):
        self.count = count
        self.dir = str(tmp_dir)
        self.user = user
        self.key_type = key_type
        self.tag = f"{os.getpid() % 10000:04d}{random.randrange(16 ** 3):03x}"
        self.run_id = f"sshhosts-{self.tag}"
        self.bridge = f"sbbr{self.tag}"
        self.namespaces = [f"sbh{self.tag}n{i + 1}" for i in range(count)]
        self.port = random.randrange(20000, 30000)
        self.sshd: list[subprocess.Popen] = []
        self.subnet = None
        self.addresses: list[str] = []
        self.controller_address = None
        self.key = os.path.join(self.dir, f"id_{key_type}")
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        # The hosts share this machine's file system: a remote_dir of our own, so that what an
        # earlier (killed) test session left in the default one is not counted as ours.
        self.remote_dir = os.path.join(self.dir, "remote")
        self.host_keys: list[str] = []
        self._forward_rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-m", "comment",
                              "--comment", f"splitbrain-test-{self.tag}", "-j", "ACCEPT"]
        self._made_run_sshd = False

    # -- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> SSHHosts:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        self.subnet = ipaddress.ip_network(allocate_subnet(self.run_id))
        hosts = list(self.subnet.hosts())
        self.controller_address = str(hosts[0])
        self.addresses = [str(self.subnet.network_address + 11 + i) for i in range(self.count)]
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.controller_address}/{self.subnet.prefixlen}", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        # Bridged frames pass the host's FORWARD chain when br_netfilter is loaded (Docker's
        # policy there is DROP): let our own bridge's traffic through, and only it.
        sh("iptables", "-w", "-I", *self._forward_rule[:1], "1", *self._forward_rule[1:])
        for i, ns in enumerate(self.namespaces):
            outside, inside = f"sbv{self.tag}{i + 1}", f"sbp{self.tag}{i + 1}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            sh("ip", "link", "set", inside, "netns", ns)
            sh("ip", "-n", ns, "link", "set", inside, "name", "eth0")
            sh("ip", "-n", ns, "addr", "add", f"{self.addresses[i]}/{self.subnet.prefixlen}", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "link", "set", outside, "master", self.bridge)
            sh("ip", "link", "set", outside, "up")
        sh("ssh-keygen", "-q", "-t", self.key_type, "-N", "", "-f", self.key, "-C", "splitbrain-test")
        with open(self.key + ".pub") as f:
            public = f.read()
        authorized = os.path.join(self.dir, "authorized_keys")
        with open(authorized, "w") as f:
            f.write(public)
        if not os.path.isdir("/run/sshd"):  # sshd's privilege separation directory
            os.makedirs("/run/sshd", mode=0o755)
        for i, ns in enumerate(self.namespaces):
            host_key = os.path.join(self.dir, f"host{i + 1}_ed25519")
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key, "-C", f"host{i + 1}")
            self.host_keys.append(host_key)
            config = os.path.join(self.dir, f"sshd{i + 1}.conf")
            with open(config, "w") as f:
                f.write(sshd_config(self.addresses[i], self.port, host_key, authorized,
                                    os.path.join(self.dir, f"sshd{i + 1}.pid")))
            log = open(os.path.join(self.dir, f"sshd{i + 1}.log"), "ab")
            try:
                self.sshd.append(subprocess.Popen(["ip", "netns", "exec", ns, SSHD, "-D", "-e", "-f", config],
                                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log))
            finally:
                log.close()
        self.write_known_hosts()
        deadline = time.monotonic() + 20
        for i, address in enumerate(self.addresses):
            while not _port_open(address, self.port):
                if self.sshd[i].poll() is not None or time.monotonic() > deadline:
                    with open(os.path.join(self.dir, f"sshd{i + 1}.log")) as f:
                        raise RuntimeError(f"sshd in {self.namespaces[i]} did not come up: {f.read()[-2000:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.sshd:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self.sshd = []
        for ns in self.namespaces:
            # anything still running in a namespace (a node of a crashed test) goes with it
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        while sh("iptables", "-w", "-D", *self._forward_rule, check=False).returncode == 0:
            pass
        release(self.run_id)

    # -- what tests use ---------------------------------------------------------------------------------
    def public_host_key(self, i: int) -> str:
        with open(self.host_keys[i] + ".pub") as f:
            kind, data = f.read().split()[:2]
        return f"{kind} {data}"

    def write_known_hosts(self, path: str | None = None, skip: tuple[int, ...] = ()) -> str:
        path = path or self.known_hosts
        with open(path, "w") as f:
            for i, address in enumerate(self.addresses):
                if i not in skip:
                    f.write(f"[{address}]:{self.port} {self.public_host_key(i)}\n")
        return path

    def hosts_flag(self) -> str:
        return ",".join(f"{self.user}@{a}:{self.port}" for a in self.addresses)

    def inventory(self, path: str | None = None, known_hosts: str | None = None, policy: str = "strict",
                  key: str | None = None, count: int | None = None) -> str:
        path = path or os.path.join(self.dir, "hosts.yaml")
        lines = [f"defaults: {{user: {self.user}, port: {self.port}, key: {key or self.key}}}",
                 f"known_hosts: {known_hosts or self.known_hosts}", f"host_key_policy: {policy}",
                 f"remote_dir: {self.remote_dir}", "hosts:"]
        lines += [f"  - {{address: {a}}}" for a in self.addresses[:count]]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def netns_exec(self, i: int, script: str) -> str:
        return sh("ip", "netns", "exec", self.namespaces[i], "sh", "-c", script).stdout


def sshd_config(address: str, port: int, host_key: str, authorized: str, pid_file: str) -> str:
    return "\n".join([
        f"ListenAddress {address}:{port}",
        f"HostKey {host_key}",
        f"PidFile {pid_file}",
        f"AuthorizedKeysFile {authorized}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "AllowAgentForwarding no",
        "AllowTcpForwarding no",
        "X11Forwarding no",
        "PermitTunnel no",
        "PrintMotd no",
        "Subsystem sftp internal-sftp",
        "LogLevel VERBOSE",
    ]) + "\n"


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.3):
            return True
    except OSError:
        return False
