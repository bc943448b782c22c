"""`splitbrain cluster up|status|down` and `clean`, driven through the provision CLI's parser."""

import argparse
import json
import os
import time

import pytest

from chaos.provision import cli
from systems.raftnode.db import get_status

pytestmark = pytest.mark.timeout(120)


def run(argv, capsys):
    parser = argparse.ArgumentParser(prog="splitbrain")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def answers(url, timeout=15.0) -> bool:
    """/status answers within timeout (a loaded machine can stall a node for seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get_status(url, timeout=2.0) is not None:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SPLITBRAIN_STATE_DIR", str(tmp_path))
    return tmp_path


def test_cluster_up_status_down_with_the_local_provisioner(state_dir, capsys):
    name = f"t{os.getpid()}"
    address = f"127.{100 + os.getpid() % 100}.9.11"
    code, out, err = run(["cluster", "up", "--provisioner", "local", "--nodes", "3", "--name", name,
                          "--base-address", address, "--json"], capsys)
    try:
        assert code == 0, err
        nodes = json.loads(out)["nodes"]
        assert [n["id"] for n in nodes] == ["n1", "n2", "n3"]
        assert nodes[0]["url"] == f"http://{address}:8000"
        assert answers(nodes[0]["url"])      # still running after the command

        code, out, _ = run(["cluster", "up", "--provisioner", "local", "--nodes", "3", "--name", name,
                            "--base-address", address], capsys)
        assert code == 255  # already up

        # a detached cluster is not a crashed run: clean leaves it alone
        run(["clean"], capsys)
        assert answers(nodes[0]["url"])

        code, out, _ = run(["cluster", "status", "--name", name, "--json"], capsys)
        assert code == 0
        roles = [row["status"]["role"] for row in json.loads(out)["nodes"] if row["status"]]
        assert len(roles) == 3
    finally:
        code, out, _ = run(["cluster", "down", "--name", name], capsys)
    assert code == 0
    assert get_status(nodes[0]["url"], timeout=0.5) is None
    code, _, err = run(["cluster", "status", "--name", name], capsys)
    assert code == 255 and "no cluster" in err


def test_cluster_names_are_checked(state_dir, capsys):
    with pytest.raises(ValueError, match="cluster name"):
        run(["cluster", "down", "--name", "../etc"], capsys)


@pytest.mark.docker
@pytest.mark.timeout(300)
def test_cluster_up_status_down_with_docker(state_dir, capsys, node_image):
    from chaos.provision.base import docker_client
    from chaos.provision.cleanup import run_resources

    name = f"t{os.getpid()}"
    code, out, err = run(["cluster", "up", "--provisioner", "docker", "--nodes", "3", "--name", name,
                          "--subnet", "10.77.231.0/24", "--json"], capsys)
    try:
        assert code == 0, err
        assert json.loads(out) == {"nodes": [{"id": f"n{i}", "url": f"http://10.77.231.{10 + i}:8000"}
                                             for i in (1, 2, 3)]}
        code, out, _ = run(["cluster", "status", "--name", name], capsys)
        assert code == 0 and out.count("term") == 3
    finally:
        code, _, _ = run(["cluster", "down", "--name", name], capsys)
    assert code == 0
    assert run_resources(f"cluster-{name}", docker_client()) == []


@pytest.mark.docker
def test_image_build_prints_the_ready_tag(capsys, node_image):
    code, out, _ = run(["image", "build"], capsys)
    assert code == 0 and out.startswith(f"{node_image} ready in ")
