"""Image builds: a system's build context (here the node image's), when it is rebuilt, and the
debootstrap base."""

import os
import shutil
import subprocess

import pytest

from chaos.provision import image
from chaos.provision.base import ProvisionError, docker_client
from systems.raftnode.image import CONTEXT_DIR, CONTEXT_INCLUDE, build_node_image


def test_the_dockerfile_keeps_a_plain_from_for_users_with_a_registry():
    text = open(os.path.join(CONTEXT_DIR, "Dockerfile")).read()
    assert "ARG BASE=debian:bookworm-slim" in text
    assert "FROM ${BASE}" in text
    assert "--privileged" not in text


def test_the_build_context_is_the_dockerfile_and_the_node_package_only():
    files = image.context_files(CONTEXT_DIR, CONTEXT_INCLUDE)
    assert files[:2] == ["Dockerfile", ".dockerignore"]
    assert "raftnode/__init__.py" in files and "raftnode/__main__.py" in files
    assert not any("__pycache__" in f or f.endswith(".pyc") or f.startswith("base/") for f in files)


def test_the_context_hash_follows_the_node_code_and_the_base(tmp_path):
    context = tmp_path / "node_image"
    shutil.copytree(CONTEXT_DIR, context, ignore=shutil.ignore_patterns("__pycache__", "base"))
    first = image.context_hash("sha256:base1", str(context), CONTEXT_INCLUDE)
    assert image.context_hash("sha256:base1", str(context), CONTEXT_INCLUDE) == first
    assert image.context_hash("sha256:base2", str(context), CONTEXT_INCLUDE) != first
    with open(context / "raftnode" / "__init__.py", "a") as f:
        f.write("\n# changed\n")
    assert image.context_hash("sha256:base1", str(context), CONTEXT_INCLUDE) != first
    (context / "raftnode" / "__pycache__").mkdir(exist_ok=True)
    (context / "raftnode" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    changed = image.context_hash("sha256:base1", str(context), CONTEXT_INCLUDE)
    assert image.context_hash("sha256:base1", str(context), CONTEXT_INCLUDE) == changed  # bytecode does not count


def test_mkbase_without_arguments_prints_its_usage():
    proc = subprocess.run(["sh", image.MKBASE], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage:" in proc.stderr


@pytest.mark.docker
def test_an_up_to_date_image_is_not_rebuilt_and_a_change_rebuilds_it(node_image, tmp_path):
    # A frozen copy of the context, so that edits to the node elsewhere cannot interfere.
    context = tmp_path / "node_image"
    shutil.copytree(CONTEXT_DIR, context, ignore=shutil.ignore_patterns("__pycache__", "base"))
    client = docker_client()
    tag = f"splitbrain-node:test-{os.getpid()}"
    try:
        assert build_node_image(tag=tag, context_dir=str(context)) == tag
        first = client.images.get(tag)
        assert first.labels[image.CONTEXT_LABEL] == image.context_hash(
            client.images.get(image.resolve_base(client)).id, str(context), CONTEXT_INCLUDE)
        build_node_image(tag=tag, context_dir=str(context))
        assert client.images.get(tag).id == first.id
        with open(context / "raftnode" / "__init__.py", "a") as f:
            f.write("\n# a change\n")
        build_node_image(tag=tag, context_dir=str(context))
        assert client.images.get(tag).id != first.id
    finally:
        try:
            client.images.remove(tag, force=True)
        except Exception:  # noqa: BLE001 - not built
            pass


@pytest.mark.docker
def test_a_missing_base_is_a_clear_error(docker_engine):
    with pytest.raises(ProvisionError, match="base image 'splitbrain-base:no-such' is not present"):
        build_node_image(base="splitbrain-base:no-such", tag="splitbrain-node:never")


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("debootstrap") is None, reason="debootstrap needs root")
def test_the_base_image_is_made_from_the_hosts_debian_mirror_with_debootstrap(docker_engine):
    client = docker_client()
    base_tag, node_tag = f"splitbrain-base:test-{os.getpid()}", f"splitbrain-node:test-{os.getpid()}"
    try:
        assert image.build_base(client, force=True, tag=base_tag) == base_tag
        assert client.images.get(base_tag).labels.get("splitbrain.base") == "debootstrap"
        assert build_node_image(tag=node_tag, base=base_tag) == node_tag
        out = client.containers.run(node_tag, ["python3", "-c", "import raftnode; print('ok')"], remove=True,
                                    network_mode="none")
        assert out.strip() == b"ok"
    finally:
        for tag in (node_tag, base_tag):
            try:
                client.images.remove(tag, force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
