"""Every value from a history, a log, a config or a results file is HTML-escaped."""

import re

from reports import render_index, render_run
from tests.fixtures.run_factory import HOSTILE, build_run, history, write_run


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def assert_only_our_script(page: str) -> None:
    scripts = re.findall(r"<script\b[^>]*>", page, flags=re.I)
    assert len(scripts) == 1 and "nonce=" in scripts[0], scripts
    assert HOSTILE not in page
    assert "alert(1)" not in page.replace("&lt;script&gt;alert(1)&lt;/script&gt;", "")


def test_hostile_key_error_test_name_and_log_fields_are_escaped(tmp_path):
    run = build_run(tmp_path, ops=600, hostile=True)
    page = read(render_run(run))
    assert_only_our_script(page)
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert escaped in page  # the values are shown, as text
    assert page.count(escaped) >= 3  # test name (title and heading) and the node log's peer_garbage


def test_hostile_values_in_every_field_of_an_illegal_key_are_escaped(tmp_path):
    h = HOSTILE
    ops = history((0, "invoke", "write", h, h, 0.0, {"node": h}),
                  (0, "ok", "write", h, h, 0.01, {"node": h}),
                  (1, "invoke", "read", h, None, 0.02),
                  (1, "ok", "read", h, h + "x", 0.03),
                  ("nemesis", "invoke", "partition", None, {"topology": h}, 0.015),
                  ("nemesis", "info", "partition", None, {"groups": [[h], ["n2"]]}, 0.016))
    ops.sort(key=lambda d: d["time"])
    for i, d in enumerate(ops):
        d["index"] = i
    results = {"valid": False, "reason": h,
               "checkers": {"linearizable": {"valid": False, "first_illegal_key": h,
                                             "keys": {h: {"valid": False, "ops": 2, "visualization": h,
                                                          "anomaly": {"description": h, h: h}}}},
                            h: {"valid": h, h: h}}}
    config = {"test_name": h, "seed": h, "command": h, h: h, "schedule": [{"at": 1, "f": h, "value": h}]}
    polls = [{"time": ops[0]["time"], "node": h, "status": {"role": h, "term": h, "leader": h}}]
    logs = {"n1": [{"ts": 1.0, "mono": 1.0, "node": h, "event": "role", "role": h, "term": h, h: h}, h]}
    run = write_run(tmp_path / "run", ops, results=results, config=config, polls=polls, node_logs=logs)
    page = read(render_run(run))
    assert_only_our_script(page)
    assert "porcupine visualization &lt;script&gt;alert(1)&lt;/script&gt; is missing" in page


def test_a_visualization_path_outside_the_run_directory_is_never_linked(tmp_path):
    ops = history((0, "invoke", "read", "r0", None, 0.0), (0, "ok", "read", "r0", 5, 0.01))
    for target in ("javascript:alert(1)", "../../../etc/passwd", "/etc/passwd", "https://example.com/x.html"):
        results = {"valid": False, "checkers": {"linearizable": {"valid": False, "keys": {
            "r0": {"valid": False, "visualization": target}}}}}
        page = read(render_run(write_run(tmp_path / "run", ops, results=results)))
        assert f'href="{target}"' not in page and f'src="{target}"' not in page
        assert "is outside the run directory: not linked" in page


def test_hostile_values_are_escaped_in_the_store_index(tmp_path):
    build_run(tmp_path, ops=300, hostile=True)
    page = read(render_index(tmp_path))
    assert_only_our_script(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_pages_forbid_scripts_without_the_nonce_and_any_network_access(tmp_path):
    page = read(render_run(build_run(tmp_path, ops=300)))
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp).group(1)
    assert f'<script nonce="{nonce}">' in page
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
