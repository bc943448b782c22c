"""The phases of one run, each a small function of the run's context (chaos.runner composes
them):

    setup -> load -> heal -> recover -> final reads -> collect logs -> teardown -> check -> report

Nothing here knows HTTP, Raft or the bundled node: the DB, its capabilities and its clients say
everything that is specific to a system (chaos.interfaces).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from chaos.config import RunConfig
from chaos.faults import aims_at_leader, fault_kind, kind_of_op
from chaos.history import FAIL, INFO, INVOKE, NEMESIS, OK, HistoryWriter, Op
from chaos.interfaces import DB, ClientBug, Nemesis, Node, Process, Roster, merge_valid, require
from chaos.store import RunDir

log = logging.getLogger("splitbrain")


class RunAborted(RuntimeError):
    """The run cannot go on (a client bug, a DB that lacks a capability the run needs)."""


@dataclass
class RunContext:
    config: RunConfig
    run: RunDir
    workload: Any
    db: DB | None = None
    nodes: Roster = field(default_factory=Roster)  # shared with the nemeses; membership changes it
    view: Any = None
    nemesis: Nemesis | None = None
    history: HistoryWriter | None = None
    history_lock: threading.Lock = field(default_factory=threading.Lock)
    clients_closed: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    abort_error: BaseException | None = None
    load_start: float = 0.0
    load_start_ns: int | None = None
    planned_schedule: list[dict] = field(default_factory=list)
    executed: list[dict] = field(default_factory=list)
    active_faults: dict[str, str] = field(default_factory=dict)
    final_read_failures: list[str] = field(default_factory=list)
    final_reads_done: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    run_token: str = ""
    counts: Any = None
    processes: dict = field(default_factory=dict)   # thread -> its last process (the interpreter's)
    keys_used: dict = field(default_factory=dict)   # client keys in order of first use
    keep_db: bool = False                            # --leave-db-running: no teardown
    attach: dict | None = None                       # a running cluster's state (`run --cluster`)

    def record(self, op: Op) -> bool:
        """Append to the history unless the load is over for clients (late completions). A
        client invocation names the node its thread is bound to (thread % nodes); the keys
        used and the completions by type are noted for the final reads and the progress line."""
        with self.history_lock:
            if not self._note(op):
                return False
            self.history.append(op)
            return True

    def record_batch(self, ops: list[Op]) -> None:
        """record() for each of ops, in order, written at once (the interpreter's batches:
        chaos.generator.run)."""
        with self.history_lock:
            if self.clients_closed:
                ops = [op for op in ops if op.process == NEMESIS]
            for op in ops:
                if op.process != NEMESIS:
                    self._note_client(op)
            self.history.extend(ops)

    def _note(self, op: Op) -> bool:
        if op.process != NEMESIS:
            if self.clients_closed:
                return False
            self._note_client(op)
        return True

    def _note_client(self, op: Op) -> None:
        if op.type == INVOKE:
            if op.node is None and isinstance(op.process, int) and self.nodes:
                op.node = self.nodes[(op.process % self.config.concurrency) % len(self.nodes)].id
            if op.key is not None and not (op.extra and op.extra.get("final")):
                self.keys_used.setdefault(op.key, None)
        elif self.counts is not None:
            self.counts.add(op.type)

    def abort(self, error: BaseException) -> None:
        if self.abort_error is None:
            self.abort_error = error
            log.error("aborting the run: %s", error)
        self.stop.set()


# -- set up ---------------------------------------------------------------------------------------

def check_capabilities(cfg: RunConfig, db: DB) -> None:
    """Refuse, before anything starts, every fault the DB cannot do (no silent no-ops)."""
    have = db.capabilities()
    problems = []
    for name in cfg.faults_in_use:
        kind = fault_kind(name)
        if cfg.nodes < kind.min_nodes:
            problems.append(f"the {name} fault needs at least {kind.min_nodes} nodes; this run has {cfg.nodes}")
        for capability in sorted(kind.capabilities - have):
            problems.append(_missing(db, capability, f"the {name} fault"))
    for step in cfg.schedule or ():
        kind = kind_of_op(step["f"])
        if kind is not None and aims_at_leader(step.get("value")) and "leader" not in have:
            problems.append(_missing(db, "leader", f"{step['f']} at {step['at']} s (aimed at the leader)"))
    if problems:
        raise RunAborted("; ".join(dict.fromkeys(problems)))


def _missing(db: DB, capability: str, purpose: str) -> str:
    try:
        require(db, capability, purpose)
    except Exception as e:  # noqa: BLE001 - Unsupported: its message is the explanation
        return str(e)
    return ""


def make_db(config: RunConfig, run_id: str, db_factory: Callable) -> DB:
    """The run's DB, checked against everything the run asks of it; nothing is created yet.
    A bad setting (the DB's own validation) is a RunAborted naming it, not a crash."""
    try:
        db = db_factory(config, run_id)
    except (ValueError, TypeError, LookupError) as e:
        raise RunAborted(f"{config.db}: {e}") from None
    check_capabilities(config, db)
    return db


def setup(ctx: RunContext, nemesis_factory: Callable) -> None:
    cfg = ctx.config
    t0 = time.monotonic()
    log.info("setting up %d %s nodes (%s)", cfg.nodes, ctx.db.name, cfg.provisioner)
    if hasattr(ctx.db, "failed_setup_log_dir"):
        ctx.db.failed_setup_log_dir = ctx.run.node_dir
    if ctx.attach is not None:
        if not hasattr(ctx.db, "attach"):
            raise RunAborted(f"the {cfg.provisioner} provisioner cannot attach a run to a running cluster")
        ctx.nodes = Roster(ctx.db.attach([Node(id=n["id"], client_url=n["url"], address=n["address"],
                                             peer_port=n.get("peer_port", 9000), client_port=n.get("client_port", 8000))
                                        for n in ctx.attach["nodes"]]))
    else:
        ctx.nodes = Roster(ctx.db.setup(cfg.nodes))
    ctx.timings["setup_s"] = round(time.monotonic() - t0, 3)
    log.info("cluster ready in %.1f s: %s", ctx.timings["setup_s"],
             ", ".join(f"{n.id}={n.client_url}" for n in ctx.nodes))
    from chaos.cluster_view import ClusterView
    ctx.view = ClusterView(ctx.nodes, ctx.run.status_path, db=ctx.db).start()
    faults = cfg.faults_in_use
    if faults:
        rng = random.Random(f"nemesis:{cfg.seed}")
        ctx.nemesis = nemesis_factory(faults, ctx.db, ctx.nodes, ctx.view, rng)
        ctx.nemesis.setup(ctx.db, ctx.nodes)
    ctx.history = HistoryWriter(ctx.run.history_path)


def run_id(test_name: str, timestamp: str) -> str:
    """Names the run's resources (containers, networks, chains): unique per run."""
    return f"{test_name}-{timestamp}"[:60]


# -- nemesis ops ----------------------------------------------------------------------------------

def nemesis_op(ctx: RunContext, f: str, value: Any, final: bool = False) -> Op:
    """Invoke one nemesis op outside the load (the heal-everything), recording both halves."""
    at = round(time.monotonic() - ctx.load_start, 3)
    invoke = Op(process=NEMESIS, type=INVOKE, f=f, value=value, time=time.monotonic_ns())
    ctx.record(invoke)
    kind = kind_of_op(f)
    if kind is not None and f == kind.heal:
        ctx.active_faults.pop(kind.name, None)
    error = None
    try:
        done = ctx.nemesis.invoke(invoke)
        if not isinstance(done, Op):
            raise TypeError(f"nemesis returned {type(done).__name__}, not an Op")
        done.process, done.type, done.f = NEMESIS, INFO, f
    except Exception as e:  # noqa: BLE001 - a failed heal is recorded, the run goes on
        error = f"{type(e).__name__}: {e}"
        log.warning("nemesis %s %s failed: %s", f, value, error)
        done = Op(process=NEMESIS, type=INFO, f=f, value=None, error=error)
    done.time = time.monotonic_ns()
    ctx.record(done)
    _executed(ctx, f, value, done, at, error=error, final=final)
    return done


def describe_fault(f: str, value: Any, result: Any) -> str:
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


# -- load: the generator interpreter drives the clients and the nemesis ------------------------------

class LoadWorkers:
    """What runs each thread's ops: a client of the workload bound to node (thread % nodes) for
    client threads, the nemesis for thread "nemesis" (chaos.generator.interpreter)."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def open(self, thread, process):
        ctx = self.ctx
        if thread == NEMESIS:
            return _NemesisWorker(ctx)
        node = ctx.nodes[thread % len(ctx.nodes)]
        client = ctx.workload.client(ctx.db, f"{ctx.run_token}-{process}").open(ctx.nodes, node)
        return _ClientWorker(client, node, ctx, thread, process)


class _ClientWorker:
    def __init__(self, client, node: Node, ctx: RunContext | None = None, thread=None, process=None):
        self.client, self.node = client, node
        self.ctx, self.thread, self.process = ctx, thread, process
        self.rebinds = 0

    def _rebind(self) -> None:
        """A worker whose node was retired (a membership change) moves to a node of the roster
        now, as a client of a real cluster would be pointed at a live member."""
        ctx = self.ctx
        if ctx is None or not ctx.nodes or any(n is self.node for n in ctx.nodes):
            return
        node = ctx.nodes[self.thread % len(ctx.nodes)]
        self.rebinds += 1
        # a client id of its own: sessions number writes per client id, and a new client
        # starts its numbering again
        client_id = f"{ctx.run_token}-{self.process}-r{self.rebinds}"
        client = ctx.workload.client(ctx.db, client_id).open(ctx.nodes, node)
        self.client.close()
        self.client, self.node = client, node

    def invoke(self, op: Op) -> Op:
        self._rebind()
        if op.node != self.node.id:
            # the client sees the node it is bound to (the recorded invocation is not changed);
            # usually the history already names it (RunContext.record), and no copy is needed
            op = Op(process=op.process, type=op.type, f=op.f, key=op.key, value=op.value,
                    time=op.time, node=self.node.id, extra=dict(op.extra))
        return self.client.invoke(op)

    def backoff_after(self, completion: Op) -> float:
        return self.client.backoff_after(completion)

    def close(self) -> None:
        self.client.close()


class _NemesisWorker:
    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def invoke(self, op: Op) -> Op:
        ctx = self.ctx
        kind = kind_of_op(op.f)
        if kind is not None and op.f == kind.heal:
            ctx.active_faults.pop(kind.name, None)
        at = round(time.monotonic() - ctx.load_start, 3)
        try:
            done = ctx.nemesis.invoke(op)
            if not isinstance(done, Op):
                raise TypeError(f"nemesis returned {type(done).__name__}, not an Op")
            done.process, done.type, done.f = NEMESIS, INFO, op.f
            error = None
        except Exception as e:  # noqa: BLE001 - a failed fault is recorded, the run goes on
            error = f"{type(e).__name__}: {e}"
            log.warning("nemesis %s %s failed: %s", op.f, op.value, error)
            done = Op(process=NEMESIS, type=INFO, f=op.f, value=None, error=error)
        _executed(ctx, op.f, op.value, done, at, planned_at=op.extra.get("at"), error=error)
        return done

    def close(self) -> None:
        pass


def _executed(ctx: RunContext, f: str, value: Any, done: Op, at: float, planned_at=None,
              error: str | None = None, final: bool = False) -> None:
    """Bookkeeping of one nemesis op: the faults in force (progress line) and config.json's
    executed schedule, from which `reproduce` replays the nodes each fault hit."""
    kind = kind_of_op(f)
    if kind is not None and f == kind.start and error is None:
        ctx.active_faults[kind.name] = describe_fault(f, value, done.value)
    entry = {"at": at, "f": f, "value": value, "result": done.value}
    if planned_at is not None:
        entry["planned_at"] = planned_at
    if error:
        entry["error"] = error
    if final:
        entry["final"] = True  # the heal-everything after the load (not replayed)
    ctx.executed.append(entry)
    if isinstance(done.value, dict) and done.value.get("down"):
        log.error("nemesis %s: node(s) did not come back: %s", f, ", ".join(sorted(done.value["down"])))
    log.info("nemesis %s %s -> %s", f, value if value is not None else "", done.value)


def load(ctx: RunContext, grace_s: float) -> None:
    """The workload's generator and the planned fault schedule, run by the interpreter until the
    time limit (or a stop): a Jepsen-style generator value, nothing hard-wired here."""
    from chaos.generator import nemesis_and_clients, run as run_generator, schedule_generator, time_limit

    cfg = ctx.config
    client_gen = ctx.workload.generator()
    gen = client_gen
    if ctx.nemesis is not None and ctx.planned_schedule:
        steps = [{**step, "extra": {"at": step["at"]}} for step in ctx.planned_schedule]
        gen = nemesis_and_clients(schedule_generator(steps), client_gen)
    gen = time_limit(cfg.time_limit, gen)
    log.info("load: %d workers for %.0f s, faults: %s", cfg.concurrency, cfg.time_limit,
             ", ".join(cfg.faults_in_use) or "none")
    ctx.load_start = time.monotonic()
    ctx.load_start_ns = time.monotonic_ns()
    # In batches, each written and flushed at once: every op is on disk (in the OS) before the
    # thread that settled it goes on (a crash loses at most the batch being written).
    summary = run_generator(gen, concurrency=cfg.concurrency, workers=LoadWorkers(ctx),
                            record_batch=ctx.record_batch, seed=cfg.seed, stop=ctx.stop,
                            deadline_ns=int(cfg.time_limit * 1e9), grace_s=grace_s, fatal=(ClientBug,))
    ctx.processes = summary.processes
    with ctx.history_lock:
        ctx.clients_closed = True
    if summary.unfinished:
        log.warning("%d operation(s) still waiting on a request after the load phase (they stay open "
                    "and count as info)", summary.unfinished)


# -- heal and recover -------------------------------------------------------------------------------

def heal(ctx: RunContext) -> None:
    """Heal every fault kind in use (in the kinds' heal order), then the nemesis's heal_all."""
    if ctx.nemesis is None:
        return
    log.info("healing everything")
    kinds = sorted((fault_kind(k) for k in ctx.config.faults_in_use), key=lambda k: k.heal_rank)
    for kind in kinds:
        nemesis_op(ctx, kind.heal, kind.heal_value, final=True)
    try:
        ctx.nemesis.heal_all()
    except Exception as e:  # noqa: BLE001
        log.warning("heal_all failed: %s", e)


def recover(ctx: RunContext) -> None:
    """Wait (bounded) until the system is whole again: every node back (a finding if not), and a
    stable leader when the DB names one."""
    from chaos.nemesis.common import down_nodes

    t0 = time.monotonic()
    if isinstance(ctx.db, Process):
        down = down_nodes(ctx.db, ctx.nodes, bound=min(ctx.config.recovery_timeout, 20.0))
        if down:
            # A node that died on its own (no kill in the schedule brought it back): a finding.
            op = Op(process=NEMESIS, type=INVOKE, f="health", value=None, time=time.monotonic_ns())
            ctx.record(op)
            ctx.record(Op(process=NEMESIS, type=INFO, f="health", value={"down": down},
                          time=time.monotonic_ns()))
            log.error("node(s) down at the end of the run: %s", ", ".join(sorted(down)))
    if "leader" in ctx.db.capabilities():
        leader = ctx.view.wait_stable_leader(ctx.config.recovery_timeout, stop=None)
        if leader is None:
            log.warning("no stable leader within %.0f s after healing", ctx.config.recovery_timeout)
        else:
            log.info("stable leader %s %.1f s after healing", leader, time.monotonic() - t0)
    ctx.timings["recovery_s"] = round(time.monotonic() - t0, 3)


# -- final reads ------------------------------------------------------------------------------------

def final_reads(ctx: RunContext, new_process: Callable[[], int]) -> None:
    """Read every key the load used, retried (bounded) until each read succeeds; through the
    leader when the DB names one."""
    cfg = ctx.config
    keys = list(ctx.keys_used)
    reads = ctx.workload.final_reads(keys)
    if not reads:
        ctx.final_reads_done = True
        return
    process = new_process()
    deadline = time.monotonic() + cfg.final_read_timeout
    by_id = {n.id: n for n in ctx.nodes}
    clients: dict[str, Any] = {}
    pending = list(reads)
    attempt = 0
    try:
        while pending and time.monotonic() < deadline:
            f, key, value = pending[0]
            leader = ctx.view.leader() if ctx.view is not None else None
            node = by_id.get(leader) if leader else ctx.nodes[attempt % len(ctx.nodes)]
            client = clients.get(node.id)
            if client is None:
                client = clients[node.id] = ctx.workload.client(ctx.db, f"{ctx.run_token}-final").open(ctx.nodes, node)
            invoke = Op(process=process, type=INVOKE, f=f, key=key, value=value,
                        time=time.monotonic_ns(), node=node.id, extra={"final": True})
            _append(ctx, invoke)
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
            _append(ctx, done)
            if done.type == OK:
                pending.pop(0)
                attempt = 0
            else:
                attempt += 1
                time.sleep(min(0.5, 0.05 * attempt))
    finally:
        for client in clients.values():
            client.close()
    ctx.final_read_failures = [key for _, key, _ in pending]
    ctx.final_reads_done = True
    if pending:
        log.warning("final reads of %d key(s) did not succeed within %.0f s: %s", len(pending),
                    cfg.final_read_timeout, ", ".join(ctx.final_read_failures[:20]))
    else:
        log.info("final reads: %d keys read", len(reads))


def _append(ctx: RunContext, op: Op) -> None:
    with ctx.history_lock:
        ctx.history.append(op)


# -- clean up ---------------------------------------------------------------------------------------

def collect_and_teardown(ctx: RunContext) -> None:
    """Stop polling, heal, collect every node's logs, remove the cluster; close the history."""
    ctx.stop.set()
    if ctx.view is not None:
        try:
            ctx.view.stop()
        except Exception as e:  # noqa: BLE001
            log.warning("stopping the status poller failed: %s", e)
    if ctx.db is not None and ctx.nemesis is not None:
        try:
            ctx.nemesis.teardown()
        except Exception as e:  # noqa: BLE001
            log.warning("nemesis teardown failed: %s", e)
    if ctx.db is not None:
        if "logs" in ctx.db.capabilities():
            for node in [*ctx.nodes, *getattr(ctx.nodes, "retired", ())]:
                try:
                    ctx.db.collect_logs(node, ctx.run.node_dir(node.id))
                except Exception as e:  # noqa: BLE001
                    log.warning("collecting the logs of %s failed: %s", node.id, e)
        t0 = time.monotonic()
        try:
            if ctx.keep_db:
                log.info("leaving the cluster running (--leave-db-running)")
            else:
                ctx.db.teardown()
                log.info("teardown done in %.1f s", time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001
            log.error("TEARDOWN FAILED: %s; `splitbrain clean` removes leftovers", e)
    if ctx.history is not None:
        with ctx.history_lock:
            ctx.clients_closed = True
            ctx.history.close()


# -- check ------------------------------------------------------------------------------------------

def check(ctx: RunContext, checker: Callable) -> dict:
    """The workload's checkers, the final-reads rule, and the node findings (chaos.checking)."""
    from chaos.checking import node_checks
    from chaos.history import read_jsonl
    from checkers.node_health import add_checks

    ops = read_jsonl(ctx.run.history_path)
    t0 = time.monotonic()
    results = dict(checker(ops, workload=ctx.workload.checker_workload, checker=ctx.config.checker,
                           out_dir=ctx.run.report_dir, time_budget_s=ctx.config.check_time_budget))
    results.setdefault("checkers", {})
    results = add_checks(results, workload_checks(ctx, ops))
    if ctx.workload.final_reads_required:
        failed = ctx.final_read_failures if ctx.final_reads_done else ["(final reads never ran)"]
        results["checkers"]["final-reads"] = {"valid": True if not failed else "unknown", "unread_keys": failed}
        if failed:
            before = results.get("valid")
            results["valid"] = merge_valid([before, "unknown"])
            if before is True:
                results["reason"] = (f"final reads of {len(failed)} key(s) never succeeded, so "
                                     "lost elements cannot be ruled out")
    results = add_checks(results, node_checks(ctx.run.path, ops, ctx.db))
    ctx.timings["check_s"] = round(time.monotonic() - t0, 3)
    results.setdefault("reason", "")
    return results


def workload_checks(ctx: RunContext, ops: list[Op]) -> list[dict]:
    """The checkers a workload names from the `splitbrain.checkers` registry: each is called as
    check(ops, context) and returns {"valid", "reason"?, ...}."""
    from chaos.registry import load

    out = []
    context = {"config": ctx.config, "out_dir": ctx.run.report_dir, "run_dir": ctx.run.path}
    for name in getattr(ctx.workload, "checkers", ()):
        try:
            result = dict(load("splitbrain.checkers", name)(ops, context))
        except Exception as e:  # noqa: BLE001 - a broken checker is unknown, never a pass
            result = {"valid": "unknown", "reason": f"{type(e).__name__}: {e}"}
        result["name"] = name
        out.append(result)
    return out


def report(ctx: RunContext, render: Callable, out) -> None:
    try:
        path = render(ctx.run.path)
    except Exception as e:  # noqa: BLE001 - the verdict stands without a report
        import traceback
        log.error("rendering the report failed: %s\n%s", e, traceback.format_exc())
        path = None
    print(f"report: {path}" if path else f"results: {os.path.join(ctx.run.path, 'results.json')}", file=out)
    out.flush()


__all__ = ["RunContext", "RunAborted", "setup", "nemesis_op", "heal", "recover", "final_reads",
           "collect_and_teardown", "check", "report", "check_capabilities", "describe_fault"]
