"""A nightly's runs on a Dask cluster: an embedded LocalCluster (N runs at once on this machine)
or a scheduler's workers (`--scheduler tcp://HOST:8786`, each worker with what its runs need:
Docker, root for partitions, this package installed; started with `--nthreads 1`).

- Each run is a subprocess, `splitbrain run --config <the resolved config> --run-name NAME`,
  that its task can SIGTERM: Dask cannot interrupt a running task, and the runner's signal
  handling lives in a process's main thread. The subprocess stays in its worker's process group,
  so a worker killed with its group takes its run along.
- Runs are named at dispatch (<dispatch time>-<index>; a retry adds "-retry"): timestamps of
  runs started on different workers in the same second would collide. Each run writes into a
  private store on its worker and comes back as a tar.gz archive; the controller unpacks it into
  the one store, points its config at where it now lives, renders its report, and alone writes
  `latest` and the index.
- A worker that dies mid-run: Dask runs the task again on another worker, once
  (distributed.scheduler.allowed-failures = 1: a second death is KilledWorker, a crashed run).
  The retry first cleans what dead controllers left on its host (`splitbrain clean`: only
  resources whose owner process is gone) and, when the dead attempt ran on the same host, brings
  its partial run back marked crashed. Every attempt is noted in a Dask Variable per run.
- Cancelling (Ctrl-C or SIGTERM of the controller): a Dask Event tells every task; a running
  task SIGTERMs its run, which tears its cluster down; a task not yet started returns at once.
  The controller waits for all of them before it closes the cluster.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any

CANCEL_POLL_S = 0.5
#: how long a cancelled run has to tear its cluster down before it is killed
TEARDOWN_GRACE_S = 180.0
#: scheduler setting: a task may be on one worker that died, not two
ALLOWED_FAILURES = 1


def _variable(name: str):
    from distributed import Variable
    return Variable(name)


def _attempts(spec: dict) -> list[dict]:
    try:
        return list(_variable(f"{spec['nightly']}-{spec['index']}-attempts").get(timeout=30) or [])
    except Exception:  # noqa: BLE001 - no attempt noted yet (asyncio/dask TimeoutError)
        return []


def _note_attempts(spec: dict, attempts: list[dict]) -> None:
    _variable(f"{spec['nightly']}-{spec['index']}-attempts").set(attempts)


def _cancelled(spec: dict) -> bool:
    from distributed import Event
    try:
        return Event(f"{spec['nightly']}-cancel").is_set()
    except Exception:  # noqa: BLE001 - the scheduler is gone: nobody wants the run any more
        return True


def _pack(run_dir: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(run_dir, arcname=os.path.basename(run_dir))
    return buffer.getvalue()


def _mark_crashed(run_dir: str, reason: str) -> None:
    path = os.path.join(run_dir, "results.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"valid": "unknown", "reason": reason, "crashed": True, "checkers": {}}, f, indent=2)
    os.replace(path + ".tmp", path)


def _gone(pid, start=None) -> bool:
    """The owner of a run is gone: no such process, or a zombie nobody reaped (a run whose
    worker was killed with it is reparented to an init that may never reap it)."""
    from chaos.provision.base import owner_alive

    return not owner_alive(pid, start or None)


def clean_dead_owners() -> dict:
    """What runs of dead (or zombie) controllers left on this host: local runs (their nodes,
    chains, cgroups, files), then everything `splitbrain clean` removes."""
    from chaos.provision.base import LABEL_OWNER
    from chaos.provision.cleanup import clean
    from chaos.provision.local import destroy_state, read_states

    removed: dict[str, list[Any]] = {"local_runs": []}
    for state in read_states():
        owner = state.get(LABEL_OWNER)
        if owner not in (0, "0", None) and _gone(owner, state.get("owner_start")):
            destroy_state(state)
            removed["local_runs"].append(state.get("run"))
    try:
        from chaos.provision.base import LABEL, LABEL_OWNER_START, docker_client
        client = docker_client()
        for container in client.containers.list(all=True, filters={"label": f"{LABEL}=1"}):
            owner = container.labels.get(LABEL_OWNER)
            if owner not in ("0", None) and _gone(owner, container.labels.get(LABEL_OWNER_START)):
                container.remove(force=True, v=True)
                removed.setdefault("containers", []).append(container.name)
    except Exception:  # noqa: BLE001, S110 - no engine: no containers to remove
        pass
    for kind, names in clean().items():
        if isinstance(names, list):
            removed.setdefault(kind, []).extend(names)
    return removed


def run_task(spec: dict) -> dict:
    """One run, on a worker: the subprocess, its cancellation, its archive. Never raises for a
    run's own failure (its exit code says it); a dead worker is Dask's to handle."""
    from distributed import get_worker

    worker = get_worker()
    here = {"worker": worker.address, "host": socket.gethostname(), "pid": os.getpid()}
    result = {"index": spec["index"], "label": spec["label"], "name": spec["name"], "code": None,
              "archives": [], "attempts": [], **here}
    attempts = _attempts(spec)
    if _cancelled(spec):
        result["outcome"] = "cancelled before it started"
        return result
    if spec.get("deadline") and time.time() > spec["deadline"] and not attempts:
        result["outcome"] = "skipped: the time budget was used up"
        return result
    name = spec["name"]
    for previous in attempts:
        # That attempt's worker died with it: what its run left on this host goes first.
        previous["outcome"] = "crashed: its worker died mid-run"
        if previous.get("host") == here["host"]:
            try:
                previous["cleaned"] = clean_dead_owners()
            except Exception as e:  # noqa: BLE001 - the retry runs on other resources anyway
                previous["cleaned"] = f"clean failed: {e}"
            partial = previous.get("run_dir")
            if partial and os.path.isdir(partial):
                _mark_crashed(partial, f"the run did not complete: worker {previous['worker']} died mid-run "
                                       f"(retried as {name}-retry)")
                result["archives"].append(_pack(partial))
            if previous.get("tmp"):
                shutil.rmtree(previous["tmp"], ignore_errors=True)
    if len(attempts) > ALLOWED_FAILURES:
        # the scheduler allows more retries than we do: a run is tried twice at most
        result["code"], result["outcome"] = 255, "crashed: its workers died in two attempts"
        result["attempts"] = attempts
        return result
    if attempts:
        name = f"{name}-retry"
    tmp = tempfile.mkdtemp(prefix=f"splitbrain-nightly-{spec['index']}-")
    config = dict(spec["config"], store=os.path.join(tmp, "store"))
    config_path = os.path.join(tmp, "config.json")
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f)
    run_dir = os.path.join(tmp, "store", config["test_name"], name)
    attempts.append({**here, "name": name, "run_dir": run_dir, "tmp": tmp, "started": time.time()})
    _note_attempts(spec, attempts)
    started = time.monotonic()
    log_path = os.path.join(tmp, "run.log")
    with open(log_path, "wb") as log:
        # the worker's process group: a worker killed with its group takes the run along
        proc = subprocess.Popen([sys.executable, "-m", "chaos.cli", "run", "--config", config_path,
                                 "--run-name", name, "--no-latest"], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, cwd=spec.get("cwd") or None)
        cancelled_at = None
        while proc.poll() is None:
            if cancelled_at is None and _cancelled(spec):
                cancelled_at = time.monotonic()
                proc.send_signal(signal.SIGTERM)
            if cancelled_at is not None and time.monotonic() - cancelled_at > TEARDOWN_GRACE_S:
                proc.kill()
            try:
                proc.wait(timeout=CANCEL_POLL_S)
            except subprocess.TimeoutExpired:
                pass
    result["code"] = proc.returncode
    result["seconds"] = round(time.monotonic() - started, 1)
    result["outcome"] = "cancelled" if cancelled_at is not None else "done"
    with open(log_path, "rb") as f:
        result["output_tail"] = f.read()[-4000:].decode("utf-8", "replace")
    if os.path.isdir(run_dir):
        result["archives"].append(_pack(run_dir))
    attempts[-1]["outcome"] = result["outcome"]
    result["attempts"] = [{k: v for k, v in a.items() if k not in ("tmp", "run_dir")} for a in attempts]
    result["name"] = name
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def _ignore_interrupts_plugin():
    from distributed import WorkerPlugin

    class IgnoreInterrupts(WorkerPlugin):
        """A worker plugin for the embedded cluster: its workers ignore the terminal's Ctrl-C (the
        controller cancels the runs itself, and a worker must outlive its run's teardown)."""

        name = "splitbrain-ignore-sigint"

        def setup(self, worker):
            import threading
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    return IgnoreInterrupts()


def unpack(archive: bytes, store_dir: str, test_name: str) -> str:
    """Unpack a run's archive into the store; returns the run's directory there."""
    parent = os.path.join(store_dir, test_name)
    os.makedirs(parent, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        names = {m.name.split("/", 1)[0] for m in tar.getmembers()}
        if len(names) != 1:
            raise ValueError(f"a run's archive holds one folder, not {sorted(names)}")
        (top,) = names
        if os.path.exists(os.path.join(parent, top)):
            raise FileExistsError(f"{os.path.join(parent, top)} exists already (a run named twice?)")
        tar.extractall(parent, filter="data")
    run_dir = os.path.join(parent, top)
    config_path = os.path.join(run_dir, "config.json")
    if os.path.exists(config_path):
        # the run now lives here, not in its worker's private store
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        config["store"] = store_dir
        config["command"] = f"splitbrain reproduce {run_dir}"
        with open(config_path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, default=str)
        os.replace(config_path + ".tmp", config_path)
    return run_dir


def run_planned(planned, store_dir: str, concurrency: int = 1, scheduler: str | None = None,
                budget: float | None = None, out=None) -> list[dict]:
    """Every planned run on the cluster; returns one result per planned run, in plan order,
    each {"label", "code", "run_dirs", "attempts", "outcome"}."""
    import dask
    from distributed import Client, Event, LocalCluster, Variable, as_completed

    out = out or sys.stdout
    stamp = time.strftime("%Y%m%dT%H%M%S")
    nightly = f"nightly-{stamp}-{os.getpid()}"
    deadline = time.time() + budget if budget else None
    specs = [{"nightly": nightly, "index": i, "label": p.label, "name": f"{stamp}-{i + 1:03d}",
              "config": p.config.to_dict(), "deadline": deadline, "cwd": os.getcwd()}
             for i, p in enumerate(planned)]
    cluster = None
    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                          "distributed.worker.daemon": False}):
        if scheduler:
            client = Client(scheduler, timeout="30s")
            allowed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
            if allowed != ALLOWED_FAILURES:
                print(f"nightly: warning: the scheduler retries a task after {allowed} worker deaths; a run "
                      f"is tried at most {ALLOWED_FAILURES + 1} times all the same (start the scheduler with "
                      f"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES={ALLOWED_FAILURES})", file=out)
        else:
            cluster = LocalCluster(n_workers=concurrency, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", scheduler_port=0, dashboard_address=None,
                                   silence_logs=40)
            client = Client(cluster)
            client.register_plugin(_ignore_interrupts_plugin())
        cancel = Event(f"{nightly}-cancel", client=client)
        results: dict[int, dict] = {}
        interrupted: list[int] = []

        def on_signal(signum, frame):
            if not interrupted:
                print(f"\nnightly: {signal.Signals(signum).name}: cancelling every run (their clusters are torn "
                      "down first)", file=out, flush=True)
            else:
                print("nightly: still waiting for the runs to tear down", file=out, flush=True)
            interrupted.append(signum)
            cancel.set()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        for spec in specs:  # set before any task reads it: a get() never waits
            Variable(f"{spec['nightly']}-{spec['index']}-attempts", client=client).set([])
        try:
            futures = {client.submit(run_task, spec, key=f"{nightly}-{spec['index']}", pure=False, retries=0): spec
                       for spec in specs}
            for future in as_completed(futures):
                spec = futures[future]
                try:
                    result = future.result()
                except Exception as e:  # noqa: BLE001 - KilledWorker and friends: the run crashed
                    result = {"index": spec["index"], "label": spec["label"], "name": spec["name"], "code": 255,
                              "archives": [], "outcome": f"crashed: {type(e).__name__}: {e}",
                              "attempts": [{k: v for k, v in a.items() if k not in ("tmp", "run_dir")}
                                           for a in _attempts_from(client, spec)]}
                result["run_dirs"] = []
                for archive in result.pop("archives", []):
                    try:
                        result["run_dirs"].append(unpack(archive, store_dir, spec["config"]["test_name"]))
                    except (OSError, ValueError, tarfile.TarError) as e:
                        print(f"nightly: {spec['label']}: cannot unpack its run: {e}", file=out)
                results[spec["index"]] = result
                _say(result, out)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            client.close()
            if cluster is not None:
                cluster.close()
    for r in results.values():
        r["interrupted"] = bool(interrupted)
    return [results[i] for i in sorted(results)]


def _attempts_from(client, spec) -> list[dict]:
    from distributed import Variable
    try:
        return list(Variable(f"{spec['nightly']}-{spec['index']}-attempts", client=client).get(timeout=1))
    except Exception:  # noqa: BLE001
        return []


def _say(result: dict, out) -> None:
    where = f" on {result.get('worker')}" if result.get("worker") else ""
    retried = [a for a in result.get("attempts", []) if str(a.get("outcome", "")).startswith("crashed")]
    extra = f" (retried after {len(retried)} crashed attempt(s))" if retried and result.get("code") != 255 else ""
    print(f"nightly: {result['label']}: exit {result.get('code')} {result.get('outcome', '')}{where}{extra}",
          file=out, flush=True)
