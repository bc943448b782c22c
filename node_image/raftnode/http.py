"""A small, fast HTTP/1.1 server on asyncio.Protocol (standard library only).

Supports what the client API needs: Content-Length bodies, keep-alive (HTTP/1.1 default,
HTTP/1.0 with "Connection: keep-alive"), pipelined requests (answered strictly in order: the next
request on a connection is parsed only after the current one is answered), and answers that are
produced later (a write waits for its commit). Anything else gets a clear 4xx and the connection
is closed: chunked bodies (411), oversized heads (431) or bodies (413), malformed request lines.

The handler is `handler(request, conn)`; it must eventually call `conn.respond(...)` exactly once.
"""

from __future__ import annotations

import asyncio
import json

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024

REASONS = {200: "OK", 307: "Temporary Redirect", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 411: "Length Required", 413: "Payload Too Large",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
           504: "Gateway Timeout"}
_STATUS_LINES = {code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in REASONS.items()}

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


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


def render(status: int, body, keep_alive: bool = True, headers: dict | None = None) -> bytes:
    if status == 200 and keep_alive and not headers and body == {}:
        return _EMPTY_OK  # the answer to every put and delete
    payload = body if isinstance(body, bytes) else _encode(body).encode("utf-8")
    status_line = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode()
    extra = ""
    if headers:
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
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


class HttpConnection(asyncio.Protocol):
    """One client connection. `respond()` may be called synchronously or later."""

    def __init__(self, handler, on_open=None, on_close=None):
        self.handler = handler
        self.on_open = on_open
        self.on_close = on_close
        self.transport = None
        self.buf = bytearray()
        self.busy = False          # a request is being handled; later ones wait in buf
        self.keep_alive = True
        self.closed = False
        self._parsing = False
        self._continue_sent = False

    def connection_made(self, transport):
        self.transport = transport
        if self.on_open:
            self.on_open(self)

    def connection_lost(self, exc):
        self.closed = True
        if self.on_close:
            self.on_close(self)

    def data_received(self, data):
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
                if request is None:
                    return
                self.busy = True
                self.keep_alive = request.keep_alive
                try:
                    self.handler(request, self)
                except Exception as exc:  # a handler bug must not kill the connection silently
                    if self.busy:
                        self.keep_alive = False
                        self.respond(500, {"error": "internal", "detail": f"{type(exc).__name__}: {exc}"})
                    raise
        finally:
            self._parsing = False

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
                if not value.isdigit():
                    raise HttpError(400, "bad_request", f"bad Content-Length {value[:40]!r}")
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
        self.transport.write(render(status, body, keep_alive, headers))
        if not keep_alive:
            self.closed = True
            self.transport.close()
            return
        if self.buf and not self._parsing:
            self._process()
