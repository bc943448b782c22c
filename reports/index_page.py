"""render_index(store_dir): one page across all runs of a store, failing runs first.

Each run's figures come from its report/summary.json (written by render_run), so the index of a
store with hundreds of large runs renders in moments; a run without an up-to-date summary gets
its report rendered first (or, if that fails, a row saying why).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from typing import Any

from reports import svg
from reports.html import esc, num, page, pill, table, tr
from reports.load import ReportError
from reports.run_report import SUMMARY_VERSION, _atomic_write, render_run

RUN_MARKERS = ("history.jsonl", "config.json", "results.json")
VERDICT_RANK: dict[Any, int] = {"invalid": 0, "unknown": 1, "valid": 2}  # keyed by a run's verdict, None if none
VERDICT_COLORS: dict[Any, str] = {"valid": svg.OUTCOME_COLORS["ok"], "invalid": svg.OUTCOME_COLORS["fail"],
                                  "unknown": "#b7791f"}


def find_runs(store_dir: str) -> list[tuple[str, str]]:
    """(test name, run dir) for store/<test>/<run>/ directories; symlinks such as `latest` are
    skipped (they point at a run that is listed anyway)."""
    runs = []
    if not os.path.isdir(store_dir):
        raise ReportError(f"{store_dir}: no such store directory")
    for test in sorted(os.listdir(store_dir)):
        tdir = os.path.join(store_dir, test)
        if os.path.islink(tdir) or not os.path.isdir(tdir):
            continue
        for run in sorted(os.listdir(tdir)):
            rdir = os.path.join(tdir, run)
            if os.path.islink(rdir) or not os.path.isdir(rdir):
                continue
            if any(os.path.exists(os.path.join(rdir, m)) for m in RUN_MARKERS):
                runs.append((test, rdir))
    return runs


def _summary_fresh(rdir: str) -> dict | None:
    path = os.path.join(rdir, "report", "summary.json")
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(rdir, "report", "index.html")):
        return None
    mtime = os.path.getmtime(path)
    for name in ("results.json", "history.jsonl", "config.json"):
        p = os.path.join(rdir, name)
        if os.path.exists(p) and os.path.getmtime(p) > mtime:
            return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("version") == SUMMARY_VERSION else None


def _fallback_summary(test: str, rdir: str, error: str) -> dict:
    """What can be said of a run whose report could not be rendered."""
    verdict, reason = "unknown", error
    try:
        with open(os.path.join(rdir, "results.json"), encoding="utf-8") as f:
            res = json.load(f)
        v = res.get("valid") if isinstance(res, dict) else None
        verdict = "valid" if v is True else "invalid" if v is False else "unknown"
        reason = f"{res.get('reason', '')} (report failed: {error})" if isinstance(res, dict) else error
    except (OSError, ValueError):
        pass
    name = os.path.basename(rdir)
    try:
        started = _dt.datetime.strptime(name, "%Y%m%dT%H%M%S").strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        started = _dt.datetime.fromtimestamp(os.path.getmtime(rdir)).strftime("%Y-%m-%d %H:%M:%S")
    return {"test": test, "started": started, "verdict": verdict, "reason": reason, "ops": None,
            "faults": {}, "anomalies": None, "ok_per_s": None, "p99_ms": None, "error": error}


def collect(store_dir: str, render_missing: bool = True) -> list[dict]:
    rows = []
    for test, rdir in find_runs(store_dir):
        summary = _summary_fresh(rdir)
        if summary is None and render_missing:
            try:
                render_run(rdir, update_index=False)
                summary = _summary_fresh(rdir)
            except (ReportError, OSError, ValueError) as e:
                summary = _fallback_summary(test, rdir, str(e))
            except Exception as e:  # noqa: BLE001 - one run's surprise must not hide every other run
                summary = _fallback_summary(test, rdir, f"{type(e).__name__}: {e}")
        if summary is None:
            summary = _fallback_summary(test, rdir, "no report rendered yet")
        summary = dict(summary)
        summary["dir"] = os.path.relpath(rdir, store_dir).replace(os.sep, "/")
        summary["has_report"] = os.path.isfile(os.path.join(rdir, "report", "index.html"))
        summary["test_dir"] = test
        rows.append(summary)
    return rows


def _faults_text(faults: Any) -> str:
    if not isinstance(faults, dict) or not faults:
        return "none"
    return ", ".join(f"{k} ×{v}" for k, v in sorted(faults.items()))


def _runs_table(rows: list[dict]) -> str:
    ordered = sorted(rows, key=lambda r: (VERDICT_RANK.get(r.get("verdict"), 1), _neg_date(r.get("started"))))
    trs = []
    for r in ordered:
        link = f'{r["dir"]}/report/index.html' if r["has_report"] else r["dir"] + "/"
        v = r.get("verdict", "unknown")
        nfaults = sum(r["faults"].values()) if isinstance(r.get("faults"), dict) else 0
        trs.append(tr([f'<td class="nowrap">{esc(r.get("started", ""))}</td>',
                       f'<td class="mono nowrap">{esc(r.get("test", r["test_dir"]))}</td>',
                       f'<td data-v="{VERDICT_RANK.get(v, 1)}">{pill(v)}</td>',
                       num(r.get("ops")), f'<td data-v="{nfaults}">{esc(_faults_text(r.get("faults")))}</td>',
                       num(r.get("anomalies")), num(r.get("ok_per_s"), "{:,.0f}"), num(r.get("p99_ms"), "{:,.1f}"),
                       f'<td class="reason" title="{esc(r.get("reason", ""))}">'
                       f'{esc(_shorten(r.get("reason", ""), 110))}</td>',
                       f'<a class="run-link" href="{esc(link)}">report</a>'],
                      cls=f"run {v}"))
    # numeric columns sort by their cells' data-v values
    headers = [("date", "sortable"), ("scenario", "sortable"), ("verdict", "sortable", "num"),
               ("ops", "sortable num", "num"), ("faults", "sortable", "num"), ("anomalies", "sortable num", "num"),
               ("ok/s", "sortable num", "num"), ("p99 ms", "sortable num", "num"), ("reason", ""), ("", "")]
    return table(headers, trs, page_size=100, cls="sortable-table runs", attrs='id="runs"')


def _shorten(text: Any, limit: int) -> str:
    text = str(text or "")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _neg_date(started: Any) -> str:
    """A key that sorts dates descending under an ascending sort (newest first)."""
    s = str(started or "")
    return "".join(chr(0x10FFFF - ord(c)) if ord(c) < 0x10FFFF else c for c in s)


def _trend_table(rows: list[dict]) -> str:
    by_test: dict[str, list[dict]] = {}
    for r in rows:
        by_test.setdefault(str(r.get("test", r["test_dir"])), []).append(r)
    trs = []
    for test in sorted(by_test):
        runs = sorted(by_test[test], key=lambda r: str(r.get("started", "")))[-60:]
        counts = {k: sum(1 for r in by_test[test] if r.get("verdict") == k) for k in ("valid", "invalid", "unknown")}
        spark = svg.sparkline([r.get("ok_per_s") for r in runs],
                              [VERDICT_COLORS.get(r.get("verdict"), "#9ca3af") for r in runs],
                              [f'{r.get("started")}: {r.get("verdict")}, {r.get("ok_per_s") or "?"} ok/s'
                               for r in runs],
                              [f'{r["dir"]}/report/index.html' if r["has_report"] else None for r in runs])
        last = runs[-1]
        trs.append(tr([f'<td class="mono nowrap">{esc(test)}</td>', num(len(by_test[test])), num(counts["valid"]),
                       num(counts["invalid"]), num(counts["unknown"]), pill(last.get("verdict", "unknown")),
                       f"<td>{spark}</td>"]))
    return table(["scenario", ("runs", "num"), ("valid", "num"), ("invalid", "num"), ("unknown", "num"), "latest",
                  "trend (oldest → newest: verdict squares, ok ops/s line)"], trs, cls="trend")


def render_index(store_dir: str | os.PathLike, render_missing: bool = True) -> str:
    """Render <store_dir>/index.html across every run of the store; return its path."""
    store_dir = os.fspath(store_dir)
    rows = collect(store_dir, render_missing=render_missing)
    bad = sum(1 for r in rows if r.get("verdict") == "invalid")
    unk = sum(1 for r in rows if r.get("verdict") == "unknown")
    headline = (f'<section class="banner {"invalid" if bad else "unknown" if unk else "valid"}" id="summary">'
                f'<div class="verdict">{len(rows)} runs</div><div class="reason">'
                f"{bad} invalid, {unk} unknown, {len(rows) - bad - unk} valid.</div></section>")
    body = [f"<h1>splitbrain runs <span class=\"note\">{esc(os.path.abspath(store_dir))}</span></h1>", headline]
    if rows:
        body.append('<h2 id="trends">Trend per scenario</h2>' + _trend_table(rows))
        body.append('<h2 id="all-runs">All runs</h2><p class="note">Failing runs first, newest first within a '
                    "verdict. Click a column header to sort.</p>" + _runs_table(rows))
    else:
        body.append('<p class="note">No runs in this store yet: <code>splitbrain run</code> adds one.</p>')
    body.append(f'<p class="note">Rendered {esc(_dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"))}.</p>')
    out = os.path.join(store_dir, "index.html")
    _atomic_write(out, page("splitbrain runs", "".join(body), [("trends", "#trends"), ("all runs", "#all-runs")]))
    return out
