"""Apply is total: whatever a committed entry holds, `KVStateMachine.apply` answers it without
raising, every replica answers it the same, nothing unencodable is stored, and every answer and
snapshot afterwards still encodes as strict JSON. (A poison entry that raised would stop every
replica that applies it, on every replay of the log.)"""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftnode.kv import MAX_NESTING, KVStateMachine, nesting_depth, value_problem
from raftnode.types import COMMAND, Entry


def nested(depth, leaf=1):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def strict_json(value) -> str:
    return json.dumps(value, allow_nan=False)


def assert_everything_still_encodes(sm: KVStateMachine) -> None:
    for key in sm.data:
        strict_json(sm.get(key))
    json.loads(sm.snapshot())


POISON = [
    ("infinity", {"op": "put", "key": "k", "value": math.inf}, "not finite"),
    ("minus infinity in a list", {"op": "put", "key": "k", "value": [1, -math.inf]}, "not finite"),
    ("nan as expected", {"op": "cas", "key": "k", "expected": math.nan, "value": 1}, "not finite"),
    ("nan appended", {"op": "append", "key": "k", "value": {"x": math.nan}}, "not finite"),
    ("100,000 levels deep", {"op": "put", "key": "k", "value": nested(100_000)}, "nested"),
    ("one level too deep", {"op": "put", "key": "k", "value": nested(MAX_NESTING + 1)}, "nested"),
    ("a set", {"op": "put", "key": "k", "value": {1, 2}}, "not JSON"),
    ("bytes", {"op": "put", "key": "k", "value": b"raw"}, "not JSON"),
    ("keys of mixed types", {"op": "put", "key": "k", "value": {1: "a", "b": 2}}, "not JSON"),
    ("an integer of 5,000 digits", {"op": "put", "key": "k", "value": 10 ** 5000}, "cannot be encoded"),
    ("an op that is a deep list", {"op": nested(100_000), "key": "k"}, "unknown op a value of type list"),
    ("an op that is a huge string", {"op": "x" * 1_000_000, "key": "k"}, "unknown op 'xxxx"),
    ("a key that is a dict", {"op": "put", "key": {"a": 1}, "value": 1}, "key must be a string"),
    ("a seq that is a float", {"op": "put", "key": "k", "value": 1, "client_id": "c", "seq": 1.5}, "seq must be"),
    ("not an object", [1, 2, 3], "command must be an object"),
    ("nothing", None, "command must be an object"),
]


@pytest.mark.parametrize("name,command,problem", POISON, ids=[p[0] for p in POISON])
def test_a_poison_command_answers_400_on_every_replica_and_changes_nothing(name, command, problem):
    replicas = [KVStateMachine(), KVStateMachine()]
    answers = []
    for sm in replicas:
        assert sm.apply(Entry(1, 1, COMMAND, {"op": "put", "key": "k", "value": [0]})) == (200, {})
        answers.append(sm.apply(Entry(2, 1, COMMAND, command)))
    assert answers[0] == answers[1]
    status, body = answers[0]
    assert status == 400 and body["error"] == "bad_command" and problem in body["detail"], body
    assert len(body["detail"]) < 400  # never an echo of a huge or deep value
    for sm in replicas:
        assert sm.last_applied == 2 and sm.get("k") == (200, {"value": [0]})
        assert_everything_still_encodes(sm)
    strict_json(body)


def test_an_entry_of_unknown_kind_is_an_error_result_not_an_exception():
    sm = KVStateMachine()
    status, body = sm.apply(Entry(1, 1, "frobnicate", {"op": "put", "key": "k", "value": 1}))
    assert status == 400 and "unknown entry kind" in body["detail"] and sm.last_applied == 1


def test_a_lone_surrogate_is_stored_and_every_answer_and_snapshot_still_encodes():
    sm = KVStateMachine()
    assert sm.apply(Entry(1, 1, COMMAND, {"op": "put", "key": "k", "value": "\ud800"})) == (200, {})
    restored = KVStateMachine()
    restored.restore(sm.snapshot())
    assert restored.get("k") == sm.get("k") == (200, {"value": "\ud800"})


def test_the_deepest_allowed_value_is_stored_and_answers_of_it_encode():
    sm = KVStateMachine()
    value = nested(MAX_NESTING)
    assert nesting_depth(value) == MAX_NESTING
    assert sm.apply(Entry(1, 1, COMMAND, {"op": "append", "key": "k", "value": value}))[0] == 200
    assert sm.apply(Entry(2, 1, COMMAND, {"op": "cas", "key": "k", "expected": 0, "value": 1}))[0] == 409
    assert_everything_still_encodes(sm)


def test_nesting_depth_is_measured_without_recursion():
    assert nesting_depth(1) == 0 and nesting_depth([]) == 1 and nesting_depth({"a": [1]}) == 2
    assert nesting_depth(nested(1_000_000), limit=10**7) == 1_000_000


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5))
anything = st.recursive(
    json_scalars | st.binary(max_size=3) | st.sets(st.integers(), max_size=2),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), children, max_size=3),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(st.one_of(anything, st.dictionaries(st.sampled_from(["op", "key", "value", "expected", "client_id", "seq"]),
                                           anything | st.sampled_from(["put", "cas", "append", "delete", "k"]),
                                           max_size=6)))
def test_no_entry_data_makes_apply_raise_and_replicas_always_agree(data):
    replicas = [KVStateMachine(), KVStateMachine()]
    answers = [sm.apply(Entry(1, 1, COMMAND, data)) for sm in replicas]
    assert answers[0] == answers[1] or repr(answers[0]) == repr(answers[1])  # nan != nan
    status, body = answers[0]
    strict_json(body)
    for sm in replicas:
        assert_everything_still_encodes(sm)


def test_an_unforeseen_failure_while_executing_is_an_error_result_but_running_out_of_memory_is_not(monkeypatch):
    # validate_command rejects everything _execute cannot take; should a bug let something
    # through, the entry still gets the same error result on every replica instead of
    # stopping them all. Memory is not a property of the entry: that one must propagate.
    sm = KVStateMachine()

    def broken(command):
        raise KeyError("a bug")
    monkeypatch.setattr(sm, "_execute", broken)
    assert sm.apply(Entry(1, 1, COMMAND, {"op": "put", "key": "k", "value": 1})) == (
        400, {"error": "bad_command", "detail": "cannot be applied: KeyError"})

    def out_of_memory(command):
        raise MemoryError()
    monkeypatch.setattr(sm, "_execute", out_of_memory)
    with pytest.raises(MemoryError):
        sm.apply(Entry(2, 1, COMMAND, {"op": "put", "key": "k", "value": 1}))


json_text_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(json_text_values, st.integers(min_value=0, max_value=130), st.sampled_from(["1e400", "-1e999", "2", "[]"]))
def test_a_write_the_http_layer_accepts_passes_the_check_the_leader_skips_for_it(value, depth, leaf):
    # The leader does not re-run value_problem on its own parsed commands (codec.PreEncoded);
    # that is only sound if parse_write_body never accepts a value value_problem would refuse.
    from raftnode.server import parse_write_body
    text = json.dumps(value)  # may spell NaN and Infinity: the HTTP layer must refuse those
    nested_text = "[" * depth + leaf + "]" * depth
    for body in (f'{{"value": {text}}}', f'{{"value": {nested_text}}}',
                 f'{{"expected": {nested_text}, "value": {text}}}'):
        command, problem = parse_write_body("cas" if "expected" in body else "put", "k", body.encode())
        if command is not None:
            for name in ("value", "expected"):
                if name in command:
                    assert value_problem(command[name]) is None, (body[:200], name)
            sm = KVStateMachine()
            answer = sm.apply(Entry(1, 1, COMMAND, command))
            assert answer == KVStateMachine().apply(Entry(1, 1, COMMAND, json.loads(command.wire)))
