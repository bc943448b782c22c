"""A small, fast HTTP/1.1 server on asyncio.Protocol (standard library only).

Supports what the client API needs: Content-Length bodies, keep-alive (HTTP/1.1 default,
HTTP/1.0 with "Connection: keep-alive"), pipelined requests (answered strictly in order: the next
request on a connection is parsed only after the current one is answered), and answers that are
produced later (a write waits for its commit). Anything else gets a clear 4xx and the connection
is closed: chunked bodies (411), oversized heads (431) or bodies (413), malformed request lines.

The handler is `handler(request, conn)`; it must eventually call `conn.respond(...)` exactly once.

Hostile clients (issue 9): nothing a client sends can raise out of this module. A handler that
raises gets its request answered 500 (the connection is then closed) and the exception is reported
to `on_error`; an answer that cannot be encoded becomes a 500 too. The node's connections are
counted by a ClientConnections: at most `max_open` at once (more are answered 503 and closed at
once) and each is closed after `idle_timeout` seconds without a request in flight, so idle or
trickling clients cannot use up the file descriptors the peer links need.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

from .heap import release_closed_transport
from .jsonenc import compact_encoder

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
MAX_OPEN_CONNECTIONS = 1024
IDLE_TIMEOUT_S = 60.0

REASONS = {200: "OK", 307: "Temporary Redirect", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 411: "Length Required", 413: "Payload Too Large",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
           504: "Gateway Timeout"}
_STATUS_LINES = {code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in REASONS.items()}

_encode = compact_encoder()
_encode_ascii = compact_encoder(ensure_ascii=True)


class Request:
    __slots__ = ("method", "target", "body", "keep_alive")

    def __init__(self, method: str, target: str, body: bytes, keep_alive: bool):
        self.method = method
        self.target = target
        self.body = body
        self.keep_alive = keep_alive


class HttpError(Exception):
    def __init__(self, status: int, error: str, detail: str):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


_EMPTY_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def _payload(body) -> bytes:
    try:
        return _encode(body).encode("utf-8")
    except UnicodeEncodeError:
        return _encode_ascii(body).encode("ascii")  # a lone surrogate, escaped: valid JSON


def _header_line(name: str, value) -> str:
    text = str(value)
    if not text.isascii() or not text.isprintable():
        # A Location holding the client's own (UTF-8, possibly odd) target: percent-encode what
        # a header cannot carry instead of failing to encode the answer.
        text = quote(text, safe="/:?#[]@!$&'()*+,;=%-._~")
    return f"{name}: {text}\r\n"


def render(status: int, body, keep_alive: bool = True, headers: dict | None = None) -> bytes:
    """The complete answer. Never raises: a body that cannot be encoded as JSON (which only a
    bug can produce) becomes a 500 naming the problem."""
    if status == 200 and keep_alive and not headers and body == {}:
        return _EMPTY_OK  # the answer to every put and delete
    if isinstance(body, bytes):
        payload = body
    else:
        try:
            payload = _payload(body)
        except (ValueError, TypeError, RecursionError) as exc:
            status, headers = 500, None
            payload = _payload({"error": "internal", "detail": f"the answer cannot be encoded as JSON: "
                                                               f"{type(exc).__name__}: {str(exc)[:200]}"})
    status_line = _STATUS_LINES.get(status) or f"HTTP/1.1 {int(status)} Unknown\r\n".encode()
    extra = ""
    if headers:
        extra = "".join(_header_line(name, value) for name, value in headers.items())
    head = (f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n{extra}"
            f"{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n")
    return status_line + head.encode("latin-1") + payload


def _header(fields: bytes, name: bytes) -> bytes | None:
    i = fields.find(name)
    if i < 0:
        return None
    i += len(name)
    j = fields.find(b"\r\n", i)
    return (fields[i:] if j < 0 else fields[i:j]).strip()


class ClientConnections:
    """The open client connections of one server, with their two limits (see the module doc).

    The idle check is a sweep (the driver calls `sweep()` about once a second), not a timer per
    request: the hot path only stores a timestamp when it answers."""

    def __init__(self, max_open: int = MAX_OPEN_CONNECTIONS, idle_timeout: float = IDLE_TIMEOUT_S,
                 on_event=None):
        if max_open < 1:
            raise ValueError(f"max_open must be at least 1, got {max_open}")
        if not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be positive, got {idle_timeout}")
        self.max_open = max_open
        self.idle_timeout = idle_timeout
        self.on_event = on_event or (lambda kind, **detail: None)
        self.open: set = set()
        self.refused = 0
        self.timed_out = 0
        self._refusals_logged = 0
        self.refusal = render(503, {"error": "too_many_connections",
                                    "detail": f"this node serves at most {max_open} client connections at once"},
                              keep_alive=False)

    def admit(self, conn: "HttpConnection") -> bool:
        if len(self.open) >= self.max_open:
            self.refused += 1
            if self.refused >= 2 * self._refusals_logged:  # 1, 2, 4, 8...: a flood logs a few lines
                self._refusals_logged = self.refused
                self.on_event("http_connection_refused", open=len(self.open), limit=self.max_open,
                              refused=self.refused)
            return False
        self.open.add(conn)
        return True

    def discard(self, conn: "HttpConnection") -> None:
        self.open.discard(conn)

    def sweep(self, now: float | None = None) -> int:
        """Close every connection idle (no request in flight) for longer than idle_timeout."""
        now = time.monotonic() if now is None else now
        cutoff = now - self.idle_timeout
        idle = [c for c in self.open if not c.busy and c.last_active < cutoff]
        for conn in idle:
            conn.close_idle()
        self.timed_out += len(idle)
        return len(idle)

    def close_all(self) -> None:
        for conn in list(self.open):
            if conn.transport is not None:
                conn.transport.close()


class HttpConnection(asyncio.Protocol):
    """One client connection. `respond()` may be called synchronously or later."""

    def __init__(self, handler, connections: ClientConnections | None = None, on_error=None):
        self.handler = handler
        self.connections = connections
        self.on_error = on_error
        self.transport: asyncio.Transport | None = None  # set by connection_made, before any data
        self.buf = bytearray()
        self.busy = False          # a request is being handled; later ones wait in buf
        self.keep_alive = True
        self.closed = False
        self.last_active = 0.0     # when the connection opened or last answered (idle timeout)
        self._parsing = False
        self._continue_sent = False

    def connection_made(self, transport):
        self.transport = transport
        self.last_active = time.monotonic()
        if self.connections is not None and not self.connections.admit(self):
            self.closed = True
            transport.write(self.connections.refusal)
            transport.close()

    def connection_lost(self, exc):
        self.closed = True
        if self.connections is not None:
            self.connections.discard(self)
        release_closed_transport(self.transport)  # else frozen with the heap, never freed (heap.py)

    def close_idle(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data):
        if self.closed:
            return
        self.buf += data
        if not self.busy and not self._parsing:
            self._process()

    def eof_received(self):
        if not self.busy:
            return False  # close now
        self.keep_alive = False  # answer the pending request, then close
        return True

    def _process(self) -> None:
        self._parsing = True
        try:
            while not self.busy and not self.closed and self.buf:
                try:
                    request = self._next_request()
                except HttpError as exc:
                    self.keep_alive = False
                    self.busy = True
                    self.respond(exc.status, {"error": exc.error, "detail": exc.detail})
                    return
                except Exception as exc:  # a parser bug: answer this client, keep the node
                    self._internal_error(exc, None)
                    return
                if request is None:
                    return
                self.busy = True
                self.keep_alive = request.keep_alive
                try:
                    self.handler(request, self)
                except Exception as exc:  # a handler bug: 500 for this request, never the node
                    self._internal_error(exc, request)
                    return
        finally:
            self._parsing = False

    def _internal_error(self, exc: Exception, request: Request | None) -> None:
        # Closing the connection also disowns any answer the failed handler may still give
        # later (respond() after close is a no-op), so it cannot reach a later request.
        self.keep_alive = False
        self.busy = True
        self.buf.clear()
        self.respond(500, {"error": "internal", "detail": f"{type(exc).__name__}: {str(exc)[:200]}"})
        if self.on_error is not None:
            self.on_error(exc, request)

    def _next_request(self) -> Request | None:
        # The hot path of the client API: only the request line and the three headers that
        # matter (Content-Length, Transfer-Encoding, Connection) are looked at.
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise HttpError(431, "header_too_large", f"request head exceeds {MAX_HEAD_BYTES} bytes")
            return None
        if end > MAX_HEAD_BYTES:
            raise HttpError(431, "header_too_large", f"request head exceeds {MAX_HEAD_BYTES} bytes")
        head = bytes(buf[:end])
        line_end = head.find(b"\r\n")
        if line_end < 0:
            line_end = end
        parts = head[:line_end].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[0].isalpha():
            raise HttpError(400, "bad_request", f"malformed request line {head[:line_end][:80]!r}")
        method, target, version = parts
        http11 = version == b"HTTP/1.1"
        length = 0
        keep_alive = http11
        if line_end < end:
            fields = head[line_end:].lower()
            if b"\r\ntransfer-encoding:" in fields:
                raise HttpError(411, "length_required", "chunked request bodies are not supported: send Content-Length")
            value = _header(fields, b"\r\ncontent-length:")
            if value is not None:
                if not value.isdigit() or not value.isascii():
                    raise HttpError(400, "bad_request", f"bad Content-Length {value[:40]!r}")
                if fields.count(b"\r\ncontent-length:") > 1:
                    raise HttpError(400, "bad_request", "more than one Content-Length header")
                if len(value) > 12:  # int() of thousands of digits is slow, or refused outright
                    raise HttpError(413, "body_too_large",
                                    f"request body of {len(value)}-digit length exceeds {MAX_BODY_BYTES} bytes")
                length = int(value)
            value = _header(fields, b"\r\nconnection:")
            if value is not None:
                keep_alive = value != b"close" if http11 else value == b"keep-alive"
        if length > MAX_BODY_BYTES:
            raise HttpError(413, "body_too_large", f"request body of {length} bytes exceeds {MAX_BODY_BYTES}")
        start = end + 4
        if len(buf) - start < length:
            if (not self._continue_sent and line_end < end
                    and _header(fields, b"\r\nexpect:") == b"100-continue"):
                self._continue_sent = True  # curl waits for this before sending a large body
                assert self.transport is not None  # data arrived, so the connection was made
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        self._continue_sent = False
        body = bytes(buf[start:start + length])
        del buf[:start + length]
        try:
            target_text = target.decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(400, "bad_request", "the request target is not UTF-8") from None
        return Request(method.decode("ascii"), target_text, body, keep_alive)

    def respond(self, status: int, body, headers: dict | None = None) -> None:
        if not self.busy:
            return  # already answered (e.g. a timeout raced the real answer)
        self.busy = False
        if self.closed:
            return
        keep_alive = self.keep_alive
        self.last_active = time.monotonic()
        transport = self.transport
        assert transport is not None  # a request was read, so the connection was made
        transport.write(render(status, body, keep_alive, headers))
        if not keep_alive:
            self.closed = True
            transport.close()
            return
        if self.buf and not self._parsing:
            self._process()
