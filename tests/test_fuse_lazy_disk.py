"""The lazy disk (chaos.lazydisk) on plain programs: what survives a drop is exactly what was
fsynced, directory entries included, and nothing lost can be read back afterwards."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from chaos import lazydisk
from chaos.lazydisk import LazyMount

pytestmark = pytest.mark.timeout(120)

REASON = lazydisk.unavailable_reason()
if REASON and os.environ.get("CI"):
    pytest.fail(f"lazy disk tests cannot run in CI: {REASON}", pytrace=False)
if REASON:
    pytest.skip(REASON, allow_module_level=True)


@pytest.fixture
def disk(tmp_path):
    mount = LazyMount.start(str(tmp_path / "mnt"), str(tmp_path / "control.sock"),
                            fsname=lazydisk.fs_name(os.getpid(), None, "test", "n1"),
                            log_file=str(tmp_path / "lazydisk.log"))
    try:
        yield mount
    finally:
        mount.stop()
    assert not lazydisk.is_mounted(mount.mountpoint)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_APPEND, sync=False):
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_write_fsync_write_rename_drop_keeps_exactly_the_fsynced_write(disk):
    d = disk.mountpoint
    write(f"{d}/f", b"A", sync=True)
    fsync_dir(d)
    write(f"{d}/f", b"B")
    os.rename(f"{d}/f", f"{d}/g")
    assert os.listdir(d) == ["g"] and read(f"{d}/g") == b"AB"
    lost = disk.drop()
    assert lost["unsynced_bytes"] == 1 and lost["unsynced_dirs"] == 1
    assert os.listdir(d) == ["f"]
    assert read(f"{d}/f") == b"A"


def test_a_fsynced_file_whose_creation_was_not_fsynced_is_lost(disk):
    d = disk.mountpoint
    write(f"{d}/new", b"data", sync=True)
    disk.drop()
    assert os.listdir(d) == []


def test_an_unlink_without_a_directory_fsync_is_undone(disk):
    d = disk.mountpoint
    write(f"{d}/keep", b"x", sync=True)
    fsync_dir(d)
    os.unlink(f"{d}/keep")
    disk.drop()
    assert read(f"{d}/keep") == b"x"
    os.unlink(f"{d}/keep")
    fsync_dir(d)
    disk.drop()
    assert os.listdir(d) == []


def test_an_atomic_replace_is_all_or_nothing(disk):
    d = disk.mountpoint
    write(f"{d}/state", b"old", sync=True)
    fsync_dir(d)
    write(f"{d}/state.tmp", b"new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, sync=True)
    os.replace(f"{d}/state.tmp", f"{d}/state")
    disk.drop()
    assert sorted(os.listdir(d)) == ["state"] and read(f"{d}/state") == b"old"
    write(f"{d}/state.tmp", b"new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, sync=True)
    os.replace(f"{d}/state.tmp", f"{d}/state")
    fsync_dir(d)
    disk.drop()
    assert sorted(os.listdir(d)) == ["state"] and read(f"{d}/state") == b"new"


def test_truncation_and_subdirectories_follow_the_same_rules(disk):
    d = disk.mountpoint
    os.mkdir(f"{d}/sub")
    fsync_dir(d)
    write(f"{d}/sub/log", b"0123456789", sync=True)
    fsync_dir(f"{d}/sub")
    fd = os.open(f"{d}/sub/log", os.O_WRONLY)
    os.ftruncate(fd, 4)
    os.close(fd)
    os.mkdir(f"{d}/lost-dir")
    disk.drop()
    assert sorted(os.listdir(d)) == ["sub"]
    assert read(f"{d}/sub/log") == b"0123456789"


def test_a_tear_keeps_a_prefix_of_the_last_unsynced_write(disk):
    d = disk.mountpoint
    write(f"{d}/log", b"synced|", sync=True)
    fsync_dir(d)
    write(f"{d}/log", b"x" * 1000)
    result = disk.tear(seed=3)
    data = read(f"{d}/log")
    assert data.startswith(b"synced|") and set(data[7:]) <= {ord("x")}
    assert 7 <= len(data) < 1007 and result["kept_bytes"] == len(data) - 7
    # the same state and seed tear at the same byte
    write(f"{d}/log", b"x" * (1007 - len(data)))
    fd = os.open(f"{d}/log", os.O_WRONLY)
    os.ftruncate(fd, 7)
    os.fsync(fd)
    os.close(fd)
    write(f"{d}/log", b"x" * 1000)
    assert disk.tear(seed=3)["kept_bytes"] == result["kept_bytes"]


def test_a_reader_that_saw_unsynced_data_cannot_read_it_after_the_drop(disk):
    """direct_io: the page cache holds nothing, so a file open across the drop reads the disk
    (without it, this handle reads the dropped overwrite back from the kernel's cache)."""
    d = disk.mountpoint
    write(f"{d}/f", b"durable", sync=True)
    fsync_dir(d)
    fd = os.open(f"{d}/f", os.O_RDWR)
    os.pwrite(fd, b"VOLATIL", 0)  # same size: nothing tells the kernel the file changed
    os.close(fd)
    with open(f"{d}/f", "rb", buffering=0) as f:
        assert f.read() == b"VOLATIL"
        disk.drop()
        f.seek(0)
        assert f.read() == b"durable"
    assert read(f"{d}/f") == b"durable"


def test_another_process_sees_the_same_files_and_stats_count_what_is_unsynced(disk):
    d = disk.mountpoint
    code = ("import os; fd = os.open(%r, os.O_WRONLY | os.O_CREAT); os.write(fd, b'x' * 100); os.close(fd)"
            % f"{d}/child")
    subprocess.run([sys.executable, "-c", code], check=True)
    stats = disk.stats()
    assert stats["unsynced_bytes"] == 100 and stats["unsynced_files"] == 1 and stats["unsynced_dirs"] == 1
    disk.sync()
    assert disk.stats()["unsynced_bytes"] == 0
    disk.drop()
    assert read(f"{d}/child") == b"x" * 100


def test_clean_unmounts_a_dead_owners_disk_and_leaves_a_live_ones(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = LazyMount.start(str(tmp_path / "orphan"), str(tmp_path / "orphan.sock"),
                             fsname=lazydisk.fs_name(dead.pid, None, "crashed", "n1"))
    live = LazyMount.start(str(tmp_path / "live"), str(tmp_path / "live.sock"),
                           fsname=lazydisk.fs_name(os.getpid(), None, "live", "n1"))
    try:
        daemon, orphan.proc = orphan.proc, None  # as after a controller crash: nobody stops it
        removed = lazydisk.clean_mounts()
        assert daemon.wait(timeout=10) is not None  # its daemon is gone too
        assert str(tmp_path / "orphan") in removed
        assert not lazydisk.is_mounted(str(tmp_path / "orphan"))
        assert lazydisk.is_mounted(str(tmp_path / "live"))
    finally:
        live.stop()
        orphan.stop()
    assert not lazydisk.is_mounted(str(tmp_path / "live"))
