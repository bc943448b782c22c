"""Grudges and link faults as iptables rules (and tc qdiscs, and delay programs).

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

One-way grudges. Over TCP, dropping everything n2 sends n1 also drops the ACKs and answers of
n1's own connections to n2, so n2 would stop hearing n1 too: a full partition. When n2 still
hears n1, n1 drops only what belongs to connections n2 opened (conntrack's ORIGINAL direction,
plus what conntrack calls INVALID), and lets through the replies on connections n1 opened: n1's
messages reach n2, n2's never reach n1. Conntrack must have seen those connections from their
first packet, so install() turns it on in each namespace (a rule matching nothing, UNTRACKED)
before any service starts.

Link faults (chaos.net.links), after the grudge rules of the same chain: loss is a DROP with
`-m statistic --mode random`; delay sends the link's packets to an NFQUEUE (with --queue-bypass)
served by a delay program (chaos.net.delay) that holds and releases them; a bandwidth cap is an
htb class on the sender's interface (chaos.net.shaping), which only a namespace of its own has.
"""

from __future__ import annotations

import ipaddress
import shlex
import subprocess
import zlib
from typing import Callable

from chaos.interfaces import Node
from chaos.net.base import Net, NetError
from chaos.net.delay import DelayError, DelayProgram, QueueBusy
from chaos.net.grudge import Grudge
from chaos.net.shaping import shaping_script

CHAIN = "SPLITBRAIN"
#: queue numbers of a namespace's delay program; a new program takes the other bank, so that
#: the rules switch from one program to the next without a moment of no delay
QUEUE_BANKS = (100, 1100)


def _by_address(addresses) -> list[str]:
    return sorted(addresses, key=ipaddress.ip_address)


def conntrack_rule(comment: str) -> str:
    """A rule that matches nothing (we never NOTRACK) but turns connection tracking on."""
    return f"-m conntrack --ctstate UNTRACKED -m comment --comment {comment} -j RETURN"


def namespace_setup_script(chain: str = CHAIN) -> str:
    """Create our chain, jump to it first from INPUT, turn conntrack on (idempotent)."""
    tracking = conntrack_rule(f"{chain}-conntrack")
    return (f"iptables -w -N {chain} 2>/dev/null || true; "
            f"iptables -w -C INPUT -j {chain} 2>/dev/null || iptables -w -I INPUT 1 -j {chain}; "
            f"iptables -w -C INPUT {tracking} 2>/dev/null || iptables -w -A INPUT {tracking}")


def grudge_rules(match: Callable[[str, str], str], grudge: Grudge, receivers=None) -> list[str]:
    """Rule bodies (after `-A CHAIN`) for every (sender, receiver) of the grudge: a DROP when
    the two do not hear each other, the connection-aware DROP of a one-way grudge otherwise.
    `match(sender, receiver)` is the iptables match of the pair's packets."""
    out = []
    for receiver, senders in sorted(grudge.items()):
        if receivers is not None and receiver not in receivers:
            continue
        for sender in sorted(senders):
            m = match(sender, receiver)
            if receiver in grudge.get(sender, ()):
                out.append(f"{m} -j DROP")
            else:
                out.append(f"{m} -m conntrack --ctdir ORIGINAL -j DROP")
                out.append(f"{m} -m conntrack --ctstate INVALID -j DROP")
    return out


def link_rules(match: Callable[[str, str], str], links, queues: dict[tuple[float, float], int],
               receivers=None) -> list[str]:
    """Loss, then delay (the NFQUEUE verdict ends the chain: it must come last)."""
    out = []
    for fault in links:
        if receivers is not None and fault.receiver not in receivers:
            continue
        if fault.loss > 0:
            out.append(f"{match(fault.sender, fault.receiver)} -m statistic --mode random "
                       f"--probability {min(fault.loss, 1.0):.6f} -j DROP")
    for fault in links:
        if receivers is not None and fault.receiver not in receivers:
            continue
        if "delay" in fault.kinds():
            out.append(f"{match(fault.sender, fault.receiver)} -j NFQUEUE "
                       f"--queue-num {queues[(fault.delay_ms, fault.jitter_ms)]} --queue-bypass")
    return out


def restore_input(chain: str, bodies: list[str]) -> str:
    """iptables-restore input replacing our chain's rules."""
    lines = ["*filter", f":{chain} - [0:0]"] + [f"-A {chain} {body}" for body in bodies] + ["COMMIT"]
    return "\n".join(lines) + "\n"


def delay_specs(links, receivers) -> list[tuple[float, float]]:
    """The distinct (delay, jitter) of the delayed links arriving at these receivers."""
    return sorted({(f.delay_ms, f.jitter_ms) for f in links if f.receiver in receivers and "delay" in f.kinds()})


class _Programs:
    """The delay program of each namespace (a key: a node id, or None for the host's)."""

    def __init__(self):
        self.running: dict[object, DelayProgram] = {}

    def ensure(self, key, specs: list[tuple[float, float]], start: Callable[[dict], DelayProgram],
               bases, force_new: bool = False) -> tuple[dict[tuple[float, float], int], DelayProgram | None]:
        """A program serving these specs: the running one when it does and is alive, else a
        new one on queue numbers the running one does not use. Returns (spec -> queue number,
        the program to stop once the rules point at the new one)."""
        old = self.running.get(key)
        if not specs:
            return {}, old
        if old is not None and not force_new and old.alive() and sorted(old.queues.values()) == specs:
            return {spec: q for q, spec in old.queues.items()}, None
        used = set(old.queues) if old is not None else set()
        last_error: Exception | None = None
        for base in bases:
            numbers = [base + i for i in range(len(specs))]
            if used & set(numbers):
                continue
            try:
                program = start(dict(zip(numbers, specs, strict=True)))
            except QueueBusy as e:  # another program (another run on this host) has them
                last_error = e
                continue
            self.running[key] = program
            return dict(zip(specs, numbers, strict=True)), old
        raise NetError(f"no free netfilter queue numbers for the delay program: {last_error}")

    def stop(self, key) -> None:
        program = self.running.pop(key, None)
        if program is not None:
            program.stop()

    def retire(self, key, program: DelayProgram | None) -> None:
        """Stop a program the rules no longer use (and forget it if it is still the running one)."""
        if program is None:
            return
        if self.running.get(key) is program:
            del self.running[key]
        program.stop()

    def stop_all(self) -> None:
        for key in list(self.running):
            self.stop(key)


class NamespaceNet(Net):
    """`run(node, script)` runs a shell script in the node's namespace and returns its stdout
    (raising on failure); `reachable(node)` says whether its namespace exists right now (a
    stopped container has none: its rules are put back by reapply when it starts);
    `netns(node)` is the path of its network namespace on this host (/proc/PID/ns/net), where
    the delay program runs; without it, delays are not offered."""

    def __init__(self, nodes, run: Callable[[Node, str], str],
                 reachable: Callable[[Node], bool] = lambda node: True, chain: str = CHAIN,
                 netns: Callable[[Node], str] | None = None):
        super().__init__(nodes)
        self.run = run
        self.reachable = reachable
        self.chain = chain
        self.netns = netns
        self.link_unavailable = {} if netns is not None else {
            "delay": "the delay program runs in the node's network namespace, and this layer was not "
                     "told where that namespace is"}
        self._programs = _Programs()
        self._shaped: set[str] = set()   # nodes whose interface has our qdisc

    def _match(self, sender: str, receiver: str) -> str:
        return f"-s {self.by_id[sender].address}/32"

    def _script(self, grudge: Grudge, links, node: Node, queues) -> str:
        bodies = grudge_rules(self._match, grudge, {node.id}) + link_rules(self._match, links, queues, {node.id})
        script = f"printf '%s' {shlex.quote(restore_input(self.chain, bodies))} | iptables-restore -w --noflush"
        caps = [(self.by_id[f.receiver].address, f.rate_kbit) for f in links
                if f.sender == node.id and f.rate_kbit is not None]
        if caps or node.id in self._shaped:
            script += " && { " + shaping_script(node.address, caps) + "; }"
        return script

    def _put(self, node: Node, grudge: Grudge, links, force_new: bool = False, setup: bool = False) -> None:
        """Render the node's whole state: delay program first, then rules, then retire the old program."""
        if not self.reachable(node):
            self._programs.stop(node.id)  # its namespace is gone; reapply starts a new one
            return
        specs = delay_specs(links, {node.id})
        queues, retired = self._programs.ensure(node.id, specs, lambda q: self._start_program(node, q),
                                                QUEUE_BANKS, force_new=force_new)
        script = self._script(grudge, links, node, queues)
        if setup:
            script = namespace_setup_script(self.chain) + "; " + script
        self.run(node, script)
        if any(f.sender == node.id and f.rate_kbit is not None for f in links):
            self._shaped.add(node.id)
        else:
            self._shaped.discard(node.id)
        self._programs.retire(node.id, retired)

    def _start_program(self, node: Node, queues: dict) -> DelayProgram:
        assert self.netns is not None  # without it delay faults are refused (link_unavailable)
        try:
            return DelayProgram.start(queues, netns=self.netns(node), label=node.id)
        except QueueBusy:
            raise
        except DelayError as e:
            raise NetError(f"{node.id}: {e}") from None

    def install(self) -> None:
        self.parallel(lambda n: self.run(n, namespace_setup_script(self.chain)), self.nodes)

    def reapply(self, node: Node) -> None:
        with self._changing:
            self._shaped.discard(node.id)  # a new namespace has the default qdisc
            self._put(node, self.current(), self.links(), force_new=True, setup=True)

    def _apply(self, grudge: Grudge) -> None:
        links = self.links()
        self.parallel(lambda n: self._put(n, grudge, links), self.nodes)

    def _apply_links(self, links) -> None:
        grudge = self.current()
        self.parallel(lambda n: self._put(n, grudge, links), self.nodes)

    def _clear(self) -> None:
        def one(node):
            if self.reachable(node):
                script = f"iptables -w -F {self.chain} 2>/dev/null || true"
                if node.id in self._shaped:
                    script += "; " + shaping_script(node.address, [])
                self.run(node, script)
            self._shaped.discard(node.id)
        try:
            self.parallel(one, self.nodes)
        finally:
            self._programs.stop_all()

    def close(self) -> None:
        self._programs.stop_all()

    def uninstall(self) -> None:
        tracking = conntrack_rule(f"{self.chain}-conntrack")
        script = (f"while iptables -w -D INPUT -j {self.chain} 2>/dev/null; do :; done; "
                  f"while iptables -w -D INPUT {tracking} 2>/dev/null; do :; done; "
                  f"iptables -w -F {self.chain} 2>/dev/null; iptables -w -X {self.chain} 2>/dev/null; true")

        def one(node):
            if self.reachable(node):
                self.run(node, script + ("; " + shaping_script(node.address, []) if node.id in self._shaped else ""))
            self._shaped.discard(node.id)
        try:
            self.parallel(one, self.nodes)
        finally:
            self._programs.stop_all()

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
    """Our chain, the jump to it and its conntrack rule: gone (idempotent)."""
    while host_iptables("-D", "OUTPUT", "-j", chain, check=False).returncode == 0:
        pass
    tracking = conntrack_rule(chain).split()
    while host_iptables("-D", "OUTPUT", *tracking, check=False).returncode == 0:
        pass
    host_iptables("-F", chain, check=False)
    host_iptables("-X", chain, check=False)


class CgroupNet(Net):
    """`cgroup_path(node)` is the node's cgroup relative to the cgroup2 mount, or None to match
    by source address instead. Delays are served by one delay program in the host's namespace,
    on queue numbers of this run (another run's program may hold others); bandwidth caps are
    not offered: a qdisc on the host's loopback would shape every process of the host."""

    link_unavailable = {"bandwidth": "a bandwidth cap is a qdisc on an interface, and the local nodes share "
                                     "the host's loopback: shaping it would slow every process of the host"}

    def __init__(self, nodes, chain: str, cgroup_path: Callable[[Node], str | None]):
        super().__init__(nodes)
        if len(chain) > 28:
            raise ValueError(f"iptables chain names are at most 28 characters: {chain!r}")
        self.chain = chain
        self.cgroup_path = cgroup_path
        self._programs = _Programs()
        first = 20000 + zlib.crc32(chain.encode()) % 20000
        self._queue_bases = [first + 16 * i for i in range(64)]

    def install(self) -> None:
        host_iptables("-N", self.chain, check=False)
        host_iptables("-F", self.chain)
        if host_iptables("-C", "OUTPUT", "-j", self.chain, check=False).returncode != 0:
            host_iptables("-I", "OUTPUT", "1", "-j", self.chain)
        tracking = conntrack_rule(self.chain).split()
        if host_iptables("-C", "OUTPUT", *tracking, check=False).returncode != 0:
            host_iptables("-A", "OUTPUT", *tracking)

    def uninstall(self) -> None:
        try:
            remove_host_chain(self.chain)
        finally:
            self._programs.stop_all()

    def close(self) -> None:
        self._programs.stop_all()

    def reapply(self, node: Node) -> None:
        pass  # one namespace for all: the rules never went away

    def _match(self, sender: str, receiver: str) -> str:
        path = self.cgroup_path(self.by_id[sender])
        src = f"-m cgroup --path {path}" if path else f"-s {self.by_id[sender].address}/32"
        return f"{src} -d {self.by_id[receiver].address}/32"

    def _put(self, grudge: Grudge, links) -> None:
        specs = delay_specs(links, set(self.by_id))
        queues, retired = self._programs.ensure(None, specs, self._start_program, self._queue_bases)
        bodies = grudge_rules(self._match, grudge) + link_rules(self._match, links, queues)
        host_iptables("restore", input_text=restore_input(self.chain, bodies))
        self._programs.retire(None, retired)

    def _start_program(self, queues: dict) -> DelayProgram:
        try:
            return DelayProgram.start(queues, netns=None, label=self.chain)
        except QueueBusy:
            raise
        except DelayError as e:
            raise NetError(str(e)) from None

    def _apply(self, grudge: Grudge) -> None:
        self._put(grudge, self.links())

    def _apply_links(self, links) -> None:
        self._put(self.current(), links)

    def _clear(self) -> None:
        try:
            host_iptables("-F", self.chain, check=False)
        finally:
            self._programs.stop_all()

    def rules(self, node: Node | None = None) -> list[str]:
        out = host_iptables("-S", self.chain, check=False).stdout
        return [line for line in out.splitlines() if line.startswith("-A ")]
