"""The simulator's file system keeps, at a power loss, only what POSIX promises plus a random part
of the rest: synced data survives, unsynced writes survive as a prefix (the last possibly torn),
and a name survives only once its directory was fsynced."""

import os
import random

import pytest

from raftnode.sim.files import SimFiles, SimulatedCrash

D = "/d"
CREATE = os.O_WRONLY | os.O_CREAT | os.O_APPEND


def fresh():
    files = SimFiles()
    files.makedirs(D)
    return files


def durable_file(files, name, data):
    fd = files.open(f"{D}/{name}", CREATE)
    files.write(fd, data)
    files.fsync(fd)
    files.close(fd)
    files.fsync_dir(D)


def outcomes(build, seeds=range(200)):
    """What the file system holds after a power loss, over many seeds: {path: bytes} each."""
    seen = []
    for seed in seeds:
        files = build()
        files.power_loss(random.Random(seed))
        seen.append({name: files.read_file(f"{D}/{name}") for name in sorted(files.listdir(D))})
    return seen


def test_synced_data_under_a_synced_name_always_survives():
    def build():
        files = fresh()
        durable_file(files, "a", b"hello")
        return files
    assert all(state == {"a": b"hello"} for state in outcomes(build))


def test_unsynced_appends_survive_as_a_prefix_sometimes_torn():
    def build():
        files = fresh()
        durable_file(files, "a", b"base|")
        fd = files.open(f"{D}/a", os.O_WRONLY | os.O_APPEND)
        for chunk in (b"one|", b"two|", b"three|"):
            files.write(fd, chunk)
        return files
    full = b"base|one|two|three|"
    contents = {state["a"] for state in outcomes(build)}
    assert b"base|" in contents and full in contents
    assert all(c.startswith(b"base|") for c in contents), "synced data is never lost"
    torn = [c for c in contents if not full.startswith(c)]
    cut = [c for c in contents if full.startswith(c) and c not in (b"base|", b"base|one|", b"base|one|two|", full)]
    assert torn or cut, "some write was torn (cut short, or its tail left as zeros)"
    assert all(full.startswith(c.rstrip(b"\0")) for c in contents), "never bytes that were not written"


def test_a_created_file_without_a_directory_fsync_may_vanish_even_if_its_data_was_synced():
    def build():
        files = fresh()
        fd = files.open(f"{D}/new", CREATE)
        files.write(fd, b"data")
        files.fsync(fd)
        return files
    states = outcomes(build)
    assert {} in states and {"new": b"data"} in states


def test_a_rename_is_durable_only_after_the_directory_fsync():
    def build(sync_dir):
        def make():
            files = fresh()
            durable_file(files, "target", b"old")
            durable_file(files, "tmp", b"new")
            files.replace(f"{D}/tmp", f"{D}/target")
            if sync_dir:
                files.fsync_dir(D)
            return files
        return make
    assert all(state == {"target": b"new"} for state in outcomes(build(True)))
    states = outcomes(build(False))
    assert {"target": b"old", "tmp": b"new"} in states and {"target": b"new"} in states


def test_directory_operations_on_different_names_may_survive_out_of_order():
    def build():
        files = fresh()
        durable_file(files, "first", b"1")
        durable_file(files, "second", b"2")
        files.unlink(f"{D}/first")
        files.unlink(f"{D}/second")
        return files
    assert {"first": b"1"} in outcomes(build), "the later unlink survived, the earlier did not"


def test_an_operation_never_outlives_an_earlier_lost_one_on_the_same_name():
    def build():
        files = fresh()
        fd = files.open(f"{D}/tmp", CREATE)
        files.write(fd, b"v")
        files.fsync(fd)
        files.close(fd)
        files.replace(f"{D}/tmp", f"{D}/final")
        return files
    for state in outcomes(build):
        assert state in ({}, {"tmp": b"v"}, {"final": b"v"})


def test_an_armed_crash_stops_every_operation_after_the_chosen_one():
    files = fresh()
    files.arm(2)
    fd = files.open(f"{D}/a", CREATE)
    files.write(fd, b"x")
    with pytest.raises(SimulatedCrash):
        files.fsync(fd)
    with pytest.raises(SimulatedCrash):
        files.read_file(f"{D}/a")
    files.disarm()
    files.power_loss(random.Random(0))
    fd = files.open(f"{D}/b", CREATE)  # the machine is back: operations work again
    files.close(fd)


def test_writeback_makes_everything_durable():
    files = fresh()
    fd = files.open(f"{D}/a", CREATE)
    files.write(fd, b"dirty")
    files.writeback()
    files.power_loss(random.Random(1))
    assert files.read_file(f"{D}/a") == b"dirty"
