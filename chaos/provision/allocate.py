"""Resources that concurrent runs on one machine must not share, handed out atomically across
processes: Docker subnets, local base addresses, netfilter queue numbers, test subnets.

Two runs started at the same moment (two Dask workers on one host, two terminals) each get
their own: the registry (REGISTRY_DIR/registry.json) lists what is taken and by which run and
controller, and every read-modify-write of it holds an exclusive lock (flock on
REGISTRY_DIR/registry.lock), so no two processes can take the same value. A run releases what it
took at teardown; an entry whose owner process is gone (a crashed controller) is taken back by
the next allocation, and a detached cluster's (owner 0) only by release().

    subnet = allocate_subnet(run_id)            # "10.77.3.0/24": no registry entry, no route
    base = allocate_local_base(run_id, nodes, ports)
    release(run_id)                             # at teardown

A candidate is also skipped when something outside the registry already uses it (a route or an
address of that network on this machine, a Docker network, a bound port), so explicit
settings of other runs (`--subnet 10.77.5.0/24`) are respected as well.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable

from chaos.provision.base import ProvisionError, owner_alive, process_start_ticks

REGISTRY_DIR = os.environ.get("SPLITBRAIN_ALLOC_DIR") or os.path.join(tempfile.gettempdir(), "splitbrain-alloc")
#: the pool of Docker subnets (10.77.0.0/24 stays the documented explicit default)
SUBNET_POOL = "10.77.0.0/16"
SUBNET_PREFIX = 24
FIRST_SUBNET_INDEX = 1
#: local base addresses: 127.0.N.11 for N = 1..250 (each leaves room for 32 nodes)
LOCAL_BASE_BLOCKS = range(1, 251)


def _paths() -> tuple[str, str]:
    os.makedirs(REGISTRY_DIR, mode=0o700, exist_ok=True)
    return os.path.join(REGISTRY_DIR, "registry.lock"), os.path.join(REGISTRY_DIR, "registry.json")


@contextlib.contextmanager
def _locked():
    """The registry's entries, read and written back under the exclusive lock."""
    lock_path, path = _paths()
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                with open(path, encoding="utf-8") as f:
                    entries = json.load(f).get("entries", [])
            except (FileNotFoundError, ValueError):
                entries = []
            holder = {"entries": entries}
            yield holder
            tmp = f"{path}.tmp-{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"entries": holder["entries"]}, f, indent=1)
            os.replace(tmp, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _live(entry: dict) -> bool:
    owner = entry.get("owner")
    if owner == 0:
        return True  # a detached cluster: released by `cluster down`
    return owner_alive(owner, entry.get("owner_start") or None)


def allocate(kind: str, run_id: str, candidates: Iterable[str], in_use: Callable[[str], bool] = lambda v: False,
             detached: bool = False) -> str:
    """The first candidate no live entry holds and in_use() does not claim, recorded for run_id.
    A run asking again for the same kind gets what it already holds."""
    owner = 0 if detached else os.getpid()
    with _locked() as registry:
        entries = [e for e in registry["entries"] if _live(e)]
        for entry in entries:
            if entry["kind"] == kind and entry["run"] == run_id:
                registry["entries"] = entries
                return entry["value"]
        taken = {e["value"] for e in entries if e["kind"] == kind}
        tried = 0
        for value in candidates:
            tried += 1
            if value in taken or in_use(value):
                continue
            entries.append({"kind": kind, "value": value, "run": run_id, "owner": owner,
                            "owner_start": process_start_ticks(owner) if owner else None, "at": time.time()})
            registry["entries"] = entries
            return value
        registry["entries"] = entries
    raise ProvisionError(f"no free {kind} left ({tried} candidates, all taken by other runs or in use on this "
                         f"machine); `splitbrain clean` removes leftovers of crashed runs")


def release(run_id: str, kind: str | None = None) -> list[str]:
    """Give back what run_id holds (every kind, or one); returns the values released."""
    released = []
    with _locked() as registry:
        kept = []
        for entry in registry["entries"]:
            if entry["run"] == run_id and (kind is None or entry["kind"] == kind):
                released.append(entry["value"])
            else:
                kept.append(entry)
        registry["entries"] = kept
    return released


def held(kind: str | None = None) -> list[dict]:
    """The live entries (tests, `splitbrain clean`)."""
    with _locked() as registry:
        registry["entries"] = [e for e in registry["entries"] if _live(e)]
        return [dict(e) for e in registry["entries"] if kind is None or e["kind"] == kind]


# -- subnets ----------------------------------------------------------------------------------------

def machine_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine routes or has an address in (Docker's bridges included)."""
    nets = []
    for argv in (["ip", "-4", "-o", "route", "show", "table", "all"], ["ip", "-4", "-o", "addr", "show"]):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in out.splitlines():
            for word in line.split():
                if "/" in word or word[:1].isdigit():
                    try:
                        net = ipaddress.ip_network(word, strict=False)
                    except ValueError:
                        continue
                    if net.version == 4 and net.prefixlen > 0:
                        nets.append(net)
    return nets


def docker_subnets(docker=None) -> list[ipaddress.IPv4Network]:
    if docker is None:
        return []
    nets = []
    try:
        for network in docker.networks.list():
            for pool in ((network.attrs.get("IPAM") or {}).get("Config") or []):
                try:
                    nets.append(ipaddress.ip_network(pool.get("Subnet", ""), strict=False))
                except ValueError:
                    continue
    except Exception:  # noqa: BLE001 - an engine that does not answer has no networks to avoid
        return []
    return [n for n in nets if n.version == 4]


def subnet_candidates(pool: str = SUBNET_POOL, prefix: int = SUBNET_PREFIX, first: int = FIRST_SUBNET_INDEX):
    subnets = list(ipaddress.ip_network(pool).subnets(new_prefix=prefix))
    return [str(s) for s in subnets[first:len(subnets) - 1]]


def allocate_subnet(run_id: str, docker=None, pool: str = SUBNET_POOL, detached: bool = False) -> str:
    """A /24 of 10.77.0.0/16 that no other run holds and nothing on this machine uses."""
    used = machine_networks() + docker_subnets(docker)

    def in_use(value: str) -> bool:
        net = ipaddress.ip_network(value)
        return any(net.overlaps(other) for other in used if other.prefixlen >= 8)

    return allocate("subnet", run_id, subnet_candidates(pool), in_use, detached=detached)


# -- local base addresses -------------------------------------------------------------------------

def _ports_free(address: str, ports: Iterable[int]) -> bool:
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError:
                return False
    return True


def allocate_local_base(run_id: str, nodes: int, ports: Iterable[int], detached: bool = False) -> str:
    """A loopback base address 127.0.N.11 whose node addresses (.11 onwards) have `ports` free."""
    ports = list(ports)

    def in_use(value: str) -> bool:
        base = ipaddress.ip_address(value)
        return not all(_ports_free(str(base + i), ports) for i in range(nodes))

    return allocate("local-base", run_id, (f"127.0.{n}.11" for n in LOCAL_BASE_BLOCKS), in_use, detached=detached)


def allocate_queues(run_id: str, count: int, first: int = 1000, last: int = 65000) -> int:
    """The first of `count` consecutive netfilter queue numbers of this run's own (for packet
    faults in the host's namespace, where concurrent runs share the queue numbers)."""
    if not 1 <= count <= 64:
        raise ValueError(f"queue count must be 1..64, got {count}")
    blocks = (str(n) for n in range(first, last - 64, 64))
    return int(allocate("queue", run_id, blocks))


# -- what a run leaves to us -----------------------------------------------------------------------

def accepted_options(cls) -> set[str]:
    """The constructor settings a DB class takes (as ProvisionedDB.from_config reads them)."""
    import inspect

    accepted = set()
    for klass in cls.__mro__:
        if "__init__" in klass.__dict__:
            accepted |= {name for name, p in inspect.signature(klass.__init__).parameters.items()
                         if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return accepted


def run_overrides(config, run_id: str, detached: bool = False) -> dict:
    """The settings this run gets from the allocator: a Docker subnet when the config names
    none, a local base address when the provisioner options name none; only for a DB class
    (found through its registry entry's classes, see chaos.provision.base.db_factory) that
    takes them. Released by release(run_id) at the run's end."""
    from chaos.registry import load

    try:
        factory = load("splitbrain.dbs", config.db)
    except Exception:  # noqa: BLE001 - the run's own check names an unknown DB
        return {}
    classes = {getattr(c, "provisioner", None): c for c in getattr(factory, "classes", ())}
    cls = classes.get(config.provisioner)
    if cls is None:
        return {}
    accepted = accepted_options(cls)
    overrides = {}
    if "subnet" in accepted and not config.subnet and "subnet" not in config.provisioner_options:
        docker = None
        try:
            from chaos.provision.base import docker_client
            docker = docker_client()
        except Exception:  # noqa: BLE001 - no engine: the routes alone say what is in use
            docker = None
        overrides["subnet"] = allocate_subnet(run_id, docker=docker, detached=detached)
    if "base_address" in accepted and "base_address" not in config.provisioner_options:
        options = config.provisioner_options
        ports = {int(options.get("client_port", getattr(cls, "client_port", 8000))),
                 int(options.get("peer_port", getattr(cls, "peer_port", 9000)))}
        overrides["base_address"] = allocate_local_base(run_id, config.nodes, sorted(ports), detached=detached)
    return overrides
