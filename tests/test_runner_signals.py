"""Ctrl-C and SIGTERM stop a run and still tear everything down; a second Ctrl-C during the
clean-up does not interrupt it. (Against the fake cluster in a subprocess; the Docker version
of this test is in test_e2e_docker.py.)"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{root!r}, {root!r} + "/node_image", {root!r} + "/tests"]
    from chaos.config import RunConfig
    from chaos.runner import Runner
    from fake_node import FakeDB, fake_nemesis_factory

    class SlowTeardownDB(FakeDB):
        def teardown(self):
            time.sleep(1.5)  # long enough for a second signal to arrive meanwhile
            super().teardown()
            open({marker!r}, "w").write("torn down")

    def checker(ops, **kw):
        time.sleep({check_sleep})
        return {{"valid": True}}

    cfg = RunConfig(test_name="sig", nodes=3, nemesis=["kill"], nemesis_interval=1, time_limit={time_limit},
                    concurrency=3, seed=1, provisioner="local", store={store!r})
    db = SlowTeardownDB()
    code = Runner(cfg, db_factory=lambda c, r: db, nemesis_factory=fake_nemesis_factory,
                  checker=checker, render=lambda p: None).execute()
    sys.exit(code)
""")


def start(tmp_path, time_limit=60, check_sleep=0, wait_for="load:"):
    marker = str(tmp_path / "marker")
    store = str(tmp_path / "store")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(root=ROOT, marker=marker, store=store, time_limit=time_limit,
                                    check_sleep=check_sleep))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = os.path.join(store, "latest", "controller.log")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.exists(log) and wait_for in open(log).read():
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the run never reached its load phase")
    time.sleep(0.5)
    return proc, marker, store


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_tears_down_and_exits_255(tmp_path, signum):
    proc, marker, store = start(tmp_path)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 255, err
    assert open(marker).read() == "torn down"
    run_dir = os.path.realpath(os.path.join(store, "latest"))
    results = json.load(open(os.path.join(run_dir, "results.json")))
    assert results["valid"] == "unknown" and "interrupted" in results["reason"]
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["interrupted"] == signal.Signals(signum).name
    # the history up to the signal is on disk and well formed
    from chaos.history import pair_ops, read_jsonl
    ops = read_jsonl(os.path.join(run_dir, "history.jsonl"))
    assert len(ops) > 10
    pair_ops(ops)


def test_a_second_ctrl_c_during_cleanup_does_not_stop_the_cleanup(tmp_path):
    proc, marker, store = start(tmp_path)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.7)  # inside the 1.5 s teardown
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 255
    assert "still cleaning up" in err
    assert open(marker).read() == "torn down"


def test_ctrl_c_while_checking_stops_at_once_after_the_teardown(tmp_path):
    proc, marker, store = start(tmp_path, time_limit=1, check_sleep=60, wait_for="teardown done")
    assert open(marker).read() == "torn down"
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 255
    assert time.monotonic() - started < 10
