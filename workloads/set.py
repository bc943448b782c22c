"""The set workload: add unique elements, then read everything at the end.

A new key every `elements_per_key` elements keeps each read small. The final reads go through
the leader and are retried; the verdict is unknown unless every one of them succeeded, because
an element missing from a read we never got is not evidence of a lost write.
"""

from __future__ import annotations

from chaos.generator import Generator, clients, final_reads, series, stagger
from workloads.base import Workload


class SetWorkload(Workload):
    name = "set"
    checker_workload = "set"
    final_reads_required = True

    def generator(self) -> Generator:
        return set_generator(self.config)


# -- the set workload as a generator ---------------------------------------------------------------

def set_generator(config) -> Generator:
    """The set workload's client ops: add 0, 1, 2, ... (each element once), a new key (s0, s1,
    ...) every config.elements_per_key elements; at config.rate ops/s if set."""
    per_key = config.elements_per_key
    if isinstance(per_key, bool) or not isinstance(per_key, int) or per_key < 1:
        raise ValueError(f"elements_per_key must be a positive integer, got {per_key!r}")
    ops = series(lambda i: {"f": "add", "key": f"s{i // per_key}", "value": i})
    if config.rate:
        ops = stagger(1.0 / config.rate, ops)
    return clients(ops)


def set_final_generator(keys: list[str], config) -> Generator:
    """The final reads of every key used, each retried until ok within config.final_read_timeout
    (the verdict needs every one of them)."""
    return final_reads(keys, timeout=config.final_read_timeout)
