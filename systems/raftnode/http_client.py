"""HTTP/JSON client for the bundled node's API, with Jepsen's outcome rules.

One HttpClient per worker process (not thread-safe): keep-alive connections per node, a
per-request timeout, and 307 redirects to the leader followed (more than 3 redirects is a fail).

The outcome of an operation is decided from *where* it failed, because that is what tells
whether the node may have acted on it:

    2xx                                   -> ok
    GET 404                               -> ok (a read of nothing)
    409 (cas mismatch), 503 (no leader)   -> fail: the node did not append it
    connection refused / connect timeout  -> fail: nothing was sent
    more than 3 redirects                 -> fail: no node appended it (307 = not appended)
    any error on a read                   -> fail: a read has no effect
    504, reset/timeout after sending,
    another 5xx on a write                -> info: it may or may not have happened
    400 (or another unexpected 4xx)       -> ClientBug: our request was wrong; abort the run
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from chaos.interfaces import ClientBug

OK, FAIL, INFO = "ok", "fail", "info"
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 3


@dataclass
class Reply:
    status: int
    body: Any            # parsed JSON, or None when the body was empty or not JSON
    url: str             # the URL that finally answered (after redirects)
    raw: bytes = b""


class TransportError(Exception):
    """A request that got no HTTP answer. `sent` is False only when nothing can have reached
    the node (the connection was never established)."""

    def __init__(self, kind: str, detail: str, sent: bool, url: str):
        self.kind, self.detail, self.sent, self.url = kind, detail, sent, url
        super().__init__(f"{kind}: {detail}")


class TooManyRedirects(Exception):
    def __init__(self, url: str, hops: int):
        self.url, self.hops = url, hops
        super().__init__(f"more than {MAX_REDIRECTS} redirects (last to {url})")


def _readable(sock) -> bool:
    """True when an idle socket has something to read: EOF or a reset from the server (poll,
    not select, so that descriptors above 1024 work too)."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class HttpClient:
    def __init__(self, timeout: float = 3.0, max_redirects: int = MAX_REDIRECTS):
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.conns: dict[str, http.client.HTTPConnection] = {}

    # -- connections ---------------------------------------------------------------------------
    def _connection(self, netloc: str) -> tuple[http.client.HTTPConnection, bool]:
        """A connected connection to netloc and whether it is fresh. A kept-alive connection
        the server has closed meanwhile (readable at idle = EOF) is replaced, so that a write
        is never sent into a dead socket and then wrongly counted as indeterminate."""
        conn = self.conns.get(netloc)
        if conn is not None and conn.sock is not None:
            if not _readable(conn.sock):
                return conn, False
            conn.close()
        host, _, port = netloc.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        self.conns[netloc] = conn
        return conn, True

    def _drop(self, netloc: str) -> None:
        conn = self.conns.pop(netloc, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for netloc in list(self.conns):
            self._drop(netloc)

    # -- requests ------------------------------------------------------------------------------
    def request(self, method: str, url: str, body: Any = None) -> Reply:
        """Send one request, following redirects. Raises TransportError or TooManyRedirects."""
        payload = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        hops = 0
        while True:
            reply = self._once(method, url, payload)
            if reply.status not in REDIRECTS:
                return reply
            hops += 1
            if hops > self.max_redirects:
                raise TooManyRedirects(url, hops)
            url = self._redirect_target(reply)

    @staticmethod
    def _redirect_target(reply: Reply) -> str:
        location = None
        if isinstance(reply.body, dict) and reply.body.get("_location"):
            location = reply.body["_location"]
        if not location and isinstance(reply.body, dict) and reply.body.get("leader_url"):
            location = reply.body["leader_url"].rstrip("/") + urlsplit(reply.url).path
        if not location:
            raise TransportError("bad-redirect", f"{reply.status} without Location from {reply.url}",
                                 sent=True, url=reply.url)
        return urljoin(reply.url, location)

    def _once(self, method: str, url: str, payload: bytes | None) -> Reply:
        parts = urlsplit(url)
        netloc, path = parts.netloc, parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            conn, fresh = self._connection(netloc)
            if fresh:
                try:
                    conn.connect()
                except (ConnectionRefusedError, socket.timeout, TimeoutError, OSError) as e:
                    self._drop(netloc)
                    kind = "refused" if isinstance(e, ConnectionRefusedError) else "connect"
                    raise TransportError(kind, str(e) or type(e).__name__, sent=False, url=url) from None
            try:
                conn.request(method, path, body=payload, headers=headers)
            except (BrokenPipeError, ConnectionResetError) as e:
                self._drop(netloc)
                if not fresh and attempt == 0:
                    # The server closed a kept-alive connection between our idle check and the
                    # send; nothing of this request was read. Retry once on a fresh connection.
                    continue
                raise TransportError("reset", f"while sending: {e}", sent=True, url=url) from None
            except (socket.timeout, TimeoutError, OSError) as e:
                self._drop(netloc)
                raise TransportError("send", f"while sending: {e}", sent=True, url=url) from None
            try:
                response = conn.getresponse()
                raw = response.read()
            except (socket.timeout, TimeoutError):
                self._drop(netloc)
                raise TransportError("timeout", f"no answer within {self.timeout} s", sent=True, url=url) from None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self._drop(netloc)
                raise TransportError("reset", f"connection lost before the answer: {e}", sent=True, url=url) from None
            except (http.client.HTTPException, OSError) as e:
                self._drop(netloc)
                raise TransportError("protocol", f"{type(e).__name__}: {e}", sent=True, url=url) from None
            if response.will_close:
                self._drop(netloc)
            try:
                body = json.loads(raw) if raw else None
            except (ValueError, UnicodeDecodeError):
                body = None
            if response.status in REDIRECTS:
                location = response.getheader("Location")
                if location:
                    body = dict(body) if isinstance(body, dict) else {}
                    body["_location"] = location
            return Reply(response.status, body, url, raw)
        raise AssertionError("unreachable")


@dataclass
class Outcome:
    type: str                 # ok / fail / info
    value: Any = None         # what the operation returned (ok), or None
    error: str | None = None  # why a fail/info happened
    url: str | None = None    # the URL that answered last (after redirects)


def perform(http: HttpClient, method: str, url: str, body: Any, *, is_read: bool,
            not_found_value: Any = None, extract=None) -> Outcome:
    """Send one operation and map what happened onto ok/fail/info (see the module docstring).
    `extract(body)` turns a 2xx body into the op's value (default: body["value"] for reads)."""
    try:
        reply = http.request(method, url, body)
    except TooManyRedirects as e:
        return Outcome(FAIL, error=f"redirects: {e}", url=e.url)
    except TransportError as e:
        if not e.sent or is_read:
            return Outcome(FAIL, error=f"{e.kind}: {e.detail}", url=e.url)
        return Outcome(INFO, error=f"{e.kind}: {e.detail}", url=e.url)
    status, payload = reply.status, reply.body
    error_text = payload.get("error") if isinstance(payload, dict) else None
    if 200 <= status < 300:
        if extract is not None:
            try:
                return Outcome(OK, extract(payload), url=reply.url)
            except (KeyError, TypeError, ValueError):
                # A 2xx we cannot read: a read learnt nothing (fail); a write did happen.
                if is_read:
                    return Outcome(FAIL, error=f"malformed {status} body: {reply.raw[:200]!r}", url=reply.url)
                return Outcome(OK, None, url=reply.url)
        return Outcome(OK, None, url=reply.url)
    if status == 404 and is_read:
        return Outcome(OK, not_found_value, url=reply.url)
    if status == 409:
        return Outcome(FAIL, error=error_text or "cas-mismatch", url=reply.url)
    if status == 503:
        return Outcome(FAIL, error=error_text or "unavailable", url=reply.url)
    if 400 <= status < 500:
        raise ClientBug(f"{method} {url} got {status} {reply.raw[:300].decode(errors='replace')}: "
                        "the node rejected our request as malformed, a bug in the client")
    # 504, other 5xx and anything unexpected after the request was sent.
    what = "timeout" if status == 504 else f"http-{status}"
    if is_read:
        return Outcome(FAIL, error=f"{what}: {error_text or ''}".rstrip(": "), url=reply.url)
    return Outcome(INFO, error=f"{what}: {error_text or ''}".rstrip(": "), url=reply.url)


def monotonic_ns() -> int:
    return time.monotonic_ns()
