"""The HTTP/JSON client API of a real three-node cluster, answer by answer (issue 2's contract)."""

import http.client
import json
import re
import socket

import pytest

from raftnode.localcluster import LocalCluster


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(3) as c:
        c.wait_for_leader()
        yield c


@pytest.fixture
def leader(cluster):
    return cluster.wait_for_leader()


def test_put_then_get_returns_the_value(cluster, leader):
    assert cluster.request(leader, "PUT", "/kv/greeting", {"value": {"hello": ["world", 1]}})[:2] == (200, {})
    assert cluster.request(leader, "GET", "/kv/greeting")[:2] == (200, {"value": {"hello": ["world", 1]}})


def test_get_of_a_missing_key_is_404_not_found(cluster, leader):
    assert cluster.request(leader, "GET", "/kv/never-written")[:2] == (404, {"error": "not_found"})


def test_delete_removes_the_key(cluster, leader):
    cluster.request(leader, "PUT", "/kv/doomed", {"value": 1})
    assert cluster.request(leader, "DELETE", "/kv/doomed")[:2] == (200, {})
    assert cluster.request(leader, "GET", "/kv/doomed")[0] == 404


def test_cas_succeeds_on_the_expected_value_and_conflicts_otherwise(cluster, leader):
    cluster.request(leader, "PUT", "/kv/reg", {"value": 1})
    assert cluster.request(leader, "POST", "/kv/reg/cas", {"expected": 1, "value": 2})[:2] == (200, {"ok": True})
    mismatch = cluster.request(leader, "POST", "/kv/reg/cas", {"expected": 1, "value": 3})
    assert mismatch[:2] == (409, {"ok": False, "value": 2})
    absent = cluster.request(leader, "POST", "/kv/absent/cas", {"expected": 5, "value": 3})
    assert absent[:2] == (409, {"ok": False, "value": None})


def test_append_returns_the_list_after_the_append(cluster, leader):
    assert cluster.request(leader, "POST", "/kv/set/append", {"value": 1})[:2] == (200, {"value": [1]})
    assert cluster.request(leader, "POST", "/kv/set/append", {"value": "two"})[:2] == (200, {"value": [1, "two"]})


def test_keys_are_percent_decoded_and_may_contain_slashes(cluster, leader):
    assert cluster.request(leader, "PUT", "/kv/a%20b/c", {"value": 7})[0] == 200
    assert cluster.request(leader, "GET", "/kv/a b/c".replace(" ", "%20"))[:2] == (200, {"value": 7})


@pytest.mark.parametrize("method,path,raw,error", [
    ("PUT", "/kv/k", b'{"value": ', "bad_json"),
    ("PUT", "/kv/k", b'[1, 2]', "bad_json"),
    ("PUT", "/kv/k", b'{"value": 1, "colour": "red"}', "unknown_field"),
    ("PUT", "/kv/k", b'{}', "missing_field"),
    ("POST", "/kv/k/cas", b'{"value": 1}', "missing_field"),
    ("PUT", "/kv/k", b'{"value": 1, "client_id": "c"}', "bad_session"),
    ("PUT", "/kv/k", b'{"value": 1, "client_id": "c", "seq": -1}', "bad_session"),
    ("PUT", "/kv/k", b'{"value": 1, "client_id": 5, "seq": 1}', "bad_session"),
    ("PUT", "/kv/k", b'{"value": "' + b"x" * 70000 + b'"}', "value_too_large"),
    ("PUT", "/kv/" + "k" * 1100, b'{"value": 1}', "key_too_large"),
])
def test_bad_requests_get_400_naming_the_problem(cluster, leader, method, path, raw, error):
    code, body, _ = cluster.request(leader, method, path, raw_body=raw)
    assert code == 400 and body["error"] == error and body.get("detail")


def test_unknown_endpoints_and_methods_are_refused(cluster, leader):
    assert cluster.request(leader, "GET", "/nope")[0] == 404
    assert cluster.request(leader, "POST", "/kv/k")[0] == 405
    assert cluster.request(leader, "PATCH", "/kv/k")[0] == 405
    assert cluster.request(leader, "POST", "/status")[0] == 405


def test_status_reports_every_documented_field(cluster, leader):
    for node in cluster.ids:
        status = cluster.status(node)
        for name in ("id", "role", "term", "leader", "commit_index", "last_applied", "last_log_index",
                     "snapshot_index", "voted_for", "peers", "pid", "wall_time", "monotonic_time"):
            assert name in status, name
        assert status["id"] == node and status["leader"] == leader
        assert status["pid"] == cluster.procs[node].pid
        assert sorted(status["peers"]) == sorted(set(cluster.ids) - {node})
    assert cluster.status(leader)["role"] == "leader"


def test_many_requests_share_one_keep_alive_connection_and_pipelining_keeps_order(cluster, leader):
    conn = http.client.HTTPConnection("127.0.0.1", cluster.client_ports[leader], timeout=5)
    for i in range(20):
        conn.request("PUT", "/kv/ka", body=json.dumps({"value": i}))
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read()) == {}
    conn.close()
    # Pipelined: three requests in one packet, answered in order.
    with socket.create_connection(("127.0.0.1", cluster.client_ports[leader]), timeout=5) as s:
        body = b'{"value": "p"}'
        put = b"PUT /kv/pipe HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        get = b"GET /kv/pipe HTTP/1.1\r\nHost: x\r\n\r\n"
        missing = b"GET /kv/pipe-missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        s.sendall(put + get + missing)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    statuses = re.findall(rb"HTTP/1.1 (\d+) ", data)
    assert statuses == [b"200", b"200", b"404"]
    assert b'{"value":"p"}' in data


def test_a_malformed_request_line_gets_400_and_the_connection_closes(cluster, leader):
    with socket.create_connection(("127.0.0.1", cluster.client_ports[leader]), timeout=5) as s:
        s.sendall(b"HELLO\r\n\r\n")
        data = s.recv(65536)
        assert data.startswith(b"HTTP/1.1 400 ")
        assert s.recv(65536) == b""


def test_chunked_bodies_are_refused_with_411(cluster, leader):
    with socket.create_connection(("127.0.0.1", cluster.client_ports[leader]), timeout=5) as s:
        s.sendall(b"PUT /kv/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 411 ")


def test_expect_100_continue_is_answered_before_the_body_is_sent(cluster, leader):
    body = b'{"value": "' + b"y" * 2000 + b'"}'
    with socket.create_connection(("127.0.0.1", cluster.client_ports[leader]), timeout=5) as s:
        s.sendall(b"PUT /kv/big HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert s.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        assert s.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
