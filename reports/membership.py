"""The report's membership section: the configuration over time (one band per node: voter,
learner, not a member) and a table of the membership ops with their steps and outcomes. Read
from the history only: the membership nemesis's completions carry the view after each op
(chaos.nemesis.membership); the bootstrap configuration is the run's first nodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reports import svg
from reports.html import esc, num, table, tr

ROLE_COLORS = {"voter": "#2563eb", "learner": "#93c5fd"}
ROW_H, TOP, BOTTOM = 16, 8, 26


@dataclass
class Change:
    f: str
    start: float
    end: float | None
    requested: Any
    result: Any
    error: str | None


def membership_changes(nemesis_events) -> list[Change]:
    """The membership and settle ops of a run (chaos.nemesis.membership), in time order."""
    return [Change(e.f, e.start, e.end, e.requested, e.result, e.error)
            for e in sorted(nemesis_events, key=lambda e: e.start) if e.f in ("membership", "settle")]


def _node_key(node_id: str):
    return (len(node_id), node_id)


def configuration_timeline(changes: list[Change], first_nodes: list[str], t_start: float,
                           t_end: float) -> dict[str, list[tuple[float, float, str]]]:
    """node -> [(from, until, role)]: the nemesis's view after each op, from the bootstrap
    configuration (every first node a voter)."""
    state = {n: "voter" for n in first_nodes}
    points = [(t_start, dict(state))]
    for c in changes:
        result = c.result if isinstance(c.result, dict) else {}
        if "voters" not in result:
            continue
        state = {n: "voter" for n in result["voters"]}
        state.update({n: "learner" for n in result.get("learners", [])})
        points.append((c.end if c.end is not None else c.start, state))
    nodes = sorted({n for _, s in points for n in s}, key=_node_key)
    bands: dict[str, list[tuple[float, float, str]]] = {n: [] for n in nodes}
    for i, (t, s) in enumerate(points):
        until = points[i + 1][0] if i + 1 < len(points) else t_end
        for n, role in s.items():
            segs = bands[n]
            if segs and segs[-1][2] == role and abs(segs[-1][1] - t) < 1e-9:
                segs[-1] = (segs[-1][0], until, role)
            else:
                segs.append((t, until, role))
    return bands


def configuration_svg(axis: svg.TimeAxis, bands: dict[str, list[tuple[float, float, str]]]) -> str:
    height = TOP + ROW_H * len(bands) + BOTTOM
    out = [svg.svg_open(axis, height, "configuration over time", "membership")]
    for row, (node, segs) in enumerate(bands.items()):
        y = TOP + row * ROW_H
        out.append(f'<text x="{svg.LEFT - 6}" y="{y + ROW_H - 4}" text-anchor="end" class="lane-label">'
                   f'{esc(node)}</text>')
        for t0, t1, role in segs:
            x0, x1 = axis.x(max(t0, axis.t_min)), axis.x(min(t1, axis.t_max))
            if x1 <= x0:
                continue
            out.append(f'<rect x="{x0:.1f}" y="{y + 2}" width="{x1 - x0:.1f}" height="{ROW_H - 4}" '
                       f'fill="{ROLE_COLORS[role]}"><title>{esc(node)}: {role} {t0:.2f}-{t1:.2f} s</title></rect>')
    y = TOP + ROW_H * len(bands) + 14
    out.append(f'<text x="{svg.LEFT}" y="{y}" class="lane-label">{axis.t_min:.0f} s</text>')
    out.append(f'<text x="{svg.LEFT + axis.plot_w}" y="{y}" text-anchor="end" class="lane-label">'
               f'{axis.t_max:.0f} s</text>')
    out.append("</svg>")
    return "".join(out)


def _steps_text(result: dict) -> str:
    parts = []
    for s in result.get("steps", []):
        text = f"{s.get('op')} {s.get('node') or ''}".strip() + f": {s.get('outcome')}"
        if s.get("outcome") != "ok" and s.get("error"):
            text += f" ({s['error']})"
        if s.get("tries", 1) > 1:
            text += f" ×{s['tries']}"
        if s.get("ms") is not None:
            text += f" {s['ms'] / 1000:.2f} s"
        parts.append(text)
    return "; ".join(parts)


def membership_section(changes: list[Change], first_nodes: list[str], axis: svg.TimeAxis, t_end: float) -> str:
    if not changes:
        return ""
    out = ['<section id="membership"><h2>Membership</h2>']
    bands = configuration_timeline(changes, first_nodes, axis.t_min, t_end)
    legend = "".join(f'<span><span class="sw" style="background:{c}"></span>{r}</span>' for r, c in ROLE_COLORS.items())
    out.append(f'<div class="plotbox"><div class="legend">{legend}</div>{configuration_svg(axis, bands)}'
               '<p class="note">The configuration as the membership nemesis saw it after each op (an unknown '
               'outcome resolved from the cluster\'s own); blank: not a member.</p></div>')
    rows = []
    for i, c in enumerate(changes, 1):
        result = c.result if isinstance(c.result, dict) else {}
        requested = c.requested if isinstance(c.requested, dict) else {}
        change = result.get("change") or requested.get("change") or c.f
        if requested.get("node"):
            change += f" ({requested['node']})"
        outcome = "error" if c.error else result.get("outcome", "?")
        cls = {"ok": "", "skipped": "note"}.get(outcome, "warn")
        after = ",".join(result.get("voters", []))
        if result.get("learners"):
            after += " + learners " + ",".join(result["learners"])
        detail = c.error or _steps_text(result) or result.get("detail", "")
        if c.f == "settle" and "agrees" in result:
            detail += ("; the cluster's configuration agrees" if result["agrees"]
                       else f"; the cluster says {result.get('configuration')}")
        rows.append(tr([num(i), num(round(c.start, 2), "{:.2f}"), f"<td>{esc(change)}</td>",
                        f"<td>{esc(','.join(result.get('nodes', [])))}</td>",
                        f'<td class="{cls}">{esc(outcome)}</td>', f'<td class="wrap">{esc(detail)}</td>',
                        f"<td>{esc(after)}</td>"]))
    out.append(table(["#", ("at (s)", "num"), "change", "nodes", "outcome", "steps", "voters after"], rows,
                     page_size=30, cls="membership"))
    out.append("</section>")
    return "".join(out)
