"""A write body becomes a command whose pre-built JSON encoding decodes to exactly that command
(the leader ships these bytes to followers and its log without encoding the command again)."""

import json

import pytest

from raftnode.codec import HEADER_SIZE, decode_message, encode_message
from raftnode.server import MAX_VALUE_BYTES, parse_write_body
from raftnode.storage import encode_batch
from raftnode.types import APPEND, COMMAND, Entry, Message


@pytest.mark.parametrize("op,key,body", [
    ("put", "k", b'{"value": 1}'),
    ("put", "k\u00e9/\"quoted\"",
     b'  {"value": {"nested": [1, 2.5, null, "\\u00e9\xc3\xa9"]}, "client_id": "c", "seq": 3}  '),
    ("put", "dup", b'{"value": 1, "value": 2}'),
    ("delete", "k", b''),
    ("delete", "k", b'{}'),
    ("delete", "k", b'{ }'),
    ("cas", "r", b'{"expected": null, "value": [true, false]}'),
    ("append", "s", b'{"value": "x", "client_id": "c9", "seq": 0}'),
])
def test_the_pre_encoded_command_decodes_to_the_command_itself(op, key, body):
    command, problem = parse_write_body(op, key, body)
    assert problem is None
    assert json.loads(command.wire) == dict(command)
    assert command["op"] == op and command["key"] == key
    # ...and it is what goes over the wire and into the log
    frame = encode_message(Message(APPEND, "n1", "n2", 1, entries=[Entry(1, 1, COMMAND, command)]))
    assert decode_message(frame[HEADER_SIZE:]).entries[0].data == dict(command)
    assert command.wire in encode_batch(None, [Entry(1, 1, COMMAND, command)])


@pytest.mark.parametrize("body,error", [
    (b'{"value": NaN}', "bad_json"),
    (b'{"value": Infinity}', "bad_json"),
    (b'{"value": "\xff"}', "bad_json"),
    (b'"just a string"', "bad_json"),
    (b'{"value": 1, "op": "delete"}', "unknown_field"),
    (b'{"value": 1, "key": "other"}', "unknown_field"),
    (b'{"value": "' + b"x" * (MAX_VALUE_BYTES + 1) + b'"}', "value_too_large"),
    (b'{"value": 1, "seq": 1}', "bad_session"),
    (b'{"value": 1, "client_id": "c", "seq": true}', "bad_session"),
])
def test_bodies_that_cannot_become_commands_are_refused(body, error):
    command, problem = parse_write_body("put", "k", body)
    assert command is None and problem["error"] == error and problem["detail"]


def test_a_value_just_under_the_limit_is_accepted():
    body = b'{"value": "' + b"x" * (MAX_VALUE_BYTES - 10) + b'"}'
    command, problem = parse_write_body("put", "k", body)
    assert problem is None and len(command["value"]) == MAX_VALUE_BYTES - 10


def test_the_entry_bytes_are_the_compact_command_whatever_whitespace_the_client_sent():
    body = b'\r\n {  "value" :\t[ 1 ,  2 ]' + b" " * 500_000 + b', "seq": 7, "client_id": "c" }  \n'
    command, problem = parse_write_body("append", "k", body)
    assert problem is None
    assert command.wire == b'{"op":"append","key":"k","value":[1,2],"seq":7,"client_id":"c"}'


def test_a_duplicated_field_is_stored_once_with_the_value_every_decoder_keeps():
    command, _ = parse_write_body("put", "k", b'{"value": "' + b"x" * 60_000 + b'", "value": 2}')
    assert command.wire == b'{"op":"put","key":"k","value":2}'


@pytest.mark.parametrize("op,body,field", [
    ("put", b'{"value": 1e400}', "value"),
    ("put", b'{"value": -1e400}', "value"),
    ("put", b'{"value": 1E+999}', "value"),
    ("put", b'{"value": {"deep": [0, 2.5e308]}}', "value"),
    ("cas", b'{"expected": -9e9999, "value": 1}', "expected"),
    ("cas", b'{"expected": 1, "value": [1e400]}', "value"),
])
def test_a_number_that_is_not_finite_is_refused_naming_the_field(op, body, field):
    command, problem = parse_write_body(op, "k", body)
    assert command is None and problem["error"] == "bad_number"
    assert f"field {field!r}" in problem["detail"] and "finite" in problem["detail"]


def test_tiny_and_large_finite_numbers_are_accepted():
    command, problem = parse_write_body("put", "k",
                                        b'{"value": [1e-400, 1.7e308, -0.0, 123456789012345678901234567890]}')
    assert problem is None and json.loads(command.wire)["value"] == [0.0, 1.7e308, -0.0, 123456789012345678901234567890]


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"value": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}",
])
def test_a_body_nested_100000_deep_is_refused_not_a_recursion_error(body):
    command, problem = parse_write_body("put", "k", body)
    assert command is None and problem["error"] == "too_deep" and "100" in problem["detail"]


def test_values_nest_at_most_100_levels():
    deepest = b"[" * 100 + b"]" * 100
    command, problem = parse_write_body("put", "k", b'{"value": ' + deepest + b"}")
    assert problem is None
    command, problem = parse_write_body("cas", "k", b'{"expected": [' + deepest + b'], "value": 1}')
    assert command is None and problem["error"] == "too_deep" and "expected" in problem["detail"]
    # brackets inside strings are not nesting
    command, problem = parse_write_body("put", "k", b'{"value": "' + b"[" * 500 + b'"}')
    assert problem is None


def test_a_lone_surrogate_is_stored_as_an_escape_that_decodes_to_the_same_string():
    command, problem = parse_write_body("put", "k\u00e9", b'{"value": "a\\ud800b"}')
    assert problem is None and command["value"] == "a\ud800b"
    assert json.loads(command.wire) == dict(command) and command.wire.isascii()
