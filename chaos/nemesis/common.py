"""Helpers every nemesis shares: completions, the leader lookup, acting on nodes in parallel,
and the check that a node brought back by a heal is really back."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from chaos.history import INFO, NEMESIS, Op
from chaos.interfaces import Node, Primaries, Process, StatusProbe, require

LEADER_WAIT_S = 5.0    # how long a fault aimed at the leader waits for one to be known
RESTART_BOUND_S = 20.0  # how long a node brought back may take to run and answer again


def complete(op: Op, value) -> Op:
    """The info completion of a nemesis op (the runner stamps its own time on it too)."""
    return Op(process=NEMESIS, type=INFO, f=op.f, key=op.key, value=value, time=time.monotonic_ns())


def current_leader(db, view, wait: float | None = None) -> str | None:
    """The node the system itself names as leader (the DB's Primaries capability). While an
    election is under way, wait up to `wait` s for one rather than hit nothing."""
    require(db, "leader", "a fault aimed at the leader")
    deadline = time.monotonic() + (LEADER_WAIT_S if wait is None else wait)
    while True:
        leaders = db.primaries(view)
        if leaders:
            return leaders[0]
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def on_nodes(fn, nodes: list[Node]) -> list:
    """fn(node) for every node at once, so a fault hits its targets together; errors propagate."""
    if len(nodes) <= 1:
        return [fn(n) for n in nodes]
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        return list(pool.map(fn, nodes))


def value_dict(op: Op) -> dict:
    """The op's value as a dict; a bad value is an error naming the op."""
    value = op.value if op.value is not None else {}
    if not isinstance(value, dict):
        raise ValueError(f"{op.f}: value must be an object like {{\"target\": \"one\"}}, got {op.value!r}")
    return value


class ProcessFaults:
    """Which nodes the kill and pause nemeses hold down right now. Shared by every nemesis of
    a DB (process_state), because faults interact: a killed process cannot be paused, and a
    heal checks only the nodes no other fault holds down."""

    def __init__(self):
        import threading
        self.killed: set[str] = set()
        self.paused: set[str] = set()
        # nodes whose files a fault damaged on purpose and that refused to start: down for good
        self.damaged: set[str] = set()
        self.lock = threading.Lock()

    def held_down(self) -> set[str]:
        with self.lock:
            return self.killed | self.paused | self.damaged


def process_state(db) -> ProcessFaults:
    state = getattr(db, "_splitbrain_process_faults", None)
    if state is None:
        state = ProcessFaults()
        db._splitbrain_process_faults = state
    return state


def down_nodes(db, nodes: list[Node], bound: float | None = None) -> dict[str, str]:
    """The nodes that are not back within `bound` s: their process is not running (with the
    DB's exit report: last stderr lines) or, for a DB with a status probe, does not answer.
    A node that cannot come back after a fault is a finding of the run (checkers.node_health).
    """
    if not isinstance(db, Process):
        return {}
    bound = RESTART_BOUND_S if bound is None else bound
    held = process_state(db).held_down()
    nodes = [n for n in nodes if n.id not in held]

    def check(node: Node) -> tuple[str, str | None]:
        deadline = time.monotonic() + bound
        while True:
            running = db.is_running(node)
            answering = not isinstance(db, StatusProbe) or (running and db.probe(node, 1.0) is not None)
            if running and answering:
                return node.id, None
            if not running or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if not running:
            return node.id, "the process exited: " + (db.exit_report(node) or "(no output)").strip()[-2000:]
        return node.id, f"the process runs but did not answer within {bound:.0f} s"

    return {nid: why for nid, why in on_nodes(check, nodes) if why is not None}


def with_down(value: dict, down: dict[str, str]) -> dict:
    """A completion value with the nodes that did not come back, when there are any."""
    if down:
        value = dict(value)
        value["down"] = down
    return value


__all__ = ["complete", "current_leader", "on_nodes", "value_dict", "down_nodes", "with_down",
           "ProcessFaults", "process_state", "Primaries", "LEADER_WAIT_S", "RESTART_BOUND_S"]
