"""A simulated file system for raftnode.storage that is not kind to it at a crash.

It implements the file layer of raftnode.files in memory. Reads see every write at once (the page
cache); durability follows POSIX at its most adversarial:

  * a file's data (writes, truncations) survives a crash for sure only after an fsync/fdatasync
    of that file; of its unsynced operations a random prefix survives, and the last surviving
    write may be torn at a random byte (the rest of it lost, or left as zeros);
  * creating, renaming and unlinking a name survive for sure only after an fsync of its
    directory (fsync of the file itself does not make its name durable); of the unsynced
    directory operations a random subset survives: operations on different names may survive
    out of order (POSIX promises no order), but one that touches a name an earlier lost
    operation touched is lost too (a rename never outlives the creation it moves);
  * `writeback()` makes everything durable, as the kernel's periodic flush of dirty pages.

`power_loss(rng)` applies a crash: afterwards the files hold what survived, and open descriptors
are gone. `arm(n)` makes the n+1-th following operation (and every one after it) raise
SimulatedCrash, so a test or the simulator can crash a storage operation between any two of its
file operations; `disarm()` lets operations run again (before or after a power loss).
"""

from __future__ import annotations

import os

_WRITE, _TRUNCATE = 0, 1


class SimulatedCrash(BaseException):
    """The machine lost power in the middle of a file operation (BaseException: no `except
    Exception` in the code under test may swallow it)."""


class _Inode:
    __slots__ = ("data", "durable", "pending")

    def __init__(self):
        self.data = bytearray()      # what reads see
        self.durable = bytearray()   # what survives a crash for sure
        self.pending: list = []      # unsynced operations, in order: (_WRITE, offset, bytes) / (_TRUNCATE, length)

    def sync(self) -> None:
        for op in self.pending:
            _apply(self.durable, op)
        self.pending = []


def _apply(buf: bytearray, op) -> None:
    if op[0] == _WRITE:
        _, offset, data = op
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset:offset + len(data)] = data
    else:
        del buf[op[1]:]


class SimFiles:
    def __init__(self):
        self._names: dict[str, _Inode] = {}          # path -> inode, as reads see it
        self._durable_names: dict[str, _Inode] = {}  # path -> inode, surviving a crash for sure
        self._dir_pending: list[tuple] = []           # unsynced (directory, op, args...) in order
        self._dirs: set[str] = set()
        self._fds: dict[int, list] = {}               # fd -> [inode, append, position]
        self._next_fd = 3
        self._budget: int | None = None               # operations left before a crash (armed)
        self.crashed = False
        self.ops = 0                                  # operations performed (for tests)

    # -- crash control -----------------------------------------------------------------------------
    def arm(self, operations: int) -> None:
        """Crash (raise SimulatedCrash) once `operations` more file operations have run."""
        self._budget = operations

    def disarm(self) -> None:
        self._budget = None
        self.crashed = False

    def _op(self) -> None:
        if self.crashed:
            raise SimulatedCrash("the machine is down")
        if self._budget is not None:
            if self._budget <= 0:
                self.crashed = True
                raise SimulatedCrash("power lost during a file operation")
            self._budget -= 1
        self.ops += 1

    def power_loss(self, rng) -> None:
        """Keep what is durable plus a random prefix of what is not (see the module docstring)."""
        pending, self._dir_pending = self._dir_pending, []
        names = self._durable_names
        keep = rng.randint(0, 4) / 4   # how much of the directory's journal made it
        lost: set[str] = set()
        for op in pending:
            touched = op[1:3] if op[0] == "rename" else op[1:2]
            if lost.isdisjoint(touched) and rng.random() < keep:
                _apply_dir(names, op)
            else:
                lost.update(touched)
        survivors = {}
        for inode in names.values():
            if id(inode) in survivors:
                continue
            survivors[id(inode)] = inode
            ops = inode.pending[:rng.randint(0, len(inode.pending))]
            if ops and ops[-1][0] == _WRITE and rng.random() < 0.5:
                _, offset, data = ops[-1]
                cut = rng.randrange(len(data)) if data else 0
                torn = data[:cut] + (bytes(len(data) - cut) if rng.random() < 0.5 else b"")
                ops[-1] = (_WRITE, offset, torn)
            for op in ops:
                _apply(inode.durable, op)
            inode.pending = []
            inode.data = bytearray(inode.durable)
        self._names = dict(names)
        self._fds = {}
        self._budget = None
        self.crashed = False

    def writeback(self) -> None:
        """The kernel flushed every dirty page and committed the journal: all is durable."""
        for inode in self._names.values():
            inode.sync()
        for op in self._dir_pending:
            _apply_dir(self._durable_names, op)
        self._dir_pending = []

    # -- the file layer (raftnode.files) -----------------------------------------------------------
    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        self._op()
        inode = self._names.get(path)
        if inode is None:
            if not flags & os.O_CREAT:
                raise FileNotFoundError(2, "No such file or directory", path)
            self._check_dir(path)
            inode = _Inode()
            self._names[path] = inode
            self._dir_pending.append(("link", path, inode))
        elif flags & os.O_CREAT and flags & os.O_EXCL:
            raise FileExistsError(17, "File exists", path)
        if flags & os.O_TRUNC and inode.data:
            self._truncate(inode, 0)
        fd = self._next_fd
        self._next_fd += 1
        self._fds[fd] = [inode, bool(flags & os.O_APPEND), 0]
        return fd

    def write(self, fd: int, data) -> int:
        self._op()
        handle = self._handle(fd)
        inode = handle[0]
        offset = len(inode.data) if handle[1] else handle[2]
        data = bytes(data)
        _apply(inode.data, (_WRITE, offset, data))
        inode.pending.append((_WRITE, offset, data))
        handle[2] = offset + len(data)
        return len(data)

    def fsync(self, fd: int) -> None:
        self._op()
        self._handle(fd)[0].sync()

    fdatasync = fsync

    def size(self, fd: int) -> int:
        return len(self._handle(fd)[0].data)

    def ftruncate(self, fd: int, length: int) -> None:
        self._op()
        self._truncate(self._handle(fd)[0], length)

    def close(self, fd: int) -> None:
        self._op()
        self._fds.pop(fd, None)

    def read_file(self, path: str, length: int | None = None) -> bytes:
        if self.crashed:
            raise SimulatedCrash("the machine is down")
        inode = self._names.get(path)
        if inode is None:
            raise FileNotFoundError(2, "No such file or directory", path)
        return bytes(inode.data if length is None else inode.data[:length])

    def replace(self, src: str, dst: str) -> None:
        self._op()
        inode = self._names.get(src)
        if inode is None:
            raise FileNotFoundError(2, "No such file or directory", src)
        if os.path.dirname(src) != os.path.dirname(dst):
            raise ValueError(f"the simulated file system renames within a directory only: {src} -> {dst}")
        self._names[dst] = self._names.pop(src)
        self._dir_pending.append(("rename", src, dst))

    def unlink(self, path: str) -> None:
        self._op()
        if self._names.pop(path, None) is None:
            raise FileNotFoundError(2, "No such file or directory", path)
        self._dir_pending.append(("unlink", path))

    def fsync_dir(self, path: str) -> None:
        self._op()
        path = path.rstrip("/") or "/"
        keep = []
        for op in self._dir_pending:
            if os.path.dirname(op[1]) == path:
                _apply_dir(self._durable_names, op)
            else:
                keep.append(op)
        self._dir_pending = keep

    def listdir(self, path: str) -> list[str]:
        if self.crashed:
            raise SimulatedCrash("the machine is down")
        path = path.rstrip("/")
        if path not in self._dirs:
            raise FileNotFoundError(2, "No such file or directory", path)
        return [os.path.basename(p) for p in self._names if os.path.dirname(p) == path]

    def exists(self, path: str) -> bool:
        if self.crashed:
            raise SimulatedCrash("the machine is down")
        return path in self._names or path.rstrip("/") in self._dirs

    def getsize(self, path: str) -> int:
        inode = self._names.get(path)
        if inode is None:
            raise FileNotFoundError(2, "No such file or directory", path)
        return len(inode.data)

    def makedirs(self, path: str) -> None:
        # Directories are created once, before anything is written into them: durable at once.
        self._dirs.add(path.rstrip("/"))

    # -- helpers -----------------------------------------------------------------------------------
    def _handle(self, fd: int) -> list:
        handle = self._fds.get(fd)
        if handle is None:
            raise OSError(9, "Bad file descriptor")
        return handle

    def _check_dir(self, path: str) -> None:
        if os.path.dirname(path) not in self._dirs:
            raise FileNotFoundError(2, "No such file or directory", path)

    @staticmethod
    def _truncate(inode: _Inode, length: int) -> None:
        del inode.data[length:]
        inode.pending.append((_TRUNCATE, length))

    def durable_names(self) -> list[str]:
        """The paths that would exist after a crash losing every unsynced operation (tests)."""
        return sorted(self._durable_names)


def _apply_dir(names: dict, op: tuple) -> None:
    kind = op[0]
    if kind == "link":
        names[op[1]] = op[2]
    elif kind == "rename":
        inode = names.pop(op[1], None)
        if inode is not None:
            names[op[2]] = inode
    else:
        names.pop(op[1], None)
