"""The runner: one test run, composed Jepsen style from a DB, a workload's clients, a nemesis,
a generator and the checkers (chaos.phases holds each phase).

    setup (DB ready, capabilities checked) -> load (clients + nemesis, per the generator)
    -> heal -> recover -> final reads -> collect logs -> teardown -> check -> report

Teardown happens on success, on a failed check, on an exception and on Ctrl-C/SIGTERM: the first
signal interrupts the run, later ones only say that clean-up is under way (it still finishes).

Exit codes, as Jepsen's: 0 valid, 1 invalid, 2 unknown, 255 crashed or could not run.
"""

from __future__ import annotations

import logging
import os
import random
import shlex
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable

from chaos import phases
from chaos.config import ConfigError, RunConfig
from chaos.history import FAIL, OK, Op
from chaos.interfaces import ClientBug, Unsupported
from chaos.phases import RunAborted, RunContext
from chaos.provision.base import ProvisionError
from chaos.progress import ConsoleHandler, Counts, Progress
from chaos.store import TIMESTAMP_FORMAT, create_run_dir

log = logging.getLogger("splitbrain")
LOGGERS = ("splitbrain", "chaos", "workloads", "checkers", "reports", "systems")

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN, EXIT_CRASHED = 0, 1, 2, 255
IN_FLIGHT_GRACE_S = 2.0  # beyond the request timeout, how long the load waits for open requests


def exit_code_for(valid: Any) -> int:
    if valid is True:
        return EXIT_VALID
    if valid is False:
        return EXIT_INVALID
    return EXIT_UNKNOWN


class Interrupted(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM (a BaseException, like KeyboardInterrupt,
    so that no `except Exception` on the way swallows it)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


# -- the parts a run is composed of, by default from the registries ---------------------------------

def default_db_factory(config: RunConfig, run_id: str, **overrides):
    from chaos.provision import make_db
    return make_db(config, run_id, **overrides)


def default_nemesis_factory(faults: list[str], db, nodes, view, rng):
    from chaos.nemesis import build_nemesis
    return build_nemesis(faults, db, nodes, view, rng)


def default_checker(ops: list[Op], *, workload: str, checker: str, out_dir: str,
                    time_budget_s: float | None) -> dict:
    """Our checkers for the models they know (register, set, kv); for a plugin's workload of
    another model only the statistics (its own checkers come from Workload.checkers)."""
    from checkers import WORKLOADS, check_history
    from checkers.stats import check_availability, check_stats
    if workload in WORKLOADS:
        return check_history(ops, workload=workload, checker=checker, out_dir=out_dir,
                             time_budget_s=time_budget_s)
    parts = {"stats": check_stats(ops), "availability": check_availability(ops)}
    return {"valid": parts["stats"]["valid"], "reason": "", "workload": workload, "checkers": parts}


def default_render(run_path: str) -> str | None:
    from reports import render_run
    return render_run(run_path)


class Runner:
    def __init__(self, config: RunConfig, *, db_factory: Callable | None = None,
                 nemesis_factory: Callable | None = None, workload=None,
                 checker: Callable | None = None, render: Callable | None = None,
                 out=None, progress_stream=None, progress_tty: bool | None = None,
                 install_signal_handlers: bool = True, argv: list[str] | None = None,
                 run_name: str | None = None, leave_db_running: bool = False, update_latest: bool = True,
                 attach: dict | None = None):
        self.config = config.validate()
        # A nightly names its runs at dispatch (run_name: the run's folder and resource names);
        # leave_db_running keeps the cluster up after the run (`splitbrain cluster down` removes it).
        self.run_name = run_name
        self.leave_db_running = leave_db_running
        self.update_latest = update_latest
        # attach: the state of a cluster of `splitbrain cluster up` to run against (it stays up)
        self.attach = attach
        self.db_factory = db_factory or default_db_factory
        self.nemesis_factory = nemesis_factory or default_nemesis_factory
        if workload is None:
            from workloads.base import get_workload
            workload = get_workload(config.workload, config)
        self.workload = workload
        self.checker = checker or default_checker
        self.render = render or default_render
        self.out = out or sys.stdout
        self.progress_stream = progress_stream or sys.stderr
        self.progress_tty = progress_tty
        self.install_signal_handlers = install_signal_handlers
        self.argv = argv
        self.ctx: RunContext | None = None
        self.counts = Counts()
        self._in_load = False
        self.interrupted: Interrupted | None = None
        self.started = ""
        self._cleaning_up = False
        self._torn_down = False
        self._old_handlers: dict[int, Any] = {}

    @property
    def run(self):
        return self.ctx.run if self.ctx else None

    @property
    def _context(self) -> RunContext:
        """The run's context, for the steps of a run (execute() makes it first)."""
        if self.ctx is None:
            raise RuntimeError("no run in progress: execute() makes the run's context first")
        return self.ctx

    # -- entry point ------------------------------------------------------------------------------
    def execute(self) -> int:
        """Run the test; return the exit code. Never raises (except for a third-party bug in
        the signal machinery); everything is logged to the run's controller.log."""
        cfg = self.config
        now = time.time()
        stamp = time.strftime(TIMESTAMP_FORMAT, time.localtime(now))
        run_id = phases.run_id(cfg.test_name, self.run_name or f"{stamp}-{os.getpid() % 10000}")
        if self.attach is not None:
            run_id = self.attach["run_id"]  # the cluster's resources are named for it
        try:
            # Refused before anything starts: no run directory, no report, no resource.
            db = phases.make_db(cfg, run_id, self._allocating_factory(run_id))
            if self.leave_db_running and hasattr(db, "detached"):
                db.detached = True  # its resources outlive this controller; `clean` leaves them
        except (RunAborted, Unsupported, ConfigError, ProvisionError) as e:
            self._release(run_id)
            print(f"splitbrain: {e}", file=self.progress_stream, flush=True)
            return EXIT_CRASHED
        except BaseException:
            self._release(run_id)
            raise
        try:
            run = create_run_dir(cfg.store, cfg.test_name, now=now, name=self.run_name, latest=self.update_latest)
        except BaseException:
            self._release(run_id)
            raise
        self.ctx = ctx = RunContext(config=cfg, run=run, workload=self.workload, counts=self.counts, db=db,
                                    run_token=f"{os.getpid():x}{random.getrandbits(24):06x}",
                                    keep_db=self.leave_db_running or self.attach is not None,
                                    attach=self.attach)
        self.started = time.strftime("%Y-%m-%d %H:%M:%S")
        handler = self._setup_logging()
        tty = self.progress_stream.isatty() if self.progress_tty is None else self.progress_tty
        console = ConsoleHandler(self.progress_stream, tty)
        logging.getLogger("splitbrain").addHandler(console)
        self._install_signals()
        code = EXIT_CRASHED
        crashed: str | None = None
        try:
            log.info("run %s (seed %d)", run.path, cfg.seed)
            log.info("command: %s", cfg.command_line())
            self._write_config()
            self._run_phases()
        except Interrupted as e:
            self.interrupted = e
            crashed = f"interrupted by {e}"
            log.warning("interrupted by %s: cleaning up", e)
        except (RunAborted, ConfigError, ClientBug, Unsupported) as e:
            crashed = str(e)
            log.error("run aborted: %s", e)
        except Exception as e:  # noqa: BLE001 - a crashed run must still clean up and say why
            crashed = f"{type(e).__name__}: {e}"
            log.error("run crashed: %s\n%s", crashed, traceback.format_exc())
        finally:
            self._cleaning_up = True
            try:
                phases.collect_and_teardown(ctx)
                if self.leave_db_running and self.attach is None and ctx.nodes:
                    self._record_kept_cluster(run_id)
            finally:
                if not self.leave_db_running and self.attach is None:
                    self._release(run_id)
                self._cleaning_up = False
                self._torn_down = True
        if ctx.abort_error is not None and crashed is None:
            crashed = str(ctx.abort_error)
        try:
            self._write_config()
            if crashed is None:
                results = phases.check(ctx, self.checker)
                code = exit_code_for(results.get("valid"))
            else:
                results = {"valid": "unknown", "reason": f"the run did not complete: {crashed}",
                           "crashed": True, "checkers": {}}
                code = EXIT_CRASHED
            run.write_json("results.json", results)
            log.info("verdict: %s (%s)", results.get("valid"), results.get("reason", ""))
            phases.report(ctx, self.render, self.out)
        except Interrupted as e:
            log.warning("interrupted by %s while checking; the history is in %s", e, run.path)
            code = EXIT_CRASHED
        except Exception as e:  # noqa: BLE001
            log.error("checking or reporting crashed: %s\n%s", e, traceback.format_exc())
            code = EXIT_CRASHED
        finally:
            self._restore_signals()
            for name in LOGGERS:
                logging.getLogger(name).removeHandler(handler)
            logging.getLogger("splitbrain").removeHandler(console)
            handler.close()
        return code

    # -- resources of this run that concurrent runs must not share -----------------------------------
    def _allocating_factory(self, run_id: str) -> Callable:
        """The DB factory with the run's own subnet and local base address (chaos.provision.allocate)
        when the config leaves them to us, so that concurrent runs on one host never collide."""
        if self.db_factory is not default_db_factory or self.attach is not None:
            return self.db_factory  # a test's or a caller's own DB; an attached cluster's settings
        from chaos.provision.allocate import run_overrides

        def factory(config, rid):
            overrides = run_overrides(config, rid, detached=self.leave_db_running)
            return self.db_factory(config, rid, **overrides) if overrides else self.db_factory(config, rid)
        return factory

    def _release(self, run_id: str) -> None:
        if self.db_factory is default_db_factory and self.attach is None:
            from chaos.provision.allocate import release
            release(run_id)

    def _record_kept_cluster(self, run_id: str) -> None:
        """A cluster left running is recorded as `splitbrain cluster up` records its own, under
        the run id as its name: `splitbrain cluster status|down --name <run id>` and `splitbrain
        run --cluster <run id>` find it."""
        from chaos.provision.cli import record_cluster

        ctx = self._context
        path = record_cluster(run_id, ctx.db, ctx.config, ctx.nodes)
        log.info("the cluster is left running (%s); `splitbrain cluster down --name %s` removes it", path, run_id)
        print(f"cluster left running: splitbrain cluster down --name {run_id}", file=self.progress_stream, flush=True)

    def _run_phases(self) -> None:
        ctx = self._context
        phases.setup(ctx, self.nemesis_factory)
        ctx.planned_schedule = self._plan_schedule()
        self._write_config()
        self._load()
        if ctx.abort_error is not None:
            raise RunAborted(str(ctx.abort_error))
        phases.heal(ctx)
        phases.recover(ctx)
        phases.final_reads(ctx, self._new_process)

    def _plan_schedule(self) -> list[dict]:
        cfg = self.config
        if cfg.schedule is not None:
            return [dict(s) for s in cfg.schedule]
        from chaos.generator import random_schedule
        return random_schedule(cfg.nemesis, cfg.time_limit, cfg.nemesis_interval, cfg.seed, cfg.nodes,
                               leader=self._context.db is not None and "leader" in self._context.db.capabilities())

    def _new_process(self) -> int:
        """A process id no client of the load used (after the interpreter's last ones)."""
        used = [p for p in self._context.processes.values() if isinstance(p, int)]
        return max(used + [self.config.concurrency - 1]) + 1

    # -- the load phase ------------------------------------------------------------------------------
    def _load(self) -> None:
        ctx, cfg = self._context, self.config
        progress = Progress(cfg.time_limit, self.counts, lambda: list(ctx.active_faults.values()),
                            ctx.view.leader if ctx.view else (lambda: None),
                            stream=self.progress_stream, tty=self.progress_tty)
        progress.start()
        self._in_load = True
        try:
            # In-flight requests get their timeout (and a redirect or two) to finish; one still
            # open after that stays without completion, which the history counts as info.
            phases.load(ctx, grace_s=cfg.request_timeout * 4 + IN_FLIGHT_GRACE_S)
        finally:
            self._in_load = False
            progress.stop()
        if self.interrupted is not None:
            raise self.interrupted
        log.info("load done: %s", self.counts.snapshot())

    # -- config.json ----------------------------------------------------------------------------------
    def _write_config(self) -> None:
        from chaos.generator import replayable_step

        ctx, cfg = self._context, self.config
        doc = cfg.to_dict()
        doc["schedule"] = ctx.executed
        doc["planned_schedule"] = ctx.planned_schedule
        replay = [replayable_step(e) for e in ctx.executed
                  if not e.get("error") and not e.get("final") and e["at"] < cfg.time_limit]
        doc["replay_schedule"] = [step for step in replay if step is not None]
        doc["explicit_schedule"] = cfg.schedule
        # The exact reproduction replays this run's executed schedule (the same nodes hit);
        # run_command re-runs the same flags and seed (faults re-aimed at the then leader, etc.).
        doc["command"] = shlex.join(["splitbrain", "reproduce", ctx.run.path])
        doc["run_command"] = cfg.command_line()
        doc["started"] = self.started
        if self.argv:
            doc["argv"] = list(self.argv)
        doc["run_id"] = getattr(ctx.db, "run_id", None)
        doc["nodes_detail"] = [{"id": n.id, "url": n.client_url, "address": n.address} for n in ctx.nodes]
        doc["node_names"] = cfg.node_names
        if ctx.db is not None:
            doc["db_info"] = {"name": ctx.db.name, "capabilities": sorted(ctx.db.capabilities()),
                              "unavailable": ctx.db.unavailable(), **ctx.db.describe()}
        doc["timings"] = ctx.timings
        # The controller's monotonic clock (history "time") when the load began; schedule
        # "at" values are seconds after it.
        doc["load_start_ns"] = ctx.load_start_ns
        doc["interrupted"] = str(self.interrupted) if self.interrupted else None
        ctx.run.write_json("config.json", doc)

    # -- logging and signals ----------------------------------------------------------------------------
    def _setup_logging(self) -> logging.Handler:
        """controller.log gets our log and that of the parts we compose (provisioners, nemeses,
        checkers, reports log under their package names)."""
        handler = logging.FileHandler(self._context.run.log_path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)s %(name)s "
                                               "%(threadName)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
        for name in LOGGERS:
            logger = logging.getLogger(name)
            if logger.level == logging.NOTSET or logger.level > logging.INFO:
                logger.setLevel(logging.INFO)
            logger.addHandler(handler)
        return handler

    def _install_signals(self) -> None:
        if not self.install_signal_handlers or threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signals(self) -> None:
        for signum, old in self._old_handlers.items():
            signal.signal(signum, old)
        self._old_handlers = {}

    def _on_signal(self, signum, frame) -> None:
        if self._torn_down and not self._cleaning_up:
            # Checking or reporting: nothing left to clean up, so a signal simply stops.
            raise Interrupted(signum)
        if self._cleaning_up or self.interrupted is not None:
            # A second Ctrl-C must not leave containers behind: clean-up goes on.
            print(f"\n{signal.Signals(signum).name}: still cleaning up, please wait", file=sys.stderr, flush=True)
            return
        self.interrupted = Interrupted(signum)
        if self.ctx is not None:
            self.ctx.stop.set()
        print(f"\n{signal.Signals(signum).name}: stopping the run and cleaning up", file=sys.stderr, flush=True)
        if self._in_load:
            return  # the interpreter winds down (bounded) on the stop; the load phase then raises
        raise self.interrupted


def run(config: RunConfig, **kw) -> int:
    return Runner(config, **kw).execute()


__all__ = ["Runner", "run", "RunAborted", "Interrupted", "exit_code_for", "EXIT_VALID", "EXIT_INVALID",
           "EXIT_UNKNOWN", "EXIT_CRASHED", "FAIL", "OK"]
