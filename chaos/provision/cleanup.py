"""`splitbrain clean`: remove what crashed runs left behind.

A run's resources carry its owner's pid (and that process's start time, so a recycled pid does
not count as alive). By default only runs whose owner is gone are removed; resources of live
runs, of other engineers' test sessions and of detached clusters (`cluster up`, owner pid 0)
are never touched. `all=True` removes every splitbrain resource.

Docker: containers and networks labelled splitbrain=1. Local: the runs' state files (node
processes, data dirs, iptables chains) and stray chains named SB<pid>-<hash> with a dead pid.
Lazy disks (chaos.lazydisk): FUSE mounts whose source names a dead owner (fusermount3 -uz).
Delay programs (chaos.net.delay): recorded with their owner's pid, ended when it is gone.
Clock folders of docker runs (chaos.provision.clockshim): host folders naming a dead owner.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from typing import Any

from chaos.provision.base import LABEL, LABEL_OWNER, LABEL_OWNER_START, LABEL_RUN, ProvisionError, owner_alive
from chaos.provision.clockshim import clean_run_dirs

STRAY_CHAIN = re.compile(r"^SB(\d+)-[0-9a-f]{8}$")


def _removable(labels: dict, all: bool) -> bool:
    if all:
        return True
    owner = labels.get(LABEL_OWNER)
    if owner == "0":
        return False  # a detached cluster: `splitbrain cluster down` (or clean --all) removes it
    return not owner_alive(owner, labels.get(LABEL_OWNER_START) or None)


def clean_docker(all: bool = False, client=None) -> dict:
    import docker.errors

    from chaos.provision.base import docker_client

    client = client or docker_client()
    removed: dict[str, list[str]] = {"containers": [], "networks": []}
    flt = {"label": f"{LABEL}=1"}
    for container in client.containers.list(all=True, filters=flt):
        if _removable(container.labels, all):
            try:
                container.remove(force=True, v=True)
                removed["containers"].append(container.name)
            except docker.errors.NotFound:
                pass
    for network in client.networks.list(filters=flt):
        if _removable(network.attrs.get("Labels") or {}, all):
            try:
                network.reload()
                for attached in (network.attrs.get("Containers") or {}):
                    # a container of another run on a dead run's network: leave both alone
                    raise docker.errors.APIError(f"network {network.name} still has container {attached}")
                network.remove()
                removed["networks"].append(network.name)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError:
                continue
    return removed


def clean_local(all: bool = False) -> dict:
    from chaos.provision.local import destroy_state, read_states, remove_chain

    removed: dict[str, list[Any]] = {"local_runs": [], "chains": []}
    live_chains = set()
    for state in read_states():
        owner = state.get(LABEL_OWNER)
        labels = {LABEL_OWNER: str(owner) if owner is not None else "", LABEL_OWNER_START: state.get("owner_start")}
        if _removable(labels, all):
            destroy_state(state)
            removed["local_runs"].append(state.get("run"))
        elif state.get("chain"):
            live_chains.add(state["chain"])
    if os.geteuid() == 0 and shutil.which("iptables"):
        listing = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
        for line in listing.splitlines():
            if not line.startswith("-N "):
                continue
            chain = line.split()[1]
            match = STRAY_CHAIN.match(chain)
            if not match or chain in live_chains:
                continue
            pid = int(match.group(1))
            if all or (pid != 0 and not owner_alive(pid)):
                remove_chain(chain)
                removed["chains"].append(chain)
    removed["cgroups"] = _clean_cgroups(all, live_chains)
    return removed


def _clean_cgroups(all: bool, live: set) -> list[str]:
    """Node cgroups of dead runs (named like their chains): kill what is left inside, rmdir."""
    from chaos.provision.local import cgroup2_root, remove_cgroups

    mount = cgroup2_root()
    parent = os.path.join(mount, "splitbrain") if mount else None
    if os.geteuid() != 0 or not parent or not os.path.isdir(parent):
        return []
    removed = []
    for name in sorted(os.listdir(parent)):
        match = STRAY_CHAIN.match(name)
        run_dir = os.path.join(parent, name)
        if not match or name in live or not os.path.isdir(run_dir):
            continue
        pid = int(match.group(1))
        if not (all or (pid != 0 and not owner_alive(pid))):
            continue
        for node_dir in [os.path.join(run_dir, d) for d in os.listdir(run_dir)]:
            procs = os.path.join(node_dir, "cgroup.procs")
            if os.path.isfile(procs):
                for line in open(procs).read().split():
                    try:
                        os.kill(int(line), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            remove_cgroups(run_dir)
            if not os.path.exists(run_dir):
                removed.append(name)
                break
            time.sleep(0.05)
    return removed


def clean(all: bool = False, docker: bool = True, local: bool = True) -> dict:
    """Remove leftovers of crashed runs (every splitbrain resource with all=True); say what went."""
    from chaos.lazydisk import clean_mounts
    from chaos.net.delay import leftovers as delay_leftovers

    removed: dict = {}
    # Lazy disks first: unmounted (lazily, so a node still inside cannot block it), a local
    # run's data dirs are plain directories again when clean_local removes them.
    removed["lazy_disks"] = clean_mounts(all)
    # Delay programs (chaos.net.delay) run on the host, some inside containers' namespaces.
    removed["delay_programs"] = delay_leftovers(all)
    if local:
        removed.update(clean_local(all))
    if docker:
        try:
            removed.update(clean_docker(all))
        except ProvisionError as e:
            removed["docker_error"] = str(e)
        # after the containers that mount them: the host folders of docker nodes' clock specs
        removed["clock_dirs"] = clean_run_dirs(all)
    return removed


def run_resources(run_id: str, client) -> list[str]:
    """Names of the Docker resources a run still has (tests use it to prove teardown)."""
    flt = {"label": f"{LABEL_RUN}={run_id}"}
    return ([f"container {c.name}" for c in client.containers.list(all=True, filters=flt)]
            + [f"network {n.name}" for n in client.networks.list(filters=flt)])
