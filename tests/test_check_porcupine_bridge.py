"""The porcupine helper: built once into a cache keyed by its sources, one process per batch,
bounded in time and memory (over a bound is unknown, never a pass)."""

import os
import subprocess
import sys

import pytest

from checkers import porcupine
from checkers.generate import register_history
from checkers.prepare import partition

# The shared data sits beside the clone (../shared), or at its usual place in this workplace.
DATA = os.environ.get("SPLITBRAIN_PORCUPINE_DATA",
                      os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "porcupine"))
if not os.path.isdir(DATA):
    DATA = "/work/shared/data/porcupine"


@pytest.fixture(scope="module")
def helper(porcupine_helper):
    return porcupine_helper


def test_binary_is_cached_under_a_name_keyed_by_the_source_hash(helper):
    assert os.path.basename(helper) == f"porcupine-check-{porcupine.source_hash()}"
    assert os.path.dirname(helper) == porcupine.cache_dir()
    before = os.stat(helper).st_mtime_ns
    assert porcupine.ensure_binary() == helper
    assert os.stat(helper).st_mtime_ns == before  # not rebuilt


def test_build_command_prints_the_binary_path(helper):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "checkers.porcupine", "--build"], cwd=root,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == helper


def test_cache_dir_follows_splitbrain_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SPLITBRAIN_CACHE", str(tmp_path))
    assert porcupine.binary_path().startswith(str(tmp_path))


def test_missing_go_is_reported_not_crashed(monkeypatch, tmp_path):
    monkeypatch.setenv("SPLITBRAIN_CACHE", str(tmp_path))
    monkeypatch.setattr(porcupine, "_built", None)
    monkeypatch.setattr(porcupine, "find_go", lambda: None)
    with pytest.raises(porcupine.PorcupineUnavailable, match="no Go toolchain"):
        porcupine.ensure_binary()


def test_auto_falls_back_to_our_checker_without_go(monkeypatch, tmp_path):
    import checkers
    monkeypatch.setenv("SPLITBRAIN_CACHE", str(tmp_path))
    monkeypatch.setattr(porcupine, "_built", None)
    monkeypatch.setattr(porcupine, "find_go", lambda: None)
    ops = register_history(1, n_ops=60, processes=3, unique_values=False)
    r = checkers.check_linearizable(ops, checker="auto")
    assert r["valid"] is True and r["checker"] == "python"
    with pytest.raises(checkers.CheckError, match="no Go toolchain"):
        checkers.check_linearizable(ops, checker="porcupine")


def test_many_histories_in_one_call_keep_their_own_keys(helper):
    batch = []
    for seed in range(5):
        keys, _ = partition(register_history(seed, n_ops=50, processes=3, keys=2), "register")
        batch.append((f"h{seed}", keys, {}))
    answers = porcupine.check_batch(batch, model="register")
    assert len(answers) == 5
    for (_, keys, _), per_key in zip(batch, answers, strict=True):
        assert set(per_key) == {kh.key for kh in keys}
        assert all(a["result"] == "ok" for a in per_key.values())


@pytest.mark.skipif(not os.path.exists(f"{DATA}/kv/c50-bad.txt"), reason="shared data not present")
def test_hard_key_over_its_time_or_memory_bound_is_unknown(helper):
    from checkers.formats import load_history
    ops, _ = load_history(f"{DATA}/kv/c50-bad.txt")
    keys = [kh for kh in partition(ops, "kv")[0] if kh.key == "0"]  # porcupine cannot decide it quickly
    [a] = porcupine.check_batch([("h", keys, {})], model="kv", append_mode="concat", init="",
                                key_timeout_s=0.5, all_keys=True, memory_limit_mb=None)
    assert a["0"]["result"] == "unknown" and "time budget" in a["0"]["error"]
    [a] = porcupine.check_batch([("h", keys, {})], model="kv", append_mode="concat", init="",
                                key_timeout_s=60, all_keys=True, memory_limit_mb=30)
    assert a["0"]["result"] == "unknown" and "memory bound" in a["0"]["error"]


def test_unwritable_cache_is_reported_not_crashed(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SPLITBRAIN_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(porcupine, "_built", None)
    with pytest.raises(porcupine.PorcupineUnavailable, match="SPLITBRAIN_CACHE"):
        porcupine.ensure_binary()
