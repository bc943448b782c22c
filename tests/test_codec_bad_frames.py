"""Garbage, truncated, oversized or unknown frames raise CodecError; nothing is ever executed."""

import pickle
import struct

import pytest

from raftnode.codec import (FRAME_HEADER, HEADER_SIZE, MAGIC, PROTOCOL_VERSION, CodecError, FrameDecoder,
                            decode_message, encode_message)
from raftnode.types import APPEND, COMMAND, Entry, Message


def frame():
    entry = Entry(1, 1, COMMAND, {"op": "put", "key": "a", "value": 1})
    return encode_message(Message(APPEND, "n1", "n2", 1, entries=[entry]))


def test_a_bad_magic_is_rejected():
    with pytest.raises(CodecError, match="magic"):
        FrameDecoder().feed(b"GET / HTTP/1.1\r\n\r\n")


def test_an_unknown_protocol_version_is_rejected():
    with pytest.raises(CodecError, match="version 9"):
        FrameDecoder().feed(FRAME_HEADER.pack(MAGIC, 9, 0))


def test_an_oversized_length_is_rejected_before_reading_the_payload():
    with pytest.raises(CodecError, match="exceeds"):
        FrameDecoder(max_frame=1024).feed(FRAME_HEADER.pack(MAGIC, PROTOCOL_VERSION, 1025))


def test_a_frame_cut_off_by_the_end_of_the_connection_is_reported():
    decoder = FrameDecoder()
    assert decoder.feed(frame()[:-3]) == []
    with pytest.raises(CodecError, match="inside a frame"):
        decoder.check_eof()


def test_a_truncated_payload_inside_a_well_formed_frame_is_rejected():
    data = frame()
    payload = data[HEADER_SIZE:-4]
    with pytest.raises(CodecError):
        FrameDecoder().feed(FRAME_HEADER.pack(MAGIC, PROTOCOL_VERSION, len(payload)) + payload)


def test_a_pickle_payload_is_just_garbage():
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('executed!')",))
    payload = pickle.dumps(Boom())
    with pytest.raises(CodecError):
        FrameDecoder().feed(FRAME_HEADER.pack(MAGIC, PROTOCOL_VERSION, len(payload)) + payload)


def test_entry_data_that_is_not_json_is_rejected():
    data = bytearray(frame())
    start = data.index(b'{"op"')
    data[start] = ord("(")
    with pytest.raises(CodecError):
        decode_message(bytes(data[HEADER_SIZE:]))


def test_an_absurd_entry_count_is_rejected_without_allocating():
    payload = bytearray(frame()[HEADER_SIZE:])
    count_at = struct.calcsize(">BB14Q") + 1 + 2 + 1 + 2
    payload[count_at:count_at + 4] = (2**32 - 1).to_bytes(4, "big")
    with pytest.raises(CodecError, match="entry count"):
        decode_message(bytes(payload))


def test_random_bytes_never_raise_anything_but_codec_error():
    import random
    rng = random.Random(7)
    good = frame()
    for _ in range(2000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        decoder = FrameDecoder()
        try:
            decoder.feed(bytes(data))
        except CodecError:
            pass


def test_encoding_refuses_negative_or_huge_integers():
    with pytest.raises(CodecError, match="out of range"):
        encode_message(Message(APPEND, "n1", "n2", -1))
