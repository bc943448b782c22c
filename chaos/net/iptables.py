"""Grudges as iptables rules.

NamespaceNet: each node has a network namespace of its own (a container, an SSH host, a
network namespace). A chain of ours is jumped to first from INPUT; "n1 stops hearing n2" is, in
n1's namespace, a DROP of packets whose source is n2's address. Rules are replaced atomically
with iptables-restore --noflush, so a node never sees half a partition.

CgroupNet: the nodes are processes sharing the host's namespace (the local provisioner on
loopback). Addresses alone cannot tell them apart when a process's connections leave from
127.0.0.1, so each node runs in a cgroup (v2) of its own: "n1 stops hearing n2" drops what
n2's sockets send to n1's address, in a chain jumped to from OUTPUT (every loopback packet
passes OUTPUT). Without cgroups the rules match source and destination addresses. Either way
every rule names a node's own address: nothing else on the host, loopback included, is touched.
"""

from __future__ import annotations

import ipaddress
import shlex
import subprocess
from typing import Callable

from chaos.interfaces import Node
from chaos.net.base import Net, NetError
from chaos.net.grudge import Grudge

CHAIN = "SPLITBRAIN"


def _by_address(addresses) -> list[str]:
    return sorted(addresses, key=ipaddress.ip_address)


def namespace_setup_script(chain: str = CHAIN) -> str:
    """Create our chain and jump to it first from INPUT (idempotent)."""
    return (f"iptables -w -N {chain} 2>/dev/null || true; "
            f"iptables -w -C INPUT -j {chain} 2>/dev/null || iptables -w -I INPUT 1 -j {chain}")


def namespace_rules(dropped_sources, chain: str = CHAIN) -> str:
    """iptables-restore input replacing our chain's rules with a DROP per unheard source."""
    lines = ["*filter", f":{chain} - [0:0]"]
    lines += [f"-A {chain} -s {address}/32 -j DROP" for address in _by_address(dropped_sources)]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


class NamespaceNet(Net):
    """`run(node, script)` runs a shell script in the node's namespace and returns its stdout
    (raising on failure); `reachable(node)` says whether its namespace exists right now (a
    stopped container has none: its rules are put back by reapply when it starts)."""

    def __init__(self, nodes, run: Callable[[Node, str], str],
                 reachable: Callable[[Node], bool] = lambda node: True, chain: str = CHAIN):
        super().__init__(nodes)
        self.run = run
        self.reachable = reachable
        self.chain = chain

    def _sources(self, grudge: Grudge, node: Node) -> list[str]:
        return [self.by_id[s].address for s in grudge.get(node.id, ())]

    def _script(self, grudge: Grudge, node: Node) -> str:
        rules = namespace_rules(self._sources(grudge, node), self.chain)
        return f"printf '%s' {shlex.quote(rules)} | iptables-restore -w --noflush"

    def install(self) -> None:
        self.parallel(lambda n: self.run(n, namespace_setup_script(self.chain)), self.nodes)

    def reapply(self, node: Node) -> None:
        self.run(node, namespace_setup_script(self.chain) + "; " + self._script(self.current(), node))

    def _apply(self, grudge: Grudge) -> None:
        def one(node):
            if self.reachable(node):
                self.run(node, self._script(grudge, node))
        self.parallel(one, self.nodes)

    def _clear(self) -> None:
        def one(node):
            if self.reachable(node):
                self.run(node, f"iptables -w -F {self.chain} 2>/dev/null || true")
        self.parallel(one, self.nodes)

    def uninstall(self) -> None:
        script = (f"while iptables -w -D INPUT -j {self.chain} 2>/dev/null; do :; done; "
                  f"iptables -w -F {self.chain} 2>/dev/null; iptables -w -X {self.chain} 2>/dev/null; true")

        def one(node):
            if self.reachable(node):
                self.run(node, script)
        self.parallel(one, self.nodes)

    def rules(self, node: Node) -> list[str]:
        out = self.run(node, f"iptables -w -S {self.chain} 2>/dev/null || true")
        return [line for line in out.splitlines() if line.startswith("-A ")]


def host_iptables(*args: str, check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess:
    cmd = ["iptables-restore", "-w", "--noflush"] if args == ("restore",) else ["iptables", "-w", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input_text)
    if check and proc.returncode != 0:
        raise NetError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc


def remove_host_chain(chain: str) -> None:
    while host_iptables("-D", "OUTPUT", "-j", chain, check=False).returncode == 0:
        pass
    host_iptables("-F", chain, check=False)
    host_iptables("-X", chain, check=False)


class CgroupNet(Net):
    """`cgroup_path(node)` is the node's cgroup relative to the cgroup2 mount, or None to match
    by source address instead."""

    def __init__(self, nodes, chain: str, cgroup_path: Callable[[Node], str | None]):
        super().__init__(nodes)
        if len(chain) > 28:
            raise ValueError(f"iptables chain names are at most 28 characters: {chain!r}")
        self.chain = chain
        self.cgroup_path = cgroup_path

    def install(self) -> None:
        host_iptables("-N", self.chain, check=False)
        host_iptables("-F", self.chain)
        if host_iptables("-C", "OUTPUT", "-j", self.chain, check=False).returncode != 0:
            host_iptables("-I", "OUTPUT", "1", "-j", self.chain)

    def uninstall(self) -> None:
        remove_host_chain(self.chain)

    def reapply(self, node: Node) -> None:
        pass  # one namespace for all: the rules never went away

    def _rule(self, sender: Node, receiver: Node) -> str:
        path = self.cgroup_path(sender)
        match = f"-m cgroup --path {path}" if path else f"-s {sender.address}/32"
        return f"-A {self.chain} {match} -d {receiver.address}/32 -j DROP"

    def _apply(self, grudge: Grudge) -> None:
        lines = ["*filter", f":{self.chain} - [0:0]"]
        for receiver, senders in sorted(grudge.items()):
            for sender in sorted(senders):
                lines.append(self._rule(self.by_id[sender], self.by_id[receiver]))
        lines.append("COMMIT")
        host_iptables("restore", input_text="\n".join(lines) + "\n")

    def _clear(self) -> None:
        host_iptables("-F", self.chain, check=False)

    def rules(self, node: Node | None = None) -> list[str]:
        out = host_iptables("-S", self.chain, check=False).stdout
        return [line for line in out.splitlines() if line.startswith("-A ")]
