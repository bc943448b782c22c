"""A message the codec refuses to encode (a frame over MAX_FRAME_BYTES, data that is not JSON)
never raises out of PeerTransport.send into the driver: it is counted, logged once per peer and
message kind, and dropped like a lost message; the link goes on carrying the next ones."""

import asyncio
import math

import raftnode.codec as codec
from raftnode.localcluster import free_ports
from raftnode.transport import PeerTransport
from raftnode.types import APPEND, COMMAND, REQUEST_VOTE, Entry, Message


def test_an_unencodable_message_is_dropped_counted_and_logged_once(monkeypatch):
    async def scenario():
        port_a, port_b = free_ports(2)
        peers = {"a": ("127.0.0.1", port_a), "b": ("127.0.0.1", port_b)}
        events, got = [], []
        a = PeerTransport("a", peers, lambda m: None, lambda peer, err: None, secret=b"s" * 16,
                          on_event=lambda kind, **detail: events.append((kind, detail)))
        b = PeerTransport("b", peers, got.append, lambda peer, err: None, secret=b"s" * 16)
        await a.start("127.0.0.1", port_a)
        await b.start("127.0.0.1", port_b)
        try:
            for _ in range(500):
                if a.links["b"].transport is not None:
                    break
                await asyncio.sleep(0.01)
            monkeypatch.setattr(codec, "MAX_FRAME_BYTES", 4096)
            big = Message(APPEND, "a", "b", 1,
                          entries=[Entry(i, 1, COMMAND, {"op": "put", "key": "k", "value": "x" * 100})
                                   for i in range(1, 101)])
            not_json = Message(APPEND, "a", "b", 1,
                               entries=[Entry(1, 1, COMMAND, {"op": "put", "key": "k", "value": math.nan})])
            for _ in range(50):
                assert a.send(big) is False
            assert a.send(not_json) is False
            assert a.send(Message(REQUEST_VOTE, "a", "b", 2**63)) is False
            assert a.encode_errors == 52
            assert [(kind, d["peer"], d["message"]) for kind, d in events] == [
                ("peer_encode_error", "b", APPEND), ("peer_encode_error", "b", REQUEST_VOTE)]
            assert "exceeds" in events[0][1]["error"]
            assert a.send(Message(APPEND, "a", "b", 1, prev_log_index=7))
            for _ in range(200):
                if got:
                    break
                await asyncio.sleep(0.01)
            assert [(m.kind, m.prev_log_index) for m in got] == [(APPEND, 7)]
        finally:
            a.close()
            b.close()
    asyncio.run(scenario())


def test_two_transports_with_different_secrets_exchange_nothing():
    async def scenario():
        port_a, port_b = free_ports(2)
        peers = {"a": ("127.0.0.1", port_a), "b": ("127.0.0.1", port_b)}
        events, garbage, got = [], [], []
        a = PeerTransport("a", peers, lambda m: None, lambda peer, err: None, secret=b"one secret, 16+ bytes",
                          on_event=lambda kind, **detail: events.append(kind))
        b = PeerTransport("b", peers, got.append, lambda peer, err: garbage.append(err),
                          secret=b"another secret, 16+ bytes")
        await a.start("127.0.0.1", port_a)
        await b.start("127.0.0.1", port_b)
        try:
            for _ in range(100):
                if "peer_auth_failed" in events:
                    break
                await asyncio.sleep(0.02)
            assert "peer_auth_failed" in events and a.links["b"].transport is None
            assert a.send(Message(REQUEST_VOTE, "a", "b", 5)) is False and got == []
        finally:
            a.close()
            b.close()
    asyncio.run(scenario())
