"""`python -m raftnode`: documented flags, clear errors for bad ones, graceful SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from raftnode.localcluster import NODE_PACKAGE_PARENT, LocalCluster, free_ports


def run(*args, timeout=20):
    env = dict(os.environ, PYTHONPATH=NODE_PACKAGE_PARENT)
    return subprocess.run([sys.executable, "-m", "raftnode", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_help_documents_every_flag_of_the_contract():
    out = run("--help")
    assert out.returncode == 0
    for flag in ("--id", "--cluster", "--client-listen", "--peer-listen", "--data-dir", "--log-file",
                 "--election-timeout", "--heartbeat", "--tick", "--request-timeout", "--no-pre-vote",
                 "--no-check-quorum", "--snapshot-every", "--bug", "--peer-secret-file", "--insecure-peers",
                 "--max-client-connections", "--client-idle-timeout"):
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


def run_without_secret(*args, env_secret=None, timeout=20):
    env = {k: v for k, v in os.environ.items() if k != "RAFTNODE_PEER_SECRET"}
    env["PYTHONPATH"] = NODE_PACKAGE_PARENT
    if env_secret is not None:
        env["RAFTNODE_PEER_SECRET"] = env_secret
    return subprocess.run([sys.executable, "-m", "raftnode", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_a_node_without_a_peer_secret_refuses_to_start_naming_both_ways_to_give_one(tmp_path):
    base = ["--id", "n1", "--cluster", "n1=127.0.0.1:1/127.0.0.1:2", "--data-dir", str(tmp_path)]
    out = run_without_secret(*base)
    assert out.returncode == 2
    assert "--peer-secret-file" in out.stderr and "RAFTNODE_PEER_SECRET" in out.stderr
    assert "--insecure-peers" in out.stderr
    assert not (tmp_path / "hardstate.json").exists()


def test_bad_peer_secrets_are_rejected_with_a_message_naming_the_problem(tmp_path):
    base = ["--id", "n1", "--cluster", "n1=127.0.0.1:1/127.0.0.1:2", "--data-dir", str(tmp_path / "d")]
    short = tmp_path / "short"
    short.write_text("tooshort\n")
    out = run_without_secret(*base, "--peer-secret-file", str(short))
    assert out.returncode == 2 and "at least 16" in out.stderr and str(short) in out.stderr
    out = run_without_secret(*base, "--peer-secret-file", str(tmp_path / "missing"))
    assert out.returncode == 2 and "cannot read" in out.stderr
    out = run_without_secret(*base, "--insecure-peers", env_secret="x" * 32)
    assert out.returncode == 2 and "--insecure-peers" in out.stderr and "choose one" in out.stderr


def test_the_secret_may_come_from_the_environment_and_insecure_peers_must_be_explicit(tmp_path):
    for extra, env_secret, mode in (([], "s" * 32, "secret"), (["--insecure-peers"], None, "insecure")):
        peer, client = free_ports(2)
        data = tmp_path / mode
        env = {k: v for k, v in os.environ.items() if k != "RAFTNODE_PEER_SECRET"}
        env["PYTHONPATH"] = NODE_PACKAGE_PARENT
        if env_secret:
            env["RAFTNODE_PEER_SECRET"] = env_secret
        proc = subprocess.Popen([sys.executable, "-m", "raftnode", "--id", "n1", "--quiet",
                                 "--cluster", f"n1=127.0.0.1:{peer}/127.0.0.1:{client}",
                                 "--client-listen", f"127.0.0.1:{client}", "--peer-listen", f"127.0.0.1:{peer}",
                                 "--data-dir", str(data), *extra], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            status = None
            deadline = time.monotonic() + 15
            while status is None and time.monotonic() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{client}/status", timeout=1) as resp:
                        status = json.loads(resp.read())
                except OSError:
                    time.sleep(0.05)
            assert status is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
            assert status["peer_auth"] == mode
        finally:
            proc.terminate()
            proc.wait(10)
