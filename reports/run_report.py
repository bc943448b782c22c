"""render_run(run_dir): the one-page report of a run, written to <run_dir>/report/index.html.

Order of the page follows the reviewer's questions: did it hold (banner), how do I reproduce it,
what went wrong (first anomaly, in words, with the history around it and porcupine's view),
which faults ran, what clients saw (latency, throughput, availability), what Raft did (roles,
terms, leaders, time to a stable leader after each heal), and the raw material (config, logs).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import time as _time
from typing import Any

from chaos.history import FAIL, INFO, OK

from reports import svg
from reports.membership import membership_changes, membership_section
from reports.analysis import (Analysis, QUANTILES, analyse, availability, describe_fault, latency_quantiles_over_time,
                              latency_table, nice_bucket, throughput)
from reports.anomaly import Anomaly, find_anomalies
from reports.html import esc, jtext, num, page, pill, table, tr, verdict_word
from reports.load import ReportError, RunData, load_run
from reports.raft import STABILITY_DEFINITION, STABLE_WINDOW, RaftTimeline, build_timeline

SUMMARY_VERSION = 1


def _run_started(run_dir: str, config: dict) -> str:
    """ISO date of the run: from the store's directory name (YYYYmmddTHHMMSS), else the config,
    else the history file's modification time."""
    name = os.path.basename(os.path.normpath(run_dir))
    try:
        return _dt.datetime.strptime(name, "%Y%m%dT%H%M%S").strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        pass
    for k in ("started", "start_time", "timestamp", "date"):
        if isinstance(config.get(k), str):
            return config[k]
    mtime = os.path.getmtime(run_dir)
    return _dt.datetime.fromtimestamp(mtime).strftime("%Y-%m-%d %H:%M:%S")


def test_name(run_dir: str, config: dict) -> str:
    for k in ("test", "name", "test_name", "scenario"):
        if isinstance(config.get(k), str) and config[k]:
            return config[k]
    parent = os.path.basename(os.path.dirname(os.path.normpath(run_dir)))
    return parent or "run"


def reproduce_command(run_dir: str, config: dict) -> str:
    cmd = config.get("command")
    if isinstance(cmd, list) and all(isinstance(c, str) for c in cmd):
        return shlex.join(cmd)
    if isinstance(cmd, str) and cmd.strip():
        return cmd
    return shlex.join(["splitbrain", "reproduce", os.path.abspath(run_dir)])


def _verdict(results: dict | None) -> tuple[Any, str]:
    if results is None:
        return "unknown", ("results.json is missing: the history was never checked "
                           "(did the run crash before the check?).")
    valid = results.get("valid", "unknown")
    reason = results.get("reason")
    if isinstance(reason, str) and reason.strip():
        return valid, reason.strip()
    checkers = results.get("checkers") if isinstance(results.get("checkers"), dict) else {}
    bad = [name for name, c in checkers.items() if isinstance(c, dict) and c.get("valid") is False]
    unk = [name for name, c in checkers.items() if isinstance(c, dict) and c.get("valid") not in (True, False)]
    if valid is True:
        return valid, "Every checker found the history valid."
    if valid is False:
        return valid, f"The {', '.join(bad) or 'checker'} check found the history invalid."
    return valid, f"The {', '.join(unk) or 'checker'} check could not decide."


def _count_anomalies(results: dict | None) -> int:
    if not isinstance(results, dict) or not isinstance(results.get("checkers"), dict):
        return 0
    n = 0
    c = results["checkers"]
    lin = c.get("linearizable")
    if isinstance(lin, dict) and isinstance(lin.get("keys"), dict):
        n += sum(1 for v in lin["keys"].values() if isinstance(v, dict) and v.get("valid") is False)
        if not lin["keys"] and lin.get("valid") is False:
            n += 1
    st = c.get("set")
    if isinstance(st, dict):
        for k in ("lost", "duplicated", "unexpected"):
            if isinstance(st.get(k), list):
                n += len(st[k])
    return n


def _safe_rel_link(run_dir: str, report_dir: str, target: str) -> str | None:
    """A relative link from the report to a file of the run, or None if it leaves the run dir or
    is not a plain relative path (a results file must not make the page link anywhere else)."""
    if not isinstance(target, str) or not target or ":" in target or target.startswith(("/", "\\")):
        return None
    full = os.path.normpath(os.path.join(run_dir, target))
    root = os.path.normpath(run_dir)
    if os.path.commonpath([full, root]) != root:
        return None
    return os.path.relpath(full, report_dir).replace(os.sep, "/")


# ---------------------------------------------------------------------------------------------
# Sections

def _banner(valid: Any, reason: str) -> str:
    word = verdict_word(valid)
    return (f'<section class="banner {word}" id="verdict" data-verdict="{word}">'
            f'<div class="verdict">{esc(word.upper())}</div><div class="reason">{esc(reason)}</div></section>')


def _facts(run: RunData, an: Analysis, tl: RaftTimeline, started: str) -> str:
    cfg = run.config
    items = [("started", started), ("duration", f"{an.duration:.1f} s"),
             ("operations", f"{len(an.client):,}"), ("nodes", str(len(tl.nodes)) if tl.nodes else "?"),
             ("faults", str(len(an.faults))), ("seed", _plain(cfg.get("seed", "?")))]
    db = cfg.get("db_info", {}).get("name") if isinstance(cfg.get("db_info"), dict) else cfg.get("db")
    if db:
        items.append(("system", _plain(db)))
    for k in ("workload", "provisioner", "bug"):
        if cfg.get(k) not in (None, "", "none"):
            items.append((k, _plain(cfg[k])))
    return '<div class="facts">' + "".join(f"<span>{esc(k)} <b>{esc(v)}</b></span>" for k, v in items) + "</div>"


def _plain(value: Any, limit: int = 60) -> str:
    """A config value as short text (strings as they are, anything else as compact JSON)."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reproduce(command: str) -> str:
    return ('<div class="repro" id="reproduce"><pre id="repro-cmd">' + esc(command) + "</pre>"
            '<button type="button" data-copy="repro-cmd">copy</button></div>'
            '<p class="note">Same config, seed and executed fault schedule on a fresh cluster.</p>')


def _op_cell_value(v: Any) -> str:
    return f'<td class="mono wrap">{jtext(v, 120)}</td>'


def _excerpt_table(a: Anomaly) -> str:
    rows = []
    for r in a.rows:
        o = r["op"]
        if r["kind"] == "nemesis":
            rows.append(tr([num(o.invoke_index, "{}"), f"{o.start:.3f}", f"{o.end:.3f}" if o.end is not None else "—",
                            "nemesis", esc(o.f), "", _op_cell_value(o.requested),
                            f'<td class="wrap">{esc(describe_fault(o.f, o.requested, o.result))}</td>', "", "fault"],
                           cls="fault-row"))
            continue
        rows.append(tr([num(o.index, "{}"), f"{o.start:.3f}", f"{o.end:.3f}" if o.end is not None else "—",
                        esc(o.process), esc(o.f), pill(o.type), _op_cell_value(o.invoke_value),
                        _op_cell_value(o.value if o.end is not None else None),
                        esc(o.node or ""), f"<b>{esc(r['role'])}</b>" if r["role"] else ""],
                       cls="hl" if r["role"] else ""))
    return table([("op", "num"), "invoked (s)", "completed (s)", "process", "f", "type", "invoke value", "returned",
                  "node", "part in the anomaly"], rows, cls="excerpt")


def _anomaly_section(run: RunData, anomalies: list[Anomaly], report_dir: str, n_illegal: int) -> str:
    if not anomalies:
        return ""
    first = anomalies[0]
    out = ['<section id="anomaly"><h2>First anomaly</h2><div class="anomaly">']
    what = f"key <b class=\"mono\">{esc(first.key)}</b>" if first.key is not None else "the history"
    out.append(f"<div>{esc(first.checker)} checker, {what}</div>")
    for i, s in enumerate(first.sentences):
        text = s[0].upper() + s[1:] if s else s
        out.append(f'<p class="words">{esc(text)}</p>' if i == 0 else f'<p class="note">Checker: {esc(s)}</p>')
    if first.rows:
        out.append("<h3>The history around it</h3>")
        out.append('<p class="note">Operations on this key nearest to the anomaly, and the faults active '
                   "meanwhile; highlighted rows are the ones the explanation refers to. Times are seconds "
                   "since the start of the history, on the controller's clock.</p>")
        out.append(_excerpt_table(first))
    if first.raw is not None:
        out.append("<details><summary>The checker's anomaly object</summary>"
                   f"<pre>{jtext(first.raw, 20000)}</pre></details>")
    out.append("</div>")
    out.append(_porcupine_view(run, first, report_dir, embed=True))
    if len(anomalies) > 1 or n_illegal > len(anomalies):
        out.append(f"<h3>Other illegal keys ({n_illegal - 1})</h3><ul>")
        for a in anomalies[1:]:
            out.append(f"<li><b class=\"mono\">{esc(a.key)}</b>: {esc(a.sentences[0])} "
                       f"{_porcupine_view(run, a, report_dir, embed=False)}</li>")
        if n_illegal > len(anomalies):
            out.append(f"<li>… and {n_illegal - len(anomalies)} more: see the per-key table below.</li>")
        out.append("</ul>")
    out.append("</section>")
    return "".join(out)


def _visualization_path(run: RunData, a: Anomaly) -> str | None:
    if a.visualization:
        return a.visualization
    if a.key is not None and a.checker == "linearizable":
        guess = f"report/porcupine/{a.key}.html"
        if os.path.isfile(os.path.join(run.run_dir, guess)):
            return guess
    return None


def _porcupine_view(run: RunData, a: Anomaly, report_dir: str, embed: bool) -> str:
    vis = _visualization_path(run, a)
    if a.checker != "linearizable":
        return ""
    if vis is None:
        return '<span class="note">(no porcupine visualization was written for this key)</span>' if not embed else \
            '<p class="note">The checker wrote no porcupine visualization for this key.</p>'
    link = _safe_rel_link(run.run_dir, report_dir, vis)
    if link is None:
        return f'<p class="warn">Visualization path {esc(vis)} is outside the run directory: not linked.</p>'
    exists = os.path.isfile(os.path.join(report_dir, link))
    if not exists:
        return f'<span class="note">(porcupine visualization {esc(vis)} is missing)</span>'
    if not embed:
        return f'<a href="{esc(link)}">porcupine view</a>'
    return (f'<h3>Porcupine’s visualization of key <span class="mono">{esc(a.key)}</span></h3>'
            f'<p class="note">The longest linearizable prefixes and where they get stuck. '
            f'<a href="{esc(link)}" id="porcupine-link">Open it full size</a>.</p>'
            f'<iframe class="porcupine" id="porcupine-frame" src="{esc(link)}" '
            f'title="porcupine visualization of key {esc(a.key)}"></iframe>')


def _checkers_section(run: RunData, report_dir: str) -> str:
    results = run.results
    out = ['<section id="checkers"><h2>Checker results</h2>']
    if results is None:
        out.append('<p class="warn">No results.json: the history was not checked. '
                   f'Run <code>splitbrain check {esc(run.run_dir)}</code>.</p></section>')
        return "".join(out)
    checkers = results.get("checkers") if isinstance(results.get("checkers"), dict) else {}
    rows = []
    for name, c in checkers.items():
        if not isinstance(c, dict):
            continue
        detail = []
        for k in ("checker", "model", "first_illegal_key", "error", "reason"):
            if c.get(k) is not None:
                detail.append(f"{k}: {c[k]}" if not isinstance(c[k], (dict, list))
                              else f"{k}: {json.dumps(c[k], default=str)[:80]}")
        if name == "set":
            for k in ("lost", "duplicated", "unexpected", "recovered"):
                if isinstance(c.get(k), list):
                    detail.append(f"{k}: {len(c[k])}")
        # A checker with no verdict at all (availability) measures; it does not judge.
        badge = pill(verdict_word(c.get("valid"))) if "valid" in c else pill("measured")
        rows.append(tr([esc(name), badge, esc("; ".join(detail))]))
    out.append(table(["checker", "verdict", "details"], rows))

    lin = checkers.get("linearizable")
    if isinstance(lin, dict) and isinstance(lin.get("keys"), dict) and lin["keys"]:
        keys = lin["keys"]
        def rank(k: Any) -> tuple:
            v = keys[k].get("valid") if isinstance(keys[k], dict) else None
            return (0 if v is False else 1 if v is not True else 2, str(k))
        order = sorted(keys, key=rank)
        krows = []
        for k in order:
            v = keys[k] if isinstance(keys[k], dict) else {}
            vis = v.get("visualization")
            link = _safe_rel_link(run.run_dir, report_dir, vis) if isinstance(vis, str) else None
            vis_cell = (f'<a href="{esc(link)}">porcupine view</a>'
                        if link and os.path.isfile(os.path.join(report_dir, link)) else "")
            krows.append(tr([f'<span class="mono">{esc(k)}</span>', pill(verdict_word(v.get("valid"))),
                             num(v.get("ops")), num(v.get("ms"), "{:,.1f}"), vis_cell,
                             '<td class="wrap">'
                             f'{jtext(v.get("anomaly"), 160) if v.get("anomaly") is not None else ""}</td>'],
                            cls="hl" if v.get("valid") is False else ""))
        bad = sum(1 for k in keys if isinstance(keys[k], dict) and keys[k].get("valid") is False)
        key_table = table(["key", "verdict", ("ops", "num"), ("check ms", "num"), "visualization", "anomaly"], krows,
                          page_size=25, cls="keys")
        if bad:
            out.append(f"<h3>Linearizability per key ({len(keys)} keys, {bad} illegal)</h3>" + key_table)
        else:  # nothing to see: keep the page short for the plots
            out.append(f"<details><summary>Linearizability per key: {len(keys)} keys, none illegal</summary>"
                       f"{key_table}</details>")
    st = checkers.get("set")
    if isinstance(st, dict):
        out.append("<h3>Set</h3>")
        srows = []
        for k in ("lost", "duplicated", "unexpected", "recovered"):
            if isinstance(st.get(k), list):
                srows.append(tr([esc(k), num(len(st[k])), f'<td class="mono wrap">{jtext(st[k][:50], 400)}</td>']))
        out.append(table(["elements", ("count", "num"), "first 50"], srows))
    stats = checkers.get("stats")
    if isinstance(stats, dict) and isinstance(stats.get("by_f"), dict):
        out.append("<h3>Outcomes by operation (stats checker)</h3>")
        srows = []
        for f, counts in stats["by_f"].items():
            if isinstance(counts, dict):
                srows.append(tr([esc(f), num(counts.get("ok")), num(counts.get("fail")), num(counts.get("info"))]))
        out.append(table(["f", ("ok", "num"), ("fail", "num"), ("info", "num")], srows))
    out.append("</section>")
    return "".join(out)


def _legend_faults(an: Analysis) -> str:
    kinds = []
    for f in an.faults:
        if f.kind not in kinds:
            kinds.append(f.kind)
    if not kinds:
        return ""
    return "".join(f'<span><span class="sw" style="background:{svg.fault_color(k)};opacity:.45"></span>{esc(k)}</span>'
                   for k in kinds)


def _faults_section(an: Analysis, tl: RaftTimeline, config: dict) -> str:
    out = ['<section id="faults"><h2>Fault schedule</h2>']
    if not an.faults and not an.nemesis:
        out.append('<p class="note">No faults were injected in this run.</p></section>')
        return "".join(out)
    conv_by_heal = {c.heal_index: c for c in tl.convergence}
    rows = []
    for i, f in enumerate(an.faults, 1):
        c = conv_by_heal.get(f.heal_index)
        if c is None:
            stable = "—" if f.heal_index is None else "no polls"
        elif c.seconds is None:
            stable = "never (within the run)"
        else:
            stable = f"{c.seconds:.2f} s"
        rows.append(tr([num(i), f'<td><span class="sw-inline" style="color:{svg.fault_color(f.kind)}">■</span> '
                                f'{esc(f.kind)}</td>',
                        f'<td class="wrap">{esc(f.describe())}</td>', num(f.start, "{:.2f}"),
                        num(f.end, "{:.2f}") if f.end is not None else "<td>never healed</td>",
                        num((f.end if f.end is not None else an.duration) - f.start, "{:.2f}"),
                        esc(f.heal_f or ""), f'<td class="num">{esc(stable)}</td>']))
    out.append('<div class="legend">' + _legend_faults(an) + "</div>")
    out.append(table(["#", "fault", "targets", ("active from (s)", "num"), ("until (s)", "num"),
                      ("duration (s)", "num"), "healed by", ("heal → stable leader", "num")], rows, page_size=30,
                     cls="faults"))
    sched = config.get("schedule")
    if isinstance(sched, list) and sched:
        srows = [tr([num(s.get("at"), "{:.2f}") if isinstance(s, dict) and isinstance(s.get("at"), (int, float))
                     else "<td></td>",
                     esc(s.get("f", "")) if isinstance(s, dict) else "",
                     f'<td class="mono wrap">{jtext(s.get("value") if isinstance(s, dict) else s, 200)}</td>'])
                 for s in sched]
        out.append(f"<details><summary>The executed schedule from config.json ({len(sched)} entries)</summary>"
                   + table([("at (s)", "num"), "f", "value"], srows, page_size=50) + "</details>")
    nrows = [tr([num(e.start, "{:.3f}"), num(e.end, "{:.3f}") if e.end is not None else "<td>—</td>", esc(e.f),
                 f'<td class="mono wrap">{jtext(e.requested)}</td>', f'<td class="mono wrap">{jtext(e.result)}</td>',
                 esc(e.error or "")]) for e in an.nemesis]
    out.append(f"<details><summary>All nemesis operations in the history ({len(an.nemesis)})</summary>"
               + table([("invoked (s)", "num"), ("completed (s)", "num"), "f", "asked", "done", "error"], nrows,
                       page_size=50)
               + "</details></section>")
    return "".join(out)


def _marker_svg(f: str, color: str = "#374151") -> str:
    path = svg.marker_path(f if f in svg.MARKERS else "other", 7, 7)
    style = svg.marker_style(f if f in svg.MARKERS else "other", color)
    return f'<svg width="14" height="14" viewBox="0 0 14 14"><path {style} d="{path}"/></svg>'


def _clients_section(an: Analysis, axis: svg.TimeAxis) -> str:
    out = ['<section id="clients"><h2>What the clients saw</h2>']
    if not an.client:
        out.append('<p class="note">The history has no client operations.</p></section>')
        return "".join(out)
    end = axis.t_max
    scatter, stats = svg.latency_scatter(axis, an.client, an.faults, end)
    legend = ['<div class="legend">']
    for t in (OK, FAIL, INFO):
        legend.append(f'<span><span class="sw" style="background:{svg.OUTCOME_COLORS[t]}"></span>{t}</span>')
    for f in an.fs:
        legend.append(f"<span>{_marker_svg(f)}{esc(f)}</span>")
    legend.append(_legend_faults(an) + "</div>")
    downsampled = "" if stats["drawn"] == stats["points"] else \
        (f" Showing {stats['drawn']:,} of {stats['points']:,} points: points falling on the same 2-pixel cell "
         "with the same outcome and kind are drawn once.")
    out.append('<div class="plotbox" id="plot-latency">'
               '<h3>Latency of every operation (log scale), by invocation time</h3>'
               f"{''.join(legend)}{scatter}<p class=\"note\">Colour: outcome; marker: operation kind; "
               f"shaded: faults active.{esc(downsampled)}</p></div>")
    bucket = nice_bucket(axis.t_max - axis.t_min)
    qs = latency_quantiles_over_time(an.client, axis.t_min, axis.t_max, bucket)
    qseries = [("p50", "#1f9e6e", qs[0.5]), ("p95", "#3a86ff", qs[0.95]), ("p99", "#8e44ad", qs[0.99]),
               ("max", "#d62839", qs[1.0])]
    qlegend = '<div class="legend">' + "".join(
        f'<span><span class="sw" style="background:{c}"></span>{n}</span>' for n, c, _ in qseries) + "</div>"
    out.append('<div class="plotbox" id="plot-quantiles">'
               f'<h3>Latency quantiles of ok operations per {svg.fmt_num(bucket)} s</h3>{qlegend}'
               + svg.line_plot(axis, qseries, axis.t_min, bucket, an.faults, end, "latency", svg.fmt_latency, log=True,
                               dashed=("max",))
               + "</div>")
    tp = throughput(an.client, axis.t_min, axis.t_max, bucket)
    tseries = [(t, svg.OUTCOME_COLORS[t], tp[t]) for t in (OK, FAIL, INFO)]
    tlegend = '<div class="legend">' + "".join(
        f'<span><span class="sw" style="background:{c}"></span>{n}</span>' for n, c, _ in tseries) + "</div>"
    out.append('<div class="plotbox" id="plot-throughput">'
               f'<h3>Throughput: completions per second ({svg.fmt_num(bucket)} s buckets)</h3>{tlegend}'
               + svg.line_plot(axis, tseries, axis.t_min, bucket, an.faults, end, "ops/s", svg.fmt_num)
               + "</div>")
    out.append('<div class="grid2"><div>')
    out.append("<h3>Latency quantiles (ok operations)</h3>")
    rows = []
    for r in latency_table(an.client, an.fs):
        rows.append(tr([f"<b>{esc(r['f'])}</b>" if r["f"] == "all" else esc(r["f"]), num(r["count"]), num(r[OK]),
                        num(r[FAIL]), num(r[INFO])]
                       + [num(None) if r["q"][q] is None else num(svg.fmt_latency(r["q"][q]), "{}", r["q"][q])
                          for q in QUANTILES]))
    out.append(table(["f", ("ops", "num"), ("ok", "num"), ("fail", "num"), ("info", "num"), ("p50", "num"),
                      ("p90", "num"), ("p99", "num"), ("p99.9", "num"), ("max", "num")], rows, cls="latency"))
    out.append("</div><div>")
    out.append("<h3>Availability during faults and outside them</h3>")
    av = availability(an.client, an.faults, an.duration)
    arows = []
    for name, label in (("during_faults", "during faults"), ("outside_faults", "outside faults")):
        d = av[name]
        arows.append(tr([esc(label), num(d["seconds"], "{:.1f}"), num(d["total"]), num(d[OK]), num(d[FAIL]),
                         num(d[INFO]),
                         num(None) if d["availability"] is None
                         else num(f"{100 * d['availability']:.1f} %", "{}", d["availability"]),
                         num(d["ok_per_s"], "{:,.1f}")]))
    out.append(table(["", ("seconds", "num"), ("ops", "num"), ("ok", "num"), ("fail", "num"), ("info", "num"),
                      ("availability", "num"), ("ok/s", "num")], arows, cls="availability"))
    out.append('<p class="note">An operation counts as "during faults" when it was invoked while any fault was '
               "active. Availability = ok / all operations invoked.</p></div></div></section>")
    return "".join(out)


def _raft_section(tl: RaftTimeline, an: Analysis, axis: svg.TimeAxis, run: RunData) -> str:
    out = ['<section id="raft"><h2>Raft timeline</h2>']
    if not tl.nodes or not tl.poll_count:
        out.append('<p class="warn">No status polls (status.jsonl) in this run: no timeline.</p>')
    legend = ['<div class="legend">']
    for role in ("leader", "follower", "candidate", "pre-candidate"):
        legend.append(f'<span><span class="sw" style="background:{svg.ROLE_COLORS[role]}"></span>{role}</span>')
    legend.append('<span><span class="sw" style="background:repeating-linear-gradient(45deg,#ef4444 0 3px,'
                  '#fee2e2 3px 6px)"></span>no answer</span>')
    legend.append('<span><svg width="12" height="10" viewBox="0 0 12 10"><path d="M6 9l-5-8h10z" fill="#111827"/>'
                  '</svg>election won</span>')
    legend.append('<span>thin strip: the leader the node follows (its colour)</span>')
    for n in tl.nodes:
        legend.append(f'<span><span class="sw" style="background:{svg.node_color(tl.nodes, n)}"></span>{esc(n)}</span>')
    legend.append(_legend_faults(an) + "</div>")
    if tl.nodes:
        interval = f"{tl.poll_interval * 1000:.0f} ms" if tl.poll_interval else "?"
        out.append(f'<div class="plotbox" id="plot-raft"><h3>Role, term and leader of each node '
                   f"({tl.poll_count:,} status polls, one per node every {interval})</h3>{''.join(legend)}"
                   + svg.raft_timeline(axis, tl, an.faults, axis.t_max)
                   + '<p class="note">Ordered by the controller\'s clock. Term numbers label the segments; '
                     "the cluster lane shows when one stable leader existed (definition below).</p></div>")
    out.append(_clock_plot(tl, an, axis))
    out.append("<h3>Time to one stable leader after each heal</h3>")
    out.append(f'<p class="note">{esc(STABILITY_DEFINITION.format(w=STABLE_WINDOW))}</p>')
    if tl.convergence:
        rows = []
        for c in tl.convergence:
            healed = "; ".join(f"{f.kind} {f.describe()}" for f in c.healed)
            if c.seconds is None:
                result = "<td>no stable leader before the run ended</td>"
            else:
                result = num(c.seconds, "{:.2f} s", c.seconds)
            cut = ""
            if c.next_fault is not None and (c.stable_at is None or c.stable_at > c.next_fault):
                cut = f"the next fault began at {c.next_fault:.2f} s"
            rows.append(tr([num(c.heal_time, "{:.2f}"), esc(c.heal_f), f'<td class="wrap">{esc(healed)}</td>', result,
                            esc(c.leader if c.leader is not None else ""), esc(c.term if c.term is not None else ""),
                            esc(cut)]))
        out.append(table([("healed at (s)", "num"), "heal", "what was healed", ("to stable leader", "num"), "leader",
                          "term", "note"], rows, page_size=30, cls="convergence"))
        vals = [c.seconds for c in tl.convergence if c.seconds is not None]
        if vals:
            vals.sort()
            out.append(f'<p class="note">Over {len(vals)} heals: median {vals[len(vals) // 2]:.2f} s, '
                       f'max {vals[-1]:.2f} s'
                       + (f"; {len(tl.convergence) - len(vals)} never converged."
                          if len(vals) < len(tl.convergence) else ".")
                       + _timeout_note(run.config) + "</p>")
    else:
        out.append('<p class="note">No heals in this run.</p>')
    if tl.stable:
        out.append(f"<h3>Stable leaders over time ({len(tl.stable)} periods)</h3>")
        srows = []
        prev_end = None
        for s in tl.stable:
            gap = "" if prev_end is None else f"{s.start - prev_end:.2f} s without"
            srows.append(tr([esc(s.leader), esc(s.term), num(s.start, "{:.2f}"), num(s.end, "{:.2f}"),
                             num(s.end - s.start, "{:.2f}"), esc(gap)]))
            prev_end = s.end
        out.append(table(["leader", "term", ("from (s)", "num"), ("until (s)", "num"), ("held (s)", "num"),
                          "before it"], srows, page_size=20, cls="stable-leaders"))
    interesting = [e for e in tl.events if e.event in ("election_won", "role", "start", "stop", "peer_garbage")
                   or (e.event == "vote" and e.fields.get("granted") is True)]
    if not tl.events:
        # a system whose logs are not JSON event lines (docs/contracts.md §2): listed under Files
        out.append("</section>")
        return "".join(out)
    out.append(f"<h3>Elections and leader changes from the node logs ({len(interesting):,} events)</h3>")
    out.append(f'<p class="note">{_plural(tl.leader_changes, "change")} of the stable leader, '
               f'{_plural(tl.terms_seen, "term")} seen by polls. '
               "Node log times are placed on the controller's clock through each node's nearest status poll "
               "(its monotonic clock, else its wall clock), so a skewed node clock does not reorder them."
               + (f" {tl.unplaced_events} events could not be placed (no poll of that node answered)."
                  if tl.unplaced_events else "")
               + "</p>")
    cap = 5000
    rows = []
    for e in interesting[:cap]:
        detail = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in e.fields.items())
        rows.append(tr([num(e.time, "{:.3f}") if e.time is not None else "<td>unplaced</td>", esc(e.node),
                        esc(e.event), f'<td class="mono wrap">{esc(detail[:300])}</td>',
                        f'<a href="../{esc(e.path or f"nodes/{e.node}/node.log")}">line {esc(e.line)}</a>',
                        esc(e.placed_by)]))
    out.append(table([("time (s)", "num"), "node", "event", "details", "log", "placed by"], rows, page_size=40,
                     cls="events"))
    if len(interesting) > cap:
        out.append(f'<p class="note">First {cap:,} shown; the node logs below have all of them.</p>')
    out.append("</section>")
    return "".join(out)


CLOCK_PLOT_THRESHOLD = 0.05  # seconds of spread between node clocks worth a plot


def _clock_plot(tl: RaftTimeline, an: Analysis, axis: svg.TimeAxis) -> str:
    """Node clocks as the polls saw them: a plot when some clock moved (clock faults), else a line."""
    offsets = tl.clock_offsets
    if not offsets:
        return ""
    spread = max(abs(d) for pts in offsets.values() for _, d in pts)
    if spread < CLOCK_PLOT_THRESHOLD:
        return (f'<p class="note" id="clocks">Node clocks (wall_time in status polls) agreed within '
                f"{spread * 1000:.0f} ms throughout.</p>")
    legend = '<div class="legend">' + "".join(
        f'<span><span class="sw" style="background:{svg.node_color(tl.nodes, n)}"></span>{esc(n)}</span>'
        for n in tl.nodes if n in offsets) + _legend_faults(an) + "</div>"
    return (f'<div class="plotbox" id="plot-clocks"><h3>Node clocks: offset of each node\'s wall clock from the '
            f"cluster's (largest {spread:.3g} s)</h3>{legend}"
            + svg.offset_plot(axis, tl.nodes, offsets, an.faults, axis.t_max)
            + '<p class="note">From the wall_time each node reports in its status polls, against the controller\'s '
              "clock; the clock nemesis moves these lines. Nothing in the report is ordered by them.</p></div>")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _timeout_note(config: dict) -> str:
    """The system's own settings as its DB described them (config.json db_info), e.g. the
    bundled node's election timeout; nothing for a DB that states none."""
    info = config.get("db_info") if isinstance(config.get("db_info"), dict) else {}
    options = info.get("node options") if isinstance(info.get("node options"), dict) else {}
    if not options:
        return ""
    shown = ", ".join(f"{k} {v}" for k, v in sorted(options.items()))
    return f" Settings of {esc(info.get('name', 'the system'))}: {esc(shown)}."


def _config_section(config: dict, command: str) -> str:
    out = ['<section id="config"><h2>Configuration</h2>']
    rows = [tr([f'<span class="mono">{esc(k)}</span>', f'<td class="mono wrap">{jtext(v, 400)}</td>'])
            for k, v in config.items() if k not in ("schedule",)]
    if not rows:
        out.append('<p class="warn">No config.json in this run.</p>')
    else:
        out.append(table(["setting", "value"], rows, cls="config"))
    out.append("</section>")
    return "".join(out)


def _tail(path: str, lines: int, max_bytes: int = 64 * 1024) -> list[str]:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - max_bytes))
        data = f.read().decode("utf-8", errors="replace")
    return data.splitlines()[-lines:]


def _crash_section(run: RunData) -> str:
    """A run that crashed (results say so, or there is no history): the controller log's tail."""
    crashed = isinstance(run.results, dict) and run.results.get("crashed") is True
    if not crashed and "history.jsonl" not in run.missing:
        return ""
    log = os.path.join(run.run_dir, "controller.log")
    out = ['<section id="crash"><h2>The run did not complete</h2>']
    if os.path.isfile(log):
        tail = _tail(log, 40)
        out.append(f'<p class="note">The last {len(tail)} lines of <a href="../controller.log">controller.log</a>:</p>'
                   f'<pre class="log">{esc(chr(10).join(tail))}</pre>')
    else:
        out.append('<p class="note">There is no controller.log to say why.</p>')
    out.append("</section>")
    return "".join(out)


def _files_section(run: RunData, report_dir: str) -> str:
    out = ['<section id="files"><h2>Files of this run</h2><ul>']
    for name, what in (("history.jsonl", "the history (JSON lines)"), ("results.json", "checker output"),
                       ("config.json", "resolved config"), ("status.jsonl", "status polls"),
                       ("controller.log", "controller log")):
        if os.path.exists(os.path.join(run.run_dir, name)):
            out.append(f'<li><a href="../{esc(name)}">{esc(name)}</a> — {esc(what)}</li>')
    out.append("</ul><h3>Node logs</h3>")
    if run.node_logs:
        rows = []
        for node, log in run.node_logs.items():
            summary = ", ".join(f"{k} {v:,}" for k, v in sorted(log.counts.items(), key=lambda kv: -kv[1]))
            links = "<br>".join(f'<a href="../{esc(f)}">{esc(f)}</a>' for f in (log.files or [log.path]))
            rows.append(tr([esc(node), f"<td>{links}</td>", num(log.lines),
                            num(log.unparsed), f'<td class="wrap">{esc(summary)}</td>']))
        out.append(table(["node", "log", ("lines", "num"), ("non-JSON lines", "num"), "events"], rows, cls="nodelogs"))
    else:
        out.append('<p class="note">No node logs were collected.</p>')
    out.append("</section>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------

def summarize(run: RunData, an: Analysis, valid: Any, reason: str, started: str, name: str) -> dict:
    faults: dict[str, int] = {}
    for f in an.faults:
        faults[f.kind] = faults.get(f.kind, 0) + 1
    lat = sorted(c.latency for c in an.client if c.type == OK and c.latency is not None)
    from reports.analysis import quantile
    oks = len(lat)
    return {"version": SUMMARY_VERSION, "test": name, "started": started, "verdict": verdict_word(valid),
            "reason": reason, "ops": len(an.client), "ok": oks, "duration": round(an.duration, 3),
            "ok_per_s": round(oks / an.duration, 2) if an.duration > 0 else None,
            "p99_ms": round(quantile(lat, 0.99) * 1000, 3) if lat else None,
            "faults": faults, "anomalies": _count_anomalies(run.results),
            "seed": run.config.get("seed")}


def render_run(run_dir: str | os.PathLike, update_index: bool = True) -> str:
    """Render <run_dir>/report/index.html (and report/summary.json for the index); return its path.

    When the run sits in a store (store/<test>/<YYYYmmddTHHMMSS>/) the store's index.html is
    refreshed too (from cached summaries; other runs' reports are not rendered), so the page's
    link back to all runs works. Raises ReportError naming the file and problem when the run
    directory cannot be read.
    """
    run_dir = os.fspath(run_dir)
    started_at = _time.monotonic()
    run = load_run(run_dir)
    report_dir = os.path.join(run_dir, "report")
    os.makedirs(report_dir, exist_ok=True)
    an = analyse(run)
    tl = build_timeline(run.config, run.polls, run.node_logs, an.t0_ns, an.duration, an.faults)
    valid, reason = _verdict(run.results)
    anomalies = find_anomalies(run.results, an.client, an.nemesis)
    n_illegal = sum(1 for a in anomalies if a.checker == "linearizable")
    if isinstance(run.results, dict):
        lin = ((run.results.get("checkers") or {}).get("linearizable")
               if isinstance(run.results.get("checkers"), dict) else None)
        if isinstance(lin, dict) and isinstance(lin.get("keys"), dict):
            n_illegal = sum(1 for v in lin["keys"].values() if isinstance(v, dict) and v.get("valid") is False)
    name = test_name(run_dir, run.config)
    started = _run_started(run_dir, run.config)
    command = reproduce_command(run_dir, run.config)
    axis = svg.TimeAxis(an.t_min, max(an.duration, an.t_min + 1e-3))

    body = [f"<h1>{esc(name)} <span class=\"note\">{esc(os.path.basename(os.path.normpath(run_dir)))}</span></h1>",
            _banner(valid, reason), _facts(run, an, tl, started), _reproduce(command)]
    if run.missing:
        body.append(f'<p class="warn">Missing from the run directory: {esc(", ".join(run.missing))}.</p>')
    body.append(_crash_section(run))
    body.append(_anomaly_section(run, anomalies, report_dir, n_illegal))
    body.append(_checkers_section(run, report_dir))
    body.append(_faults_section(an, tl, run.config))
    body.append(_clients_section(an, axis))
    body.append(_raft_section(tl, an, axis, run))
    changes = membership_changes(an.nemesis)
    body.append(membership_section(changes, _first_nodes(run.config), axis, an.duration))
    body.append(_config_section(run.config, command))
    body.append(_files_section(run, report_dir))
    took = _time.monotonic() - started_at
    body.append(f'<p class="note">Rendered by splitbrain in {took:.2f} s.</p>')
    nav = [("↑ all runs", "../../../index.html")] if _in_store(run_dir) else []
    nav += [("verdict", "#verdict")] + ([("anomaly", "#anomaly")] if anomalies else []) + [
        ("checkers", "#checkers"), ("faults", "#faults"), ("clients", "#clients"), ("raft", "#raft")] + (
        [("membership", "#membership")] if changes else []) + [("config", "#config"), ("files", "#files")]
    html_text = page(f"{verdict_word(valid).upper()} · {name} · {started}", "".join(body), nav, frames=True)
    out = os.path.join(report_dir, "index.html")
    _atomic_write(out, html_text)
    _atomic_write(os.path.join(report_dir, "summary.json"),
                  json.dumps(summarize(run, an, valid, reason, started, name), indent=1, default=str))
    if update_index and _in_store(run_dir):
        from reports.index_page import render_index
        store = os.path.dirname(os.path.dirname(os.path.abspath(run_dir)))
        try:
            render_index(store, render_missing=False)
        except (ReportError, OSError, ValueError) as e:  # the run's report stands without the index
            import logging
            logging.getLogger(__name__).warning("store index %s not refreshed: %s", store, e)
    return out


def _first_nodes(config: dict) -> list[str]:
    """The nodes of the bootstrap configuration: n1..nN of the run's node count."""
    count = config.get("nodes")
    return [f"n{i}" for i in range(1, count + 1)] if isinstance(count, int) and count > 0 else []


def _in_store(run_dir: str) -> bool:
    """True when the run sits at store/<test>/<YYYYmmddTHHMMSS>/, where the store index is three
    levels above the report."""
    try:
        _dt.datetime.strptime(os.path.basename(os.path.normpath(run_dir)), "%Y%m%dT%H%M%S")
        return True
    except ValueError:
        return False


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


__all__ = ["render_run", "ReportError", "reproduce_command", "test_name"]
