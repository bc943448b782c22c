"""Peer links: messages to a peer that is down are dropped (never queued without bound), links
reconnect by themselves, and a peer's new connection replaces its old, half-open one."""

import asyncio

from raftnode.codec import encode_message
from raftnode.localcluster import LocalCluster, free_ports
from raftnode.transport import PeerTransport, connect_as_member
from raftnode.types import APPEND, APPEND_RESP, Message


def test_messages_to_a_down_peer_are_dropped_and_flow_once_it_comes_up():
    async def scenario():
        port_a, port_b = free_ports(2)
        peers = {"a": ("127.0.0.1", port_a), "b": ("127.0.0.1", port_b)}
        got = []
        a = PeerTransport("a", peers, lambda m: None, lambda peer, err: None)
        await a.start("127.0.0.1", port_a)
        try:
            for i in range(1000):  # b is not listening: every one is dropped at once
                assert a.send(Message(APPEND, "a", "b", 1, prev_log_index=i)) is False
            assert a.links["b"].dropped == 1000 and a.links["b"].transport is None
            b = PeerTransport("b", peers, got.append, lambda peer, err: None)
            await b.start("127.0.0.1", port_b)
            for _ in range(200):  # the link reconnects with backoff (at most 0.25 s apart)
                if a.links["b"].transport is not None:
                    break
                await asyncio.sleep(0.01)
            assert a.send(Message(APPEND, "a", "b", 1, prev_log_index=7))
            for _ in range(200):
                if got:
                    break
                await asyncio.sleep(0.01)
            assert [(m.kind, m.src, m.prev_log_index) for m in got] == [(APPEND, "a", 7)]
            b.close()
        finally:
            a.close()
    asyncio.run(scenario())


def test_a_new_connection_from_the_same_peer_closes_its_old_one():
    with LocalCluster(3) as cluster:
        leader = cluster.wait_for_leader()
        target = next(n for n in cluster.ids if n != leader)
        other = next(n for n in cluster.ids if n not in (leader, target))
        port = cluster.peer_ports[target]
        # A stale, harmless message (term 0) from `other`, on two connections authenticated as it.
        frame = encode_message(Message(APPEND_RESP, other, target, 0))
        first = connect_as_member("127.0.0.1", port, other, target, cluster.peer_secret)
        first.sendall(frame)
        second = connect_as_member("127.0.0.1", port, other, target, cluster.peer_secret)
        second.sendall(frame)
        try:
            first.settimeout(5)
            assert first.recv(1024) == b""  # closed by the node
        except ConnectionResetError:
            pass
        finally:
            first.close()
            second.close()
        assert not [e for e in cluster.log_events(target) if e["event"] == "peer_garbage"]
        assert cluster.write("/kv/still-fine", {"value": 1}) == (200, {})
