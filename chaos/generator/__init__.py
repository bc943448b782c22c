"""What to do next: generators of client and nemesis operations, and their interpreter.

A test's operations are one generator value, composed Jepsen style; e.g. (cfg a RunConfig):

    from chaos.generator import heal_generator, nemesis_and_clients, phases, run, then_keys, time_limit
    from chaos.scenario import compile_nemesis
    from workloads.register import register_final_generator, register_generator

    load = time_limit(cfg.time_limit, nemesis_and_clients(compile_nemesis(cfg), register_generator(cfg)))
    test = then_keys(phases(load, heal_generator(cfg.faults_in_use)),
                     lambda keys: register_final_generator(keys, cfg))
    summary = run(test, concurrency=cfg.concurrency, workers=factory, record=history.append,
                  seed=cfg.seed, grace_s=...)

(a runner that waits for the cluster to recover before the final reads runs them in a second
run() with processes=summary.processes, and the keys from the history).

core         the protocol (op/update, PENDING, Context), lifting of dicts/functions/lists, and
             the combinators
interpreter  run() (worker threads settling events under one lock), simulate() (virtual
             time), and the Scheduler both drive
schedule     fault schedules as nemesis generators, and back from a history to a replay
"""

from chaos.generator.core import (EMPTY, LOG, PENDING, SLEEP, Context, Generator, GeneratorError,
                                  any_of, before, clients, cycle, delay, each_process, each_thread,
                                  fill_op, filter_ops, final_reads, flip_flop, is_client_thread,
                                  lift, limit, log_message, map_ops, mix, nemesis,
                                  nemesis_and_clients, on_threads, once, phases, repeat, reserve,
                                  rotating_keys, sequence, series, sleep, sleep_until, stagger,
                                  synchronize, then, then_keys, time_limit, until_ok)
from chaos.generator.interpreter import RunSummary, Scheduler, Worker, WorkerFactory, run, simulate
from chaos.generator.schedule import (active_after, executed_schedule, heal_generator, heal_steps,
                                      heal_value, random_nemesis, random_schedule, replay_schedule,
                                      replayable_step, schedule_generator)

__all__ = [
    # protocol
    "EMPTY", "LOG", "PENDING", "SLEEP", "Context", "Generator", "GeneratorError", "fill_op",
    "is_client_thread", "lift",
    # combinators
    "any_of", "before", "clients", "cycle", "delay", "each_process", "each_thread", "filter_ops", "final_reads",
    "flip_flop",
    "limit", "log_message", "map_ops", "mix", "nemesis", "nemesis_and_clients", "on_threads",
    "once", "phases", "repeat", "reserve", "rotating_keys", "sequence", "series", "sleep",
    "sleep_until", "stagger", "synchronize", "then", "then_keys", "time_limit", "until_ok",
    # interpreter
    "RunSummary", "Scheduler", "Worker", "WorkerFactory", "run", "simulate",
    # schedules
    "active_after", "executed_schedule", "heal_generator", "heal_steps", "heal_value",
    "random_nemesis", "random_schedule", "replay_schedule", "replayable_step", "schedule_generator",
]
