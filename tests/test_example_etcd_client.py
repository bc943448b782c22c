"""The etcd example's register client decides ok / fail / info by Jepsen's rules, against a fake
v3 JSON gateway on 127.0.0.1 that answers what etcd answers (or hangs, or hangs up)."""

import base64
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chaos.history import Op
from chaos.interfaces import ClientBug, Node

client_module = pytest.importorskip("splitbrain_etcd.client", reason="the etcd example is not installed "
                                    "(pip install -e examples/etcd)")


def b64(text):
    return base64.b64encode(str(text).encode()).decode()


class FakeGateway:
    """Answers each POST with the next scripted reply: (status, body), "hang" or "hang-up"."""

    def __init__(self):
        self.replies, self.requests = [], []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                gateway.requests.append((self.path, body))
                reply = gateway.replies.pop(0)
                if reply == "hang":
                    time.sleep(1.0)
                    self.close_connection = True
                    return
                if reply == "hang-up":
                    self.close_connection = True
                    return
                if reply[0] == "then-close":
                    self.close_connection = True
                    reply = reply[1]
                status, payload = reply
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.node = Node("n1", f"http://127.0.0.1:{self.server.server_port}", "127.0.0.1",
                         client_port=self.server.server_port)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway():
    g = FakeGateway()
    yield g
    g.close()


def client_for(node, serializable=False, timeout=0.3):
    return client_module.EtcdRegisterClient(timeout, serializable=serializable).open([node], node)


def invoke(client, f, value=None, key="r1"):
    return client.invoke(Op(process=0, type="invoke", f=f, key=key, value=value, time=time.monotonic_ns()))


HEADER = {"header": {"revision": "7", "raft_term": "2"}}
TIMED_OUT = (503, {"error": "etcdserver: request timed out", "message": "etcdserver: request timed out", "code": 14})


def test_a_read_returns_the_decoded_value_or_none_for_a_missing_key(gateway):
    gateway.replies = [(200, {**HEADER, "kvs": [{"key": b64("r1"), "value": b64(42)}], "count": "1"}), (200, HEADER)]
    client = client_for(gateway.node)
    first, second = invoke(client, "read"), invoke(client, "read")
    assert (first.type, first.value, second.type, second.value) == ("ok", 42, "ok", None)
    assert gateway.requests[0] == ("/v3/kv/range", {"key": b64("r1")})


def test_serializable_mode_asks_etcd_for_a_serializable_read(gateway):
    gateway.replies = [(200, HEADER)]
    invoke(client_for(gateway.node, serializable=True), "read")
    assert gateway.requests == [("/v3/kv/range", {"key": b64("r1"), "serializable": True})]


def test_a_write_is_a_put_and_ok_once_etcd_answers(gateway):
    gateway.replies = [(200, HEADER)]
    done = invoke(client_for(gateway.node), "write", 5)
    assert (done.type, done.value, done.node) == ("ok", 5, "n1")
    assert gateway.requests == [("/v3/kv/put", {"key": b64("r1"), "value": b64(5)})]


def test_a_cas_is_a_txn_that_fails_when_its_compare_does_not_hold(gateway):
    gateway.replies = [(200, {**HEADER, "succeeded": True, "responses": [{"response_put": HEADER}]}),
                       (200, HEADER)]  # proto3 JSON leaves out "succeeded": false
    client = client_for(gateway.node)
    applied, refused = invoke(client, "cas", [1, 2]), invoke(client, "cas", [1, 3])
    assert (applied.type, applied.value) == ("ok", [1, 2])
    assert (refused.type, refused.error) == ("fail", "cas-mismatch")
    path, body = gateway.requests[0]
    assert path == "/v3/kv/txn"
    assert body["compare"] == [{"key": b64("r1"), "target": "VALUE", "result": "EQUAL", "value": b64(1)}]
    assert body["success"] == [{"requestPut": {"key": b64("r1"), "value": b64(2)}}]


@pytest.mark.parametrize("reply", [
    TIMED_OUT,
    (503, {"error": "etcdserver: leader changed", "code": 14}),
    (503, {"error": "etcdserver: request timed out, possibly due to previous leader failure", "code": 14}),
    (500, {"error": "etcdserver: server stopped", "code": 2}),
])
def test_a_write_etcd_may_have_proposed_is_indeterminate(gateway, reply):
    gateway.replies = [reply, reply]
    client = client_for(gateway.node)
    assert invoke(client, "write", 1).type == "info"
    assert invoke(client, "cas", [1, 2]).type == "info"


@pytest.mark.parametrize("reply", [
    (500, {"error": "raft proposal dropped", "code": 2}),
    (429, {"error": "etcdserver: too many requests", "code": 8}),
    (503, {"error": "etcdserver: no leader", "code": 14}),
])
def test_a_write_etcd_refused_before_proposing_it_failed(gateway, reply):
    gateway.replies = [reply]
    assert invoke(client_for(gateway.node), "write", 1).type == "fail"


def test_any_error_on_a_read_is_a_failure(gateway):
    gateway.replies = [TIMED_OUT, "hang-up", "hang"]
    client = client_for(gateway.node)
    assert [invoke(client, "read").type for _ in range(3)] == ["fail", "fail", "fail"]


def test_a_write_without_an_answer_after_sending_is_indeterminate(gateway):
    gateway.replies = ["hang-up", "hang"]
    client = client_for(gateway.node)
    hung_up, timed_out = invoke(client, "write", 1), invoke(client, "write", 2)
    assert (hung_up.type, timed_out.type) == ("info", "info")
    assert timed_out.error.startswith("timeout")


def test_a_write_to_a_node_that_refuses_connections_certainly_failed():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    node = Node("n1", f"http://127.0.0.1:{port}", "127.0.0.1", client_port=port)
    client = client_for(node)
    done = invoke(client, "write", 1)
    assert (done.type, done.error.split(":")[0]) == ("fail", "refused")
    assert client.backoff_after(done) > 0


def test_a_kept_alive_connection_etcd_closed_is_replaced_before_a_write(gateway):
    # etcd answers, then closes the connection without saying so; sending the next write into
    # that socket would end in a reset and a needless info
    gateway.replies = [("then-close", (200, HEADER)), (200, HEADER)]
    client = client_for(gateway.node)
    assert invoke(client, "write", 1).type == "ok"
    time.sleep(0.1)  # the server's FIN arrives
    second = invoke(client, "write", 2)
    assert (second.type, second.error) == ("ok", None)
    assert len(gateway.requests) == 2


def test_a_malformed_request_aborts_the_run_as_a_client_bug(gateway):
    gateway.replies = [(400, {"error": "etcdserver: key is not provided", "code": 3})]
    with pytest.raises(ClientBug, match="key is not provided"):
        invoke(client_for(gateway.node), "write", 1)
