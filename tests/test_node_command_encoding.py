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
    ("put", "k\u00e9/\"quoted\"", b'  {"value": {"nested": [1, 2.5, null, "\\u00e9\xc3\xa9"]}, "client_id": "c", "seq": 3}  '),
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
