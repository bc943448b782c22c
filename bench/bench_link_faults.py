"""Link faults as asked against as measured from inside the nodes' network namespaces.

A 3-node Docker cluster (or, with --provisioner local, stand-in local nodes in their cgroups);
for each setting, the fault is put on the n1-n2 link (both directions) through the nemesis ops,
then measured with the probes of tests/netprobe.py and healed:

  delay      RTT of 1-byte round trips n1 -> n2 (a delay d each way should give 2 d)
  jitter     the spread of those round trips (p10..p90)
  loss       the share of 2000 numbered UDP datagrams n2 -> n1 that arrive (1 - loss asked)
  bandwidth  kbit/s of a bulk TCP transfer n1 -> n2 after 1 s of warm-up (docker only)

Usage: python bench/bench_link_faults.py [--provisioner docker|local] [--image TAG]
Bounded (a few minutes); only the cluster's own addresses. Not a test: figures for the README.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "node_image")]

from chaos.history import Op  # noqa: E402
from chaos.interfaces import Node  # noqa: E402
from chaos.nemesis import build_nemesis  # noqa: E402
from tests.netprobe import Probes  # noqa: E402

LINK = [["n1", "n2"]]


def docker_cluster(image):
    from systems.raftnode.db import RaftnodeDocker
    db = RaftnodeDocker(f"benchlinks-{os.getpid()}", 3, subnet="10.77.213.0/24", image=image)
    db.setup()
    return db, Probes.docker(db)


def local_stand_ins():
    from chaos.net.iptables import CgroupNet
    from systems.raftnode.db import RaftnodeLocal
    db = RaftnodeLocal(f"benchlinks-{os.getpid()}", 3, base_address="127.0.213.11")
    db.nodes = [Node(f"n{i + 1}", "", str(db.base_address + i)) for i in range(3)]
    db._net = CgroupNet(db.nodes, db.chain, db._cgroup_rel)
    db._net.install()
    for node in db.nodes:
        if db.cgroup_root:
            os.makedirs(os.path.join(db.cgroup_root, node.id), exist_ok=True)
    return db, Probes.local(db)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--provisioner", choices=("docker", "local"), default="docker")
    parser.add_argument("--image", default=None, help="node image tag (default: build it)")
    args = parser.parse_args()
    db, probe = docker_cluster(args.image) if args.provisioner == "docker" else local_stand_ins()
    kinds = ["loss", "delay"] + (["bandwidth"] if args.provisioner == "docker" else [])
    nemesis = build_nemesis(kinds, db, db.nodes, None, random.Random(1))
    n1, n2, _ = db.nodes
    port = iter(range(43000, 44000))

    def op(f, value=None):
        return nemesis.invoke(Op(process="nemesis", type="invoke", f=f, value=value)).value

    try:
        base = probe.rtt(n1, n2, next(port), count=40)
        print(f"{args.provisioner}: no fault: RTT median {base['median_ms']:.2f} ms")
        print("delay each way (asked) | RTT median | p10..p90 | asked RTT")
        for delay, jitter in ((20, 0), (50, 0), (100, 0), (250, 0), (100, 50)):
            op("slow", {"links": LINK, "delay_ms": delay, "jitter_ms": jitter})
            r = probe.rtt(n1, n2, next(port), count=40)
            op("fast")
            print(f"{delay} ± {jitter} ms | {r['median_ms']:.1f} ms | {r['p10_ms']:.1f}..{r['p90_ms']:.1f} ms "
                  f"| {2 * delay} ms")
        print("loss (asked) | delivered (of 2000) | measured loss")
        for loss in (0.05, 0.1, 0.2, 0.4):
            op("lossy", {"links": LINK, "loss": loss})
            d = probe.delivered(n2, n1, next(port), count=2000)
            op("lossless")
            print(f"{loss:.2f} | {d:.4f} | {1 - d:.4f}")
        if "bandwidth" in kinds:
            print("rate (asked) | measured kbit/s | ratio")
            for rate in (128, 512, 2048, 8192):
                op("throttle", {"links": LINK, "rate_kbit": rate})
                kbit = probe.throughput(n1, n2, next(port), seconds=5.0 if rate < 512 else 4.0)
                op("unthrottle")
                print(f"{rate} kbit/s | {kbit:.0f} | {kbit / rate:.3f}")
            print(f"uncapped | {probe.throughput(n1, n2, next(port), seconds=2.0):.0f} |")
    finally:
        nemesis.heal_all()
        if args.provisioner == "local":
            db._net.close()
        db.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
