"""Randomized simulation: every seed keeps every Raft invariant under crashes, partitions, loss.

Runs `--sim-seeds` seeds (default 1000) from `--sim-first-seed` on 2 worker processes. Each seed
simulates 30 s with at least one crash, one partition and 100 acknowledged writes (a seed below
these minimums fails the test too), then heals and requires convergence. A failing seed is
reported with the one command that replays it exactly.
"""

import multiprocessing
import os

import pytest

from raftnode.sim.runner import run_seed

SECONDS = 30.0
MIN_CRASHES, MIN_PARTITIONS, MIN_ACKED_WRITES = 1, 1, 100


def _run(seed):
    result = run_seed(seed, seconds=SECONDS)
    s = result.stats
    problems = []
    if not result.ok:
        problems.append(result.violation)
    if s.crashes < MIN_CRASHES:
        problems.append(f"only {s.crashes} crashes")
    if s.partitions < MIN_PARTITIONS:
        problems.append(f"only {s.partitions} partitions")
    if s.writes_acked < MIN_ACKED_WRITES:
        problems.append(f"only {s.writes_acked} acknowledged writes")
    return seed, problems, result.command(), s.writes_acked


@pytest.mark.timeout(1800)
def test_every_seed_keeps_the_raft_invariants(request):
    count = request.config.getoption("--sim-seeds")
    first = request.config.getoption("--sim-first-seed")
    seeds = range(first, first + count)
    workers = min(2, os.cpu_count() or 1)
    if count >= 8 and workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(_run, seeds, chunksize=4)
    else:
        results = [_run(seed) for seed in seeds]
    failures = [f"seed {seed}: {'; '.join(problems)}\n    replay: {command}"
                for seed, problems, command, _ in results if problems]
    assert not failures, f"{len(failures)} of {count} seeds failed:\n" + "\n".join(failures[:20])
    assert sum(acked for *_, acked in results) >= MIN_ACKED_WRITES * count
