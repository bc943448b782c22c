"""Checkers: is a recorded history correct, and if not, why not.

`check_history(ops, workload=...)` runs every checker that applies and combines them as Jepsen
does (invalid > unknown > valid) into the results.json shape of docs/contracts.md §3:

- linearizable (register and kv workloads): per key, by
  * our unique-values method (checkers.unique) when the key's written values are unique — exact
    and O(n log n), the common case for our register workload;
  * porcupine through its Go helper (checkers.porcupine), or
  * our own Wing & Gong / Lowe search (checkers.search), used when Go is missing or when asked.
  Illegal keys get porcupine's HTML visualization in out_dir/porcupine/<key>.html when Go is there.
  A Jepsen `independent` history (each value [key value]) is split into one register per key by
  checkers.independent's explicit rule (or `independent=True/False`).
- set (set workload): lost, duplicated, unexpected and recovered elements;
- stats and availability (always).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from chaos.history import HistoryError, Op
from chaos.interfaces import Checker, merge_valid

from . import porcupine as _porcupine
from .independent import split_independent
from .prepare import KeyHistory, history_t0, partition
from .search import check_key as _search_key
from .set_checker import check_set
from .stats import check_availability, check_stats
from .unique import check_unique
from .workers import DONE, run_jobs

WORKLOADS = ("register", "set", "kv")
CHECKERS = ("auto", "porcupine", "python")
VISUALIZE_BUDGET_S = 10.0


class CheckError(RuntimeError):
    """A check could not be run as asked (e.g. porcupine requested but Go is missing)."""


def _visualization_paths(out_dir: str, keys) -> dict:
    """Where porcupine draws each key: out_dir/porcupine/<key>.html (the folder is made)."""
    folder = os.path.join(os.path.abspath(out_dir), "porcupine")
    os.makedirs(folder, exist_ok=True)
    return {kh.key: os.path.join(folder, _safe_name(kh.key) + ".html") for kh in keys}


def _safe_name(key: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(key))[:100] or "key"


def check_linearizable(ops: list[Op], *, model: str = "register", checker: str = "auto",
                       out_dir: str | None = None, time_budget_s: float | None = None,
                       all_keys: bool = False, append_mode: str | None = None,
                       workers: int | None = None, source: str = "history") -> dict:
    """The "linearizable" part of results.json: per-key verdicts, combined.

    workers: processes for our search over several keys (default: one per CPU, at most 4).
    source: the history's name in error messages (its file).
    """
    if checker not in CHECKERS:
        raise ValueError(f"unknown checker {checker!r} (expected one of {', '.join(CHECKERS)})")
    started = time.monotonic()
    deadline = started + time_budget_s if time_budget_s else None
    keys, notes = partition(ops, model, append_mode, source=source)
    mode = notes["append_mode"]
    t0 = history_t0(ops)
    have_go = checker != "python" and _porcupine.available()
    if checker == "porcupine" and not have_go:
        try:
            _porcupine.ensure_binary()
        except _porcupine.PorcupineUnavailable as e:
            raise CheckError(f"--checker porcupine: {e}") from None

    results: dict[Any, dict] = {}
    illegal_seen = False
    for_porcupine: list[KeyHistory] = []
    for_search: list[KeyHistory] = []
    # Cheap exact verdicts first, so an illegal key stops the expensive ones.
    for kh in keys:
        if illegal_seen and not all_keys:
            results[kh.key] = {"valid": "unknown", "skipped": True, "ops": len(kh.ops),
                               "reason": "not checked: an earlier key is already illegal"}
            continue
        if checker != "porcupine":
            t = time.perf_counter()
            r = check_unique(kh, mode, t0)
            if r is not None:
                r.update(checker="python", ms=round((time.perf_counter() - t) * 1000, 3))
                results[kh.key] = r
                illegal_seen |= r["valid"] is False
                continue
        # Concat appends: our search knows where each unique append took effect, porcupine does not.
        prefer_search = checker == "auto" and mode == "concat" and any(op.f == "append" for op in kh.ops)
        (for_porcupine if have_go and not prefer_search else for_search).append(kh)

    pending = for_porcupine + for_search
    if illegal_seen and not all_keys:
        for kh in pending:
            results[kh.key] = {"valid": "unknown", "skipped": True, "ops": len(kh.ops),
                               "reason": "not checked: an earlier key is already illegal"}
        pending = []
        for_porcupine, for_search = [], []

    if for_porcupine:
        remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
        vis = _visualization_paths(out_dir, for_porcupine) if out_dir else {}
        try:
            [answers] = _porcupine.check_batch([("history", for_porcupine, vis)], model=model, append_mode=mode,
                                               init=for_porcupine[0].init, timeout_s=remaining,
                                               all_keys=all_keys)
        except _porcupine.PorcupineUnavailable as e:
            if checker == "porcupine":
                raise CheckError(str(e)) from None
            for_search = for_porcupine + for_search
            answers = {}
        for kh in for_porcupine:
            a = answers.get(kh.key)
            if a is None:
                continue
            verdict = {"ok": True, "illegal": False}.get(a["result"], "unknown")
            r = {"valid": verdict, "ops": len(kh.ops), "ms": a["ms"], "checker": "porcupine", "method": "search"}
            if a["result"] == "skipped":
                r.update(skipped=True, reason="not checked: an earlier key is already illegal")
            elif a["result"] == "unknown":
                r["reason"] = f"porcupine: {a.get('error') or 'time budget exhausted'}"
            if a.get("visualization"):
                r["visualization"] = a["visualization"]
            if verdict is False:
                illegal_seen = True
                # Porcupine says illegal; our search says in words why (bounded in time).
                words = _search_key(kh, mode, deadline=time.monotonic() + 5, t0=t0)
                if "anomaly" in words:
                    r["anomaly"] = words["anomaly"]
            results[kh.key] = r

    if for_search and not (illegal_seen and not all_keys):
        for key, r in _search_keys(for_search, mode, deadline, t0, all_keys, workers):
            results[key] = r
            illegal_seen |= r["valid"] is False
    for kh in for_search:
        if kh.key not in results:
            results[kh.key] = {"valid": "unknown", "skipped": True, "ops": len(kh.ops),
                               "reason": "not checked: an earlier key is already illegal"}

    # Porcupine's own drawing of every illegal key we decided ourselves.
    if out_dir and (have_go or _porcupine.available()):
        undrawn = [kh for kh in keys if results[kh.key]["valid"] is False and "visualization" not in results[kh.key]]
        if undrawn:
            vis = _visualization_paths(out_dir, undrawn)
            try:
                [answers] = _porcupine.check_batch([("history", undrawn, vis)], model=model, append_mode=mode,
                                                   init=undrawn[0].init, timeout_s=VISUALIZE_BUDGET_S,
                                                   all_keys=True)
                for kh in undrawn:
                    if answers[kh.key].get("visualization"):
                        results[kh.key]["visualization"] = answers[kh.key]["visualization"]
            except _porcupine.PorcupineUnavailable:
                pass

    run_dir = os.path.dirname(os.path.abspath(out_dir)) if out_dir else None
    for r in results.values():
        if r.get("visualization") and run_dir:
            r["visualization"] = os.path.relpath(r["visualization"], run_dir)

    checked = [r for r in results.values() if not r.get("skipped")]
    valid = merge_valid(r["valid"] for r in checked) if checked else True
    if any(r["valid"] is False for r in results.values()):
        valid = False
    first_illegal = next((str(kh.key) for kh in keys if results[kh.key]["valid"] is False), None)
    checkers_used = sorted({r["checker"] for r in checked if "checker" in r})
    out = {"valid": valid, "model": model, "checker": "+".join(checkers_used) or checker,
           "keys": {str(kh.key): results[kh.key] for kh in keys}, "first_illegal_key": first_illegal,
           "ms": round((time.monotonic() - started) * 1000, 3), **notes}
    if time_budget_s:
        out["time_budget_s"] = time_budget_s
    return out


# Each key first gets a short sequential try; only keys that need longer go to worker processes,
# where starting the processes (~0.1-0.3 s) is worth it.
PROBE_S = 0.5
# A search is never unbounded, even when the caller gives no time budget: past this it is
# "unknown". It also bounds how long an orphaned worker (its parent killed) can run on.
UNBUDGETED_SEARCH_S = 3600.0


def _search_one(kh: KeyHistory, mode: str, deadline: float, t0) -> dict:
    t = time.perf_counter()
    r = _search_key(kh, mode, deadline=deadline, t0=t0)
    r.update(checker="python", ms=round((time.perf_counter() - t) * 1000, 3))
    return r


def _out_of_time(kh: KeyHistory, why: str) -> dict:
    return {"valid": "unknown", "method": "search", "ops": len(kh.ops), "checker": "python", "reason": why}


def _search_keys(keys: list[KeyHistory], mode: str, deadline: float | None, t0, all_keys: bool,
                 workers: int | None):
    """Yield (key, result) from our search, the hard keys in parallel worker processes; stops
    after the first illegal key unless all_keys (the workers are then killed, not left running)."""
    workers = workers or min(4, os.cpu_count() or 1)

    def deadline_now() -> float:
        cap = time.monotonic() + UNBUDGETED_SEARCH_S
        return cap if deadline is None else min(deadline, cap)

    hard = []
    for kh in keys:
        probe_end = time.monotonic() + PROBE_S
        if workers >= 2 and len(keys) >= 2 and probe_end < deadline_now():
            r = _search_one(kh, mode, probe_end, t0)
            if r["valid"] == "unknown":
                hard.append(kh)
                continue
        else:
            r = _search_one(kh, mode, deadline_now(), t0)
        yield kh.key, r
        if r["valid"] is False and not all_keys:
            return
    if len(hard) == 1:
        yield hard[0].key, _search_one(hard[0], mode, deadline_now(), t0)
        return
    if not hard:
        return
    # time.monotonic is system-wide on Linux, so a deadline means the same in the workers.
    def jobs():  # the deadline is taken when a job starts: with no budget, each gets the full cap
        for i, kh in enumerate(hard):
            d = deadline_now()
            yield i, (kh, mode, d, t0), d

    outcomes = run_jobs(_search_one, jobs(), min(workers, len(hard)))
    try:
        for i, outcome in outcomes:
            kh = hard[i]
            if outcome.status == DONE:
                r = outcome.value
            else:
                r = _out_of_time(kh, outcome.detail)
            yield kh.key, r
            if r["valid"] is False and not all_keys:
                return
    finally:
        outcomes.close()  # kills and reaps the workers now, not whenever the generator is collected


def _reason(result: dict) -> str:
    parts = result["checkers"]
    lin = parts.get("linearizable")
    st = parts.get("set")
    if result["valid"] is False:
        if lin and lin["valid"] is False:
            key = lin["first_illegal_key"]
            anomaly = lin["keys"][str(key)].get("anomaly")
            words = anomaly["description"] if anomaly else "porcupine found no linearization"
            return f"Key {key} is not linearizable: {words}."
        if st and st["valid"] is False:
            return (f"The set lost {len(st['lost'])}, duplicated {len(st['duplicated'])} and saw "
                    f"{len(st['unexpected'])} unexpected element(s).")
        stats = parts.get("stats", {})
        if stats.get("valid") is False:
            return f"No {', '.join(stats.get('never_ok', []))} operation ever succeeded."
        return "A checker found the history invalid."
    if result["valid"] == "unknown":
        if lin and lin["valid"] != True:  # noqa: E712
            unknown = [k for k, r in lin["keys"].items() if r["valid"] != True and not r.get("skipped")]  # noqa: E712
            return (f"Unknown: key(s) {', '.join(unknown[:5])} could not be decided within the time budget"
                    f"{' of ' + str(lin['time_budget_s']) + ' s' if lin.get('time_budget_s') else ''}.")
        if st and st["valid"] == "unknown":
            return ("Unknown: no successful final read for set key(s) "
                    f"{', '.join(st.get('keys_without_final_read', [])[:5])}.")
        return "Unknown: a checker could not decide."
    bits = []
    if lin:
        bits.append(f"all {len(lin['keys'])} key(s) are linearizable")
    if st:
        bits.append(f"the set lost nothing ({len(st['recovered'])} indeterminate add(s) recovered)")
    return ("Valid: " + " and ".join(bits) + ".") if bits else "Valid."


def infer_workload(ops: list[Op]) -> str:
    fs = {op.f for op in ops if not op.is_nemesis}
    if "add" in fs:
        return "set"
    if fs & {"get", "put", "append", "delete"}:
        return "kv"
    return "register"


def check_history(ops: list[Op] | str, *, workload: str | None = "register", checker: str = "auto",
                  out_dir: str | None = None, time_budget_s: float | None = None,
                  all_keys: bool = False, append_mode: str | None = None,
                  independent: bool | None = None, source: str | None = None) -> dict:
    """Check a history (ops, or a path to a history file / run folder); results.json shape.

    independent: a Jepsen `independent` register history (values [key value]) is split by key;
    None decides by checkers.independent's rule, True insists, False never splits.
    source: the history's name in error messages (default: the path, or "history").
    Raises chaos.history.HistoryError for a malformed history, CheckError when the requested
    checker cannot run (or --independent is asked of a history that is not a register's).
    """
    if isinstance(ops, (str, os.PathLike)):
        from .formats import load_history
        source = source or os.fspath(ops)
        ops, _ = load_history(os.fspath(ops))
    source = source or "history"
    workload = workload or infer_workload(ops)
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r} (expected one of {', '.join(WORKLOADS)})")
    split = None
    if workload == "register":
        ops, split = split_independent(ops, independent, source)
    elif independent:
        raise CheckError(f"--independent splits register histories (read/write/cas by [key value]), "
                         f"not a {workload} history")
    checkers: dict[str, dict] = {}
    if workload in ("register", "kv"):
        checkers["linearizable"] = check_linearizable(
            ops, model=workload, checker=checker, out_dir=out_dir, time_budget_s=time_budget_s,
            all_keys=all_keys, append_mode=append_mode, source=source)
        if split is not None:
            checkers["linearizable"]["independent"] = split
    else:
        checkers["set"] = check_set(ops)
    checkers["stats"] = check_stats(ops)
    checkers["availability"] = check_availability(ops)
    valid = merge_valid(c["valid"] for c in checkers.values() if "valid" in c)
    result = {"valid": valid, "reason": "", "workload": workload, "checkers": checkers}
    result["reason"] = _reason(result)
    return result


class HistoryChecker(Checker):
    """The Checker interface (chaos.interfaces) over check_history, for the runner."""

    def __init__(self, workload: str = "register", checker: str = "auto", time_budget_s: float | None = None):
        self.workload, self.checker, self.time_budget_s = workload, checker, time_budget_s

    def check(self, history: list[Op], opts: dict | None = None) -> dict:
        opts = opts or {}
        return check_history(history, workload=opts.get("workload", self.workload),
                             checker=opts.get("checker", self.checker), out_dir=opts.get("out_dir"),
                             time_budget_s=opts.get("time_budget_s", self.time_budget_s),
                             all_keys=opts.get("all_keys", False), independent=opts.get("independent"))


__all__ = ["check_history", "check_linearizable", "check_set", "check_stats", "check_availability",
           "infer_workload", "HistoryChecker", "CheckError", "HistoryError"]
