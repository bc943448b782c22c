"""Client connections are bounded (issue 9, bug 8): at most --max-client-connections at once
(default 1024; more are answered 503 and closed at once), and a connection without a request in
flight for --client-idle-timeout seconds (default 60) is closed, so idle or trickling clients
cannot take the file descriptors the peer links need. A request in flight is never timed out."""

import resource
import selectors
import socket
import time

import pytest

from raftnode.localcluster import LocalCluster


def open_connections(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        socks.append(s)
    return socks


def closed_by_node(socks: list[socket.socket], within: float) -> dict[socket.socket, bytes]:
    """The connections the node closed within `within` seconds, with what it sent on each."""
    closed: dict[socket.socket, bytes] = {}
    received = {s: b"" for s in socks}
    with selectors.DefaultSelector() as sel:  # epoll: more than FD_SETSIZE sockets
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + within
        while len(closed) < len(socks) and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                sock = key.fileobj
                try:
                    chunk = sock.recv(4096)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    received[sock] += chunk
                else:
                    closed[sock] = received[sock]
                    sel.unregister(sock)
    return closed


def request_on(sock: socket.socket, path: str = "/status") -> bytes:
    sock.settimeout(5)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock.recv(65536)


@pytest.mark.timeout(180)
def test_connections_past_the_default_limit_of_1024_are_refused_at_once():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300:
        if hard != resource.RLIM_INFINITY and hard < 1300:
            pytest.skip(f"this process may open only {hard} files")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1300, hard))
    with LocalCluster(3) as cluster:
        leader = cluster.wait_for_leader()
        follower = next(n for n in cluster.ids if n != leader)
        socks = open_connections(cluster.client_ports[follower], 1100)
        try:
            closed = closed_by_node(socks, within=2.0)
            assert len(closed) == 1100 - 1024
            assert all(a.startswith(b"HTTP/1.1 503 ") and b"too_many_connections" in a for a in closed.values())
            kept = next(s for s in socks if s not in closed)
            assert request_on(kept).startswith(b"HTTP/1.1 200 ")
            # The follower's peer links were never starved: it still replicates.
            assert cluster.write("/kv/while-full", {"value": 1}, node=leader) == (200, {})
            index = cluster.status(leader)["commit_index"]
            cluster.wait_until(lambda: peer_commit(cluster, follower, kept) >= index, what="follower caught up")
        finally:
            for s in socks:
                s.close()


def peer_commit(cluster, node, sock) -> int:
    import json
    answer = request_on(sock)
    return json.loads(answer.partition(b"\r\n\r\n")[2])["commit_index"]


@pytest.mark.timeout(180)
def test_idle_connections_are_closed_and_free_their_places():
    args = ("--max-client-connections", "20", "--client-idle-timeout", "1")
    with LocalCluster(3, extra_args=args) as cluster:
        leader = cluster.wait_for_leader()
        follower = next(n for n in cluster.ids if n != leader)
        port = cluster.client_ports[follower]
        socks = open_connections(port, 25)
        try:
            refused = closed_by_node(socks, within=0.5)
            assert len(refused) == 5
            idle = [s for s in socks if s not in refused]
            # A slow client that never finishes its request head counts as idle too.
            idle[0].sendall(b"GET /status HTTP/1.1\r\nHost:")
            started = time.monotonic()
            closed = closed_by_node(idle, within=5)
            assert len(closed) == 20 and not any(closed.values())  # closed, without an answer
            assert time.monotonic() - started < 4
            fresh = socket.create_connection(("127.0.0.1", port), timeout=5)
            with fresh:
                assert request_on(fresh).startswith(b"HTTP/1.1 200 ")
            status = cluster.status(follower)
            assert status["client_connections"]["refused"] == 5
            assert status["client_connections"]["idle_closed"] >= 20
        finally:
            for s in socks:
                s.close()


@pytest.mark.timeout(180)
def test_a_request_in_flight_is_not_timed_out_as_idle():
    args = ("--client-idle-timeout", "1", "--request-timeout", "3000", "--no-check-quorum")
    with LocalCluster(3, extra_args=args) as cluster:
        leader = cluster.wait_for_leader()
        followers = [n for n in cluster.ids if n != leader]
        for node in followers:
            cluster.pause(node)  # no quorum: the write waits for its deadline
        try:
            with socket.create_connection(("127.0.0.1", cluster.client_ports[leader]), timeout=10) as s:
                started = time.monotonic()
                s.sendall(b'PUT /kv/slow HTTP/1.1\r\nContent-Length: 12\r\n\r\n{"value": 1}')
                s.settimeout(10)
                answer = s.recv(65536)
                assert answer.startswith(b"HTTP/1.1 504 "), answer
                assert time.monotonic() - started > 2.5  # answered at the deadline, not cut at 1 s
        finally:
            for node in followers:
                cluster.resume(node)
