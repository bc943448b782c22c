"""`splitbrain report RUN_DIR` renders and prints the path; `splitbrain serve` serves the store
read-only on loopback, rendering the index on start."""

import argparse
import http.client
import threading

import pytest

from reports import cli
from tests.fixtures.run_factory import build_run


def parser():
    p = argparse.ArgumentParser(prog="splitbrain")
    cli.register(p.add_subparsers(dest="command"))
    return p


def test_report_renders_the_run_and_prints_the_path(tmp_path, capsys):
    run = build_run(tmp_path, ops=300)
    args = parser().parse_args(["report", run])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == f"{run}/report/index.html"


def test_report_of_a_bad_directory_exits_255_naming_the_problem(tmp_path, capsys):
    args = parser().parse_args(["report", str(tmp_path / "missing")])
    assert args.func(args) == 255
    assert "not a directory" in capsys.readouterr().err


def test_serve_defaults_to_loopback_port_8080_and_the_store_folder():
    args = parser().parse_args(["serve"])
    assert (args.bind, args.port, args.store) == ("127.0.0.1", 8080, "store")


@pytest.fixture
def server(tmp_path):
    build_run(tmp_path, ops=300)
    srv = cli.make_server(str(tmp_path), "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def request(srv, method, path):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        conn.close()


def test_serve_renders_the_index_on_start_and_serves_reports_and_logs(server, tmp_path):
    assert (tmp_path / "index.html").is_file()
    status, ctype, body = request(server, "GET", "/")
    assert status == 200 and ctype.startswith("text/html") and b"splitbrain runs" in body
    status, _, body = request(server, "GET", "/register-partition/20261124T010000/report/index.html")
    assert status == 200 and b'data-verdict="valid"' in body
    status, ctype, _ = request(server, "GET", "/register-partition/20261124T010000/nodes/n1/node.log")
    assert status == 200 and ctype.startswith("text/plain")


def test_serve_is_read_only_and_stays_inside_the_store(server):
    for method in ("POST", "PUT", "DELETE"):
        assert request(server, method, "/index.html")[0] == 405
    status, _, body = request(server, "GET", "/../../../../etc/passwd")
    assert status == 404 and b"root:" not in body


def test_serve_picks_up_runs_finished_after_it_started(server, tmp_path):
    build_run(tmp_path, test="later", ops=300)
    status, _, body = request(server, "GET", "/")
    assert status == 200 and b"later/20261124T010000/report/index.html" in body


def test_serve_of_a_missing_store_is_a_clear_error(tmp_path, capsys):
    args = parser().parse_args(["serve", "--store", str(tmp_path / "nope"), "--port", "0"])
    assert args.func(args) == 255
    assert "no such store directory" in capsys.readouterr().err


def test_the_splitbrain_command_line_reaches_report(tmp_path, capsys):
    from chaos.cli import main
    run = build_run(tmp_path, ops=300)
    assert main(["report", run]) == 0
    assert capsys.readouterr().out.strip().endswith("/report/index.html")
    assert main(["report", str(tmp_path / "nothing")]) == 255
