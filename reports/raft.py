"""The per-node Raft timeline: roles, terms and leaders over time, and convergence after heals.

Ordering comes from the controller's `/status` polls (controller monotonic clock). Node log
events carry only the node's own clocks, which the clock nemesis skews; each event is placed on
the controller's clock through the nearest poll of the same node, whose answer reports the
node's `monotonic_time` (falling back to `wall_time`) at a known controller time. So a skewed
node's events still land where they happened.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field
from typing import Any

from reports.analysis import Fault, seconds
from reports.load import NodeLog, StatusPoll

DOWN = "down"  # the poll got no answer (killed, paused, partitioned from the controller)

#: A cluster is "stable" at time t when, over [t, t + STABLE_WINDOW], at every poll: exactly one
#: node reports itself leader, in term T, and a majority of the cluster's nodes (by their latest
#: poll) report that same leader in that same term T.
STABLE_WINDOW = 1.0

STABILITY_DEFINITION = (
    "A cluster has one stable leader from time t when, throughout [t, t+{w:g} s], at every "
    "status poll: exactly one node reports itself leader, and a majority of the cluster's nodes "
    "(their latest poll) name that same node as leader in the same term. Time to stable leader "
    "is measured from the completion of the healing operation to the start of the first such "
    "window (0 when the cluster is already stable at the heal).")


@dataclass
class Segment:
    start: float
    end: float
    role: str
    term: Any
    leader: Any


@dataclass
class RaftEvent:
    time: float | None          # controller seconds since t0; None if it could not be placed
    node: str
    event: str
    fields: dict
    line: int
    placed_by: str              # "monotonic", "wall clock", or "" when unplaced
    path: str = ""              # the node log file, relative to the run directory


@dataclass
class StableInterval:
    start: float
    end: float
    leader: Any
    term: Any


@dataclass
class Convergence:
    heal_f: str
    heal_index: int
    healed: list[Fault]
    heal_time: float
    stable_at: float | None     # start of the first stable window at or after the heal
    leader: Any = None
    term: Any = None
    next_fault: float | None = None  # when the next fault began (convergence may be cut short)

    @property
    def seconds(self) -> float | None:
        return None if self.stable_at is None else max(0.0, self.stable_at - self.heal_time)


@dataclass
class RaftTimeline:
    nodes: list[str]
    segments: dict[str, list[Segment]]
    events: list[RaftEvent]
    stable: list[StableInterval]
    convergence: list[Convergence]
    poll_count: int
    poll_interval: float | None     # median seconds between two polls of the same node
    unplaced_events: int = 0
    leader_changes: int = 0
    terms_seen: int = 0
    clock_offsets: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def _state(p: StatusPoll) -> tuple[str, Any, Any]:
    if p.status is None:
        return (DOWN, None, None)
    s = p.status
    return (str(s.get("role", "unknown")), s.get("term"), s.get("leader"))


def cluster_nodes(config: dict, polls: list[StatusPoll], logs: dict[str, NodeLog]) -> list[str]:
    nodes = config.get("nodes")
    names: list[str] = []
    if isinstance(nodes, list):
        for n in nodes:
            if isinstance(n, str):
                names.append(n)
            elif isinstance(n, dict) and isinstance(n.get("id"), str):
                names.append(n["id"])
    seen = sorted({p.node for p in polls} | set(logs), key=_node_order)
    return names + [n for n in seen if n not in names] if names else seen


def _node_order(name: str):
    digits = "".join(ch for ch in name if ch.isdigit())
    return (name.rstrip("0123456789"), int(digits) if digits else -1, name)


def node_segments(polls: list[StatusPoll], t0: int, end: float) -> dict[str, list[Segment]]:
    by_node: dict[str, list[StatusPoll]] = {}
    for p in polls:
        by_node.setdefault(p.node, []).append(p)
    out: dict[str, list[Segment]] = {}
    for node, ps in by_node.items():
        segs: list[Segment] = []
        for i, p in enumerate(ps):
            t = seconds(p.time, t0)
            nxt = seconds(ps[i + 1].time, t0) if i + 1 < len(ps) else max(end, t)
            role, term, leader = _state(p)
            if segs and (segs[-1].role, segs[-1].term, segs[-1].leader) == (role, term, leader):
                segs[-1].end = nxt
            else:
                segs.append(Segment(t, nxt, role, term, leader))
        out[node] = segs
    return out


def _median(xs: list[float]) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[len(xs) // 2]


def place_events(logs: dict[str, NodeLog], polls: list[StatusPoll], t0: int) -> list[RaftEvent]:
    """Put node log events on the controller clock (see the module docstring)."""
    anchors: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for p in polls:
        if p.status is None:
            continue
        ctrl = seconds(p.time, t0)
        for clock, name in (("mono", "monotonic_time"), ("ts", "wall_time")):
            v = p.status.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                anchors.setdefault(p.node, {}).setdefault(clock, []).append((float(v), ctrl - float(v)))
    for per_clock in anchors.values():
        for anchored in per_clock.values():
            anchored.sort()
    events: list[RaftEvent] = []
    for node, log in logs.items():
        node_anchors = anchors.get(node, {})
        for ev in log.events:
            time, how = None, ""
            for clock, label in (("mono", "monotonic"), ("ts", "wall clock")):
                value = ev.mono if clock == "mono" else ev.ts
                lst = node_anchors.get(clock)
                if value is None or not lst:
                    continue
                i = bisect.bisect_left(lst, (value, float("-inf")))
                candidates = [lst[j] for j in (i - 1, i) if 0 <= j < len(lst)]
                nearest = min(candidates, key=lambda a: abs(a[0] - value))
                time, how = value + nearest[1], label
                break
            events.append(RaftEvent(time, node, ev.event, ev.fields, ev.line, how, ev.path))
    events.sort(key=lambda e: (e.time is None, e.time if e.time is not None else 0.0))
    return events


def stable_intervals(polls: list[StatusPoll], nodes: list[str], t0: int, end: float,
                     cluster_size: int | None = None) -> list[StableInterval]:
    """Intervals during which the cluster had one leader recognised by a majority (see STABLE_WINDOW)."""
    majority = max(len(nodes), cluster_size or 0) // 2 + 1
    latest: dict[str, tuple[str, Any, Any]] = {}
    out: list[StableInterval] = []
    current: tuple[Any, Any] | None = None
    since = 0.0

    def close(at: float) -> None:
        if current is not None:
            out.append(StableInterval(since, at, current[0], current[1]))

    for p in polls:
        latest[p.node] = _state(p)
        t = seconds(p.time, t0)
        leaders = [n for n, st in latest.items() if st[0] == "leader"]
        verdict: tuple[Any, Any] | None = None
        if len(leaders) == 1:
            leader = leaders[0]
            term = latest[leader][1]
            agree = sum(1 for st in latest.values() if st[0] != DOWN and st[2] == leader and st[1] == term)
            if agree >= majority:
                verdict = (leader, term)
        if verdict != current:
            close(t)
            current, since = verdict, t
    if polls:
        close(seconds(polls[-1].time, t0))  # beyond the last poll nothing is known
    return [s for s in out if s.end > s.start]


def convergence_after_heals(faults: list[Fault], stable: list[StableInterval],
                            window: float = STABLE_WINDOW) -> list[Convergence]:
    heals: dict[int, Convergence] = {}
    for f in faults:
        if f.heal_index is None or f.heal_done is None:
            continue
        c = heals.get(f.heal_index)
        if c is None:
            c = heals[f.heal_index] = Convergence(f.heal_f or "heal", f.heal_index, [], f.heal_done, None)
        c.healed.append(f)
    starts = sorted(f.start for f in faults)
    result = sorted(heals.values(), key=lambda c: c.heal_time)
    for c in result:
        later = [s for s in starts if s > c.heal_time]
        c.next_fault = later[0] if later else None
        for s in stable:
            begin = max(s.start, c.heal_time)
            # the last interval is cut by the end of the polls: it must still cover a full window
            if s.end - begin >= window - 1e-9:
                c.stable_at, c.leader, c.term = begin, s.leader, s.term
                break
    return result


def clock_offsets(polls: list[StatusPoll], t0: int) -> dict[str, list[tuple[float, float]]]:
    """Each node's wall clock relative to the cluster's, over controller time.

    A poll gives (controller monotonic time, node wall_time); their difference drifts only if
    the node's clock moves. The baseline is the median difference over every node's first
    answered poll (most clocks are right at the start), so an unskewed node stays near 0 and a
    clock bumped by +10 s shows +10 s. The answer's network delay adds a few ms of noise.
    """
    raw: dict[str, list[tuple[float, float]]] = {}
    for p in polls:
        if p.status is None:
            continue
        wall = p.status.get("wall_time")
        if not isinstance(wall, (int, float)) or isinstance(wall, bool):
            continue
        t = seconds(p.time, t0)
        raw.setdefault(p.node, []).append((t, float(wall) - t))
    if not raw:
        return {}
    baseline = _median([pts[0][1] for pts in raw.values()]) or 0.0
    return {n: [(t, d - baseline) for t, d in pts] for n, pts in raw.items()}


def build_timeline(config: dict, polls: list[StatusPoll], logs: dict[str, NodeLog], t0: int,
                   end: float, faults: list[Fault]) -> RaftTimeline:
    nodes = cluster_nodes(config, polls, logs)
    segments = node_segments(polls, t0, end)
    events = place_events(logs, polls, t0)
    configured = config.get("nodes")
    size = configured if isinstance(configured, int) and not isinstance(configured, bool) else None
    stable = stable_intervals(polls, nodes, t0, end, size) if nodes else []
    conv = convergence_after_heals(faults, stable)
    gaps: list[float] = []
    prev: dict[str, int] = {}
    for p in polls:
        if p.node in prev:
            gaps.append((p.time - prev[p.node]) / 1e9)
        prev[p.node] = p.time
    leader_seq = [s.leader for s in stable]
    changes = sum(1 for a, b in itertools.pairwise(leader_seq) if a != b)
    terms = {st.status.get("term") for st in polls if st.status is not None}
    return RaftTimeline(nodes=nodes, segments=segments, events=events, stable=stable,
                        convergence=conv, poll_count=len(polls), poll_interval=_median(gaps),
                        unplaced_events=sum(1 for e in events if e.time is None),
                        leader_changes=changes, terms_seen=len(terms - {None}),
                        clock_offsets=clock_offsets(polls, t0))
