"""The Redis example under lose-unsynced (examples/redis/lose-unsynced.yaml): Redis's data
directory is a lazy disk, and every few seconds the server is killed and the writes it had not
fsynced are dropped. appendfsync=always keeps every acknowledged write; appendfsync=no loses
some, and the checker says so."""

import os

import pytest

from chaos import lazydisk
from chaos.history import OK, read_jsonl
from test_example_redis import ROOT, read_json, redis_plugin, redis_processes_on, splitbrain  # noqa: F401

SCENARIO = os.path.join(ROOT, "examples", "redis", "lose-unsynced.yaml")

if lazydisk.unavailable_reason():
    pytest.fail(lazydisk.unavailable_reason(), pytrace=False) if os.environ.get("CI") else \
        pytest.skip(lazydisk.unavailable_reason(), allow_module_level=True)


def lose_run(store, fsync, address):
    proc = splitbrain("run", "--scenario", SCENARIO, "--store", str(store), "--seed", "1", "--time-limit", "10",
                      "--concurrency", "5", "--rate", "1000", "--provisioner-option", f"base_address={address}",
                      "--node-option", f"fsync={fsync}")
    return proc, os.path.realpath(os.path.join(str(store), "latest"))


@pytest.mark.timeout(150)
def test_with_appendfsync_always_every_acknowledged_write_survives_losing_the_machine(redis_plugin, tmp_path):
    proc, run_dir = lose_run(tmp_path / "store", "always", "127.0.0.201")
    assert proc.returncode == 0, proc.stderr[-4000:]
    ops = read_jsonl(os.path.join(run_dir, "history.jsonl"))
    drops = [op for op in ops if op.is_nemesis and op.f == "lose-unsynced" and op.type == "info"]
    assert len(drops) >= 2 and all(op.value["nodes"] == ["n1"] for op in drops)
    assert sum(1 for op in ops if op.type == OK and op.f in ("write", "cas")) > 500
    assert not redis_processes_on("127.0.0.201")
    assert not [m for m in lazydisk.mounts() if m.get("owner") == str(proc.pid)]


@pytest.mark.timeout(150)
def test_with_appendfsync_no_losing_the_machine_loses_acknowledged_writes(redis_plugin, tmp_path):
    proc, run_dir = lose_run(tmp_path / "store", "no", "127.0.0.202")
    assert proc.returncode == 1, proc.stderr[-4000:]
    results = read_json(os.path.join(run_dir, "results.json"))
    assert results["valid"] is False and "not linearizable" in results["reason"]
    ops = read_jsonl(os.path.join(run_dir, "history.jsonl"))
    drops = [op for op in ops if op.is_nemesis and op.f == "lose-unsynced" and op.type == "info"]
    assert any(not op.value["lost"]["n1"].startswith("0 unsynced bytes") for op in drops)
