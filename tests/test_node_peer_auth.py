"""The peer port trusts only members (issue 9, bug 8): a connection must prove it holds the
cluster's peer secret before it may send a frame, a recorded handshake cannot be replayed, and
terms that could not be incremented are garbage even from a member."""

import os
import socket
import struct
import time

import pytest

from raftnode.codec import (CHALLENGE_SIZE, FRAME_HEADER, MAGIC, NONCE_BYTES, PROTOCOL_VERSION, encode_hello,
                            encode_message, encode_proof, handshake_mac, parse_challenge)
from raftnode.localcluster import LocalCluster
from raftnode.transport import AuthenticationFailed, connect_as_member
from raftnode.types import APPEND_RESP, REQUEST_VOTE, Message


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(3, spare_members=1) as c:
        c.wait_for_leader()
        yield c


def peer_events(cluster, node, kind="peer_garbage"):
    return [e for e in cluster.log_events(node) if e["event"] == kind]


def wait_for_events(cluster, node, count, kind="peer_garbage", timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(peer_events(cluster, node, kind)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return peer_events(cluster, node, kind)


def closed_by_peer(sock: socket.socket, timeout=5.0) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def terms(cluster):
    return {n: cluster.status(n)["term"] for n in cluster.ids}


def frame_with_term(kind: int, src: str, dst: str, term: int) -> bytes:
    """A frame the encoder refuses to build (term beyond its bound), packed by hand."""
    fixed = struct.pack(">BB14Q", kind, 0, term, *([0] * 13))
    names = b"".join(bytes([len(n)]) + n.encode() for n in (src, dst))
    payload = fixed + names + struct.pack(">I", 0) + struct.pack(">I", 0)
    return FRAME_HEADER.pack(MAGIC, PROTOCOL_VERSION, len(payload)) + payload


@pytest.mark.timeout(120)
def test_the_forged_max_term_response_that_took_two_nodes_down_is_refused_without_the_secret(cluster):
    # The reproduction of bug 8: an AppendEntries response claiming term 2^64-1 from member n2,
    # written straight to n1's peer port, made n1 adopt the term and then stop on encoding
    # term + 1. Now the connection never gets past the handshake.
    leader = cluster.wait_for_leader()
    before = terms(cluster)
    garbage_before = len(peer_events(cluster, "n1"))
    with socket.create_connection(("127.0.0.1", cluster.peer_ports["n1"]), timeout=5) as s:
        s.sendall(frame_with_term(6, "n2", "n1", 2**64 - 1))
        assert closed_by_peer(s)
    events = wait_for_events(cluster, "n1", garbage_before + 1)
    assert "handshake" in events[-1]["error"]
    assert all(cluster.running(n) for n in cluster.ids)
    assert cluster.write("/kv/after-forgery", {"value": 1}) == (200, {})
    after = terms(cluster)
    assert after == before and cluster.wait_for_leader() == leader


@pytest.mark.timeout(120)
def test_a_connection_with_another_secret_is_refused_and_logged(cluster):
    port = cluster.peer_ports["n1"]
    with pytest.raises(AuthenticationFailed):  # the node's own proof does not verify either
        connect_as_member("127.0.0.1", port, "n4", "n1", b"not the cluster secret, sorry")
    # Speak the handshake by hand with the wrong secret: the node closes and says why.
    count = len(peer_events(cluster, "n1"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        nonce_c = os.urandom(NONCE_BYTES)
        s.sendall(encode_hello("n4", "n1", nonce_c))
        nonce_s, _ = parse_challenge(recv_exactly(s, CHALLENGE_SIZE))
        s.sendall(encode_proof(handshake_mac(b"wrong secret 0123456789", b"C", "n4", "n1", nonce_c, nonce_s)))
        s.sendall(encode_message(Message(REQUEST_VOTE, "n4", "n1", 10**6)))
        assert closed_by_peer(s)
    events = wait_for_events(cluster, "n1", count + 1)
    assert "n4 failed authentication" in events[-1]["error"]
    assert cluster.status("n1")["term"] < 10**6


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "closed during the handshake"
        data += chunk
    return data


@pytest.mark.timeout(120)
def test_a_recorded_handshake_cannot_be_replayed(cluster):
    port = cluster.peer_ports["n2"]
    secret = cluster.peer_secret
    # A genuine handshake, recorded by an eavesdropper.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        nonce_c = os.urandom(NONCE_BYTES)
        hello = encode_hello("n4", "n2", nonce_c)
        s.sendall(hello)
        nonce_s, _ = parse_challenge(recv_exactly(s, CHALLENGE_SIZE))
        proof = encode_proof(handshake_mac(secret, b"C", "n4", "n2", nonce_c, nonce_s))
        s.sendall(proof)
    count = len(peer_events(cluster, "n2"))
    # Replayed byte for byte: the node's fresh nonce makes the old proof worthless.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(hello)
        recv_exactly(s, CHALLENGE_SIZE)
        s.sendall(proof + encode_message(Message(REQUEST_VOTE, "n4", "n2", 10**6)))
        assert closed_by_peer(s)
    events = wait_for_events(cluster, "n2", count + 1)
    assert "failed authentication" in events[-1]["error"]
    assert cluster.status("n2")["term"] < 10**6


@pytest.mark.timeout(120)
def test_a_connection_that_does_not_finish_the_handshake_within_a_second_is_closed(cluster):
    count = len(peer_events(cluster, "n3"))
    with socket.create_connection(("127.0.0.1", cluster.peer_ports["n3"]), timeout=5) as s:
        s.sendall(encode_hello("n4", "n3", os.urandom(NONCE_BYTES)))  # ...and never the proof
        started = time.monotonic()
        assert closed_by_peer(s, timeout=5)
        assert time.monotonic() - started < 3
    events = wait_for_events(cluster, "n3", count + 1)
    assert "within 1 s" in events[-1]["error"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("term", [2**63, 2**64 - 1])
def test_a_member_claiming_a_term_that_cannot_be_incremented_sends_garbage(cluster, term):
    leader = cluster.wait_for_leader()
    target = next(n for n in cluster.ids if n != leader)
    before = terms(cluster)
    count = len(peer_events(cluster, target))
    s = connect_as_member("127.0.0.1", cluster.peer_ports[target], "n4", target, cluster.peer_secret)
    with s:
        s.sendall(frame_with_term(6, "n4", target, term))
        assert closed_by_peer(s)
    events = wait_for_events(cluster, target, count + 1)
    assert "not below 2^63" in events[-1]["error"]
    assert terms(cluster) == before and all(cluster.running(n) for n in cluster.ids)


@pytest.mark.timeout(120)
def test_a_term_far_ahead_of_the_receiver_is_garbage_but_a_plausible_one_is_followed(cluster):
    leader = cluster.wait_for_leader()
    target = next(n for n in cluster.ids if n != leader)
    term = cluster.status(target)["term"]
    count = len(peer_events(cluster, target))
    # 2^63 - 1 passes the codec, but a cluster that followed it could never elect again.
    with connect_as_member("127.0.0.1", cluster.peer_ports[target], "n4", target, cluster.peer_secret) as s:
        s.sendall(encode_message(Message(APPEND_RESP, "n4", target, 2**63 - 1)))
        assert closed_by_peer(s)
    events = wait_for_events(cluster, target, count + 1)
    assert "more than 2^32 ahead" in events[-1]["error"]
    assert cluster.status(target)["term"] == term
    # A member a few elections ahead is believed (Raft trusts members): the cluster moves to
    # its term and elects a leader past it.
    with connect_as_member("127.0.0.1", cluster.peer_ports[target], "n4", target, cluster.peer_secret) as s:
        s.sendall(encode_message(Message(APPEND_RESP, "n4", target, term + 1000)))
        time.sleep(0.2)
    assert cluster.write("/kv/after-term-jump", {"value": 1}, timeout=20) == (200, {})
    assert cluster.status(cluster.wait_for_leader())["term"] > term + 1000
