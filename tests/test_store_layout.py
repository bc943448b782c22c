"""The run store: store/<test>/<timestamp>/, a latest link always pointing at the newest run."""

import json
import os

import pytest

from chaos.store import create_run_dir, list_runs, open_run_dir


def test_run_dir_layout_and_latest_link(tmp_path):
    root = str(tmp_path / "store")
    run = create_run_dir(root, "register", now=0)
    assert run.path == os.path.join(root, "register", run.timestamp)
    assert os.path.isdir(os.path.join(run.path, "nodes"))
    assert os.path.realpath(os.path.join(root, "latest")) == run.path
    assert not os.path.isabs(os.readlink(os.path.join(root, "latest")))  # the store can be moved
    run.write_json("config.json", {"seed": 1})
    assert run.read_json("config.json") == {"seed": 1}
    assert os.path.isdir(run.node_dir("n1"))


def test_two_runs_in_the_same_second_get_distinct_dirs_and_latest_moves(tmp_path):
    root = str(tmp_path)
    a = create_run_dir(root, "t", now=100)
    b = create_run_dir(root, "t", now=100)
    assert a.path != b.path and b.timestamp.endswith("-2")
    assert os.path.realpath(os.path.join(root, "latest")) == b.path


def test_open_run_dir_accepts_a_run_the_latest_link_or_the_store(tmp_path):
    root = str(tmp_path)
    run = create_run_dir(root, "t", now=5)
    run.write_json("config.json", {})
    assert open_run_dir(run.path).path == run.path
    assert open_run_dir(os.path.join(root, "latest")).path == run.path
    assert open_run_dir(root).path == run.path
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        open_run_dir(os.path.join(root, "t"))
    with pytest.raises(FileNotFoundError, match="no such run"):
        open_run_dir(os.path.join(root, "missing"))


def test_list_runs_oldest_first_skipping_latest(tmp_path):
    root = str(tmp_path)
    for name, now in (("b", 200), ("a", 100), ("c", 300)):
        create_run_dir(root, name, now=now).write_json("config.json", {})
    assert [r.test_name for r in list_runs(root)] == ["a", "b", "c"]
    assert list_runs(str(tmp_path / "nothing")) == []


def test_write_json_is_atomic(tmp_path):
    run = create_run_dir(str(tmp_path), "t", now=1)
    run.write_json("results.json", {"valid": True})
    assert not os.path.exists(run.results_path + ".tmp")
    assert json.load(open(run.results_path)) == {"valid": True}
