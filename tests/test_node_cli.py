"""`python -m raftnode`: documented flags, clear errors for bad ones, graceful SIGTERM."""

import os
import signal
import subprocess
import sys

from raftnode.localcluster import NODE_PACKAGE_PARENT, LocalCluster


def run(*args, timeout=20):
    env = dict(os.environ, PYTHONPATH=NODE_PACKAGE_PARENT)
    return subprocess.run([sys.executable, "-m", "raftnode", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_help_documents_every_flag_of_the_contract():
    out = run("--help")
    assert out.returncode == 0
    for flag in ("--id", "--cluster", "--client-listen", "--peer-listen", "--data-dir", "--log-file",
                 "--election-timeout", "--heartbeat", "--tick", "--request-timeout", "--no-pre-vote",
                 "--no-check-quorum", "--snapshot-every", "--bug"):
        assert flag in out.stdout, flag


def test_bad_flags_are_rejected_with_a_message_naming_the_problem(tmp_path):
    base = ["--data-dir", str(tmp_path)]
    out = run("--id", "n1", "--cluster", "n1=127.0.0.1:1", *base)
    assert out.returncode == 2 and "client_host:port" in out.stderr
    out = run("--id", "n9", "--cluster", "n1=127.0.0.1:1/127.0.0.1:2", *base)
    assert out.returncode == 2 and "n9" in out.stderr
    out = run("--id", "n1", "--cluster", "n1=127.0.0.1:1/127.0.0.1:2", "--bug", "typo", *base)
    assert out.returncode == 2 and "typo" in out.stderr
    out = run("--id", "n1", "--cluster", "n1=127.0.0.1:1/127.0.0.1:2", "--election-timeout", "300-100", *base)
    assert out.returncode == 2 and "election" in out.stderr


def test_sigterm_stops_the_node_cleanly_and_logs_stop():
    with LocalCluster(3) as cluster:
        cluster.wait_for_leader()
        node = cluster.ids[0]
        assert cluster.kill(node, signal.SIGTERM) == 0
        events = cluster.log_events(node)
        assert events[-1]["event"] == "stop" and events[-1]["reason"] == "SIGTERM"
