"""Peer transport: one outgoing TCP connection per peer, incoming connections decoded by FrameDecoder.

Messages to a peer go over our own outgoing connection to it; its messages to us arrive on the
connection it opened. A link that is down drops messages instead of queueing them (Raft
retransmits: heartbeats and the leader's next AppendEntries carry everything again), and so does a
link whose kernel buffer is backed up beyond `max_buffer` (a paused or partitioned peer must not
make the sender's memory grow without bound). Links reconnect with exponential backoff.
"""

from __future__ import annotations

import asyncio
import socket

from .codec import CodecError, FrameDecoder, encode_message
from .types import Message

RECONNECT_MIN_S = 0.02
RECONNECT_MAX_S = 0.25
CONNECT_TIMEOUT_S = 1.0
USER_TIMEOUT_MS = 2000


class _OutgoingProtocol(asyncio.Protocol):
    def __init__(self, link: "PeerLink"):
        self.link = link
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if hasattr(socket, "TCP_USER_TIMEOUT"):
                # A partition that drops packets would otherwise leave the connection "up" for
                # minutes while TCP backs off: give up on unacknowledged data after a while and
                # reconnect, so messages flow again soon after the partition heals.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)

    def data_received(self, data):
        pass  # peers never answer on our outgoing connection

    def connection_lost(self, exc):
        if not self.closed.done():
            self.closed.set_result(exc)


class PeerLink:
    def __init__(self, peer_id: str, host: str, port: int, max_buffer: int = 32 * 1024 * 1024):
        self.peer_id = peer_id
        self.host = host
        self.port = port
        self.max_buffer = max_buffer
        self.local_host: str | None = None  # source address for the connection (see PeerTransport.start)
        self.transport: asyncio.Transport | None = None
        self.dropped = 0
        self.sent = 0
        self._task: asyncio.Task | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"peer-link-{self.peer_id}")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = RECONNECT_MIN_S
        while not self._stopping:
            try:
                local = (self.local_host, 0) if self.local_host else None
                transport, protocol = await asyncio.wait_for(
                    loop.create_connection(lambda: _OutgoingProtocol(self), self.host, self.port,
                                           local_addr=local),
                    CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)
                continue
            backoff = RECONNECT_MIN_S
            self.transport = transport
            try:
                await protocol.closed
            finally:
                self.transport = None
            if not self._stopping:
                await asyncio.sleep(RECONNECT_MIN_S)

    def send_frame(self, frame: bytes) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing() or transport.get_write_buffer_size() > self.max_buffer:
            self.dropped += 1
            return False
        transport.write(frame)
        self.sent += 1
        return True

    def close(self) -> None:
        self._stopping = True
        if self.transport is not None:
            self.transport.abort()
        if self._task is not None:
            self._task.cancel()


class _IncomingProtocol(asyncio.Protocol):
    def __init__(self, transport_owner: "PeerTransport"):
        self.owner = transport_owner
        self.decoder = FrameDecoder(transport_owner.max_frame)
        self.transport = None
        self.peer = "?"
        self.src = None  # the node on the other end, known from its first message

    def connection_made(self, transport):
        self.transport = transport
        peername = transport.get_extra_info("peername")
        self.peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        self.owner._incoming.add(transport)

    def data_received(self, data):
        try:
            messages = self.decoder.feed(data)
        except CodecError as exc:
            self._garbage(str(exc))
            return
        deliver = self.owner.deliver
        for msg in messages:
            problem = self.owner.check_addressing(msg)
            if problem is not None:
                self._garbage(problem)
                return
            if self.src is None:
                self.src = msg.src
                self.owner._adopt_incoming(msg.src, self)
            deliver(msg)

    def eof_received(self):
        try:
            self.decoder.check_eof()
        except CodecError as exc:
            self._garbage(str(exc))
        return False

    def _garbage(self, error: str) -> None:
        self.owner.on_garbage(self.peer, error)
        self.transport.abort()

    def connection_lost(self, exc):
        self.owner._incoming.discard(self.transport)
        if self.src is not None and self.owner._incoming_by_src.get(self.src) is self:
            del self.owner._incoming_by_src[self.src]


class PeerTransport:
    """Sends Messages to peers and delivers received ones to `deliver(msg)`."""

    def __init__(self, node_id: str, peers: dict[str, tuple[str, int]], deliver, on_garbage,
                 max_frame: int | None = None):
        from .codec import MAX_FRAME_BYTES
        self.node_id = node_id
        self.deliver = deliver
        self.on_garbage = on_garbage
        self.max_frame = max_frame or MAX_FRAME_BYTES
        self.links = {pid: PeerLink(pid, host, port) for pid, (host, port) in peers.items() if pid != node_id}
        self._server: asyncio.base_events.Server | None = None
        self._incoming: set = set()
        self._incoming_by_src: dict = {}

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _IncomingProtocol(self), host, port, reuse_address=True)
        for link in self.links.values():
            if host not in ("", "0.0.0.0", "::"):
                # Leave from the address we listen on: nodes sharing one host (127.0.0.x on
                # loopback) are then told apart by source address, so partitions by address work.
                link.local_host = host
            link.start()

    def _adopt_incoming(self, src: str, protocol) -> None:
        # A peer has one outgoing connection to us: a new one means the old one is dead (a
        # partition or a restart left it half-open), so close it instead of keeping it forever.
        old = self._incoming_by_src.get(src)
        self._incoming_by_src[src] = protocol
        if old is not None and old is not protocol and old.transport is not None:
            old.transport.abort()

    def check_addressing(self, msg: Message) -> str | None:
        if msg.dst != self.node_id:
            return f"message addressed to {msg.dst!r}, this is {self.node_id!r}"
        if msg.src not in self.links:
            return f"message from unknown node {msg.src!r}"
        return None

    def send(self, msg: Message) -> bool:
        link = self.links.get(msg.dst)
        if link is None:
            return False
        if link.transport is None:
            link.dropped += 1
            return False  # skip encoding for a link that is down
        return link.send_frame(encode_message(msg))

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for transport in list(self._incoming):
            transport.abort()
        for link in self.links.values():
            link.close()
