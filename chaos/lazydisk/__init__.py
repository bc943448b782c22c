"""Lost unsynced writes: a FUSE file system (main.go, Go with go-fuse) that keeps what was
written but not fsynced apart from what was, and forgets it on command, as LazyFS does.

    mount = LazyMount.start("/tmp/d", "/tmp/d.sock", owner="run-1/n1", log_file="/tmp/d.log")
    ... a program writes and fsyncs under /tmp/d ...
    mount.drop()            # {"unsynced_bytes": 123, "unsynced_files": 1, "unsynced_dirs": 1, ...}
    mount.tear(seed=7)      # the same, but the last unsynced write of each file persists in part
    mount.stop()            # unmount

What it models: fsync/fdatasync of a file makes its data and size durable; fsync of a directory
makes its entries durable, so a create, rename or unlink without one is lost. Files are opened
with direct_io and the kernel caches no attribute or name (timeouts 0), so after a drop nothing
lost can be read back from the page cache. Everything lives in the daemon's memory (data
directories of test clusters are small); a daemon that dies takes its files with it.

Privileges: mounting needs CAP_SYS_ADMIN (root mounts with mount(2) directly; fusermount3
would do it for others) and /dev/fuse. It runs on the controller's host only: a container gets
the mount as a bind mount and needs no privilege of its own.

The helper is built once with the Go toolchain into the cache, named by a hash of its sources
(as checkers.porcupine's is). The mount's source in /proc/mounts names its owner
(`splitbrain-lazydisk:owner=PID:START:run=RUN:node=ID:daemon=PID`), so that `splitbrain clean`
(clean_mounts) unmounts what a crashed controller left, and only that.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCES = ("main.go", "go.mod", "go.sum")
FS_TYPE = "fuse.splitbrain-lazydisk"
FS_PREFIX = "splitbrain-lazydisk"
START_TIMEOUT_S = 10.0


class LazyDiskUnavailable(RuntimeError):
    """No FUSE here, no privilege to mount, or the helper cannot be built."""


def unavailable_reason() -> str | None:
    """Why lazy disks cannot be mounted on this host, or None when they can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (the kernel has no FUSE, or the sandbox hides it)"
    if os.geteuid() != 0:
        return "mounting a FUSE file system for the nodes needs root (CAP_SYS_ADMIN)"
    from checkers.porcupine import find_go
    if find_go() is None:
        return "the lazy disk helper is built with Go, and no Go toolchain was found"
    return None


def _cache_dir() -> str:
    from checkers.porcupine import cache_dir
    return cache_dir()


def source_hash() -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        with open(os.path.join(SOURCE_DIR, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read() + b"\0")
    return h.hexdigest()[:16]


def binary_path() -> str:
    return os.path.join(_cache_dir(), f"lazydisk-{source_hash()}")


def ensure_binary() -> str:
    """The built helper's path, building it on first use (LazyDiskUnavailable on failure)."""
    path = binary_path()
    if os.access(path, os.X_OK):
        return path
    from checkers.porcupine import find_go, go_build
    go = find_go()
    if go is None:
        raise LazyDiskUnavailable("no Go toolchain found to build the lazy disk helper")
    go_build(go, SOURCE_DIR, path, "the lazy disk helper", LazyDiskUnavailable)
    return path


def fs_name(owner_pid: int, owner_start: str | None, run_id: str, node_id: str) -> str:
    return f"{FS_PREFIX}:owner={owner_pid}:{owner_start or ''}:run={run_id}:node={node_id}"


def parse_fs_name(source: str) -> dict:
    """{"owner": pid, "owner_start": ticks, "run": id, "node": id, "daemon": pid} from a source."""
    info: dict = {}
    parts = source.split(":")
    for i, part in enumerate(parts):
        key, sep, value = part.partition("=")
        if not sep:
            continue
        if key == "owner":
            info["owner"] = value
            info["owner_start"] = parts[i + 1] if i + 1 < len(parts) and "=" not in parts[i + 1] else ""
        elif key in ("run", "node", "daemon"):
            info[key] = value
    return info


class LazyMount:
    """One mounted lazy disk and its daemon."""

    def __init__(self, mountpoint: str, control: str, proc: subprocess.Popen | None):
        self.mountpoint, self.control, self.proc = mountpoint, control, proc

    @classmethod
    def start(cls, mountpoint: str, control: str, fsname: str = FS_PREFIX,
              log_file: str | None = None) -> "LazyMount":
        """Mount on `mountpoint` (created if missing; must be empty) and wait until it answers."""
        reason = unavailable_reason()
        if reason:
            raise LazyDiskUnavailable(reason)
        binary = ensure_binary()
        os.makedirs(mountpoint, exist_ok=True)
        if os.listdir(mountpoint):
            raise LazyDiskUnavailable(f"{mountpoint} is not empty: a lazy disk starts empty")
        log = open(log_file, "ab") if log_file else subprocess.DEVNULL
        try:
            # Own session: a Ctrl-C to the controller does not unmount the nodes' disks under
            # them; the controller's teardown does, after the nodes are gone.
            proc = subprocess.Popen([binary, "--mount", mountpoint, "--control", control, "--fsname", fsname],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        finally:
            if not isinstance(log, int):   # a file of ours, not DEVNULL
                log.close()
        mount = cls(mountpoint, control, proc)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                tail = ""
                if log_file and os.path.exists(log_file):
                    with open(log_file, "rb") as f:
                        tail = f.read()[-2000:].decode("utf-8", "replace").strip()
                raise LazyDiskUnavailable(f"the lazy disk helper exited ({proc.returncode}) mounting "
                                          f"{mountpoint}: {tail or '(no output)'}")
            try:
                mount.command("ping", timeout=1.0)
                return mount
            except OSError:
                if time.monotonic() > deadline:
                    mount.stop()
                    raise LazyDiskUnavailable(f"the lazy disk on {mountpoint} did not answer within "
                                              f"{START_TIMEOUT_S:.0f} s") from None
                time.sleep(0.02)

    def command(self, line: str, timeout: float = 30.0) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.control)
            s.sendall(line.encode() + b"\n")
            answer = s.makefile("rb").readline()
        if not answer:
            raise ConnectionError(f"the lazy disk on {self.mountpoint} closed its control socket")
        reply = json.loads(answer)
        if not reply.get("ok"):
            raise RuntimeError(f"lazy disk {self.mountpoint}: {line!r}: {reply.get('error')}")
        return reply

    def stats(self) -> dict:
        return self.command("stats")

    def drop(self) -> dict:
        """Forget every unsynced write and directory change. Call it while nothing writes."""
        return self.command("drop")

    def tear(self, seed: int) -> dict:
        """drop(), except that each file's unsynced writes persist up to a random byte of its
        last one (repeatable per seed)."""
        return self.command(f"tear {int(seed)}")

    def sync(self) -> dict:
        return self.command("sync")

    def stop(self, timeout: float = 10.0) -> None:
        """Unmount and end the daemon; a busy mount is detached (lazy unmount)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        if is_mounted(self.mountpoint):
            unmount(self.mountpoint)


def mounts() -> list[dict]:
    """Every lazy disk mounted on this host: {"source", "mountpoint", ...parse_fs_name(source)}."""
    found: list[dict] = []
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[2] == FS_TYPE:
            mountpoint = fields[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
            found.append({"source": fields[0], "mountpoint": mountpoint, **parse_fs_name(fields[0])})
    return found


def is_mounted(path: str) -> bool:
    path = os.path.realpath(path)
    return any(os.path.realpath(m["mountpoint"]) == path for m in mounts())


def unmount(path: str) -> None:
    """Lazy unmount (fusermount3 -uz, else umount -l): works on a dead or busy mount too."""
    for argv in (["fusermount3", "-uz", path], ["fusermount", "-uz", path], ["umount", "-l", path]):
        if shutil.which(argv[0]) and subprocess.run(argv, capture_output=True).returncode == 0:
            return


def _is_daemon(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"lazydisk" in f.read().split(b"\0")[0]
    except OSError:
        return False


def clean_mounts(all: bool = False) -> list[str]:
    """Unmount the lazy disks of runs whose controller is gone (every one with all=True), end
    their daemons and remove the mount points; return the mount points removed."""
    from chaos.provision.base import owner_alive

    removed = []
    for m in mounts():
        owner = m.get("owner")
        if not all and (owner == "0" or owner_alive(owner, m.get("owner_start") or None)):
            continue  # a live run, or a detached cluster (`cluster down` removes it)
        unmount(m["mountpoint"])
        daemon = m.get("daemon")
        if daemon and daemon.isdigit() and _is_daemon(int(daemon)):
            try:
                os.kill(int(daemon), signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.rmdir(m["mountpoint"])
        except OSError:
            pass
        # the docker provisioner's per-run folder (mount points, control sockets, daemon logs)
        run_dir = os.path.dirname(m["mountpoint"])
        if os.path.dirname(run_dir) == os.path.join(tempfile.gettempdir(), "splitbrain-lazydisk") \
                and not any(os.path.dirname(x["mountpoint"]) == run_dir for x in mounts()):
            shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(m["mountpoint"])
    return removed
