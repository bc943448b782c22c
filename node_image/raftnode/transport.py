"""Peer transport: one outgoing TCP connection per peer, incoming connections decoded by FrameDecoder.

Messages to a peer go over our own outgoing connection to it; its messages to us arrive on the
connection it opened. A link that is down drops messages instead of queueing them (Raft
retransmits: heartbeats and the leader's next AppendEntries carry everything again), and so does a
link whose kernel buffer is backed up beyond `max_buffer` (a paused or partitioned peer must not
make the sender's memory grow without bound). Links reconnect with exponential backoff.

Every connection starts with the handshake of codec.py: both ends prove they hold the cluster's
peer secret, and the connection then carries frames of the authenticated member only (a frame
with another src is garbage). Who is a member is the configuration's business (issue 12): after
the proof the listening side asks `admit(src, incarnation)` and answers REFUSED, with the reason,
to a node its configuration does not admit (a removed node, one whose id is reused with a new
disk); the refused side logs `peer_refused` and retries slowly. The links follow the
configuration (`set_peers`). A node without a configuration (joining) admits every member that
holds the secret and answers it at the address its handshake announced. A connection that has
not completed the handshake within HANDSHAKE_TIMEOUT_S is closed, so half-open or silent
connections cannot pile up. With no secret (`--insecure-peers`) the same handshake runs with an
empty key: it still binds a connection to one member id, but anyone can complete it.

A frame whose term is more than MAX_TERM_LEAD ahead of the receiver's own term is garbage too.
An honest member gets ahead by one term per election it starts (a few per second at most, only
while it hears no leader); a term far ahead can only be forged, and adopting it would be fatal to
the cluster even though the codec accepts it: everyone would follow it to just below the codec's
2^63 bound, where the next election could no longer be sent.

Nothing here raises into the driver: a message that cannot be encoded (CodecError, e.g. a frame
over MAX_FRAME_BYTES) is counted, logged once per peer and message kind, and dropped.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import socket

from .codec import (CHALLENGE_SIZE, MAX_HELLO_SIZE, NONCE_BYTES, PROOF_SIZE, CodecError, FrameDecoder,
                    encode_challenge, encode_hello, encode_message, encode_proof, encode_refused,
                    handshake_mac, parse_challenge, parse_hello, parse_proof, parse_refused)
from .heap import release_closed_transport
from .types import Message

RECONNECT_MIN_S = 0.02
RECONNECT_MAX_S = 0.25
RECONNECT_AFTER_AUTH_FAILURE_S = 1.0  # a peer with another secret: retry, but do not flood its log
CONNECT_TIMEOUT_S = 1.0
HANDSHAKE_TIMEOUT_S = 1.0
USER_TIMEOUT_MS = 2000
MAX_TERM_LEAD = 1 << 32  # 2^32 elections: decades of elections every 150 ms
REFUSALS_LOGGED_EVERY = 60  # a refused peer retries every second: log the 1st, 61st, ... refusal


class AuthenticationFailed(Exception):
    """The peer did not prove it holds the cluster secret."""


class _OutgoingProtocol(asyncio.Protocol):
    def __init__(self, link: "PeerLink"):
        self.link = link
        loop = asyncio.get_running_loop()
        self.closed = loop.create_future()
        self.authenticated = loop.create_future()
        self.transport = None
        self._nonce = os.urandom(NONCE_BYTES)
        self._buf = bytearray()
        self.refused: str | None = None  # the reason of a REFUSED from the peer

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if hasattr(socket, "TCP_USER_TIMEOUT"):
                # A partition that drops packets would otherwise leave the connection "up" for
                # minutes while TCP backs off: give up on unacknowledged data after a while and
                # reconnect, so messages flow again soon after the partition heals.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)
        link = self.link
        transport.write(encode_hello(link.node_id, link.peer_id, self._nonce, link.incarnation,
                                     link.advertise))

    def data_received(self, data):
        if self.authenticated.done():
            # Peers never send frames on our outgoing connection, only a refusal.
            self._buf += data
            try:
                reason = parse_refused(self._buf)
            except CodecError:
                reason = "(an unreadable answer after the handshake)"
            if reason is not None or len(self._buf) > 2048:
                self.refused = reason or "(an unreadable answer after the handshake)"
                self.transport.abort()
            return
        self._buf += data
        if len(self._buf) < CHALLENGE_SIZE:
            return
        link = self.link
        try:
            nonce_s, mac_s = parse_challenge(self._buf)
            if len(self._buf) > CHALLENGE_SIZE:
                raise CodecError("bytes after the handshake challenge")
            expected = handshake_mac(link.secret, b"S", link.node_id, link.peer_id, self._nonce, nonce_s,
                                     link.incarnation, link.advertise)
            if not hmac.compare_digest(mac_s, expected):
                raise AuthenticationFailed(f"{link.peer_id} did not prove it holds the cluster's "
                                           "peer secret (a different --peer-secret-file?)")
        except (CodecError, AuthenticationFailed) as exc:
            self.authenticated.set_exception(exc if isinstance(exc, AuthenticationFailed)
                                             else AuthenticationFailed(f"bad handshake from {link.peer_id}: {exc}"))
            self.transport.abort()
            return
        mac_c = handshake_mac(link.secret, b"C", link.node_id, link.peer_id, self._nonce, nonce_s,
                              link.incarnation, link.advertise)
        self._buf = bytearray()
        self.transport.write(encode_proof(mac_c))
        self.authenticated.set_result(True)

    def connection_lost(self, exc):
        release_closed_transport(self.transport)  # else frozen with the heap, never freed (heap.py)
        if not self.authenticated.done():
            self.authenticated.set_exception(ConnectionError("connection closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(exc)


class PeerLink:
    def __init__(self, peer_id: str, host: str, port: int, max_buffer: int = 32 * 1024 * 1024,
                 node_id: str = "", secret: bytes = b"", on_event=None, incarnation: str = "",
                 advertise: str = ""):
        self.peer_id = peer_id
        self.host = host
        self.port = port
        self.max_buffer = max_buffer
        self.node_id = node_id
        self.secret = secret
        self.incarnation = incarnation
        self.advertise = advertise
        self.on_event = on_event or (lambda kind, **detail: None)
        self.local_host: str | None = None  # source address for the connection (see PeerTransport.start)
        self.transport: asyncio.Transport | None = None
        self.dropped = 0
        self.sent = 0
        self.auth_failures = 0
        self.refusals = 0
        self.refused: str | None = None  # why the peer refused us last (None once admitted)
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
            try:
                await asyncio.wait_for(protocol.authenticated, HANDSHAKE_TIMEOUT_S)
            except AuthenticationFailed as exc:
                transport.abort()
                self.auth_failures += 1
                if self.auth_failures == 1 or self.auth_failures % 60 == 0:
                    self.on_event("peer_auth_failed", peer=self.peer_id, error=str(exc), failures=self.auth_failures)
                await asyncio.sleep(RECONNECT_AFTER_AUTH_FAILURE_S)
                continue
            except (ConnectionError, OSError, asyncio.TimeoutError):
                transport.abort()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)
                continue
            backoff = RECONNECT_MIN_S
            self.auth_failures = 0
            self.transport = transport
            try:
                await protocol.closed
            finally:
                self.transport = None
            if protocol.refused is not None:
                self.refusals += 1
                self.refused = protocol.refused
                if self.refusals % REFUSALS_LOGGED_EVERY == 1:
                    self.on_event("peer_refused", peer=self.peer_id, reason=protocol.refused,
                                  refusals=self.refusals)
                await asyncio.sleep(RECONNECT_AFTER_AUTH_FAILURE_S)
                continue
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
    """States: waiting for HELLO, waiting for PROOF, then frames from `src` only."""

    def __init__(self, transport_owner: "PeerTransport"):
        self.owner = transport_owner
        self.decoder = FrameDecoder(transport_owner.max_frame)
        self.transport: asyncio.Transport | None = None  # set by connection_made, before anything else
        self.peer = "?"
        self.src: str | None = None  # the authenticated member on the other end
        self.incarnation = ""  # and the incarnation it presented
        # (src, nonce_c, nonce_s, incarnation, address) between HELLO and PROOF
        self._claimed: tuple[str, bytes, bytes, str, str] | None = None
        self._buf = bytearray()
        self._timer = None

    def connection_made(self, transport):
        self.transport = transport
        peername = transport.get_extra_info("peername")
        self.peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        self.owner._incoming.add(transport)
        self._timer = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT_S, self._handshake_expired)

    def _handshake_expired(self) -> None:
        self._timer = None
        assert self.transport is not None  # the timer is started by connection_made
        if self.src is None and not self.transport.is_closing():
            self._garbage(f"no completed handshake within {HANDSHAKE_TIMEOUT_S:g} s")

    def data_received(self, data):
        if self.src is not None:
            self._frames(data)
            return
        if self.transport.is_closing():
            return  # refused: the bytes after the proof are not read
        self._buf += data
        try:
            rest = self._handshake()
        except CodecError as exc:
            self._garbage(str(exc))
            return
        if rest:
            self._frames(rest)

    def _handshake(self) -> bytes | None:
        """Advance the handshake with the buffered bytes; the bytes after it once complete."""
        owner = self.owner
        buf = self._buf
        assert self.transport is not None  # bytes arrive only after connection_made
        if self._claimed is None:
            hello = parse_hello(buf)
            if hello is None:
                if len(buf) > MAX_HELLO_SIZE:
                    raise CodecError("handshake hello too long")
                return None
            src, dst, nonce_c, incarnation, address, used = hello
            if dst != owner.node_id:
                raise CodecError(f"handshake addressed to {dst[:40]!r}, this is {owner.node_id!r}")
            nonce_s = os.urandom(NONCE_BYTES)
            self._claimed = (src, nonce_c, nonce_s, incarnation, address)
            del buf[:used]
            mac_s = handshake_mac(owner.secret, b"S", src, owner.node_id, nonce_c, nonce_s, incarnation, address)
            self.transport.write(encode_challenge(nonce_s, mac_s))
        if len(buf) < PROOF_SIZE:
            return None
        src, nonce_c, nonce_s, incarnation, address = self._claimed
        mac_c = parse_proof(buf)
        if not hmac.compare_digest(mac_c, handshake_mac(owner.secret, b"C", src, owner.node_id, nonce_c,
                                                        nonce_s, incarnation, address)):
            raise CodecError(f"{src} failed authentication: it does not hold this cluster's peer secret")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        problem = owner.admit(src, incarnation)
        if problem is not None:
            owner.refuse(src, problem)
            self._buf = bytearray()
            self._claimed = None
            self.transport.write(encode_refused(problem))
            self.transport.close()  # after the refusal is written
            return None
        rest = bytes(buf[PROOF_SIZE:])
        self._buf = bytearray()
        self._claimed = None
        self.src = src
        self.incarnation = incarnation
        owner._adopt_incoming(src, self, address)
        return rest

    def _frames(self, data) -> None:
        try:
            messages = self.decoder.feed(data)
        except CodecError as exc:
            self._garbage(str(exc))
            return
        owner = self.owner
        deliver = owner.deliver
        for msg in messages:
            if msg.src != self.src:
                self._garbage(f"frame from {msg.src[:40]!r} on the connection authenticated as {self.src!r}")
                return
            problem = owner.check_addressing(msg)
            if problem is not None:
                self._garbage(problem)
                return
            if msg.term > owner.current_term() + MAX_TERM_LEAD:
                self._garbage(f"{msg.kind} term {msg.term} is more than 2^32 ahead of this node's term "
                              f"{owner.current_term()}")
                return
            deliver(msg)

    def eof_received(self):
        if self.src is None:
            self._garbage("connection closed during the handshake")
            return False
        try:
            self.decoder.check_eof()
        except CodecError as exc:
            self._garbage(str(exc))
        return False

    def _garbage(self, error: str) -> None:
        assert self.transport is not None  # reached only from callbacks after connection_made
        if self.transport.is_closing():
            return  # already reported and dropped
        self.owner.on_garbage(self.peer, error)
        self.transport.abort()

    def connection_lost(self, exc):
        release_closed_transport(self.transport)  # else frozen with the heap, never freed (heap.py)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.owner._incoming.discard(self.transport)
        if self.src is not None and self.owner._incoming_by_src.get(self.src) is self:
            del self.owner._incoming_by_src[self.src]


class PeerTransport:
    """Sends Messages to peers and delivers received ones to `deliver(msg)`.

    `secret` is the cluster's peer secret (b"" only with --insecure-peers); `on_event(kind,
    **detail)` receives the transport's log events (peer_auth_failed, peer_encode_error,
    peer_refused); `current_term()` is the receiver's term (for MAX_TERM_LEAD). `incarnation` and
    `advertise` (this node's peer host:port) go into every handshake; `admit(src, incarnation)`
    returns why a peer is refused, or None (default: the peers in `links`)."""

    def __init__(self, node_id: str, peers: dict[str, tuple[str, int]], deliver, on_garbage,
                 max_frame: int | None = None, secret: bytes = b"", on_event=None, current_term=None,
                 incarnation: str = "", advertise: str = "", admit=None):
        from .codec import MAX_FRAME_BYTES
        self.node_id = node_id
        self.current_term = current_term or (lambda: 0)
        self.deliver = deliver
        self.on_garbage = on_garbage
        self.on_event = on_event or (lambda kind, **detail: None)
        self.secret = secret
        self.incarnation = incarnation
        self.advertise = advertise
        self.admit = admit or (lambda src, incarnation: None if src in self.links
                               else f"handshake from unknown node {src[:40]!r}")
        self.max_frame = max_frame or MAX_FRAME_BYTES
        self.links: dict[str, PeerLink] = {}
        # Answer admitted peers that are not in the configuration at the address their handshake
        # announced (a node with no configuration yet, or one whose log is behind the leader's).
        self.learn_addresses = False
        self.learned: set = set()        # links made that way
        self.encode_errors = 0
        self._encode_errors_logged: set = set()
        self._refusals: dict = {}
        self._server: asyncio.base_events.Server | None = None
        self._listen_host: str | None = None
        self._incoming: set = set()
        self._incoming_by_src: dict = {}
        for pid, (host, port) in peers.items():
            if pid != node_id:
                self.links[pid] = self._new_link(pid, host, port)

    def _new_link(self, peer_id: str, host: str, port: int) -> PeerLink:
        return PeerLink(peer_id, host, port, node_id=self.node_id, secret=self.secret,
                        on_event=self.on_event, incarnation=self.incarnation, advertise=self.advertise)

    def _start_link(self, link: PeerLink) -> None:
        host = self._listen_host
        if host not in (None, "", "0.0.0.0", "::"):
            # Leave from the address we listen on: nodes sharing one host (127.0.0.x on
            # loopback) are then told apart by source address, so partitions by address work.
            link.local_host = host
        link.start()

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _IncomingProtocol(self), host, port, reuse_address=True)
        self._listen_host = host
        for link in self.links.values():
            self._start_link(link)

    def set_peers(self, peers: dict[str, tuple[str, int]]) -> None:
        """Follow a new configuration: links to new members start, links to members that left
        (or moved) close, and incoming connections the configuration no longer admits drop."""
        started = self._server is not None
        for pid in list(self.links):
            if pid not in peers and (pid not in self.learned or not self.learn_addresses
                                     or self.admit(pid, self._incarnation_of(pid)) is not None) \
                    or pid in peers and (self.links[pid].host, self.links[pid].port) != tuple(peers[pid]):
                self.links.pop(pid).close()
                self.learned.discard(pid)
        for pid, (host, port) in peers.items():
            if pid != self.node_id and pid not in self.links:
                link = self.links[pid] = self._new_link(pid, host, port)
                self.learned.discard(pid)
                if started:
                    self._start_link(link)
        for src, protocol in list(self._incoming_by_src.items()):
            problem = self.admit(src, protocol.incarnation)
            if problem is not None and protocol.transport is not None:
                self.refuse(src, problem)
                protocol.transport.write(encode_refused(problem))
                protocol.transport.close()

    def _incarnation_of(self, src: str) -> str:
        protocol = self._incoming_by_src.get(src)
        return protocol.incarnation if protocol is not None and protocol.incarnation else ""

    def incarnations(self) -> dict[str, str]:
        """The incarnation each connected peer presented in its handshake."""
        return {src: protocol.incarnation for src, protocol in self._incoming_by_src.items()
                if protocol.incarnation}

    def refuse(self, src: str, problem: str) -> None:
        count = self._refusals[src] = self._refusals.get(src, 0) + 1
        if count % REFUSALS_LOGGED_EVERY == 1:
            self.on_event("peer_refused", peer=src[:40], reason=problem, refusals=count)

    def _adopt_incoming(self, src: str, protocol, address: str = "") -> None:
        # A peer has one outgoing connection to us: a new one means the old one is dead (a
        # partition or a restart left it half-open), so close it instead of keeping it forever.
        old = self._incoming_by_src.get(src)
        self._incoming_by_src[src] = protocol
        if old is not None and old is not protocol and old.transport is not None:
            old.transport.abort()
        if self.learn_addresses and src not in self.links and address and self._server is not None:
            host, sep, port = address.rpartition(":")
            if sep and port.isdigit() and 0 < int(port) < 65536 and host:
                link = self.links[src] = self._new_link(src, host.strip("[]"), int(port))
                self.learned.add(src)
                self._start_link(link)

    def check_addressing(self, msg: Message) -> str | None:
        if msg.dst != self.node_id:
            return f"message addressed to {msg.dst[:40]!r}, this is {self.node_id!r}"
        return None

    def send(self, msg: Message) -> bool:
        """Send or drop; never raises (the driver calls it in the middle of handling a Ready)."""
        link = self.links.get(msg.dst)
        if link is None:
            return False
        if link.transport is None:
            link.dropped += 1
            return False  # skip encoding for a link that is down
        try:
            frame = encode_message(msg)
        except CodecError as exc:
            # e.g. an AppendEntries over MAX_FRAME_BYTES: dropping it is what a lost message
            # would do, and Raft retransmits; raising would stop the node that sends it.
            self.encode_errors += 1
            link.dropped += 1
            key = (msg.dst, msg.kind)
            if key not in self._encode_errors_logged:
                self._encode_errors_logged.add(key)
                self.on_event("peer_encode_error", peer=msg.dst, message=msg.kind, error=str(exc)[:300])
            return False
        return link.send_frame(frame)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for transport in list(self._incoming):
            transport.abort()
        for link in self.links.values():
            link.close()


def connect_as_member(host: str, port: int, src: str, dst: str, secret: bytes,
                      timeout: float = 5.0, incarnation: str = "") -> socket.socket:
    """A blocking client connection to a node's peer port that has completed the handshake as
    member `src` (for tests and tools that speak the peer protocol; the node itself uses
    PeerLink). Raises AuthenticationFailed if the node does not prove it holds `secret`, and
    ConnectionError if it closes the connection during the handshake."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        nonce_c = os.urandom(NONCE_BYTES)
        sock.sendall(encode_hello(src, dst, nonce_c, incarnation))
        challenge = b""
        while len(challenge) < CHALLENGE_SIZE:
            chunk = sock.recv(CHALLENGE_SIZE - len(challenge))
            if not chunk:
                raise ConnectionError(f"{dst} closed the connection during the handshake")
            challenge += chunk
        nonce_s, mac_s = parse_challenge(challenge)
        if not hmac.compare_digest(mac_s, handshake_mac(secret, b"S", src, dst, nonce_c, nonce_s, incarnation)):
            raise AuthenticationFailed(f"{dst} did not prove it holds the secret")
        sock.sendall(encode_proof(handshake_mac(secret, b"C", src, dst, nonce_c, nonce_s, incarnation)))
        return sock
    except BaseException:
        sock.close()
        raise
