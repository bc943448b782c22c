"""Provisioning figures: image build from nothing, and `setup` to a healthy cluster.

    python bench/bench_provision.py                  # setup of 5 docker nodes and 5 local nodes, 3 trials
    python bench/bench_provision.py --from-nothing   # also: debootstrap base + node image, no cache
    python bench/bench_provision.py --nodes 3 --trials 5 --skip-local

The from-nothing build uses its own tags (splitbrain-base:bench, splitbrain-node:bench) and
removes them afterwards, so images that running clusters use are never touched. "Healthy" is
what setup() waits for: a leader that a majority of nodes agree on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "node_image")]

from chaos.provision.base import NodeOptions, docker_client  # noqa: E402
from chaos.provision.docker import DockerDB  # noqa: E402
from chaos.provision.image import build_base, build_image  # noqa: E402
from chaos.provision.local import LocalDB  # noqa: E402


def from_nothing() -> None:
    client = docker_client()
    base_tag, node_tag = "splitbrain-base:bench", "splitbrain-node:bench"
    try:
        t0 = time.monotonic()
        build_base(client, force=True, tag=base_tag)
        t1 = time.monotonic()
        build_image(force=True, tag=node_tag, base=base_tag)
        t2 = time.monotonic()
        print(f"image from nothing: base (debootstrap + import) {t1 - t0:.1f} s, "
              f"node image {t2 - t1:.1f} s, total {t2 - t0:.1f} s")
    finally:
        for tag in (node_tag, base_tag):
            try:
                client.images.remove(tag, force=True)
            except Exception:  # noqa: BLE001 - not built
                pass


def trials(name: str, make, count: int, nodes: int) -> None:
    setups, teardowns = [], []
    for i in range(count):
        db = make(i)
        t0 = time.monotonic()
        try:
            db.setup(nodes)
            setups.append(time.monotonic() - t0)
        finally:
            t1 = time.monotonic()
            db.teardown()
            teardowns.append(time.monotonic() - t1)
    print(f"{name}: setup to an elected leader, {nodes} nodes: median {statistics.median(setups):.2f} s, "
          f"max {max(setups):.2f} s over {count}; teardown median {statistics.median(teardowns):.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from-nothing", action="store_true", help="time a base + image build without caches")
    parser.add_argument("--nodes", type=int, choices=(3, 5, 7), default=5)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--subnet", default="10.77.240.0/24")
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument("--skip-local", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.trials <= 20:
        parser.error("--trials must be within 1..20")
    print(f"cpus: {os.cpu_count()}, load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.from_nothing:
        from_nothing()
    if not args.skip_docker:
        tag = build_image()
        trials("docker", lambda i: DockerDB(f"bench-{os.getpid()}-{i}", NodeOptions(), nodes=args.nodes,
                                            subnet=args.subnet, image=tag), args.trials, args.nodes)
    if not args.skip_local:
        trials("local", lambda i: LocalDB(f"bench-{os.getpid()}-{i}", NodeOptions(), nodes=args.nodes,
                                          base_address="127.0.240.11"), args.trials, args.nodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
