"""Churn: random crashes, restarts and partitions while clients write; nothing acknowledged is lost."""

import random

import pytest

from raftnode.sim.lab import Lab
from raftnode.sim.workload import SimClient


def _churn(lab, seconds, unreliable):
    rng = random.Random(42)
    keys = ["a", "b", "c"]
    end = lab.now + int(seconds * 1e6)
    clients = [SimClient(lab, f"c{i}", keys, random.Random(i)) for i in range(4)]
    for c in clients:
        c.start(lab.now + 1000, end)
    lab.set_unreliable(unreliable)
    while lab.now < end:
        r = rng.random()
        victim = rng.choice(lab.ids)
        if r < 0.2:
            lab.disconnect(victim)
        elif r < 0.5:
            lab.connect(victim)
        elif r < 0.6:
            lab.crash(victim)
        elif r < 0.8 and not lab.nodes[victim].up:
            lab.start(victim)
        lab.run_for(rng.uniform(0.05, 0.7))
    lab.set_unreliable(False)
    for i in lab.ids:
        lab.start(i)
        lab.connect(i)
    lab.run_for(1.0)
    lab.one(lab.token(), len(lab.ids))
    lab.checker.final()
    assert lab.stats.writes_acked >= 50, lab.stats
    for key in keys:
        lab.read(lab.check_one_leader(), key)


@pytest.mark.parametrize("unreliable", [False, True], ids=["reliable", "unreliable"])
def test_churn_keeps_every_acknowledged_write(unreliable):
    _churn(Lab(5, seed=21 if unreliable else 20), seconds=20, unreliable=unreliable)


def test_churn_with_compaction_keeps_every_acknowledged_write():
    _churn(Lab(5, seed=22, snapshot_every=20), seconds=15, unreliable=True)
