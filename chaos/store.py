"""The run store: store/<test-name>/<YYYYmmddTHHMMSS>/ per run, store/latest -> the newest.

    config.json      resolved config, seed, executed schedule, reproducing command
    history.jsonl    the history, streamed as it happens (chaos.history.HistoryWriter)
    status.jsonl     /status polls of every node (chaos.cluster_view)
    results.json     the checkers' verdict
    controller.log   this controller's log
    nodes/<id>/      node logs collected before teardown
    report/          the rendered report
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

TIMESTAMP_FORMAT = "%Y%m%dT%H%M%S"
RUN_FILES = ("config.json", "history.jsonl", "status.jsonl", "results.json", "controller.log")


@dataclass
class RunDir:
    path: str
    test_name: str
    timestamp: str

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def config_path(self) -> str:
        return self.file("config.json")

    @property
    def history_path(self) -> str:
        return self.file("history.jsonl")

    @property
    def status_path(self) -> str:
        return self.file("status.jsonl")

    @property
    def results_path(self) -> str:
        return self.file("results.json")

    @property
    def log_path(self) -> str:
        return self.file("controller.log")

    def node_dir(self, node_id: str) -> str:
        path = os.path.join(self.path, "nodes", node_id)
        os.makedirs(path, exist_ok=True)
        return path

    @property
    def report_dir(self) -> str:
        return self.file("report")

    def write_json(self, name: str, data: Any) -> str:
        """Write atomically (a reader never sees half a file)."""
        path = self.file(name)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
        os.replace(tmp, path)
        return path

    def read_json(self, name: str) -> Any:
        with open(self.file(name), encoding="utf-8") as f:
            return json.load(f)


def create_run_dir(store_root: str, test_name: str, now: float | None = None, name: str | None = None,
                   latest: bool = True) -> RunDir:
    """A new, empty run directory; store/latest is pointed at it at once so that a run that
    crashes is still the one `latest` shows. `name` replaces the timestamp (a nightly names its
    runs at dispatch: timestamps of runs on different workers collide); latest=False leaves
    store/latest alone (a nightly's controller alone points it)."""
    stamp = name or time.strftime(TIMESTAMP_FORMAT, time.localtime(now if now is not None else time.time()))
    parent = os.path.join(store_root, test_name)
    os.makedirs(parent, exist_ok=True)
    name, n = stamp, 1
    while True:
        path = os.path.join(parent, name)
        try:
            os.mkdir(path)
            break
        except FileExistsError:
            n += 1
            name = f"{stamp}-{n}"
    os.makedirs(os.path.join(path, "nodes"), exist_ok=True)
    if latest:
        update_latest(store_root, path)
    return RunDir(path, test_name, name)


def update_latest(store_root: str, run_path: str) -> None:
    link = os.path.join(store_root, "latest")
    target = os.path.relpath(run_path, store_root)
    tmp = f"{link}.tmp-{os.getpid()}"
    try:
        os.remove(tmp)
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, link)  # atomic: readers see the old or the new link, never none


def open_run_dir(path: str) -> RunDir:
    """An existing run directory (or store/latest, or a store root whose latest is used)."""
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        raise FileNotFoundError(f"{path}: no such run directory")
    if not os.path.exists(os.path.join(real, "config.json")) and os.path.islink(os.path.join(real, "latest")):
        real = os.path.realpath(os.path.join(real, "latest"))
    if not os.path.exists(os.path.join(real, "config.json")):
        raise FileNotFoundError(f"{path}: not a run directory (no config.json)")
    return RunDir(real, os.path.basename(os.path.dirname(real)), os.path.basename(real))


def list_runs(store_root: str) -> list[RunDir]:
    """Every run in the store, oldest first."""
    runs: list[RunDir] = []
    if not os.path.isdir(store_root):
        return runs
    for test in sorted(os.listdir(store_root)):
        test_path = os.path.join(store_root, test)
        if test == "latest" or os.path.islink(test_path) or not os.path.isdir(test_path):
            continue
        for stamp in sorted(os.listdir(test_path)):
            run_path = os.path.join(test_path, stamp)
            if os.path.isfile(os.path.join(run_path, "config.json")):
                runs.append(RunDir(run_path, test, stamp))
    runs.sort(key=lambda r: (r.timestamp, r.test_name))
    return runs
