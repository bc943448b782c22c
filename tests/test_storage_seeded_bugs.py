"""The seeded storage bugs break exactly their guarantee, and only when switched on."""

from raftnode.storage import Storage
from raftnode.types import COMMAND, Entry, HardState


def test_forget_vote_loses_voted_for_across_a_restart_but_keeps_the_term(tmp_path):
    storage = Storage(str(tmp_path), bugs=frozenset({"forget-vote"}))
    storage.load()
    storage.persist(HardState(7, "n3"), None, [])
    storage.close()
    state = Storage(str(tmp_path)).load()
    assert state.hard_state.term == 7 and state.hard_state.voted_for is None


def test_without_the_bug_voted_for_survives(tmp_path):
    storage = Storage(str(tmp_path))
    storage.load()
    storage.persist(HardState(7, "n3"), None, [])
    storage.close()
    assert Storage(str(tmp_path)).load().hard_state.voted_for == "n3"


def test_no_fsync_never_calls_fsync(tmp_path, monkeypatch):
    calls = []
    import os
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append(fd))
    storage = Storage(str(tmp_path), bugs=frozenset({"no-fsync"}))
    storage.load()
    storage.persist(HardState(1, "n1"), None, [Entry(1, 1, COMMAND, {"op": "put", "key": "a", "value": 1})])
    storage.close()
    assert calls == []
    healthy = Storage(str(tmp_path / "ok"))
    healthy.load()
    healthy.persist(HardState(1, "n1"), None, [Entry(1, 1, COMMAND, {"op": "put", "key": "a", "value": 1})])
    assert calls, "a correct node fsyncs"
    healthy.close()
