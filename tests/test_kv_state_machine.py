"""The KV state machine: the answers of each write, sessions, expiry by the log, snapshots."""

import pytest

from raftnode.kv import KVStateMachine, json_equal
from raftnode.types import COMMAND, NOOP, Entry


class Log:
    """Feeds commands to a state machine as consecutive entries."""

    def __init__(self, sm=None):
        self.sm = sm or KVStateMachine()
        self.index = self.sm.last_applied

    def __call__(self, **command):
        self.index += 1
        return self.sm.apply(Entry(self.index, 1, COMMAND, command))

    def noop(self):
        self.index += 1
        return self.sm.apply(Entry(self.index, 1, NOOP))


def test_get_of_a_missing_key_is_not_found():
    assert KVStateMachine().get("k") == (404, {"error": "not_found"})


def test_put_then_get_returns_the_value():
    log = Log()
    assert log(op="put", key="k", value={"a": [1, 2]}) == (200, {})
    assert log.sm.get("k") == (200, {"value": {"a": [1, 2]}})


def test_a_stored_null_is_found():
    log = Log()
    log(op="put", key="k", value=None)
    assert log.sm.get("k") == (200, {"value": None})


def test_delete_removes_the_key_and_deleting_a_missing_key_succeeds():
    log = Log()
    log(op="put", key="k", value=1)
    assert log(op="delete", key="k") == (200, {})
    assert log.sm.get("k")[0] == 404
    assert log(op="delete", key="k") == (200, {})


def test_cas_succeeds_only_when_expected_matches():
    log = Log()
    log(op="put", key="k", value=1)
    assert log(op="cas", key="k", expected=2, value=3) == (409, {"ok": False, "value": 1})
    assert log(op="cas", key="k", expected=1, value=3) == (200, {"ok": True})
    assert log.sm.get("k") == (200, {"value": 3})


def test_cas_on_a_missing_key_compares_against_null():
    log = Log()
    assert log(op="cas", key="k", expected=0, value=1) == (409, {"ok": False, "value": None})
    assert log(op="cas", key="k", expected=None, value=1) == (200, {"ok": True})


def test_cas_compares_as_json_so_true_is_not_one():
    log = Log()
    log(op="put", key="k", value=1)
    assert log(op="cas", key="k", expected=True, value=2)[0] == 409
    assert log(op="cas", key="k", expected=1.0, value=2)[0] == 200
    assert json_equal({"a": [1, True]}, {"a": [1.0, True]})
    assert not json_equal([1], [True])


def test_append_starts_a_list_and_returns_the_list_after_it():
    log = Log()
    assert log(op="append", key="s", value=1) == (200, {"value": [1]})
    assert log(op="append", key="s", value=2) == (200, {"value": [1, 2]})
    assert log.sm.get("s") == (200, {"value": [1, 2]})


def test_an_answer_never_changes_after_later_appends():
    log = Log()
    first = log(op="append", key="s", value=1)
    log(op="append", key="s", value=2)
    assert first == (200, {"value": [1]})


def test_append_to_a_non_list_is_a_conflict_naming_the_value():
    log = Log()
    log(op="put", key="s", value="x")
    assert log(op="append", key="s", value=1) == (409, {"error": "not_a_list", "value": "x"})


def test_noop_entries_advance_last_applied_without_an_answer():
    log = Log()
    assert log.noop() is None
    assert log.sm.last_applied == 1


def test_entries_must_be_applied_strictly_in_order():
    sm = KVStateMachine()
    with pytest.raises(ValueError, match="out of order"):
        sm.apply(Entry(2, 1, NOOP))
    sm.apply(Entry(1, 1, NOOP))
    with pytest.raises(ValueError, match="out of order"):
        sm.apply(Entry(1, 1, NOOP))


@pytest.mark.parametrize("command, problem", [
    ({"op": "frobnicate", "key": "k"}, "unknown op"),
    ({"op": "put", "key": 3, "value": 1}, "key must be a string"),
    ({"op": "put", "key": "k"}, "put needs a value"),
    ({"op": "cas", "key": "k", "value": 1}, "cas needs expected"),
    ({"op": "put", "key": "k", "value": 1, "client_id": "c", "seq": -1}, "seq must be"),
    ({"op": "put", "key": "k", "value": 1, "client_id": 5, "seq": 1}, "client_id must be"),
    ("put k 1", "command must be an object"),
])
def test_a_malformed_command_answers_400_naming_the_problem(command, problem):
    sm = KVStateMachine()
    status, body = sm.apply(Entry(1, 1, COMMAND, command))
    assert status == 400 and body["error"] == "bad_command" and problem in body["detail"]
    assert sm.last_applied == 1


def test_a_retried_write_is_applied_once_and_answers_the_original_result():
    log = Log()
    assert log(op="append", key="s", value=1, client_id="c", seq=1) == (200, {"value": [1]})
    log(op="append", key="s", value=2)
    assert log(op="append", key="s", value=1, client_id="c", seq=1) == (200, {"value": [1]})
    assert log.sm.get("s") == (200, {"value": [1, 2]})


def test_a_retried_failed_cas_answers_the_original_failure():
    log = Log()
    log(op="put", key="k", value=5)
    first = log(op="cas", key="k", expected=1, value=2, client_id="c", seq=7)
    log(op="put", key="k", value=1)
    assert log(op="cas", key="k", expected=1, value=2, client_id="c", seq=7) == first
    assert log.sm.get("k") == (200, {"value": 1})


def test_a_lower_seq_is_stale():
    log = Log()
    log(op="put", key="k", value=1, client_id="c", seq=5)
    assert log(op="put", key="k", value=2, client_id="c", seq=4)[1]["error"] == "stale_seq"
    assert log.sm.get("k") == (200, {"value": 1})


def test_sessions_are_per_client():
    log = Log()
    log(op="append", key="s", value="a", client_id="c1", seq=1)
    assert log(op="append", key="s", value="b", client_id="c2", seq=1) == (200, {"value": ["a", "b"]})


def test_writes_without_a_session_are_never_deduplicated():
    log = Log()
    log(op="append", key="s", value=1)
    assert log(op="append", key="s", value=1) == (200, {"value": [1, 1]})


def test_the_least_recently_used_session_expires_first():
    log = Log(KVStateMachine(max_sessions=2))
    log(op="append", key="s", value="a", client_id="c1", seq=1)
    log(op="append", key="s", value="b", client_id="c2", seq=1)
    log(op="append", key="s", value="a", client_id="c1", seq=1)   # a retry uses c1 again
    log(op="append", key="s", value="c", client_id="c3", seq=1)   # evicts c2, the least recent
    assert set(log.sm.sessions) == {"c1", "c3"}
    # c1 is still deduplicated; c2's retry is applied again (its session expired).
    assert log(op="append", key="s", value="a", client_id="c1", seq=1) == (200, {"value": ["a"]})
    assert log(op="append", key="s", value="b", client_id="c2", seq=1)[1]["value"][-1] == "b"


def test_two_replicas_applying_the_same_log_agree_on_everything():
    commands = [dict(op="append", key=f"k{i % 3}", value=i, client_id=f"c{i % 5}", seq=i // 2)
                for i in range(60)]
    a, b = Log(KVStateMachine(max_sessions=3)), Log(KVStateMachine(max_sessions=3))
    answers_a = [a(**c) for c in commands]
    answers_b = [b(**c) for c in commands]
    assert answers_a == answers_b
    assert a.sm.snapshot() == b.sm.snapshot()


def test_snapshot_restore_carries_data_sessions_and_last_applied():
    log = Log()
    log(op="put", key="k", value=[1, {"x": None}])
    log(op="append", key="s", value=1, client_id="c", seq=3)
    log.noop()
    restored = KVStateMachine()
    restored.restore(log.sm.snapshot())
    assert restored.last_applied == 3 and restored.data == log.sm.data
    again = Log(restored)
    assert again(op="append", key="s", value=1, client_id="c", seq=3) == (200, {"value": [1]})
    assert again(op="append", key="s", value=1, client_id="c", seq=2)[1]["error"] == "stale_seq"
    assert restored.snapshot() != log.sm.snapshot()  # it moved on


def test_snapshot_preserves_session_expiry_order():
    log = Log(KVStateMachine(max_sessions=2))
    log(op="put", key="k", value=1, client_id="old", seq=1)
    log(op="put", key="k", value=2, client_id="new", seq=1)
    restored = KVStateMachine(max_sessions=2)
    restored.restore(log.sm.snapshot())
    Log(restored)(op="put", key="k", value=3, client_id="third", seq=1)
    assert list(restored.sessions) == ["new", "third"]


@pytest.mark.parametrize("blob, problem", [
    (b"{not json", "not valid JSON"),
    (b'{"format": 99}', "unknown format"),
    (b'{"format": 1, "last_applied": -1, "last_applied_term": 0, "data": {}, "sessions": []}', "last_applied"),
    (b'{"format": 1, "last_applied": 1, "last_applied_term": 0, "data": [], "sessions": []}', "data"),
    (b'{"format": 1, "last_applied": 1, "last_applied_term": 0, "data": {}, "sessions": [[1]]}', "sessions"),
])
def test_restore_rejects_a_malformed_snapshot_naming_the_problem(blob, problem):
    with pytest.raises(ValueError, match=problem):
        KVStateMachine().restore(blob)
