import os
import sys

# Make the node package importable from a plain checkout (it lives under node_image/ so that the
# image build context holds it); `pip install -e .` maps it the same way.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "node_image")):
    if path not in sys.path:
        sys.path.insert(0, path)


def pytest_addoption(parser):
    parser.addoption("--sim-seeds", type=int, default=int(os.environ.get("SPLITBRAIN_SIM_SEEDS", "1000")),
                     help="how many simulator seeds the randomized Raft simulation test runs (default 1000)")
    parser.addoption("--sim-first-seed", type=int, default=0, help="first simulator seed")


import shutil
import subprocess

import pytest


def _docker_info_error():
    """None when a Docker engine answers, else the error text."""
    if shutil.which("docker") is None:
        return "the docker client is not installed (bootstrap.sh installs Debian's docker.io)"
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "docker info did not answer within 30 s"
    if proc.returncode != 0:
        return (proc.stderr or proc.stdout).strip() or f"docker info exited {proc.returncode}"
    return None


@pytest.fixture(scope="session")
def docker_engine():
    """A running Docker engine. In CI its absence fails the test (never a silent skip); on a
    developer's machine the test is skipped with the engine's own error."""
    error = _docker_info_error()
    if error is not None:
        message = f"Docker engine unavailable: {error}"
        print(message)
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the Docker tests: bootstrap.sh starts dockerd)")
        pytest.skip(message)
    return True


@pytest.fixture(scope="session")
def node_image(docker_engine):
    """The node image tag, built once per session (cached by the image builder)."""
    from systems.raftnode.image import build_node_image

    return build_node_image()


@pytest.fixture(scope="session")
def porcupine_helper():
    """The path of the built porcupine helper. Without a Go toolchain the test is skipped on a
    developer's machine and fails in CI (bootstrap.sh builds it; a silent skip would hide that)."""
    from checkers import porcupine

    try:
        return porcupine.ensure_binary()
    except porcupine.PorcupineUnavailable as e:
        message = f"porcupine helper unavailable: {e}"
        print(message)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
