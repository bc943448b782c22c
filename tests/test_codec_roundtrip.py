"""Every peer message survives encode/decode unchanged, split across reads at any byte."""

from hypothesis import given, settings, strategies as st

from raftnode.codec import FrameDecoder, decode_message, encode_message, HEADER_SIZE
from raftnode.types import (APPEND, APPEND_RESP, COMMAND, NOOP, PRE_VOTE, REQUEST_VOTE_RESP, SNAPSHOT,
                            Entry, Message)

FIELDS = ("kind", "src", "dst", "term", "last_log_index", "last_log_term", "prev_log_index",
          "prev_log_term", "leader_commit", "granted", "success", "match_index", "conflict_index",
          "conflict_term", "context", "snapshot_index", "snapshot_term", "offset", "data", "done")


def same(a: Message, b: Message):
    for name in FIELDS:
        assert getattr(a, name) == getattr(b, name), name
    def fields(m):
        return [(e.index, e.term, e.kind, e.data) for e in m.entries]
    assert fields(a) == fields(b)


def test_append_entries_with_commands_and_a_noop_round_trips():
    msg = Message(APPEND, "n1", "n2", 7, prev_log_index=10, prev_log_term=6, leader_commit=9, context=3,
                  entries=[Entry(11, 7, NOOP, None),
                           Entry(12, 7, COMMAND, {"op": "cas", "key": "ключ", "expected": None,
                                                  "value": [1, {"a": 2.5}], "client_id": "c1", "seq": 4})])
    frame = encode_message(msg)
    same(msg, decode_message(frame[HEADER_SIZE:]))


def test_responses_keep_their_flags():
    for msg in (Message(REQUEST_VOTE_RESP, "n3", "n1", 2, granted=True),
                Message(APPEND_RESP, "n2", "n1", 2, success=True, match_index=40),
                Message(APPEND_RESP, "n2", "n1", 2, conflict_index=5, conflict_term=1),
                Message(PRE_VOTE, "n2", "n1", 3, last_log_index=9, last_log_term=2),
                Message(SNAPSHOT, "n1", "n2", 4, snapshot_index=100, snapshot_term=3, offset=4096,
                        data=bytes(range(256)), done=True)):
        same(msg, decode_message(encode_message(msg)[HEADER_SIZE:]))


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20),
                           lambda inner: (st.lists(inner, max_size=4)
                                          | st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=10)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(json_values, max_size=6), cuts=st.lists(st.integers(0, 400), max_size=5))
def test_a_stream_of_frames_decodes_the_same_however_it_is_split(values, cuts):
    messages = [Message(APPEND, "n1", "n2", 3, prev_log_index=i, entries=[Entry(i + 1, 3, COMMAND, {"value": v})])
                for i, v in enumerate(values)]
    messages.append(Message(APPEND_RESP, "n2", "n1", 3, success=True, match_index=len(values)))
    stream = b"".join(encode_message(m) for m in messages)
    decoder = FrameDecoder()
    out = []
    last = 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts) + [len(stream)]:
        out += decoder.feed(stream[last:cut])
        last = cut
    decoder.check_eof()
    assert len(out) == len(messages)
    for a, b in zip(messages, out, strict=True):
        same(a, b)
