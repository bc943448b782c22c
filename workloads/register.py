"""The register workload: read / write / cas on a few keys with values unique per key.

Unique values make every key checkable on its own (and fast: a read names the write it saw).
Keys rotate after a bounded number of operations (chaos.generator.rotating_keys).
"""

from __future__ import annotations

from chaos.generator import (PENDING, Generator, clients, fill_op, final_reads, mix,
                             repeat, rotating_keys, stagger)
from workloads.base import Workload


REGISTER_MIX = (("read", 0.4), ("write", 0.3), ("cas", 0.3))


class RegisterWorkload(Workload):
    name = "register"
    checker_workload = "register"

    def generator(self) -> Generator:
        return register_generator(self.config)


# -- the register workload as a generator ----------------------------------------------------------

class RegisterWritesAndCas(Generator):
    """Writes and compare-and-sets of one key, with values unique to the key (1, 2, 3, ...); a
    cas expects one of the last few values written, so a fair share of them succeed."""

    __slots__ = ("key", "written", "cas_share")

    def __init__(self, key: str, written: int = 0, cas_share: float = 0.5):
        self.key, self.written, self.cas_share = key, written, cas_share

    def op(self, ctx):
        new = self.written + 1
        if self.written == 0 or ctx.rng.random() >= self.cas_share:
            # a fresh key has nothing to compare against yet: its first is a write
            o = fill_op({"f": "write", "key": self.key, "value": new}, ctx)
        else:
            lowest = max(1, new - 4)
            expected = lowest + int(ctx.rng.random() * (new - lowest))  # uniform in [lowest, new)
            o = fill_op({"f": "cas", "key": self.key, "value": [expected, new]}, ctx)
        if o is PENDING:
            return PENDING, self
        return o, RegisterWritesAndCas(self.key, new, self.cas_share)


def register_key_ops(key: str) -> Generator:
    """read / write / cas of one key, mixed as REGISTER_MIX (40/30/30)."""
    weights = dict(REGISTER_MIX)
    writes = weights["write"] + weights["cas"]
    return mix([repeat({"f": "read", "key": key}), RegisterWritesAndCas(key, 0, weights["cas"] / writes)],
               weights=[weights["read"], writes])


def register_generator(config) -> Generator:
    """The register workload's client ops: config.keys keys in use at once (r0, r1, ...), each
    retired for a fresh one after config.ops_per_key ops; at config.rate ops/s if set."""
    ops = rotating_keys(register_key_ops, keys=config.keys, ops_per_key=config.ops_per_key, prefix="r")
    if config.rate:
        ops = stagger(1.0 / config.rate, ops)
    return clients(ops)


def register_final_generator(keys: list[str], config) -> Generator:
    """The final reads of every key used, each retried until ok within config.final_read_timeout."""
    return final_reads(keys, timeout=config.final_read_timeout)
