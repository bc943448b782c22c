"""Build a system's image from a Docker build context (`splitbrain image build [--db NAME]`).

1. The base: the stock `debian:bookworm-slim` when it is present or can be pulled; otherwise
   `splitbrain-base:bookworm`, made once with debootstrap from the host's own Debian mirror
   (chaos/provision/mkbase.sh: python3, iptables, iproute2, procps, tini) and cached:
   later builds skip it while it exists.
2. The system's image from its context's Dockerfile with `--build-arg BASE=<base>`, labelled with
   a hash of the build context; a build is skipped when an image with that hash is already tagged.

A system names its context and tag (systems/raftnode/image.py builds node_image/ into
splitbrain-node:latest; examples/etcd builds its own).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import sys
import time

from chaos.provision.apt_sources import host_mirror
from chaos.provision.base import ProvisionError, docker_client

MKBASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mkbase.sh")

STOCK_BASE = "debian:bookworm-slim"
BASE_TAG = "splitbrain-base:bookworm"
CONTEXT_LABEL = "splitbrain.context"
LOCK_PATH = os.path.join(os.environ.get("TMPDIR", "/tmp"), "splitbrain-image-build.lock")


def _log(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _build_lock():
    """One image build at a time on this machine (parallel test sessions share the images)."""
    with open(LOCK_PATH, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _image(client, tag: str):
    import docker.errors

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def context_files(context_dir: str, include: tuple[str, ...] = ()) -> list[str]:
    """The files the build uses (relative paths, sorted): the Dockerfile, .dockerignore, and the
    files under each `include` path (a file or a folder of the context)."""
    files = ["Dockerfile", ".dockerignore"]
    for part in include:
        top = os.path.join(context_dir, part)
        if os.path.isfile(top):
            files.append(part)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
            for name in sorted(filenames):
                if not name.endswith((".pyc", ".pyo")):
                    files.append(os.path.relpath(os.path.join(dirpath, name), context_dir))
    return [f for f in files if os.path.isfile(os.path.join(context_dir, f))]


def context_hash(base_id: str, context_dir: str, include: tuple[str, ...] = ()) -> str:
    digest = hashlib.sha256(base_id.encode())
    for rel in context_files(context_dir, include):
        digest.update(b"\0" + rel.encode() + b"\0")
        with open(os.path.join(context_dir, rel), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def build_base(client, force: bool = False, suite: str | None = None, tag: str | None = None) -> str:
    """Make splitbrain-base:<suite> (or `tag`) with debootstrap from the host's mirror unless cached."""
    suite = suite or "bookworm"
    tag = tag or f"splitbrain-base:{suite}"
    if not force and _image(client, tag) is not None:
        _log(f"base {tag} is cached")
        return tag
    mirror, suite = host_mirror(suite)
    if os.geteuid() != 0:
        raise ProvisionError(f"{STOCK_BASE} cannot be pulled and building {tag} with debootstrap "
                             "needs root: run `splitbrain image build` as root once")
    _log(f"building {tag} with debootstrap from the host's {suite} mirror (about a minute)")
    started = time.monotonic()
    proc = subprocess.run(["sh", MKBASE, mirror, suite, tag], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise ProvisionError(f"building the base image {tag} failed (exit {proc.returncode}):\n{tail}")
    _log(f"base {tag} built in {time.monotonic() - started:.1f} s")
    return tag


def resolve_base(client, force: bool = False) -> str:
    """The base image to build on: stock Debian if present or pullable, else our debootstrapped one."""
    import docker.errors

    if not force and _image(client, BASE_TAG) is not None:
        return BASE_TAG  # built here before: keep using it, no registry round trip
    if _image(client, STOCK_BASE) is not None:
        return STOCK_BASE
    try:
        repo, tag = STOCK_BASE.split(":")
        client.images.pull(repo, tag=tag)
        _log(f"pulled {STOCK_BASE}")
        return STOCK_BASE
    except docker.errors.APIError as e:
        _log(f"cannot pull {STOCK_BASE} ({str(e).splitlines()[0][:160]}); using debootstrap")
    return build_base(client, force=force)


def build_image(context_dir: str, tag: str, include: tuple[str, ...] = (), force: bool = False,
                base: str | None = None) -> str:
    """Build an image from context_dir (and its base when needed); return the tag. Skips when
    an image of the same context (the Dockerfile and the `include` files) is already tagged."""
    import docker.errors

    if not os.path.isfile(os.path.join(context_dir, "Dockerfile")):
        raise ProvisionError(f"no image build context at {context_dir} (no Dockerfile there)")
    client = docker_client()
    with _build_lock():
        base = base or resolve_base(client, force=force)
        base_image = _image(client, base)
        if base_image is None:
            raise ProvisionError(f"base image {base!r} is not present")
        digest = context_hash(base_image.id, context_dir, include)
        current = _image(client, tag)
        if not force and current is not None and current.labels.get(CONTEXT_LABEL) == digest:
            return tag
        _log(f"building {tag} on {base}")
        started = time.monotonic()
        try:
            client.images.build(path=context_dir, tag=tag, buildargs={"BASE": base}, rm=True,
                                forcerm=True, nocache=force, labels={CONTEXT_LABEL: digest},
                                network_mode="none" if base != STOCK_BASE else None)
        except docker.errors.BuildError as e:
            lines = [str(chunk.get("stream", chunk.get("error", ""))).rstrip() for chunk in e.build_log]
            tail = "\n".join(line for line in lines if line)[-3000:]
            raise ProvisionError(f"building {tag} failed: {e.msg}\n{tail}") from None
        _log(f"built {tag} in {time.monotonic() - started:.1f} s")
        if current is not None and _image(client, tag).id != current.id:
            # The previous build lost this tag; drop it if no other tag names it (removing by id
            # would delete a tagged image too) and no container uses it.
            try:
                if not client.images.get(current.id).tags:
                    client.images.remove(current.id, noprune=False)
            except docker.errors.APIError:
                pass
    return tag


def register(subparsers) -> None:
    """`splitbrain image build [--db NAME] [--force]`."""
    image = subparsers.add_parser("image", help="the images of a system under test")
    sub = image.add_subparsers(dest="image_command", required=True)
    build = sub.add_parser("build", help="build a system's images (and the Debian base when it cannot be pulled)")
    build.add_argument("--db", default="raftnode", help="the system whose images to build (default raftnode)")
    build.add_argument("--force", action="store_true", help="rebuild the base and the images from nothing")
    build.set_defaults(func=_cmd_build)


def _cmd_build(args) -> int:
    from chaos.registry import RegistryError, load

    started = time.monotonic()
    try:
        factory = load("splitbrain.dbs", args.db)
        builder = getattr(factory, "build_images", None)
        if builder is None:
            print(f"splitbrain image build: {args.db} has no images to build", file=sys.stderr)
            return 0
        tags = builder(force=args.force)
    except (ProvisionError, ValueError, RegistryError) as e:
        print(f"splitbrain image build: {e}", file=sys.stderr)
        return 255
    print(f"{', '.join(tags)} ready in {time.monotonic() - started:.1f} s")
    return 0
