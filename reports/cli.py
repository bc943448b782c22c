"""`splitbrain report RUN_DIR` and `splitbrain serve [--store DIR] [--port 8080] [--bind 127.0.0.1]`."""

from __future__ import annotations

import argparse
import functools
import http.server
import ipaddress
import os
import socket
import sys
import threading

from reports.index_page import render_index
from reports.load import ReportError
from reports.run_report import render_run

EXIT_CRASHED = 255


def cmd_report(args: argparse.Namespace) -> int:
    try:
        path = render_run(args.run_dir)
    except ReportError as e:
        print(f"splitbrain report: {e}", file=sys.stderr)
        return EXIT_CRASHED
    print(path)
    return 0


class StoreHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the store's files, read-only: GET and HEAD only; the index is re-rendered when it
    is requested, so runs finished since the server started appear."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".log": "text/plain; charset=utf-8", ".jsonl": "text/plain; charset=utf-8",
                      ".json": "application/json; charset=utf-8", ".html": "text/html; charset=utf-8"}
    store_dir = "."
    index_lock = threading.Lock()

    def end_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?", 1)[0] in ("/", "/index.html"):
            with self.index_lock:
                try:
                    render_index(self.store_dir)
                except Exception as e:  # noqa: BLE001 - serve the last index rather than fail the request
                    self.log_message("index not re-rendered: %s", e)
        super().do_GET()

    def _read_only(self) -> None:
        self.send_error(405, "read-only: this server only serves the store")

    do_POST = do_PUT = do_DELETE = do_PATCH = _read_only  # noqa: N815

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        sys.stderr.write("splitbrain serve: " + (format % args) + "\n")


def make_server(store: str, bind: str = "127.0.0.1", port: int = 8080) -> http.server.ThreadingHTTPServer:
    store = os.path.abspath(store)
    if not os.path.isdir(store):
        raise ReportError(f"{store}: no such store directory (run `splitbrain run` first, or pass --store)")
    render_index(store)
    handler = type("BoundStoreHandler", (StoreHandler,), {"store_dir": store})
    server_cls = http.server.ThreadingHTTPServer
    if ":" in bind:
        class V6Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6
        server_cls = V6Server
    return server_cls((bind, port), functools.partial(handler, directory=store))


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        server = make_server(args.store, args.bind, args.port)
    except ReportError as e:
        print(f"splitbrain serve: {e}", file=sys.stderr)
        return EXIT_CRASHED
    except OSError as e:
        print(f"splitbrain serve: cannot listen on {args.bind}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return EXIT_CRASHED
    try:
        loopback = ipaddress.ip_address(args.bind).is_loopback
    except ValueError:
        loopback = args.bind == "localhost"
    if not loopback:
        print(f"splitbrain serve: warning: listening on {args.bind}, reachable from other hosts", file=sys.stderr)
    host, port = str(server.server_address[0]), server.server_address[1]
    print(f"splitbrain serve: {os.path.abspath(args.store)} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="render a run's HTML report and print its path")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of the store (store/<test>/<timestamp>)")
    p.set_defaults(func=cmd_report)

    p = subparsers.add_parser("serve", help="serve the store's reports over HTTP, read-only")
    p.add_argument("--store", default="store", metavar="DIR", help="the store directory (default: store)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0 picks a free one)")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    p.set_defaults(func=cmd_serve)
