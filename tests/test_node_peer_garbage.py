"""Garbage, truncated, oversized or misaddressed frames on the peer port are logged as
peer_garbage and the connection dropped; the node keeps serving."""

import socket
import time

from raftnode.codec import FRAME_HEADER, MAGIC, PROTOCOL_VERSION, encode_message
from raftnode.localcluster import LocalCluster
from raftnode.types import APPEND, Message


def send_and_expect_close(port: int, payload: bytes, half_close: bool = False) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        try:
            assert s.recv(1024) == b""
        except ConnectionResetError:
            pass


def test_garbage_on_the_peer_port_is_logged_and_dropped_while_the_node_keeps_running():
    with LocalCluster(3) as cluster:
        leader = cluster.wait_for_leader()
        target = next(n for n in cluster.ids if n != leader)
        port = cluster.peer_ports[target]
        send_and_expect_close(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")                       # wrong magic
        send_and_expect_close(port, FRAME_HEADER.pack(MAGIC, 77, 10) + b"x" * 10)                # unknown version
        send_and_expect_close(port, FRAME_HEADER.pack(MAGIC, PROTOCOL_VERSION, 2**31))           # oversized
        send_and_expect_close(port, FRAME_HEADER.pack(MAGIC, PROTOCOL_VERSION, 5) + b"\x05abcd") # undecodable
        frame = encode_message(Message(APPEND, leader, target, 1))
        send_and_expect_close(port, frame[:-3], half_close=True)                                  # truncated
        send_and_expect_close(port, encode_message(Message(APPEND, "intruder", target, 99)))     # unknown sender
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            garbage = [e for e in cluster.log_events(target) if e["event"] == "peer_garbage"]
            if len(garbage) >= 6:
                break
            time.sleep(0.05)
        assert len(garbage) == 6, garbage
        assert all(e["peer"].startswith("127.0.0.1:") and e["error"] for e in garbage)
        assert "magic" in garbage[0]["error"] and "version" in garbage[1]["error"]
        assert "intruder" in garbage[5]["error"]
        # The node is alive, still a follower of the same leader, and still replicates.
        assert cluster.running(target)
        assert cluster.write("/kv/after-garbage", {"value": 1}) == (200, {})
        status = cluster.status(target)
        assert status["leader"] == leader and status["term"] == cluster.status(leader)["term"]
