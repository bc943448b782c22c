"""The runner: one test run, composed Jepsen style from a DB, a workload's clients, a nemesis,
a generator and the checkers.

    setup DB (waits for a leader) -> start the /status poller
    -> C client workers + the nemesis, per the generator, until the time limit
    -> heal everything -> wait (bounded) for a stable leader -> final reads through the leader
    -> stop -> collect node logs -> teardown -> check -> results.json -> report

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

from chaos.config import FAULT_OPS, HEAL_OPS, START_OPS, ConfigError, RunConfig
from chaos.generator import (ClientGenerator, RateLimiter, heal_steps, random_schedule,
                             replayable_step)
from chaos.history import FAIL, INFO, INVOKE, NEMESIS, OK, HistoryWriter, Op
from chaos.interfaces import DB, Nemesis, Node, merge_valid
from chaos.progress import ConsoleHandler, Counts, Progress
from chaos.store import RunDir, create_run_dir
from workloads.http_client import MAX_REDIRECTS, ClientBug

log = logging.getLogger("splitbrain")
LOGGERS = ("splitbrain", "chaos", "workloads", "checkers", "reports")

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN, EXIT_CRASHED = 0, 1, 2, 255
LEADER_WAIT_S = 5.0  # how long a fault aimed at the leader waits for one to be known


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


class RunAborted(RuntimeError):
    """The run cannot go on (a client bug, a nemesis that cannot do what was asked)."""


# -- pluggable parts (defaults: our provisioners, nemeses, checkers and reports) ------------------

def default_db_factory(config: RunConfig, run_id: str) -> DB:
    try:
        from chaos.provision import get_db
        from chaos.provision.base import NodeOptions
    except ImportError as e:
        raise RunAborted(f"the provisioners (chaos.provision.get_db) are not available: {e}") from e
    options = NodeOptions(election_timeout=config.election_timeout, heartbeat_ms=config.heartbeat_ms,
                          bug=config.bug, pre_vote=config.pre_vote, check_quorum=config.check_quorum,
                          clock="clock" in config.faults_in_use)
    kw = dict(config.provisioner_options)
    if config.subnet:
        kw["subnet"] = config.subnet
    return get_db(config.provisioner, run_id, config.nodes, options, **kw)


def default_nemesis_factory(faults: list[str], db: DB, nodes: list[Node], view, rng) -> Nemesis:
    try:
        from chaos.nemesis import build_nemesis
    except ImportError as e:
        raise RunAborted(f"the nemeses (chaos.nemesis.build_nemesis) are not available: {e}") from e
    return build_nemesis(faults, db, nodes, view, rng)


def default_checker(ops: list[Op], *, workload: str, checker: str, out_dir: str,
                    time_budget_s: float | None) -> dict:
    try:
        from checkers import check_history
    except ImportError as e:
        return {"valid": "unknown", "reason": f"no checker available (checkers.check_history: {e})",
                "checkers": {}}
    return check_history(ops, workload=workload, checker=checker, out_dir=out_dir,
                         time_budget_s=time_budget_s)


def default_render(run_path: str) -> str | None:
    try:
        from reports import render_run
    except ImportError as e:
        log.warning("no report rendered: reports.render_run is not available (%s)", e)
        return None
    return render_run(run_path)


# -- the runner -------------------------------------------------------------------------------------

class Runner:
    def __init__(self, config: RunConfig, *, db_factory: Callable | None = None,
                 nemesis_factory: Callable | None = None, workload=None,
                 checker: Callable | None = None, render: Callable | None = None,
                 out=None, progress_stream=None, progress_tty: bool | None = None,
                 install_signal_handlers: bool = True, argv: list[str] | None = None):
        self.config = config.validate()
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

        self.run: RunDir | None = None
        self.db: DB | None = None
        self.nodes: list[Node] = []
        self.view = None
        self.nemesis: Nemesis | None = None
        self.history: HistoryWriter | None = None
        self.generator: ClientGenerator | None = None
        self.counts = Counts()
        self.stop_load = threading.Event()
        self.clients_closed = False
        self.history_lock = threading.Lock()
        self.abort_error: BaseException | None = None
        self.max_process = config.concurrency - 1
        self.process_lock = threading.Lock()
        self.load_start = 0.0
        self.load_start_ns: int | None = None
        self.planned_schedule: list[dict] = []
        self.executed: list[dict] = []
        self.active_faults: dict[str, str] = {}  # fault kind -> short description
        self.interrupted: Interrupted | None = None
        self.final_read_failures: list[str] = []
        self.final_reads_done = False
        self.timings: dict[str, float] = {}
        self.run_token = f"{os.getpid():x}{random.getrandbits(24):06x}"
        self._cleaning_up = False
        self._torn_down = False
        self.started = ""
        self._old_handlers: dict[int, Any] = {}

    # -- entry point ------------------------------------------------------------------------------
    def execute(self) -> int:
        """Run the test; return the exit code. Never raises (except for a third-party bug in
        the signal machinery); everything is logged to the run's controller.log."""
        cfg = self.config
        self.run = create_run_dir(cfg.store, cfg.test_name)
        self.started = time.strftime("%Y-%m-%d %H:%M:%S")
        handler = self._setup_logging()
        tty = self.progress_stream.isatty() if self.progress_tty is None else self.progress_tty
        console = ConsoleHandler(self.progress_stream, tty)
        logging.getLogger("splitbrain").addHandler(console)
        self._install_signals()
        results: dict | None = None
        code = EXIT_CRASHED
        crashed: str | None = None
        try:
            log.info("run %s (seed %d)", self.run.path, cfg.seed)
            log.info("command: %s", cfg.command_line())
            self.planned_schedule = self._plan_schedule()
            self._write_config()
            self._run_phases()
        except Interrupted as e:
            self.interrupted = e
            crashed = f"interrupted by {e}"
            log.warning("interrupted by %s: cleaning up", e)
        except (RunAborted, ConfigError, ClientBug) as e:
            crashed = str(e)
            log.error("run aborted: %s", e)
        except Exception as e:  # noqa: BLE001 - a crashed run must still clean up and say why
            crashed = f"{type(e).__name__}: {e}"
            log.error("run crashed: %s\n%s", crashed, traceback.format_exc())
        finally:
            self._cleaning_up = True
            try:
                self._cleanup()
            finally:
                self._cleaning_up = False
                self._torn_down = True
        if self.abort_error is not None and crashed is None:
            crashed = str(self.abort_error)
        try:
            self._write_config()
            if crashed is None:
                results = self._check()
                code = exit_code_for(results.get("valid"))
            else:
                results = {"valid": "unknown", "reason": f"the run did not complete: {crashed}",
                           "crashed": True, "checkers": {}}
                code = EXIT_CRASHED
            self.run.write_json("results.json", results)
            log.info("verdict: %s (%s)", results.get("valid"), results.get("reason", ""))
            self._render_report(crashed)
        except Interrupted as e:
            log.warning("interrupted by %s while checking; the history is in %s", e, self.run.path)
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

    # -- phases -----------------------------------------------------------------------------------
    def _run_phases(self) -> None:
        cfg = self.config
        t0 = time.monotonic()
        self.db = self.db_factory(cfg, self._run_id())
        faults = cfg.faults_in_use
        unsupported = [f for f in faults if f not in getattr(self.db, "supported_faults", ())]
        if unsupported:
            raise RunAborted(f"the {cfg.provisioner} provisioner cannot inject {', '.join(unsupported)} "
                             f"(it supports: {', '.join(sorted(self.db.supported_faults)) or 'none'})")
        log.info("setting up %d nodes with the %s provisioner", cfg.nodes, cfg.provisioner)
        if hasattr(self.db, "failed_setup_log_dir"):
            self.db.failed_setup_log_dir = self.run.node_dir
        self.nodes = list(self.db.setup(cfg.nodes))
        self.timings["setup_s"] = round(time.monotonic() - t0, 3)
        log.info("cluster ready in %.1f s: %s", self.timings["setup_s"],
                 ", ".join(f"{n.id}={n.client_url}" for n in self.nodes))
        from chaos.cluster_view import ClusterView
        self.view = ClusterView(self.nodes, self.run.status_path).start()
        if faults:
            rng = random.Random(f"nemesis:{cfg.seed}")
            self.nemesis = self.nemesis_factory(faults, self.db, self.nodes, self.view, rng)
            self.nemesis.setup(self.db, self.nodes)
        self.history = HistoryWriter(self.run.history_path)
        self.generator = self.workload.generator()
        self._load_phase()
        if self.abort_error is not None:
            raise RunAborted(str(self.abort_error))
        self._heal_everything()
        self._recover()
        self._final_reads()

    def _load_phase(self) -> None:
        cfg = self.config
        limiter = RateLimiter(cfg.rate)
        progress = Progress(cfg.time_limit, self.counts, self._fault_descriptions,
                            self.view.leader if self.view else (lambda: None),
                            stream=self.progress_stream, tty=self.progress_tty)
        self.load_start = time.monotonic()
        self.load_start_ns = time.monotonic_ns()
        workers = [threading.Thread(target=self._worker, args=(w, limiter), name=f"worker-{w}", daemon=True)
                   for w in range(cfg.concurrency)]
        nemesis_thread = None
        if self.nemesis is not None and self.planned_schedule:
            nemesis_thread = threading.Thread(target=self._nemesis_loop, name="nemesis", daemon=True)
        log.info("load: %d workers for %.0f s, faults: %s", cfg.concurrency, cfg.time_limit,
                 ", ".join(cfg.faults_in_use) or "none")
        progress.start()
        try:
            for t in workers:
                t.start()
            if nemesis_thread:
                nemesis_thread.start()
            # The main thread waits here: a signal interrupts this wait (Interrupted).
            self.stop_load.wait(cfg.time_limit)
        finally:
            self.stop_load.set()
            # In-flight requests finish within their timeout (per redirect hop); an invocation
            # still open after that stays without completion, which counts as info.
            deadline = time.monotonic() + cfg.request_timeout * (MAX_REDIRECTS + 1) + 2.0
            for t in workers:
                t.join(timeout=max(0.0, deadline - time.monotonic()))
            with self.history_lock:
                self.clients_closed = True
            if nemesis_thread:
                nemesis_thread.join(timeout=max(5.0, deadline - time.monotonic()))
            progress.stop()
        stuck = [t.name for t in workers if t.is_alive()]
        if stuck:
            log.warning("workers still waiting on a request after the load phase: %s (their "
                        "operations stay open and count as info)", ", ".join(stuck))
        log.info("load done: %s", self.counts.snapshot())

    # -- client workers -----------------------------------------------------------------------------
    def _record_client(self, op: Op) -> bool:
        with self.history_lock:
            if self.clients_closed:
                return False
            self.history.append(op)
            return True

    def _new_client(self, process: int, node: Node):
        return self.workload.client(f"{self.run_token}-{process}").open(self.nodes, node)

    def _worker(self, w: int, limiter: RateLimiter) -> None:
        cfg = self.config
        node = self.nodes[w % len(self.nodes)]
        process = w
        client = None
        backoff = 0.0
        try:
            client = self._new_client(process, node)
            while not self.stop_load.is_set():
                if not limiter.wait(self.stop_load):
                    break
                nxt = self.generator.next_op(w)
                if nxt is None:
                    break
                f, key, value = nxt
                invoke = Op(process=process, type=INVOKE, f=f, key=key, value=value,
                            time=time.monotonic_ns(), node=node.id)
                if not self._record_client(invoke):
                    break
                try:
                    done = client.invoke(invoke)
                except ClientBug as e:
                    self._abort(e)
                    break
                except Exception as e:  # noqa: BLE001 - unknown client error: outcome unknown
                    log.warning("worker %d: %s on %s %s: %s", w, type(e).__name__, f, key, e)
                    done = Op(process=process, type=INFO, f=f, key=key, value=value,
                              time=time.monotonic_ns(), node=node.id, error=f"client error: {e}")
                if not self._record_client(done):
                    break
                self.counts.add(done.type)
                if done.type == FAIL and _unavailable(done.error):
                    # The node is down or has no leader: back off a little instead of filling
                    # the history with thousands of identical refusals per second.
                    backoff = min(0.5, backoff * 2 if backoff else 0.02)
                    if self.stop_load.wait(backoff):
                        break
                else:
                    backoff = 0.0
                if done.type == INFO:
                    # Jepsen: the process that got an indeterminate answer may still have that
                    # operation pending, so the worker continues as a new process.
                    client.close()
                    process += cfg.concurrency
                    with self.process_lock:
                        self.max_process = max(self.max_process, process)
                    client = self._new_client(process, node)
        except Exception as e:  # noqa: BLE001
            log.error("worker %d crashed: %s\n%s", w, e, traceback.format_exc())
            self._abort(e)
        finally:
            if client is not None:
                client.close()

    def _abort(self, error: BaseException) -> None:
        if self.abort_error is None:
            self.abort_error = error
            log.error("aborting the run: %s", error)
        self.stop_load.set()

    # -- nemesis ------------------------------------------------------------------------------------
    def _plan_schedule(self) -> list[dict]:
        cfg = self.config
        if cfg.schedule is not None:
            return [dict(s) for s in cfg.schedule]
        return random_schedule(cfg.nemesis, cfg.time_limit, cfg.nemesis_interval, cfg.seed, cfg.nodes)

    def _nemesis_loop(self) -> None:
        for step in self.planned_schedule:
            delay = self.load_start + step["at"] - time.monotonic()
            if delay > 0 and self.stop_load.wait(delay):
                return
            if self.stop_load.is_set():
                return
            self._nemesis_op(step["f"], step.get("value"), planned_at=step["at"])

    def _nemesis_op(self, f: str, value: Any, planned_at: float | None = None, final: bool = False) -> Op:
        if _wants_leader(value) and self.view is not None and self.view.leader() is None:
            # Aimed at the leader while an election is under way: give it a moment (bounded)
            # rather than recording a fault that hit nothing.
            deadline = time.monotonic() + LEADER_WAIT_S
            while self.view.leader() is None and time.monotonic() < deadline:
                if self.stop_load.wait(0.05) and not final:
                    break
        at = round(time.monotonic() - self.load_start, 3)
        invoke = Op(process=NEMESIS, type=INVOKE, f=f, value=value, time=time.monotonic_ns())
        with self.history_lock:
            self.history.append(invoke)
        if f in HEAL_OPS:
            self.active_faults.pop(HEAL_OPS[f], None)
        error = None
        try:
            done = self.nemesis.invoke(invoke)
            if not isinstance(done, Op):
                raise TypeError(f"nemesis returned {type(done).__name__}, not an Op")
            done.process, done.type, done.f = NEMESIS, INFO, f
            done.time = time.monotonic_ns()
        except Exception as e:  # noqa: BLE001 - a failed fault is recorded, the run goes on
            error = f"{type(e).__name__}: {e}"
            log.warning("nemesis %s %s failed: %s", f, value, error)
            done = Op(process=NEMESIS, type=INFO, f=f, value=None, time=time.monotonic_ns(), error=error)
        with self.history_lock:
            self.history.append(done)
        if f in START_OPS and error is None:
            self.active_faults[START_OPS[f]] = _describe(f, value, done.value)
        entry = {"at": at, "f": f, "value": value, "result": done.value}
        if planned_at is not None:
            entry["planned_at"] = planned_at
        if error:
            entry["error"] = error
        if final:
            entry["final"] = True  # the heal-everything after the load (not replayed)
        self.executed.append(entry)
        log.info("nemesis %s %s -> %s", f, value if value is not None else "", done.value)
        return done

    def _fault_descriptions(self) -> list[str]:
        return list(self.active_faults.values())

    def _heal_everything(self) -> None:
        if self.nemesis is None:
            return
        log.info("healing everything")
        for step in heal_steps(self.config.faults_in_use):
            self._nemesis_op(step["f"], step["value"], final=True)
        try:
            self.nemesis.heal_all()
        except Exception as e:  # noqa: BLE001
            log.warning("heal_all failed: %s", e)

    def _recover(self) -> None:
        t0 = time.monotonic()
        leader = self.view.wait_stable_leader(self.config.recovery_timeout)
        self.timings["recovery_s"] = round(time.monotonic() - t0, 3)
        if leader is None:
            log.warning("no stable leader within %.0f s after healing", self.config.recovery_timeout)
        else:
            log.info("stable leader %s %.1f s after healing", leader, self.timings["recovery_s"])

    # -- final reads --------------------------------------------------------------------------------
    def _final_reads(self) -> None:
        cfg = self.config
        keys = self.generator.keys_used()
        reads = self.workload.final_reads(keys)
        if not reads:
            self.final_reads_done = True
            return
        with self.process_lock:
            self.max_process += 1
            process = self.max_process
        deadline = time.monotonic() + cfg.final_read_timeout
        by_id = {n.id: n for n in self.nodes}
        clients: dict[str, Any] = {}
        pending = list(reads)
        attempt = 0
        try:
            while pending and time.monotonic() < deadline:
                f, key, value = pending[0]
                leader = self.view.leader()
                node = by_id.get(leader) if leader else self.nodes[attempt % len(self.nodes)]
                client = clients.get(node.id)
                if client is None:
                    client = clients[node.id] = self.workload.client(f"{self.run_token}-final").open(self.nodes, node)
                invoke = Op(process=process, type=INVOKE, f=f, key=key, value=value,
                            time=time.monotonic_ns(), node=node.id, extra={"final": True})
                with self.history_lock:
                    self.history.append(invoke)
                try:
                    done = client.invoke(invoke)
                except ClientBug:
                    raise
                except Exception as e:  # noqa: BLE001 - a read that failed to run is a fail
                    done = Op(process=process, type=FAIL, f=f, key=key, time=time.monotonic_ns(),
                              node=node.id, error=f"client error: {e}")
                done.extra["final"] = True
                if done.type == INFO:  # reads are never indeterminate; keep the history honest
                    done.type = FAIL
                with self.history_lock:
                    self.history.append(done)
                if done.type == OK:
                    pending.pop(0)
                    attempt = 0
                else:
                    attempt += 1
                    time.sleep(min(0.5, 0.05 * attempt))
        finally:
            for client in clients.values():
                client.close()
        self.final_read_failures = [key for _, key, _ in pending]
        self.final_reads_done = True
        if pending:
            log.warning("final reads of %d key(s) did not succeed within %.0f s: %s", len(pending),
                        cfg.final_read_timeout, ", ".join(self.final_read_failures[:20]))
        else:
            log.info("final reads: %d keys read", len(reads))

    # -- cleanup, check, report -----------------------------------------------------------------------
    def _cleanup(self) -> None:
        self.stop_load.set()
        if self.view is not None:
            try:
                self.view.stop()
            except Exception as e:  # noqa: BLE001
                log.warning("stopping the status poller failed: %s", e)
        if self.db is not None and self.nemesis is not None:
            try:
                self.nemesis.teardown()
            except Exception as e:  # noqa: BLE001
                log.warning("nemesis teardown failed: %s", e)
        if self.db is not None:
            for node in self.nodes:
                try:
                    self.db.collect_logs(node, self.run.node_dir(node.id))
                except Exception as e:  # noqa: BLE001
                    log.warning("collecting the logs of %s failed: %s", node.id, e)
            t0 = time.monotonic()
            try:
                self.db.teardown()
                log.info("teardown done in %.1f s", time.monotonic() - t0)
            except Exception as e:  # noqa: BLE001
                log.error("TEARDOWN FAILED: %s; `splitbrain clean` removes leftovers", e)
        if self.history is not None:
            with self.history_lock:
                self.clients_closed = True
                self.history.close()

    def _check(self) -> dict:
        from chaos.history import read_jsonl

        ops = read_jsonl(self.run.history_path)
        t0 = time.monotonic()
        results = self.checker(ops, workload=self.workload.checker_workload, checker=self.config.checker,
                               out_dir=self.run.report_dir, time_budget_s=self.config.check_time_budget)
        results = dict(results)
        results.setdefault("checkers", {})
        if self.workload.final_reads_required:
            failed = self.final_read_failures if self.final_reads_done else ["(final reads never ran)"]
            final = {"valid": True if not failed else "unknown", "unread_keys": failed}
            results["checkers"]["final-reads"] = final
            if failed:
                before = results.get("valid")
                results["valid"] = merge_valid([before, "unknown"])
                if before is True:
                    results["reason"] = (f"final reads of {len(failed)} key(s) never succeeded, so "
                                         "lost elements cannot be ruled out")
        try:
            from checkers.election_safety import add_to_results as add_election_safety
        except ImportError:
            add_election_safety = None
        if add_election_safety is not None:
            # from the node logs collected at cleanup: two leaders in a term, a voter voting twice
            results = add_election_safety(results, self.run.path)
        self.timings["check_s"] = round(time.monotonic() - t0, 3)
        results.setdefault("reason", "")
        return results

    def _render_report(self, crashed: str | None) -> None:
        try:
            path = self.render(self.run.path)
        except Exception as e:  # noqa: BLE001 - the verdict stands without a report
            log.error("rendering the report failed: %s\n%s", e, traceback.format_exc())
            path = None
        results = os.path.join(self.run.path, "results.json")
        if path:
            print(f"report: {path}", file=self.out)
        else:
            print(f"results: {results}", file=self.out)
        self.out.flush()

    # -- config.json ----------------------------------------------------------------------------------
    def _run_id(self) -> str:
        return f"{self.config.test_name}-{self.run.timestamp}"[:60]

    def _write_config(self) -> None:
        cfg = self.config
        doc = cfg.to_dict()
        doc["schedule"] = self.executed
        doc["planned_schedule"] = self.planned_schedule
        replay = [replayable_step(e) for e in self.executed
                  if not e.get("error") and not e.get("final") and e["at"] < cfg.time_limit]
        doc["replay_schedule"] = [step for step in replay if step is not None]
        doc["explicit_schedule"] = cfg.schedule
        # The exact reproduction replays this run's executed schedule (the same nodes hit);
        # run_command re-runs the same flags and seed (faults re-aimed at the then leader, etc.).
        doc["command"] = shlex.join(["splitbrain", "reproduce", self.run.path])
        doc["run_command"] = cfg.command_line()
        doc["started"] = self.started
        if self.argv:
            doc["argv"] = list(self.argv)
        doc["run_id"] = self._run_id()
        doc["nodes_detail"] = [{"id": n.id, "url": n.client_url, "address": n.address} for n in self.nodes]
        doc["node_names"] = cfg.node_names
        doc["timings"] = self.timings
        # The controller's monotonic clock (history "time") when the load began; schedule
        # "at" values are seconds after it.
        doc["load_start_ns"] = self.load_start_ns
        doc["interrupted"] = str(self.interrupted) if self.interrupted else None
        self.run.write_json("config.json", doc)

    # -- logging and signals ----------------------------------------------------------------------------
    def _setup_logging(self) -> logging.Handler:
        """controller.log gets our log and that of the parts we compose (provisioners, nemeses,
        checkers, reports log under their package names)."""
        handler = logging.FileHandler(self.run.log_path, encoding="utf-8")
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
        self.stop_load.set()
        print(f"\n{signal.Signals(signum).name}: stopping the run and cleaning up", file=sys.stderr, flush=True)
        raise self.interrupted


def _wants_leader(value: Any) -> bool:
    return isinstance(value, dict) and (value.get("target") == "leader" or value.get("topology") == "isolate-leader")


def _unavailable(error: str | None) -> bool:
    return bool(error) and error.split(":", 1)[0] in ("refused", "connect", "no_leader", "unavailable")


def _describe(f: str, value: Any, result: Any) -> str:
    if isinstance(result, dict):
        if f == "partition" and result.get("groups"):
            return "partition " + " | ".join(",".join(g) for g in result["groups"])
        nodes = result.get("nodes")
        if nodes:
            names = sorted(nodes) if isinstance(nodes, (list, dict)) else [str(nodes)]
            return f"{f} {','.join(names)}"
    if isinstance(value, dict):
        return f"{f} {value.get('topology') or value.get('target') or ''}".strip()
    return f


def run(config: RunConfig, **kw) -> int:
    return Runner(config, **kw).execute()
