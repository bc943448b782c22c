"""What to do next: generators of client and nemesis operations.

`legacy` holds the pre-interpreter generators the runner still drives by hand; every name it
exported as chaos.generator stays importable from here until the runner moves over.
"""

from chaos.generator.legacy import (RANDOM_CLOCK_TARGETS, RANDOM_TARGETS, RANDOM_TOPOLOGIES,
                                    REGISTER_MIX, ClientGenerator, RateLimiter, RegisterGenerator,
                                    SetGenerator, active_after, client_generator, heal_steps,
                                    heal_value, random_fault_value, random_schedule,
                                    replayable_step)

__all__ = [
    "RANDOM_CLOCK_TARGETS", "RANDOM_TARGETS", "RANDOM_TOPOLOGIES", "REGISTER_MIX",
    "ClientGenerator", "RateLimiter", "RegisterGenerator", "SetGenerator", "active_after",
    "client_generator", "heal_steps", "heal_value", "random_fault_value", "random_schedule",
    "replayable_step",
]
