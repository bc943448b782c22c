"""The node image: node_image/ (its Dockerfile and the raftnode package) on the splitbrain base."""

from __future__ import annotations

import os

from chaos.provision.image import build_image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The build context: node_image/ of the checkout (SPLITBRAIN_NODE_IMAGE_DIR overrides it).
CONTEXT_DIR = os.environ.get("SPLITBRAIN_NODE_IMAGE_DIR") or os.path.join(REPO_ROOT, "node_image")
CONTEXT_INCLUDE = ("raftnode",)
NODE_TAG = "splitbrain-node:latest"


def build_node_image(force: bool = False, tag: str = NODE_TAG, base: str | None = None,
                     context_dir: str = CONTEXT_DIR) -> str:
    return build_image(context_dir, tag, CONTEXT_INCLUDE, force=force, base=base)


def build_images(force: bool = False) -> list[str]:
    return [build_node_image(force=force)]
