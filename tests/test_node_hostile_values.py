"""Values that once took a node down (issue 9, bug 2) are refused with 400 naming the problem, or
stored and answered correctly; the nodes stay up and keep serving."""

import json
import socket

import pytest

from raftnode.localcluster import LocalCluster


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(3) as c:
        c.wait_for_leader()
        yield c


def raw_request(cluster, node, method, target: bytes, body: bytes = b""):
    """A request whose target is sent as raw bytes (http.client refuses non-ASCII targets)."""
    with socket.create_connection(("127.0.0.1", cluster.client_ports[node]), timeout=10) as s:
        s.sendall(method.encode() + b" " + target + b" HTTP/1.1\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), json.loads(payload), headers


def all_alive(cluster):
    return all(cluster.running(n) for n in cluster.ids)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path,raw", [
    ("/kv/inf", b'{"value": 1e400}'),
    ("/kv/inf", b'{"value": -1e400}'),
    ("/kv/inf", b'{"value": [1, {"x": 1e999}]}'),
    ("/kv/inf/cas", b'{"expected": null, "value": 1e400}'),
    ("/kv/inf/append", b'{"value": 1e400}'),
])
def test_a_number_that_is_not_finite_is_refused_and_every_node_stays_up(cluster, path, raw):
    leader = cluster.wait_for_leader()
    method = "POST" if path.endswith(("/cas", "/append")) else "PUT"
    code, body, _ = cluster.request(leader, method, path, raw_body=raw)
    assert code == 400 and body["error"] == "bad_number" and "'value'" in body["detail"], body
    # What used to kill the leader: reading the key back, and a cas whose 409 echoes it.
    assert cluster.request(leader, "GET", "/kv/inf")[0] == 404
    answer = cluster.request(leader, "POST", "/kv/inf/cas", {"expected": 5, "value": 1})
    assert answer[:2] == (409, {"ok": False, "value": None})
    assert all_alive(cluster)


@pytest.mark.timeout(120)
def test_a_body_nested_100000_deep_is_400_and_the_node_stays_up(cluster):
    leader = cluster.wait_for_leader()
    raw = b'{"value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    code, body, _ = cluster.request(leader, "PUT", "/kv/deep", raw_body=raw)
    assert code == 400 and body["error"] == "too_deep"
    code, body, _ = cluster.request(leader, "PUT", "/kv/deep", raw_body=b'{"value": ' + b"[" * 100 + b"]" * 100 + b"}")
    assert code == 200
    assert cluster.request(leader, "GET", "/kv/deep")[:2] == (200, {"value": json.loads(b"[" * 100 + b"]" * 100)})
    assert all_alive(cluster)


@pytest.mark.timeout(120)
def test_a_lone_surrogate_is_stored_and_read_back_as_an_escape(cluster):
    leader = cluster.wait_for_leader()
    assert cluster.request(leader, "PUT", "/kv/surrogate", raw_body=b'{"value": "a\\ud800b"}')[:2] == (200, {})
    code, body, _ = cluster.request(leader, "GET", "/kv/surrogate")
    assert (code, body) == (200, {"value": "a\ud800b"})
    code, body, _ = cluster.request(leader, "POST", "/kv/surrogate/cas", {"expected": 1, "value": 2})
    assert (code, body) == (409, {"ok": False, "value": "a\ud800b"})
    assert all_alive(cluster)


@pytest.mark.timeout(120)
def test_a_follower_redirects_a_raw_utf8_target_with_a_percent_encoded_location(cluster):
    leader = cluster.wait_for_leader()
    follower = next(n for n in cluster.ids if n != leader)
    code, body, headers = raw_request(cluster, follower, "GET", "/kv/caf\u00e9\u2603\x01".encode())
    assert code == 307 and body["leader"] == leader
    assert headers["location"] == cluster.url(leader) + "/kv/caf%C3%A9%E2%98%83%01"
    assert all_alive(cluster)
