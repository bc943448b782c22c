"""Garbage, truncated, oversized or misaddressed frames on the peer port are logged as
peer_garbage and the connection dropped; the node keeps serving. Frames only count once the
connection has passed the handshake, so most of these are sent as an authenticated member."""

import socket
import struct
import time

from raftnode.codec import FRAME_HEADER, MAGIC, PROTOCOL_VERSION, encode_message
from raftnode.localcluster import LocalCluster
from raftnode.transport import connect_as_member
from raftnode.types import APPEND, Message


def expect_close(sock: socket.socket, payload: bytes, half_close: bool = False) -> None:
    with sock:
        sock.sendall(payload)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5)
        try:
            assert sock.recv(1024) == b""
        except ConnectionResetError:
            pass


def garbage_events(cluster, node, at_least, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        garbage = [e for e in cluster.log_events(node) if e["event"] == "peer_garbage"]
        if len(garbage) >= at_least or time.monotonic() > deadline:
            return garbage
        time.sleep(0.05)


def test_garbage_on_the_peer_port_is_logged_and_dropped_while_the_node_keeps_running():
    with LocalCluster(3, spare_members=1) as cluster:
        leader = cluster.wait_for_leader()
        target = next(n for n in cluster.ids if n != leader)
        other = cluster.spare_ids[0]  # a member no process runs as: the test speaks for it
        port = cluster.peer_ports[target]

        def member():  # a connection that passed the handshake as `other`
            return connect_as_member("127.0.0.1", port, other, target, cluster.peer_secret)

        expect_close(socket.create_connection(("127.0.0.1", port), timeout=5),
                     b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")                                    # no handshake
        expect_close(member(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")                          # wrong magic
        expect_close(member(), FRAME_HEADER.pack(MAGIC, 77, 10) + b"x" * 10)                  # unknown version
        expect_close(member(), FRAME_HEADER.pack(MAGIC, PROTOCOL_VERSION, 2**31))             # oversized
        expect_close(member(), FRAME_HEADER.pack(MAGIC, PROTOCOL_VERSION, 5) + b"\x05abcd")   # undecodable
        frame = encode_message(Message(APPEND, other, target, 1))
        expect_close(member(), frame[:-3], half_close=True)                                    # truncated
        expect_close(member(), encode_message(Message(APPEND, leader, target, 99)))           # not its src
        expect_close(member(), encode_message(Message(APPEND, other, "n9", 1)))               # misaddressed
        garbage = garbage_events(cluster, target, 8)
        assert len(garbage) == 8, garbage
        assert all(e["peer"].startswith("127.0.0.1:") and e["error"] for e in garbage)
        errors = [e["error"] for e in garbage]
        assert "handshake" in errors[0] and "magic" in errors[1] and "version" in errors[2]
        assert "exceeds" in errors[3] and "inside a frame" in errors[5]
        assert f"frame from {leader!r} on the connection authenticated as {other!r}" in errors[6]
        assert "n9" in errors[7]
        # The node is alive, still a follower of the same leader, and still replicates.
        assert cluster.running(target)
        assert cluster.write("/kv/after-garbage", {"value": 1}) == (200, {})
        status = cluster.status(target)
        assert status["leader"] == leader and status["term"] == cluster.status(leader)["term"]


def test_a_frame_that_no_correct_leader_sends_is_garbage():
    with LocalCluster(3, spare_members=1) as cluster:
        leader = cluster.wait_for_leader()
        target = next(n for n in cluster.ids if n != leader)
        other = cluster.spare_ids[0]
        port = cluster.peer_ports[target]
        term = cluster.status(target)["term"]
        frame = encode_message(Message(APPEND, other, target, term))
        payload = bytearray(frame[7:])
        struct.pack_into(">Q", payload, 2 + 8 * 3, 5)  # prev_log_index 5...
        # ...followed by one entry claiming index 9: entries must follow prev_log_index
        entry = struct.pack(">QQBI", 9, term, 1, 0)
        payload[-8:-4] = struct.pack(">I", 1)
        payload = bytes(payload[:-4]) + entry + struct.pack(">I", 0)
        bad = FRAME_HEADER.pack(MAGIC, PROTOCOL_VERSION, len(payload)) + payload
        expect_close(connect_as_member("127.0.0.1", port, other, target, cluster.peer_secret), bad)
        garbage = garbage_events(cluster, target, 1)
        assert len(garbage) == 1 and "entry index 9 where 6 was expected" in garbage[0]["error"], garbage
        assert cluster.status(target)["leader"] == leader
        assert cluster.write("/kv/after-bad-append", {"value": 1}) == (200, {})
