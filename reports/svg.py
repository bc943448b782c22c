"""Inline SVG plots generated in Python: no plotting library, nothing fetched by the browser.

Every time plot shares one horizontal mapping (same width, margins and time range), so plots
stacked on the page line up and the fault bands mark the same instants on each. Large inputs are
downsampled in pixel space: points that would land in the same 2-pixel cell with the same
colour and marker are drawn once; all points of one class are one <path>, which browsers draw
quickly even for tens of thousands of points.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any, Iterable, Sequence

WIDTH = 1100
LEFT, RIGHT = 70, 20

OUTCOME_COLORS = {"ok": "#1f9e6e", "fail": "#d62839", "info": "#e69500"}
FAULT_COLORS = {"partition": "#f4a261", "kill": "#e63946", "pause": "#8e44ad", "clock-skew": "#3a86ff",
                "lossy": "#2a9d8f", "slow": "#e9c46a", "throttle": "#6d597a"}
ROLE_COLORS = {"leader": "#1d4ed8", "follower": "#cbd5e1", "candidate": "#f59e0b",
               "pre-candidate": "#fcd34d", "down": "url(#down-hatch)"}
NODE_PALETTE = ("#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#65a30d",
                "#dc2626", "#4b5563")
MARKERS = ("read", "write", "cas", "add", "append")


def fault_color(kind: str) -> str:
    return FAULT_COLORS.get(kind, "#6b7280")


def esc(value: Any) -> str:
    return escape(str(value), quote=True)


def fmt_num(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.2f}".rstrip("0").rstrip(".")


def nice_ticks(lo: float, hi: float, count: int = 8) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


def fmt_latency(seconds: float) -> str:
    ms = seconds * 1000
    if ms < 1:
        return f"{ms:.2g} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{seconds:.3g} s"


class TimeAxis:
    """The horizontal mapping shared by all time plots of a page."""

    def __init__(self, t_min: float, t_max: float, width: int = WIDTH):
        self.t_min = t_min
        self.t_max = t_max if t_max > t_min else t_min + 1.0
        self.width = width
        self.plot_w = width - LEFT - RIGHT

    def x(self, t: float) -> float:
        return LEFT + (t - self.t_min) / (self.t_max - self.t_min) * self.plot_w

    def attrs(self) -> str:
        """Data attributes the page's script uses to draw a shared cursor across plots."""
        return (f'data-t0="{self.t_min:.6f}" data-t1="{self.t_max:.6f}" data-left="{LEFT}" '
                f'data-plotw="{self.plot_w}" data-width="{self.width}"')


def svg_open(axis: TimeAxis, height: int, label: str, extra_class: str = "", defs: str = "") -> str:
    return (f'<svg class="plot timeplot {extra_class}" viewBox="0 0 {axis.width} {height}" '
            f'width="{axis.width}" height="{height}" role="img" aria-label="{esc(label)}" '
            f'preserveAspectRatio="xMinYMin meet" {axis.attrs()}>{defs}')


DOWN_HATCH = ('<defs><pattern id="down-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
              'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fee2e2"/>'
              '<line x1="0" y1="0" x2="0" y2="6" stroke="#ef4444" stroke-width="3"/></pattern></defs>')


def fault_bands(axis: TimeAxis, faults: Iterable[Any], top: float, bottom: float, end: float) -> str:
    """Shaded bands where each fault was active; hovering a band names the fault."""
    out = []
    for f in faults:
        s = f.start
        e = f.end if f.end is not None else end
        x0, x1 = axis.x(max(s, axis.t_min)), axis.x(min(e, axis.t_max))
        if x1 < x0:
            continue
        w = max(x1 - x0, 1.0)
        title = (f"{f.kind} {f.describe()} from {s:.2f} s to "
                 + (f"{e:.2f} s" if f.end is not None else "end (never healed)"))
        out.append(f'<rect class="band" x="{x0:.1f}" y="{top:.1f}" width="{w:.1f}" height="{bottom - top:.1f}" '
                   f'fill="{fault_color(f.kind)}" fill-opacity="0.16"><title>{esc(title)}</title></rect>')
    return "".join(out)


def time_ticks(axis: TimeAxis, top: float, bottom: float, labels: bool = True) -> str:
    out = []
    for t in nice_ticks(axis.t_min, axis.t_max, 10):
        x = axis.x(t)
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}"/>')
        if labels:
            out.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 14:.1f}" text-anchor="middle">'
                       f'{fmt_num(t)} s</text>')
    return "".join(out)


class YScale:
    def __init__(self, lo: float, hi: float, top: float, bottom: float, log: bool = False):
        if log:
            lo = max(lo, 1e-6)
            hi = max(hi, lo * 10)
            self.llo, self.lhi = math.log10(lo), math.log10(hi)
        elif hi <= lo:
            hi = lo + 1
        self.lo, self.hi, self.top, self.bottom, self.log = lo, hi, top, bottom, log

    def y(self, v: float) -> float:
        if self.log:
            v = max(v, self.lo)
            frac = (math.log10(v) - self.llo) / (self.lhi - self.llo)
        else:
            frac = (v - self.lo) / (self.hi - self.lo)
        return self.bottom - frac * (self.bottom - self.top)

    def ticks(self) -> list[float]:
        if self.log:
            return [10 ** e for e in range(math.ceil(self.llo), math.floor(self.lhi) + 1)]
        return nice_ticks(self.lo, self.hi, 5)


def y_axis(axis: TimeAxis, ys: YScale, fmt, label: str) -> str:
    out = []
    for v in ys.ticks():
        y = ys.y(v)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{axis.width - RIGHT}" y2="{y:.1f}"/>'
                   f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(fmt(v))}</text>')
    mid = (ys.top + ys.bottom) / 2
    out.append(f'<text class="axis-label" transform="translate(14 {mid:.1f}) rotate(-90)" text-anchor="middle">'
               f'{esc(label)}</text>')
    out.append(f'<rect class="frame" x="{LEFT}" y="{ys.top:.1f}" width="{axis.plot_w}" '
               f'height="{ys.bottom - ys.top:.1f}"/>')
    return "".join(out)


def marker_path(f: str, x: float, y: float) -> str:
    """One subpath of a marker; circles and squares are zero-length strokes with round/square caps."""
    if f in ("read", "write"):  # a dot or a square: marker_style gives the line cap
        return f"M{x:.1f} {y:.1f}h0"
    if f == "cas":
        return f"M{x:.1f} {y - 3.2:.1f}l3 5.4h-6z"
    if f in ("add", "append"):
        return f"M{x:.1f} {y - 3.4:.1f}l3.4 3.4l-3.4 3.4l-3.4-3.4z"
    return f"M{x - 2.5:.1f} {y - 2.5:.1f}l5 5m0-5l-5 5"


def marker_style(f: str, color: str) -> str:
    if f == "read":
        return f'fill="none" stroke="{color}" stroke-width="4.5" stroke-linecap="round"'
    if f == "write":
        return f'fill="none" stroke="{color}" stroke-width="4.5" stroke-linecap="square"'
    if f in ("cas", "add", "append"):
        return f'fill="{color}" stroke="none"'
    return f'fill="none" stroke="{color}" stroke-width="1.3"'


def latency_scatter(axis: TimeAxis, client: Sequence[Any], faults: Sequence[Any], end: float,
                    height: int = 300) -> tuple[str, dict]:
    """A point per operation at (invocation time, latency), log scale; returns (svg, stats)."""
    top, bottom = 10, height - 28
    lats = [c.end - c.start for c in client if c.end is not None]
    lo = max(min(lats), 1e-4) if lats else 1e-3
    hi = max(lats) if lats else 1.0
    ys = YScale(10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi * 1.01)), top + 10, bottom, log=True)
    classes: dict[tuple[str, str], list[str]] = {}
    seen: set = set()
    drawn = 0
    for c in client:
        x = axis.x(c.start)
        y = ys.top - 6 if c.end is None else ys.y(max(c.end - c.start, ys.lo))
        f = c.f if c.f in MARKERS else "other"
        cell = (c.type, f, int(x / 2), int(y / 2))
        if cell in seen:
            continue
        seen.add(cell)
        classes.setdefault((c.type, f), []).append(marker_path(f, x, y))
        drawn += 1
    parts = [svg_open(axis, height, "latency of every operation over time"),
             fault_bands(axis, faults, top, bottom, end), time_ticks(axis, top, bottom),
             y_axis(axis, ys, fmt_latency, "latency")]
    if any(c.end is None for c in client):
        parts.append(f'<text class="tick" x="{LEFT + 4}" y="{ys.top - 9:.1f}">no reply ↓</text>')
    for outcome in ("ok", "info", "fail"):  # failures drawn last, on top
        for (t, f), paths in classes.items():
            if t == outcome:
                parts.append(f'<path class="pts pts-{esc(t)}" data-f="{esc(f)}" '
                             f'{marker_style(f, OUTCOME_COLORS.get(t, "#555"))} d="{"".join(paths)}"/>')
    parts.append("</svg>")
    return "".join(parts), {"points": len(client), "drawn": drawn}


def line_plot(axis: TimeAxis, series: list[tuple[str, str, list[float | None]]], t_min: float, bucket: float,
              faults: Sequence[Any], end: float, label: str, y_fmt, log: bool = False, height: int = 220,
              dashed: Iterable[str] = ()) -> str:
    """Lines of bucketed values; series are (name, colour, values per bucket), None breaks a line."""
    top, bottom = 10, height - 28
    values = [v for _, _, s in series for v in s if v is not None]
    if log:
        pos = [v for v in values if v > 0]
        lo = 10 ** math.floor(math.log10(min(pos))) if pos else 1e-3
        hi = 10 ** math.ceil(math.log10(max(pos) * 1.01)) if pos else 1.0
        ys = YScale(lo, hi, top + 4, bottom, log=True)
    else:
        ys = YScale(0, (max(values) * 1.1) if values and max(values) > 0 else 1.0, top + 4, bottom)
    dashed = set(dashed)
    parts = [svg_open(axis, height, label), fault_bands(axis, faults, top, bottom, end),
             time_ticks(axis, top, bottom), y_axis(axis, ys, y_fmt, label)]
    for name, color, s in series:
        d: list[str] = []
        pen = False
        for i, v in enumerate(s):
            if v is None or (log and v <= 0):
                pen = False
                continue
            x = axis.x(t_min + (i + 0.5) * bucket)
            d.append(f'{"L" if pen else "M"}{x:.1f} {ys.y(v):.1f}')
            pen = True
        dash = ' stroke-dasharray="5 3"' if name in dashed else ""
        parts.append(f'<path class="line" data-series="{esc(name)}" fill="none" stroke="{color}" '
                     f'stroke-width="1.6"{dash} d="{"".join(d)}"><title>{esc(name)}</title></path>')
    parts.append("</svg>")
    return "".join(parts)


def node_color(nodes: Sequence[str], node: Any) -> str:
    if node in nodes:
        return NODE_PALETTE[list(nodes).index(node) % len(NODE_PALETTE)]
    return "#9ca3af"


def _lane_rects(axis: TimeAxis, items: Iterable[tuple[float, float, str, str]], y: float, h: float) -> str:
    """Rectangles for consecutive (start, end, colour, title) items, merging sub-pixel slivers so
    that a flapping node does not produce more rectangles than the lane has pixels."""
    rects: list[list] = []
    for s, e, color, title in items:
        x0, x1 = axis.x(max(s, axis.t_min)), axis.x(min(e, axis.t_max))
        if x1 <= x0:
            continue
        if rects and x1 - x0 < 0.7 and x0 - rects[-1][1] < 0.7:
            rects[-1][1] = x1  # a sliver: absorbed by its neighbour
            continue
        if rects and rects[-1][2] == color and abs(rects[-1][1] - x0) < 0.01:
            rects[-1][1] = x1
            continue
        rects.append([x0, x1, color, title])
    return "".join(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 0.6):.1f}" height="{h:.1f}" fill="{c}">'
                   f'<title>{esc(t)}</title></rect>' for x0, x1, c, t in rects if c)


def raft_timeline(axis: TimeAxis, timeline: Any, faults: Sequence[Any], end: float) -> str:
    """A lane per node: role (colour), term (labels), the leader it follows (thin strip), elections
    (markers); above them the cluster lane: when one stable leader existed, and which."""
    nodes = timeline.nodes
    lane_h, strip_h, gap = 20, 5, 12
    top = 10
    cluster_y = top + 4
    first_lane = cluster_y + lane_h + gap + 4
    height = first_lane + len(nodes) * (lane_h + strip_h + gap) + 24
    bottom = height - 28
    parts = [svg_open(axis, height, "Raft timeline: role, term and leader of each node", "raft", DOWN_HATCH),
             fault_bands(axis, faults, top, bottom, end), time_ticks(axis, top, bottom)]
    parts.append(f'<text class="lane-label" x="{LEFT - 6}" y="{cluster_y + 14}" text-anchor="end">cluster</text>')
    parts.append(_lane_rects(axis, ((s.start, s.end, node_color(nodes, s.leader),
                                     f"stable leader {s.leader} term {s.term}: {s.start:.2f}–{s.end:.2f} s")
                                    for s in timeline.stable), cluster_y, lane_h))
    for s in timeline.stable:
        x0, x1 = axis.x(s.start), axis.x(s.end)
        if x1 - x0 > 34:
            parts.append(f'<text class="seg-label light" x="{x0 + 3:.1f}" y="{cluster_y + 14}">{esc(s.leader)}</text>')
    events_by_node: dict[str, list[Any]] = {}
    for ev in timeline.events:
        if ev.time is not None:
            events_by_node.setdefault(ev.node, []).append(ev)
    for i, node in enumerate(nodes):
        y = first_lane + i * (lane_h + strip_h + gap)
        parts.append(f'<text class="lane-label" x="{LEFT - 6}" y="{y + 14}" text-anchor="end">{esc(node)}</text>')
        segs = timeline.segments.get(node, [])
        parts.append(_lane_rects(axis, ((s.start, s.end, ROLE_COLORS.get(s.role, "#9ca3af"),
                                         f"{node}: {s.role}, term {s.term}, leader {s.leader} "
                                         f"({s.start:.2f}–{s.end:.2f} s)") for s in segs), y, lane_h))
        parts.append(_lane_rects(axis, ((s.start, s.end, node_color(nodes, s.leader) if s.leader is not None else "",
                                         f"{node} follows {s.leader}") for s in segs), y + lane_h + 1, strip_h))
        last_label_x = -1e9
        for s in segs:
            if s.term is None or s.role == "down":
                continue
            x0 = axis.x(max(s.start, axis.t_min))
            if axis.x(min(s.end, axis.t_max)) - x0 >= 22 and x0 - last_label_x >= 26:
                light = " light" if s.role == "leader" else ""
                parts.append(f'<text class="seg-label{light}" x="{x0 + 3:.1f}" y="{y + 14}">t{esc(s.term)}</text>')
                last_label_x = x0
        wins: list[str] = []
        last_x = -1e9
        for ev in events_by_node.get(node, []):
            if ev.event != "election_won":
                continue
            x = axis.x(ev.time)
            if x - last_x < 3:
                continue
            last_x = x
            wins.append(f"M{x:.1f} {y - 1:.1f}l-4 -6h8z")
        if wins:
            parts.append(f'<path class="election" fill="#111827" d="{"".join(wins)}">'
                         f'<title>{esc(node)}: election won</title></path>')
    parts.append("</svg>")
    return "".join(parts)


def offset_plot(axis: TimeAxis, nodes: Sequence[str], offsets: dict[str, list[tuple[float, float]]],
                faults: Sequence[Any], end: float, height: int = 200) -> str:
    """A line per node: its wall clock's offset from the cluster's (seconds) over time."""
    top, bottom = 10, height - 28
    values = [d for pts in offsets.values() for _, d in pts]
    lo, hi = min(values + [0.0]), max(values + [0.0])
    pad = max((hi - lo) * 0.08, 0.05)
    ys = YScale(lo - pad, hi + pad, top + 4, bottom)
    parts = [svg_open(axis, height, "node clock offsets"), fault_bands(axis, faults, top, bottom, end),
             time_ticks(axis, top, bottom), y_axis(axis, ys, lambda v: f"{v:+.3g} s" if v else "0", "clock offset")]
    for node in sorted(offsets, key=lambda n: list(nodes).index(n) if n in nodes else len(nodes)):
        d: list[str] = []
        last = None
        for t, off in offsets[node]:
            x, y = axis.x(t), ys.y(off)
            if last is not None and abs(x - last[0]) < 1 and abs(y - last[1]) < 1:
                continue  # same pixel: keep the path small on long runs
            d.append(f'{"L" if d else "M"}{x:.1f} {y:.1f}')
            last = (x, y)
        parts.append(f'<path class="line" data-node="{esc(node)}" fill="none" stroke="{node_color(nodes, node)}" '
                     f'stroke-width="1.6" d="{"".join(d)}"><title>{esc(node)}</title></path>')
    parts.append("</svg>")
    return "".join(parts)


def sparkline(values: Sequence[float | None], colors: Sequence[str], titles: Sequence[str],
              links: Sequence[str | None], width: int = 300, height: int = 44, unit: str = "ok/s") -> str:
    """A row of squares (one per run, oldest first, coloured by verdict, linked to the run) above
    a line of a figure per run, scaled between its minimum and maximum (labelled at the right)."""
    n = len(values)
    if n == 0:
        return ""
    label_w = 64
    cell = min(16.0, (width - label_w - 4) / n)
    parts = [f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="trend of {n} runs">']
    nums = [v for v in values if v is not None]
    lo, hi = (min(nums), max(nums)) if nums else (0.0, 1.0)
    span = hi - lo
    top, bottom = 20.0, height - 4.0
    pts = []
    for i, (v, c, t, href) in enumerate(zip(values, colors, titles, links, strict=True)):
        x = 2 + i * cell
        sq = (f'<rect x="{x:.1f}" y="2" width="{max(cell - 2, 1):.1f}" height="12" rx="2" fill="{c}">'
              f'<title>{esc(t)}</title></rect>')
        parts.append(f'<a href="{esc(href)}">{sq}</a>' if href else sq)
        if v is not None:
            y = (top + bottom) / 2 if span <= 0 else bottom - (v - lo) / span * (bottom - top)
            pts.append(f"{x + cell / 2 - 1:.1f} {y:.1f}")
    if len(pts) > 1:
        parts.append(f'<polyline fill="none" stroke="#475569" stroke-width="1.4" points="{" ".join(pts)}"/>')
    elif pts:
        cx, cy = pts[0].split()
        parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="#475569"/>')
    if nums:
        last = next(v for v in reversed(values) if v is not None)
        parts.append(f'<text x="{width - label_w + 6}" y="{bottom - 2:.1f}">{esc(fmt_num(last))} {esc(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)
