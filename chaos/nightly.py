"""`splitbrain nightly MATRIX.yaml`: a bounded matrix of runs, then the store's index page.

    store: store                # where the runs go (default ./store)
    time_budget: 3600           # seconds; no run starts after this much time has passed
    defaults:                   # scenario keys applied to every run unless it says otherwise
      provisioner: docker
      time_limit: 60
    runs:
      - scenario: scenarios/leader-isolation.yaml   # relative to this file
        seeds: [1, 2, 3]
      - name: set-kill          # or an inline scenario
        workload: set
        nemesis: kill

The whole matrix is validated before the first run starts (file, line, valid choices). The
exit code is the worst of the runs: 255 if any crashed, else 1 if any was invalid, else 2 if
any was unknown, else 0.
"""

from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import dataclass

from chaos.config import RunConfig
from chaos.scenario import (SCENARIO_KEYS, ScenarioError, config_from_mapping,
                            fields_from_keys, load_yaml_located, parse_scenario)

MATRIX_KEYS = ("store", "time_budget", "defaults", "runs")
ENTRY_KEYS = ("scenario", "seeds")
MAX_RUNS = 500


@dataclass
class PlannedRun:
    label: str
    config: RunConfig


def load_matrix(path: str, store: str | None = None, provisioner: str | None = None
                ) -> tuple[list[PlannedRun], float | None, str]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ScenarioError(path, None, f"cannot read matrix: {e.strerror}") from None
    data, loc = load_yaml_located(text, path)
    if not isinstance(data, dict):
        raise loc.error((), "a matrix must be a mapping with runs: [...]")
    for key in data:
        if key not in MATRIX_KEYS:
            raise loc.error((key,), f"unknown key {key!r} (valid: {', '.join(MATRIX_KEYS)})")
    store_dir = store or data.get("store") or "store"
    if not isinstance(store_dir, str):
        raise loc.error(("store",), "store must be a directory path")
    budget = data.get("time_budget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0):
        raise loc.error(("time_budget",), f"time_budget must be a positive number of seconds, got {budget!r}")
    defaults_raw = data.get("defaults") or {}
    if not isinstance(defaults_raw, dict):
        raise loc.error(("defaults",), "defaults must be a mapping of scenario keys")
    for key in defaults_raw:
        if key not in SCENARIO_KEYS or key in ("schedule", "name"):
            valid = [k for k in SCENARIO_KEYS if k not in ("schedule", "name")]
            raise loc.error(("defaults", key), f"unknown key {key!r} in defaults (valid: {', '.join(valid)})")
    defaults = fields_from_keys(defaults_raw)
    defaults["store"] = store_dir
    overrides = {"store": store_dir}
    if provisioner:
        overrides["provisioner"] = provisioner
    runs = data.get("runs")
    if not isinstance(runs, list) or not runs:
        raise loc.error(("runs",) if "runs" in data else (), "runs must be a non-empty list")
    base_dir = os.path.dirname(os.path.abspath(path))
    planned: list[PlannedRun] = []
    for i, entry in enumerate(runs):
        epath = ("runs", i)
        if not isinstance(entry, dict):
            raise loc.error(epath, "each run is a mapping (scenario: FILE, or inline scenario keys)")
        seeds = entry.get("seeds", [None])
        if not isinstance(seeds, list) or not seeds or not all(
                s is None or (isinstance(s, int) and not isinstance(s, bool)) for s in seeds):
            raise loc.error(epath + ("seeds",), f"seeds must be a non-empty list of integers, got {seeds!r}")
        inline = {k: v for k, v in entry.items() if k not in ENTRY_KEYS}
        for key in inline:
            if key not in SCENARIO_KEYS:
                raise loc.error(epath + (key,), f"unknown key {key!r} (valid: "
                                f"{', '.join(ENTRY_KEYS + tuple(SCENARIO_KEYS))})")
        for seed in seeds:
            run_overrides = dict(overrides)
            if seed is not None:
                run_overrides["seed"] = seed
            if "scenario" in entry:
                scenario_path = entry["scenario"]
                if not isinstance(scenario_path, str):
                    raise loc.error(epath + ("scenario",), "scenario must be a file path")
                full = scenario_path if os.path.isabs(scenario_path) else os.path.join(base_dir, scenario_path)
                if not os.path.exists(full):
                    raise loc.error(epath + ("scenario",), f"no such scenario file: {scenario_path}")
                if "schedule" in inline or "nemesis" in inline:
                    raise loc.error(epath, "a scenario entry cannot set nemesis or schedule (the scenario does)")
                with open(full, encoding="utf-8") as f:
                    cfg = parse_scenario(f.read(), full, overrides={**run_overrides, **fields_from_keys(inline)},
                                         defaults=defaults)
                label = f"{os.path.basename(scenario_path)}"
            else:
                cfg = config_from_mapping(inline, loc, epath, overrides=run_overrides, defaults=defaults,
                                          default_name=f"matrix-{i + 1}")
                label = cfg.test_name
            if seed is None:
                # No seeds given: explore a new seed every night (it is recorded with the run).
                cfg.seed = random.SystemRandom().randrange(1, 2**31)
            planned.append(PlannedRun(f"{label} seed {cfg.seed}", cfg))
            if len(planned) > MAX_RUNS:
                raise loc.error(("runs",), f"the matrix expands to more than {MAX_RUNS} runs")
    return planned, budget, store_dir


def run_matrix(path: str, store: str | None = None, dry_run: bool = False,
               provisioner: str | None = None, runner_kw: dict | None = None,
               out=None, concurrency: int = 1, scheduler: str | None = None, sequential: bool = False) -> int:
    """The matrix's runs: on a Dask cluster (chaos.dask_runs: an embedded LocalCluster of
    `concurrency` workers, or `scheduler`'s), or one after another in this process
    (sequential, or runner_kw: a caller's own Runner parts)."""
    out = out or sys.stdout
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 64:
        raise ScenarioError(path, None, f"--concurrency must be 1..64, got {concurrency!r}")
    if scheduler and sequential:
        raise ScenarioError(path, None, "--scheduler and --sequential do not mix")
    planned, budget, store_dir = load_matrix(path, store, provisioner)
    print(f"nightly: {len(planned)} run(s) from {path}" + (f", time budget {budget:.0f} s" if budget else ""),
          file=out)
    for p in planned:
        print(f"  {p.label}: {p.config.command_line()}", file=out)
    if dry_run:
        return 0
    if runner_kw is None and not sequential:
        return _run_on_dask(planned, budget, store_dir, concurrency, scheduler, out)
    from chaos.runner import Runner

    started = time.monotonic()
    results: list[tuple[str, int | None]] = []
    for p in planned:
        if budget is not None and time.monotonic() - started > budget:
            print(f"nightly: time budget of {budget:.0f} s used up; skipping {p.label}", file=out)
            results.append((p.label, None))
            continue
        print(f"nightly: {p.label}", file=out, flush=True)
        runner = Runner(p.config, **(runner_kw or {}))
        code = runner.execute()
        results.append((p.label, code))
        if runner.interrupted is not None:
            print("nightly: interrupted; not starting further runs", file=out)
            break
    return _summary(results, store_dir, out)


def _run_on_dask(planned, budget, store_dir: str, concurrency: int, scheduler: str | None, out) -> int:
    from chaos.dask_runs import run_planned
    from chaos.store import update_latest

    where = scheduler or f"an embedded Dask cluster of {concurrency} worker(s)"
    print(f"nightly: {len(planned)} run(s) on {where}", file=out, flush=True)
    done = run_planned(planned, os.path.abspath(store_dir), concurrency=concurrency, scheduler=scheduler,
                       budget=budget, out=out)
    results: list[tuple[str, int | None]] = []
    newest = None
    for result in done:
        for run_dir in result.get("run_dirs", []):
            try:
                from reports import render_run
                render_run(run_dir, update_index=False)  # its reproduce command names where it lives now
            except Exception as e:  # noqa: BLE001 - the verdict stands without a report
                print(f"nightly: rendering {run_dir} failed: {e}", file=out)
            if newest is None or os.path.basename(run_dir) > os.path.basename(newest):
                newest = run_dir
        code = result.get("code")
        label = result["label"]
        if str(result.get("outcome", "")).startswith("skipped"):
            code = None
        elif str(result.get("outcome", "")).startswith("cancelled") and code is None:
            code = 255
        retried = [a for a in result.get("attempts", []) if str(a.get("outcome", "")).startswith("crashed")]
        if retried and code is not None and code != 255:
            label += f" (retried after worker {retried[0].get('worker')} died)"
        results.append((label, code))
    if newest is not None:
        update_latest(store_dir, newest)  # the controller alone points latest
    if any(r.get("interrupted") for r in done):
        print("nightly: interrupted; every run was cancelled and torn down", file=out)
    return _summary(results, store_dir, out)


def _summary(results: list[tuple[str, int | None]], store_dir: str, out) -> int:
    from chaos.runner import EXIT_CRASHED

    index = None
    try:
        from reports import render_index
        index = render_index(store_dir)
    except ImportError as e:
        print(f"nightly: no index rendered (reports.render_index is not available: {e})", file=out)
    except Exception as e:  # noqa: BLE001 - the runs' verdicts stand without an index
        print(f"nightly: rendering the index failed: {e}", file=out)
    names = {0: "valid", 1: "INVALID", 2: "unknown", EXIT_CRASHED: "CRASHED", None: "skipped"}
    print("nightly summary:", file=out)
    for label, code in results:
        print(f"  {names.get(code, code):8} {label}", file=out)
    if index:
        print(f"index: {index}", file=out)
    codes = [c for _, c in results if c is not None]
    if EXIT_CRASHED in codes:
        return EXIT_CRASHED
    if 1 in codes:
        return 1
    if 2 in codes:
        return 2
    return 0
