"""The node freezes its heap about once a second (gc.freeze, see raftnode/heap.py), so an object
alive at a freeze that later dies in a reference cycle is never collected. A closed connection,
client or peer, must therefore be freed by reference counting alone: no cycle may be left."""

import asyncio
import gc
import weakref

import pytest

from raftnode.http import ClientConnections, HttpConnection
from raftnode.localcluster import free_ports
from raftnode.transport import PeerTransport
from raftnode.types import APPEND, Message


async def _until(predicate, what: str, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _freed_after_a_freeze(scenario) -> list:
    """Run `scenario(freeze)`, which calls freeze() while its connections are open and returns
    weak references to their transports once they are closed; the references still alive after
    a collection (empty: every transport was freed)."""
    frozen = []

    def freeze():
        gc.freeze()
        frozen.append(True)

    try:
        refs = asyncio.run(scenario(freeze))
        assert frozen and refs, "the scenario froze the heap with connections open"
        gc.collect()
        return [r() for r in refs if r() is not None]
    finally:
        gc.unfreeze()  # give this test process's heap back to the collector


@pytest.mark.timeout(30)
def test_a_client_connection_open_at_a_freeze_is_freed_when_it_closes():
    async def scenario(freeze):
        conns = []

        def protocol():
            conns.append(HttpConnection(lambda req, conn: conn.respond(200, {}), ClientConnections()))
            return conns[-1]

        server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /status HTTP/1.1\r\nHost: node\r\n\r\n")
        await reader.readuntil(b"{}")
        refs = [weakref.ref(conn.transport) for conn in conns]
        freeze()
        writer.close()
        await writer.wait_closed()
        await _until(lambda: all(conn.closed for conn in conns), "the node to see the close")
        await asyncio.sleep(0.05)  # the transport's own connection_lost callback runs after ours
        server.close()
        await server.wait_closed()
        conns.clear()
        return refs

    assert _freed_after_a_freeze(scenario) == []


@pytest.mark.timeout(30)
def test_a_peer_connection_open_at_a_freeze_is_freed_once_it_is_dropped_and_replaced():
    async def scenario(freeze):
        port_a, port_b = free_ports(2)
        peers = {"a": ("127.0.0.1", port_a), "b": ("127.0.0.1", port_b)}
        got = []
        a = PeerTransport("a", peers, lambda m: None, lambda peer, err: None)
        b = PeerTransport("b", peers, got.append, lambda peer, err: None)
        await a.start("127.0.0.1", port_a)
        await b.start("127.0.0.1", port_b)
        try:
            await _until(lambda: a.links["b"].transport is not None, "a's link to b")
            assert a.send(Message(APPEND, "a", "b", 1, prev_log_index=3))
            await _until(lambda: got and b._incoming, "b to receive a message")
            refs = [weakref.ref(a.links["b"].transport)] + [weakref.ref(t) for t in b._incoming]
            freeze()
            for transport in list(b._incoming):
                transport.abort()  # the connection drops (a reset, a partition)
            await _until(lambda: a.links["b"].transport not in (None, refs[0]()), "a to reconnect to b")
            await asyncio.sleep(0.05)
            return refs
        finally:
            a.close()
            b.close()

    assert _freed_after_a_freeze(scenario) == []
