"""Fuzzing the node from outside (issue 9): batches of hostile input against a LocalCluster of real
node processes, and the check that must hold after every batch (every node alive, the cluster
serves a write and a linearizable read of it). Used by tests/test_node_api_fuzz.py and
tests/test_node_peer_fuzz.py (bounded, in CI) and by bench/fuzz_node.py (as long as asked).

Three sources of input:

- `api_batch`: schemathesis cases from docs/openapi.yaml, positive (schema-valid: must be
  accepted and answered as documented) and negative (schema-invalid: must be refused with a
  documented 4xx), checked with schemathesis's conformance checks.
- `raw_batch`: what a schema cannot express, written on raw sockets: keys percent-encoded or raw
  (invalid UTF-8 included) and huge; numbers huge and non-finite in every spelling; nesting
  100,000 deep; sizes at and over the limits; odd and oversized headers; Content-Length shorter
  and longer than the body; chunked bodies; invalid UTF-8 bodies; pipelining; pure garbage.
- `peer_batch`: the peer port: garbage before and after the handshake, and well-formed frames
  authenticated as a member (the test holds the secret) with extreme fields: terms 0 and 2^63-1,
  indexes past the log, empty and huge entries, snapshot chunks at odd offsets, a wrong src.

A 5xx is a finding unless it is a documented availability answer (503 no_leader / overloaded /
too_many_connections, 504 timeout), which says something about the machine's load, not about the
input; those are counted apart. What the peer batch does not send, on purpose: frames in which a
member acts as a second leader of the current term (AppendEntries that match the log, a snapshot
from offset 0 to done). Raft trusts its members, and a node that is told to rewrite committed
entries stops by design; authentication is what keeps everyone else from sending those.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import random
import socket
import struct
import time
from dataclasses import dataclass, field

from raftnode.types import (APPEND, APPEND_RESP, COMMAND, NOOP, PRE_VOTE, PRE_VOTE_RESP, REQUEST_VOTE,
                            REQUEST_VOTE_RESP, SNAPSHOT, SNAPSHOT_RESP, Entry, Message)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPENAPI = os.path.join(ROOT, "docs", "openapi.yaml")
_SESSIONS = itertools.count()  # unique client_id suffixes across every batch of a process
DOCUMENTED_UNAVAILABLE = {(503, "no_leader"), (503, "overloaded"), (503, "too_many_connections"), (504, "timeout")}


@dataclass
class FuzzStats:
    requests: int = 0
    peer_frames: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    server_errors: list = field(default_factory=list)      # undocumented 5xx: findings
    unavailable: collections.Counter = field(default_factory=collections.Counter)  # documented 503/504
    conformance: list = field(default_factory=list)        # answers that contradict docs/openapi.yaml
    batches: int = 0
    health_checks: int = 0

    def record(self, what: str, status: int, body: bytes | dict | None) -> None:
        self.requests += 1
        self.statuses[status] += 1
        if status >= 500:
            error = body.get("error") if isinstance(body, dict) else _error_of(body)
            if (status, error) in DOCUMENTED_UNAVAILABLE:
                self.unavailable[(status, error)] += 1
            else:
                self.server_errors.append((what[:300], status, (json.dumps(body) if isinstance(body, dict)
                                                                else repr(body))[:300]))

    def summary(self) -> dict:
        return {"requests": self.requests, "peer_frames": self.peer_frames, "batches": self.batches,
                "statuses": dict(sorted(self.statuses.items(), key=lambda item: str(item[0]))),
                "server_errors": len(self.server_errors),
                "documented_unavailable": {f"{s} {e}": n for (s, e), n in self.unavailable.items()},
                "conformance_failures": len(self.conformance), "health_checks": self.health_checks}


def _error_of(body: bytes | None) -> str | None:
    try:
        doc = json.loads(body or b"")
    except ValueError:
        return None
    return doc.get("error") if isinstance(doc, dict) else None


# ------------------------------------------------------------------------------ the health check

def check_cluster_serves(cluster, tag: str, timeout: float = 30.0) -> None:
    """Every node is alive, and the cluster takes a write and then reads it back from the leader
    (a ReadIndex read: linearizable)."""
    dead = [n for n in cluster.ids if not cluster.running(n)]
    assert not dead, f"after {tag}: {dead} exited: " + "; ".join(
        _tail(cluster.stderr_path(n)) for n in dead)
    value = {"tag": tag, "nonce": os.urandom(6).hex()}
    deadline = time.monotonic() + timeout
    cluster.write("/kv/fuzz-health", {"value": value}, timeout=timeout)
    while True:
        leader = cluster.wait_for_leader(max(0.5, deadline - time.monotonic()))
        code, body, _ = cluster.request(leader, "GET", "/kv/fuzz-health")
        if code == 200:
            assert body == {"value": value}, f"after {tag}: read {body}, wrote {value}"
            break
        assert code in (307, 503, 504) and time.monotonic() < deadline, f"after {tag}: read answered {code} {body}"
        time.sleep(0.1)
    dead = [n for n in cluster.ids if not cluster.running(n)]
    assert not dead, f"after {tag}: {dead} exited"


def _tail(path: str, size: int = 1500) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return "(no stderr)"


# ------------------------------------------------------------------------------ schemathesis

def load_schema():
    import schemathesis
    return schemathesis.openapi.from_path(OPENAPI)


def api_batch(cluster, schema, mode: str, examples: int, stats: FuzzStats, seed: int) -> None:
    """`examples` schemathesis cases of every operation in `mode` ("positive" or "negative")
    against the current leader; every answer is checked against docs/openapi.yaml."""
    import requests
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import (content_type_conformance, positive_data_acceptance,
                                                   response_schema_conformance, status_code_conformance)

    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
    if mode == "positive":
        checks.append(positive_data_acceptance)
    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    session = requests.Session()
    base = cluster.url(cluster.wait_for_leader())

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=schema.as_strategy(generation_mode=generation))
    def run(case):
        body = case.body
        if isinstance(body, dict) and isinstance(body.get("client_id"), str):
            # A fresh session per case: reusing one client's seq for another write is answered
            # with the first write's remembered answer (deduplication), whatever this case asks.
            body["client_id"] = f"{body['client_id'][:200]}~{next(_SESSIONS)}"
        try:
            response = case.call(base_url=base, session=session, allow_redirects=False, timeout=15)
        except requests.RequestException as exc:
            stats.record(f"{mode} {case.method} {case.formatted_path}", 599, {"error": f"no answer: {exc}"})
            return
        try:
            answer = response.json()
        except ValueError:
            answer = None
        stats.record(f"{mode} {case.method} {case.formatted_path} {str(body)[:200]}", response.status_code,
                     answer if isinstance(answer, dict) else response.content)
        if response.status_code < 500 or (response.status_code, (answer or {}).get("error")) in DOCUMENTED_UNAVAILABLE:
            try:
                case.validate_response(response, checks=checks)
            except BaseException as exc:  # schemathesis raises a FailureGroup
                titles = [str(e).splitlines()[0] for e in getattr(exc, "exceptions", [exc])]
                stats.conformance.append((mode, case.method, case.formatted_path, str(body)[:200],
                                          response.status_code, response.text[:200], titles))
    run()
    stats.batches += 1


# ------------------------------------------------------------------------------ raw HTTP

def _read_answers(sock: socket.socket, timeout: float) -> list[tuple[int, bytes]]:
    """Every complete answer the node sends before closing (or going quiet for `timeout`)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    answers = []
    while data.startswith(b"HTTP/1.1 "):
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if status == 100:
            data = rest
            continue
        answers.append((status, rest[:length]))
        data = rest[length:]
    return answers


def _number_spellings(rng: random.Random) -> bytes:
    return rng.choice([b"1e400", b"-1e400", b"1E+400", b"-9e9999", b"1.0e309", b"2.5e308", b"NaN", b"-NaN",
                       b"Infinity", b"-Infinity", b"inf", b"1e-400", b"-0", b"-0.0", b"0e0", b"1.7976931348623157e308",
                       b"9" * 4300, b"9" * 4301, b"-" + b"9" * 5000, b"1" + b"0" * 400, b"0x10", b"01", b"+1",
                       b".5", b"1.", b"1e", b"\xd9\xa1"])


def _json_value(rng: random.Random, depth: int = 0) -> bytes:
    roll = rng.random()
    if depth > 3 or roll < 0.3:
        return rng.choice([b"null", b"true", b"false", b"0", b"-1", b"3.25", b'"x"', b'"\\ud800"', b'"\\u0000"',
                           b'"\xc3\xa9"', b'"' + b"[" * 50 + b'"', _number_spellings(rng)])
    if roll < 0.6:
        return b"[" + b",".join(_json_value(rng, depth + 1) for _ in range(rng.randrange(4))) + b"]"
    items = [b'"%s":%s' % (rng.choice([b"a", b"value", b"\\ud800", b""]), _json_value(rng, depth + 1))
             for _ in range(rng.randrange(4))]
    return b"{" + b",".join(items) + b"}"


def _body(rng: random.Random) -> bytes:
    kind = rng.randrange(12)
    if kind == 0:
        depth = rng.choice([99, 100, 101, 999, 1000, 100_000])
        return b'{"value": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == 1:
        depth = rng.choice([101, 5000, 100_000])
        return b'{"value": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    if kind == 2:
        return b'{"value": "' + b"x" * rng.choice([65534, 65535, 65536, 200_000, 1024 * 1024]) + b'"}'
    if kind == 3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))  # garbage, invalid UTF-8
    if kind == 4:
        return b'{"value": "\xff\xfe", "x": "\xed\xa0\x80"}'
    if kind == 5:
        return b'{"value": 1, "client_id": ' + _json_value(rng) + b', "seq": ' + _number_spellings(rng) + b"}"
    if kind == 6:
        return b'{"expected": ' + _json_value(rng) + b', "value": ' + _json_value(rng) + b"}"
    if kind == 7:
        return b" " * rng.choice([0, 10, 500_000]) + b'{"value": ' + _json_value(rng) + b"}" + b"\n" * 3
    if kind == 8:
        return b'{"value": ' + _number_spellings(rng) + b"}"
    if kind == 9:
        return rng.choice([b"", b"null", b"[]", b'"value"', b"{}", b"{", b'{"value"}', b'{"value": 1,}'])
    if kind == 10:
        return b'{"value": 1, "value": ' + _number_spellings(rng) + b"}"
    return b'{"value": ' + _json_value(rng) + b"}"


def _key(rng: random.Random) -> bytes:
    kind = rng.randrange(9)
    if kind == 0:
        return "".join(rng.choice("aé☃𝄞/%?#") for _ in range(rng.randrange(1, 20))).encode()  # raw UTF-8
    if kind == 1:
        return bytes(rng.randrange(128, 256) for _ in range(rng.randrange(1, 10)))   # raw invalid UTF-8
    if kind == 2:
        return "".join(f"%{rng.randrange(256):02X}" for _ in range(rng.randrange(1, 20))).encode()  # any bytes
    if kind == 3:
        return b"k" * rng.choice([1023, 1024, 1025, 4000])
    if kind == 4:
        return b"%F0%9D%84%9E" * rng.choice([256, 257])   # 4-byte characters around the limit
    if kind == 5:
        return rng.choice([b"", b"%", b"%zz", b"%0", b"..", b"../status", b"%2e%2e", b"a%00b", b"a b", b"a\tb"])
    if kind == 6:
        return b"x" * 20_000                                  # a request head over 16 KiB
    if kind == 7:
        return rng.choice([b"cas", b"a/cas", b"a/append/cas", b"/", b"//", b"a?x=1", b"a#frag"])
    return f"k{rng.randrange(50)}".encode()


def _valid_request(rng: random.Random) -> list:
    """[method, target, version, headers, body] of a request the node should accept."""
    key = f"k{rng.randrange(50)}".encode() if rng.random() < 0.7 else _key(rng)
    op = rng.choice(["get", "put", "put", "delete", "cas", "append", "status"])
    value = _json_value(rng) if rng.random() < 0.8 else b'{"a": [1, 2.5, null]}'
    method, target, body = {
        "get": (b"GET", b"/kv/" + key, b""),
        "put": (b"PUT", b"/kv/" + key, b'{"value": ' + value + b"}"),
        "delete": (b"DELETE", b"/kv/" + key, rng.choice([b"", b"{}"])),
        "cas": (b"POST", b"/kv/" + key + b"/cas", b'{"expected": null, "value": ' + value + b"}"),
        "append": (b"POST", b"/kv/" + key + b"/append", b'{"value": ' + value + b"}"),
        "status": (b"GET", b"/status", b""),
    }[op]
    return [method, target, b"HTTP/1.1", [b"Host: 127.0.0.1"], body, None]


def _mutate(rng: random.Random, request: list) -> str:
    """Make one part of the request hostile; returns what was done."""
    what = rng.choice(["method", "target", "version", "body", "body", "body", "length", "length",
                       "headers", "line ends"])
    if what == "method":
        request[0] = rng.choice([b"PATCH", b"get", b"HEAD", b"OPTIONS", b"CONNECT", b"BREW", b"G3T", b"",
                                 b"P\xc3\xbcT", b"PUT PUT"])
    elif what == "target":
        request[1] = rng.choice([b"/kv/" + _key(rng), b"/kv/" + _key(rng) + b"/cas", b"/", b"*", b"/kv", b"",
                                 b"http://127.0.0.1/kv/a", b"/status?" + _key(rng), b"/kv/a?v=%ff",
                                 b"/kv/\xff\xfe", b"/kv/a b"])
    elif what == "version":
        request[2] = rng.choice([b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.12", b"HTTP/x", b"", b"http/1.1"])
    elif what == "body":
        request[4] = _body(rng)
    elif what == "length":
        body = request[4]
        request[5] = rng.choice([
            [b"Content-Length: %d" % max(0, len(body) - rng.randrange(1, 5))],     # shorter than the body
            [b"Content-Length: %d" % (len(body) + rng.randrange(1, 100))],        # longer than the body
            [rng.choice([b"Content-Length: -1", b"Content-Length: 1e3", b"Content-Length: 0x10",
                         b"Content-Length: " + b"9" * 30, b"Content-Length: " + b"9" * 5000,
                         b"Content-Length: \xd9\xa1", b"Content-Length:", b"Content-Length: 1, 1"])],
            [b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) + 1)],
            [b"Transfer-Encoding: chunked"],
            [],                                                                  # no length at all
        ])
    elif what == "headers":
        request[3] += [rng.choice([b"Expect: 100-continue", b"Connection: close", b"Connection: keep-alive",
                                   b"X-Junk: \xff\xfe\x00", b"NoColonHere", b": empty-name", b" folded: x",
                                   b"X-Big: " + b"b" * rng.choice([100, 17_000]), b"Content-Type: text/plain",
                                   b"content-length : 3"]) for _ in range(rng.randrange(1, 4))]
    return what


def _request(rng: random.Random) -> tuple[bytes, str]:
    """One raw request, valid but for one or two hostile parts, and a label for the report."""
    request = _valid_request(rng)
    done = [_mutate(rng, request) for _ in range(rng.choice([0, 1, 1, 1, 2]))]
    method, target, version, headers, body, lengths = request
    headers = headers + (lengths if lengths is not None else [b"Content-Length: %d" % len(body)])
    line_end = b"\r\n" if "line ends" not in done else rng.choice([b"\n", b"\r", b"\r\r\n"])
    head = method + b" " + target + b" " + version + line_end + line_end.join(headers) + line_end + line_end
    label = f"{'+'.join(done) or 'valid'}: {method[:10]!r} {target[:100]!r} body={body[:80]!r}"
    return head + body, label


def raw_batch(cluster, rng: random.Random, count: int, stats: FuzzStats) -> None:
    """`count` raw requests, some pipelined, some pure garbage, to random nodes."""
    for _ in range(count):
        node = rng.choice(cluster.ids)
        port = cluster.client_ports[node]
        roll = rng.random()
        if roll < 0.08:
            payload, label = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))), "garbage bytes"
        elif roll < 0.2:
            parts = [_request(rng) for _ in range(rng.randrange(2, 5))]
            payload = b"".join(p for p, _ in parts)
            label = "pipelined: " + " | ".join(part_label for _, part_label in parts)
        else:
            payload, label = _request(rng)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                try:
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)  # half-close: the node answers what it has, then closes
                except OSError:
                    pass  # the node refused early (413/431) and closed while we were still sending
                answers = _read_answers(s, timeout=10)
        except OSError as exc:
            stats.record(f"{label} (connect)", 599, {"error": f"no connection: {exc}"})
            continue
        for status, body in answers:
            stats.record(f"{node}: {label}", status, body)
        if not answers:
            stats.requests += 1  # nothing to answer yet (a body longer than sent, or no request)
            stats.statuses["no answer"] += 1
    stats.batches += 1


# ------------------------------------------------------------------------------ peer port

T_FIXED = struct.Struct(">BB14Q")
KIND_CODES = {REQUEST_VOTE: 1, REQUEST_VOTE_RESP: 2, PRE_VOTE: 3, PRE_VOTE_RESP: 4, APPEND: 5, APPEND_RESP: 6,
              SNAPSHOT: 7, SNAPSHOT_RESP: 8}


def hand_packed_frame(kind: str, src: str, dst: str, fields: list[int], flags: int = 0,
                      entries: bytes = b"", entry_count: int = 0, data: bytes = b"") -> bytes:
    """A frame packed by hand, for fields the encoder refuses (>= 2^63) and malformed entries."""
    from raftnode.codec import FRAME_HEADER, MAGIC, PROTOCOL_VERSION
    fixed = T_FIXED.pack(KIND_CODES[kind], flags, *fields, 0)
    names = b"".join(bytes([len(n.encode())]) + n.encode() for n in (src, dst))
    payload = fixed + names + struct.pack(">I", entry_count) + entries + struct.pack(">I", len(data)) + data
    return FRAME_HEADER.pack(MAGIC, PROTOCOL_VERSION, len(payload)) + payload


def _extreme(rng: random.Random, current: int, log_end: int) -> int:
    return rng.choice([0, 1, max(0, current - 1), current, log_end, log_end + 1, 10**9, 2**32, 2**62,
                       2**63 - 1, rng.randrange(2**63)])


def _entries(rng: random.Random, prev: int, term: int) -> list[Entry]:
    count = rng.choice([0, 0, 1, 2, 50])
    out = []
    for i in range(count):
        data = rng.choice([None, {}, {"op": "put", "key": "fuzz", "value": 1}, {"op": "frobnicate"},
                           [1, 2], "x" * rng.choice([10, 300_000]), {"op": "put", "key": "k", "value": "y" * 70_000}])
        kind = NOOP if data is None else COMMAND
        out.append(Entry(prev + 1 + i, term if rng.random() < 0.9 else 0, kind, data))
    return out


def _authenticated_frame(rng: random.Random, me: str, dst: str, current: int, log_end: int) -> tuple[bytes, str]:
    from raftnode.codec import encode_message
    kind = rng.choice(list(KIND_CODES))
    stale = max(0, current - 1)
    term = rng.choice([0, 0, stale, stale, current, current, current, current + 1, current + 1,
                       current + rng.randrange(2, 1000), current + 2**33, 2**63 - 1, 2**63, 2**64 - 1])
    fields = [_extreme(rng, current, log_end) for _ in range(13)]
    fields[0] = term
    src = rng.choice([me] * 20 + ["n1", "intruder", "n" * 255])
    label = f"{kind} as {me} src={src[:10]} term={term}"
    if term >= 2**63 or any(f >= 2**63 for f in fields):
        return hand_packed_frame(kind, src, dst, fields, flags=rng.randrange(8)), label + " (hand packed)"
    names = ("term", "last_log_index", "last_log_term", "prev_log_index", "prev_log_term", "leader_commit",
             "match_index", "conflict_index", "conflict_term", "context", "snapshot_index", "snapshot_term", "offset")
    values = dict(zip(names, fields, strict=True))
    msg = Message(kind, src, dst, **values, granted=rng.random() < 0.5, success=rng.random() < 0.5,
                  done=rng.random() < 0.5)
    if kind == APPEND:
        # Either a stale term (answered with a rejection) or a prev_log_index past the log (the
        # follower asks for earlier entries): never entries that would match the log.
        if term >= current and rng.random() < 0.9:
            msg.prev_log_index = rng.choice([log_end + 10**6, 2**62, 2**63 - 60])
        elif term >= current:
            msg.term = stale
        msg.prev_log_term = min(msg.prev_log_term, msg.term)
        msg.entries = _entries(rng, msg.prev_log_index, msg.term)
        if rng.random() < 0.1 and msg.entries:
            msg.entries[0] = Entry(msg.entries[0].index + 5, msg.entries[0].term, NOOP)  # not consecutive
            return _packed_with_entries(msg), label + " (non-consecutive entries)"
    elif kind == SNAPSHOT:
        msg.data = os.urandom(rng.choice([0, 1, 7, 1000, 100_000]))
        if msg.term >= current:
            msg.offset = rng.choice([1, 3, 4095, 2**40 + 1])  # odd offsets: never a transfer's start
    try:
        return encode_message(msg), label
    except Exception as exc:  # noqa: BLE001 - the encoder refuses what it must not send
        return hand_packed_frame(kind, src, dst, fields), f"{label} (encoder refused: {type(exc).__name__})"


def _packed_with_entries(msg: Message) -> bytes:
    entries = b""
    for e in msg.entries:
        raw = json.dumps(e.data).encode() if e.data is not None else b""
        entries += struct.pack(">QQBI", e.index, e.term, 1 if e.kind == NOOP else 2, len(raw)) + raw
    fields = [msg.term, msg.last_log_index, msg.last_log_term, msg.prev_log_index, msg.prev_log_term,
              msg.leader_commit, msg.match_index, msg.conflict_index, msg.conflict_term, msg.context,
              msg.snapshot_index, msg.snapshot_term, msg.offset]
    return hand_packed_frame(msg.kind, msg.src, msg.dst, fields, entries=entries, entry_count=len(msg.entries))


def peer_batch(cluster, rng: random.Random, count: int, stats: FuzzStats) -> None:
    """`count` connections to random nodes' peer ports: garbage before the handshake, garbage
    after it, and authenticated frames with extreme fields. Needs a cluster with a spare member
    (the test speaks as it)."""
    from raftnode.codec import encode_hello
    from raftnode.transport import connect_as_member
    me = cluster.spare_ids[0]
    for _ in range(count):
        dst = rng.choice(cluster.ids)
        port = cluster.peer_ports[dst]
        status = cluster.status(dst) or {}
        current, log_end = status.get("term", 1), status.get("last_log_index", 0)
        roll = rng.random()
        try:
            if roll < 0.1:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 500))))
            elif roll < 0.15:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    hello = encode_hello(rng.choice([me, "intruder", dst]), rng.choice([dst, "n9"]), os.urandom(32))
                    s.sendall(hello[:rng.randrange(1, len(hello) + 1)] + os.urandom(rng.randrange(0, 80)))
            else:
                with connect_as_member("127.0.0.1", port, me, dst, cluster.peer_secret) as s:
                    frames = []
                    for _ in range(rng.randrange(1, 6)):
                        if rng.random() < 0.1:
                            frames.append(os.urandom(rng.randrange(1, 300)))
                        else:
                            frames.append(_authenticated_frame(rng, me, dst, current, log_end)[0])
                    try:
                        s.sendall(b"".join(frames))
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the node dropped the connection at the first garbage frame
                    stats.peer_frames += len(frames)
        except (OSError, ConnectionError):
            pass  # refused mid-handshake: expected for garbage
        stats.requests += 1
    stats.batches += 1
