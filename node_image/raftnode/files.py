"""The file layer under raftnode.storage: every file operation the storage makes goes through one.

`OsFiles` is the real one (the default), a thin wrapper over `os`. The simulator substitutes
`raftnode.sim.files.SimFiles`, which keeps the files in memory and, at a simulated power loss,
keeps only what was made durable (plus an adversarial part of what was not), so that the
simulator runs the real `Storage` with its real crash-recovery code.

The interface is deliberately low-level and POSIX-shaped, so that durability is explicit:

    open(path, flags, mode) -> fd     flags are os.O_* (WRONLY, CREAT, EXCL, TRUNC, APPEND)
    write(fd, data) -> n              may write fewer than len(data) bytes, like os.write
    fsync(fd), fdatasync(fd)          make the file's data durable (not its directory entry)
    size(fd) -> int                   current size of an open file
    ftruncate(fd, length), close(fd)
    read_file(path, length=None)      bytes (the first `length` only if given); FileNotFoundError
    replace(src, dst), unlink(path)   directory changes: durable only after fsync_dir
    fsync_dir(path)                   make creations, renames and unlinks in `path` durable
    listdir(path), exists(path), getsize(path), makedirs(path)

The methods look `os` up at call time (not at import), so a test that patches `os.fsync` sees
the storage's calls. The cost is one Python call per operation, far below a system call.
"""

from __future__ import annotations

import os


class OsFiles:
    """The real file system."""

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return os.open(path, flags, mode)

    def write(self, fd: int, data) -> int:
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def size(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def close(self, fd: int) -> None:
        os.close(fd)

    def read_file(self, path: str, length: int | None = None) -> bytes:
        with open(path, "rb") as f:
            return f.read() if length is None else f.read(length)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def getsize(self, path: str) -> int:
        return os.path.getsize(path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)


OS_FILES = OsFiles()
