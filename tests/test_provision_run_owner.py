"""Whose run is it: a run's resources carry its controller's pid and start time, and `clean`
removes them once that controller is gone. Gone means no such process, a pid recycled by
another process, or a zombie (a controller killed with its worker is reparented to an init that
may never reap it)."""

import os
import subprocess
import sys
import time

import pytest

from chaos.provision.base import is_zombie, owner_alive, process_start_ticks


def test_this_process_is_a_live_owner():
    assert owner_alive(os.getpid(), process_start_ticks(os.getpid()))


def test_a_missing_or_malformed_owner_is_dead():
    assert not owner_alive(None)
    assert not owner_alive("not a pid")
    assert not owner_alive(0)
    assert not owner_alive(-5)


def test_a_recycled_pid_is_not_the_owner():
    start = process_start_ticks(os.getpid())
    assert not owner_alive(os.getpid(), str(int(start) + 1))


@pytest.mark.timeout(20)
def test_an_exited_owner_nobody_reaped_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not is_zombie(child.pid):
        start = start or process_start_ticks(child.pid)
        time.sleep(0.01)
    try:
        assert is_zombie(child.pid)   # exited, not yet waited for
        assert not owner_alive(child.pid)
        assert not owner_alive(child.pid, start)
    finally:
        child.wait()
    assert not owner_alive(child.pid)
