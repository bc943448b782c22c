"""The provisioners' side of lost unsynced writes: one lazy disk (chaos.lazydisk) per node,
mounted on the controller's host before the node first starts, only in runs whose faults
include "lose-unsynced" (as the clock shim is loaded only into clock runs).

    disks = LazyDisks(run_id)
    disks.mount(node, mountpoint, control, log_file)   # the local provisioner: the data dir itself
    disks.lose(node, tear_seed=None)                  # the service must be stopped
    disks.stop_all()                                  # teardown: after the nodes are gone

The docker provisioner mounts under host_root(run_id) and bind-mounts each node's disk into
its container as the data directory, so the container needs no privilege for it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading

from chaos.interfaces import Node
from chaos.provision.base import ProvisionError, process_start_ticks

FAULT = "lose-unsynced"


def host_root(run_id: str) -> str:
    return os.path.join(tempfile.gettempdir(), "splitbrain-lazydisk", run_id)


def unavailable(enabled: bool) -> str | None:
    """Why this DB cannot lose unsynced writes in this run, or None."""
    from chaos import lazydisk
    if not enabled:
        return "the lazy disk under the data directory is mounted only in runs that use lose-unsynced faults"
    return lazydisk.unavailable_reason()


class LazyDisks:
    def __init__(self, run_id: str, detached: bool = False):
        self.run_id = run_id
        self.owner = 0 if detached else os.getpid()
        self._mounts: dict = {}
        self._lock = threading.Lock()

    def mount(self, node: Node, mountpoint: str, control: str, log_file: str | None = None):
        from chaos import lazydisk
        name = lazydisk.fs_name(self.owner, process_start_ticks(self.owner) if self.owner else None,
                                self.run_id, node.id)
        try:
            mount = lazydisk.LazyMount.start(mountpoint, control, fsname=name, log_file=log_file)
        except lazydisk.LazyDiskUnavailable as e:
            raise ProvisionError(f"{node.id}: cannot mount its lazy disk: {e}") from None
        with self._lock:
            self._mounts[node.id] = mount
        node.meta["lazy_disk"] = mountpoint
        return mount

    def mountpoint(self, node: Node) -> str | None:
        with self._lock:
            mount = self._mounts.get(node.id)
        return mount.mountpoint if mount else None

    def lose(self, node: Node, tear_seed: int | None = None) -> dict:
        with self._lock:
            mount = self._mounts.get(node.id)
        if mount is None:
            raise ProvisionError(f"{node.id} has no lazy disk in this run (only runs that use "
                                 f"{FAULT} faults mount one)")
        try:
            return mount.drop() if tear_seed is None else mount.tear(tear_seed)
        except (OSError, RuntimeError, ValueError) as e:
            raise ProvisionError(f"{node.id}: its lazy disk did not answer: {e}") from None

    def stop_all(self) -> None:
        with self._lock:
            mounts, self._mounts = list(self._mounts.values()), {}
        for mount in mounts:
            mount.stop()

    def remove_host_root(self) -> None:
        shutil.rmtree(host_root(self.run_id), ignore_errors=True)
