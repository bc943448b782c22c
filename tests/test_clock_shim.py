"""The clock shim on plain processes: a probe under LD_PRELOAD sees its monotonic and wall
clocks moved as the spec says, its timed waits stretched by the rate without spinning, strobes
flipping on time from inside the process, and spec changes felt during a wait. No node, no DB:
the mechanism alone (tests/test_faults_clock.py checks it inside nodes' environments)."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from chaos.provision import clockshim
from chaos.provision.clockshim import REAL_TIME, ClockSpec
from tests.clock_probe import PROBE

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def library():
    reason = clockshim.unavailable_reason()
    if reason:
        pytest.skip(reason)
    return clockshim.ensure_library()


@pytest.fixture
def spec_file(tmp_path):
    path = str(tmp_path / "spec")
    clockshim.write_spec(path, REAL_TIME.text())
    return path


def probe(library, spec_file, *args, env_file=True):
    env = dict(os.environ, **clockshim.environment(library, spec_file))
    if not env_file:
        env.pop(clockshim.SPEC_ENV)
    out = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout), out.stderr


def write(spec_file, spec: ClockSpec) -> ClockSpec:
    clockshim.write_spec(spec_file, spec.text())
    return spec


def test_the_library_needs_nothing_newer_than_glibc_2_17_so_any_glibc_image_loads_it(library):
    # built on the host and copied into containers: a newer symbol version would make the
    # dynamic loader drop it silently (and the clock faults with it)
    symbols = subprocess.run(["objdump", "-T", library], capture_output=True, text=True, check=True).stdout
    versions = {tuple(int(x) for x in v.split(".")) for v in re.findall(r"GLIBC_([0-9.]+)", symbols)}
    assert versions and max(versions) <= (2, 17), sorted(versions)


def test_both_clocks_read_the_spec_exactly_as_the_controller_computes_it(library, spec_file):
    spec = write(spec_file, ClockSpec(anchor=time.monotonic() - 30.0, skew=100.0, rate=0.5))
    sample, _ = probe(library, spec_file, "read")
    expected = spec.skew_at(sample["real_mono"])   # 100 s ahead, minus 15 s lost in 30 s at half speed
    assert abs(sample["mono_skew"] - expected) < 0.001
    assert abs(sample["wall_skew"] - expected) < 0.001


def test_a_monotonic_offset_moves_only_the_monotonic_clocks(library, spec_file):
    write(spec_file, ClockSpec(mono_offset=30.0))
    sample, _ = probe(library, spec_file, "read")
    assert abs(sample["mono_skew"] - 30) < 0.001 and abs(sample["wall_skew"]) < 0.001


def test_without_a_spec_file_variable_the_library_is_inert(library, spec_file):
    write(spec_file, ClockSpec(anchor=time.monotonic(), skew=100.0))
    sample, _ = probe(library, spec_file, "read", env_file=False)
    assert abs(sample["mono_skew"]) < 0.001 and abs(sample["wall_skew"]) < 0.001


def test_at_half_rate_every_kind_of_timed_wait_takes_twice_as_long_and_none_spins(library, spec_file):
    write(spec_file, ClockSpec(anchor=time.monotonic(), rate=0.5))
    waits, _ = probe(library, spec_file, "waits", 0.4)
    assert set(waits) == {"sleep", "event", "lock", "asyncio", "epoll", "select"}
    for name, took in waits.items():
        assert 0.78 < took["real"] < 1.2, (name, took)   # 0.4 s of its clock, 0.8 s of ours
        assert took["cpu"] < 0.1, (name, took)          # slept, not spun


def test_at_double_rate_timed_waits_take_half_as_long(library, spec_file):
    write(spec_file, ClockSpec(anchor=time.monotonic(), rate=2.0))
    waits, _ = probe(library, spec_file, "waits", 0.4)
    for name, took in waits.items():
        assert 0.19 < took["real"] < 0.35, (name, took)


def test_a_slowed_clock_advances_at_its_rate(library, spec_file):
    write(spec_file, ClockSpec(anchor=time.monotonic(), rate=0.25))
    first, last = probe(library, spec_file, "series", 2, 0.5)[0]
    real = last["real_mono"] - first["real_mono"]
    assert abs((last["mono"] - first["mono"]) / real - 0.25) < 0.01
    assert abs((last["wall"] - first["wall"]) / real - 0.25) < 0.01


def test_a_50_ms_strobe_flips_on_time_inside_the_process_and_stops_after_count(library, spec_file):
    start = time.monotonic() + 1.0   # after the probe is up
    spec = write(spec_file, ClockSpec(anchor=start, strobe_start=start, strobe_delta=2.0, strobe_period=0.05,
                                      strobe_count=8))
    samples, _ = probe(library, spec_file, "series", 500, 0.003)
    # Every sample is where the square wave says at the real instant it was taken (but for the
    # microseconds between reading the real clock and the faked one, at a flip).
    flips = [start + 0.05 * k for k in range(8)]
    periods = set()
    for s in samples:
        t = s["real_mono"]
        if min(abs(t - f) for f in flips) > 0.001:
            assert abs(s["mono_skew"] - spec.skew_at(t)) < 0.001, (t - start, s["mono_skew"])
            assert abs(s["wall_skew"] - spec.skew_at(t)) < 0.001
        periods.add(min(max(int((t - start) // 0.05), -1), 8))
    assert periods == set(range(-1, 9))      # before, each of the 8 periods, and after (down)
    assert samples[-1]["real_mono"] > start + 0.5 and abs(samples[-1]["mono_skew"]) < 0.001


def test_a_bump_forward_during_a_sleep_ends_it_and_a_bump_back_lengthens_it(library, spec_file):
    env = dict(os.environ, **clockshim.environment(library, spec_file))
    code = "import time; time.sleep(float(__import__('sys').argv[1]))"
    started = time.monotonic()
    sleeper = subprocess.Popen([sys.executable, "-c", code, "5"], env=env)
    try:
        time.sleep(0.5)
        write(spec_file, ClockSpec(anchor=time.monotonic(), skew=10.0))   # its deadline has passed
        sleeper.wait(timeout=10)
    finally:
        sleeper.kill()
    assert time.monotonic() - started < 1.5
    write(spec_file, REAL_TIME)
    started = time.monotonic()
    sleeper = subprocess.Popen([sys.executable, "-c", code, "0.6"], env=env)
    try:
        time.sleep(0.3)
        write(spec_file, ClockSpec(anchor=time.monotonic(), skew=-0.8))    # its clock went back 0.8 s
        sleeper.wait(timeout=10)
    finally:
        sleeper.kill()
    assert 1.3 < time.monotonic() - started < 2.5


def test_a_program_that_overwrites_its_environment_keeps_its_clock_fault(library, spec_file):
    # as redis and nginx do to set their process title: the shim keeps its own copy of the path
    write(spec_file, ClockSpec(anchor=time.monotonic(), skew=100.0))
    code = ("import ctypes, time\n"
            "libc = ctypes.CDLL(None)\n"
            "environ = ctypes.POINTER(ctypes.c_char_p).in_dll(libc, 'environ')\n"
            "i = 0\n"
            "while environ[i] is not None:\n"
            "    entry = ctypes.cast(environ, ctypes.POINTER(ctypes.c_void_p))[i]\n"
            "    ctypes.memset(entry, ord('x'), len(environ[i]))\n"
            "    i += 1\n"
            "time.sleep(0.05)\n"   # past the shim's next look at its spec file
            "print(time.time())\n")
    env = dict(os.environ, **clockshim.environment(library, spec_file))
    # (without its copy the shim would lose the spec: the clock back 100 s, the sleep 100 s long)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=20)
    assert abs(float(out.stdout) - time.time() - 100) < 1


def test_an_unreadable_spec_means_real_time_and_one_line_on_stderr(library, spec_file):
    with open(spec_file, "w") as f:
        f.write("+5 x0.5\n")   # a libfaketime spec, not ours
    sample, stderr = probe(library, spec_file, "read")
    assert abs(sample["mono_skew"]) < 0.001
    assert stderr.count("splitbrain clock shim: cannot parse") == 1


def test_thread_hand_offs_stay_fast_under_the_shim(library, spec_file):
    # libfaketime's timed-wait fix made each hand-off between Python threads take ~50 ms
    write(spec_file, ClockSpec(anchor=time.monotonic(), skew=5.0))
    code = ("import queue, threading, time\n"
            "a, b = queue.Queue(), queue.Queue()\n"
            "t = threading.Thread(target=lambda: [b.put(a.get()) for _ in range(2000)]); t.start()\n"
            "for i in range(2000): a.put(i); b.get()\n"
            "t.join()\n")
    env = dict(os.environ, **clockshim.environment(library, spec_file))
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert time.monotonic() - started < 10   # 2,000 round trips; at 50 ms each it would be 200 s
