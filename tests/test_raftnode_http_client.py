"""The workload clients map every way a request can end onto Jepsen's ok / fail / info.

A small scripted HTTP server on 127.0.0.1 answers each path the way a test tells it to: a
status code, a hang (timeout), a reset after reading the request, a redirect.
"""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chaos.history import Op
from chaos.interfaces import Node
from systems.raftnode.http_client import ClientBug
from systems.raftnode.client import RegisterClient
from systems.raftnode.client import SetClient


class Scripted:
    """A server whose answer per (method, path) is set by the test."""

    def __init__(self):
        self.script = {}
        self.requests = []
        self.connections = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 5

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                server.connections += 1

            def _go(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                server.requests.append((method, self.path, body))
                action = server.script.get((method, self.path), ("status", 500, {"error": "unscripted"}))
                kind = action[0]
                if kind == "hang":
                    time.sleep(action[1])
                    self.close_connection = True
                    return
                if kind == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.connection.close()
                    self.close_connection = True
                    return
                _, status, payload, *rest = action
                headers = rest[0] if rest else {}
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in headers.items():
                    self.send_header(k, v.replace("{base}", server.url))
                self.end_headers()
                self.wfile.write(raw)
                if len(rest) > 1 and rest[1] == "close-after":
                    self.close_connection = True

            def do_GET(self):
                self._go("GET")

            def do_PUT(self):
                self._go("PUT")

            def do_POST(self):
                self._go("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Scripted()
    yield s
    s.close()


@pytest.fixture
def other():
    s = Scripted()
    yield s
    s.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def nodes_for(*servers):
    return [Node(f"n{i}", s.url if hasattr(s, "url") else s, "127.0.0.1") for i, s in enumerate(servers, 1)]


def register_client(server, timeout=1.0, extra=()):
    nodes = nodes_for(server, *extra)
    return RegisterClient("c1", timeout).open(nodes, nodes[0])


def invoke(client, f, key="r0", value=None):
    return client.invoke(Op(process=0, type="invoke", f=f, key=key, value=value, time=1, node="n1"))


# -- ok ---------------------------------------------------------------------------------------------

def test_read_200_is_ok_with_the_value(server):
    server.script[("GET", "/kv/r0")] = ("status", 200, {"value": 7})
    done = invoke(register_client(server), "read")
    assert (done.type, done.value, done.node) == ("ok", 7, "n1")
    assert done.time > 1


def test_read_404_is_an_ok_read_of_null(server):
    server.script[("GET", "/kv/r0")] = ("status", 404, {"error": "not_found"})
    done = invoke(register_client(server), "read")
    assert (done.type, done.value) == ("ok", None)


def test_set_read_404_is_an_ok_read_of_the_empty_set(server):
    server.script[("GET", "/kv/s0")] = ("status", 404, {"error": "not_found"})
    nodes = nodes_for(server)
    client = SetClient("c1", 1.0).open(nodes, nodes[0])
    done = client.invoke(Op(process=0, type="invoke", f="read", key="s0", time=1))
    assert (done.type, done.value) == ("ok", [])


def test_write_and_cas_200_are_ok_and_carry_client_id_and_increasing_seq(server):
    server.script[("PUT", "/kv/r0")] = ("status", 200, {})
    server.script[("POST", "/kv/r0/cas")] = ("status", 200, {"ok": True})
    client = register_client(server)
    assert invoke(client, "write", value=3).type == "ok"
    done = invoke(client, "cas", value=[3, 4])
    assert (done.type, done.value) == ("ok", [3, 4])
    bodies = [b for _, _, b in server.requests]
    assert bodies[0] == {"value": 3, "client_id": "c1", "seq": 1}
    assert bodies[1] == {"expected": 3, "value": 4, "client_id": "c1", "seq": 2}


def test_set_add_is_the_nodes_append(server):
    server.script[("POST", "/kv/s0/append")] = ("status", 200, {"value": [1]})
    nodes = nodes_for(server)
    client = SetClient("c9", 1.0).open(nodes, nodes[0])
    done = client.invoke(Op(process=0, type="invoke", f="add", key="s0", value=1, time=1))
    assert (done.type, done.value) == ("ok", 1)
    assert server.requests[0][2] == {"value": 1, "client_id": "c9", "seq": 1}


# -- fail: certainly did not happen --------------------------------------------------------------------

def test_cas_409_mismatch_is_fail(server):
    server.script[("POST", "/kv/r0/cas")] = ("status", 409, {"ok": False, "value": 1})
    done = invoke(register_client(server), "cas", value=[2, 3])
    assert done.type == "fail"
    assert done.value == [2, 3]


@pytest.mark.parametrize("f,method,path,value", [("read", "GET", "/kv/r0", None),
                                                 ("write", "PUT", "/kv/r0", 1),
                                                 ("cas", "POST", "/kv/r0/cas", [1, 2])])
def test_503_no_leader_is_fail_for_every_operation(server, f, method, path, value):
    server.script[(method, path)] = ("status", 503, {"error": "no_leader"})
    assert invoke(register_client(server), f, value=value).type == "fail"


@pytest.mark.parametrize("f,value", [("read", None), ("write", 1), ("cas", [1, 2])])
def test_connection_refused_is_fail_even_for_writes(f, value):
    url = f"http://127.0.0.1:{free_port()}"
    nodes = [Node("n1", url, "127.0.0.1")]
    client = RegisterClient("c1", 1.0).open(nodes, nodes[0])
    done = invoke(client, f, value=value)
    assert done.type == "fail"
    assert "refused" in done.error


@pytest.mark.parametrize("action", [("status", 504, {"error": "timeout"}), ("status", 500, {}),
                                    ("hang", 2.0), ("reset",)])
def test_any_error_on_a_read_is_fail(server, action):
    server.script[("GET", "/kv/r0")] = action
    assert invoke(register_client(server, timeout=0.5), "read").type == "fail"


def test_more_than_three_redirects_is_fail(server):
    server.script[("PUT", "/kv/r0")] = ("status", 307, {"error": "not_leader"}, {"Location": "{base}/kv/r0"})
    done = invoke(register_client(server), "write", value=1)
    assert done.type == "fail"
    assert "redirect" in done.error
    assert len(server.requests) == 4  # the request and three redirects followed, then give up


# -- info: outcome unknown -------------------------------------------------------------------------------

@pytest.mark.parametrize("f,method,path,value", [("write", "PUT", "/kv/r0", 1),
                                                 ("cas", "POST", "/kv/r0/cas", [1, 2])])
@pytest.mark.parametrize("action", [("status", 504, {"error": "timeout"}), ("status", 500, {"error": "boom"}),
                                    ("status", 502, {}), ("hang", 2.0), ("reset",)])
def test_write_that_may_have_happened_is_info(server, f, method, path, value, action):
    server.script[(method, path)] = action
    done = invoke(register_client(server, timeout=0.5), f, value=value)
    assert done.type == "info", done.error
    assert done.value == value


def test_set_add_timeout_is_info(server):
    server.script[("POST", "/kv/s0/append")] = ("status", 504, {"error": "timeout"})
    nodes = nodes_for(server)
    client = SetClient("c1", 1.0).open(nodes, nodes[0])
    assert client.invoke(Op(process=0, type="invoke", f="add", key="s0", value=5, time=1)).type == "info"


# -- 400: our bug ------------------------------------------------------------------------------------------

def test_400_is_a_client_bug_that_aborts(server):
    server.script[("PUT", "/kv/r0")] = ("status", 400, {"error": "unknown field"})
    with pytest.raises(ClientBug, match="400"):
        invoke(register_client(server), "write", value=1)


# -- redirects, keep-alive, node recorded -------------------------------------------------------------------

def test_redirect_is_followed_to_the_leader_with_the_same_seq_and_records_the_answering_node(server, other):
    server.script[("PUT", "/kv/r0")] = ("status", 307, {"error": "not_leader", "leader": "n2"},
                                        {"Location": other.url + "/kv/r0"})
    other.script[("PUT", "/kv/r0")] = ("status", 200, {})
    client = register_client(server, extra=(other,))
    done = invoke(client, "write", value=9)
    assert (done.type, done.node) == ("ok", "n2")
    assert server.requests[0][2] == other.requests[0][2] == {"value": 9, "client_id": "c1", "seq": 1}


def test_redirect_using_leader_url_when_location_is_missing(server, other):
    server.script[("GET", "/kv/r0")] = ("status", 307, {"error": "not_leader", "leader_url": other.url})
    other.script[("GET", "/kv/r0")] = ("status", 200, {"value": 1})
    done = invoke(register_client(server, extra=(other,)), "read")
    assert (done.type, done.value, done.node) == ("ok", 1, "n2")


def test_three_redirects_are_still_followed(server, other):
    # n1 -> n2 -> n1 -> n2 answers: three redirects.
    server.script[("PUT", "/kv/r0")] = ("status", 307, {}, {"Location": other.url + "/kv/r0"})
    calls = {"n": 0}
    other.script[("PUT", "/kv/r0")] = ("status", 307, {}, {"Location": server.url + "/kv/r0"})
    client = register_client(server, extra=(other,))

    original = client.http._once

    def counting(method, url, payload):
        calls["n"] += 1
        if calls["n"] == 4:
            other.script[("PUT", "/kv/r0")] = ("status", 200, {})
        return original(method, url, payload)

    client.http._once = counting
    assert invoke(client, "write", value=1).type == "ok"


def test_connections_are_kept_alive(server):
    server.script[("GET", "/kv/r0")] = ("status", 200, {"value": 1})
    client = register_client(server)
    for _ in range(20):
        assert invoke(client, "read").type == "ok"
    assert server.connections == 1


def test_a_kept_alive_connection_the_server_closed_is_replaced_not_counted_as_info(server):
    # The server answers and then closes the connection without announcing it (as a node does
    # on an idle timeout or a restart); the next write must go out on a fresh connection and
    # succeed, not be sent into the dead socket and come back as an unknown outcome.
    server.script[("PUT", "/kv/r0")] = ("status", 200, {}, {}, "close-after")
    client = register_client(server)
    for value in range(1, 6):
        time.sleep(0.05)
        done = invoke(client, "write", value=value)
        assert done.type == "ok", done.error
    assert server.connections == 5
