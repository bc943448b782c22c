"""A run directory the report cannot trust is a clear error naming the file and the problem;
what is merely missing is said on the page."""

import json

import pytest

from reports import ReportError, render_run
from reports.load import load_run, read_status
from tests.fixtures.run_factory import history, poll, write_run

OPS = history((0, "invoke", "read", "r0", None, 0.0), (0, "ok", "read", "r0", None, 0.01))


def test_a_malformed_history_line_is_named_with_its_line_number(tmp_path):
    run = write_run(tmp_path / "run", OPS)
    with open(run + "/history.jsonl", "a") as f:
        f.write('{"process": 1, "type": "invoke", "f": "read", "time": 5}\n{"process": 1, "typ')
    with pytest.raises(ReportError, match=r"history.jsonl:4: not valid JSON.*truncated last line"):
        render_run(run)


def test_a_completion_without_an_invocation_is_an_error_naming_the_line(tmp_path):
    ops = OPS + history((3, "ok", "write", "r0", 1, 0.02))
    with pytest.raises(ReportError, match=r":3: ok of 'write' by process 3 without an open invocation"):
        render_run(write_run(tmp_path / "run", ops))


def test_results_that_are_not_json_are_an_error_naming_the_file(tmp_path):
    run = write_run(tmp_path / "run", OPS)
    with open(run + "/results.json", "w") as f:
        f.write("{valid: true")
    with pytest.raises(ReportError, match=r"results.json: not valid JSON"):
        render_run(run)


def test_a_config_that_is_not_an_object_is_an_error(tmp_path):
    run = write_run(tmp_path / "run", OPS)
    with open(run + "/config.json", "w") as f:
        json.dump([1, 2], f)
    with pytest.raises(ReportError, match=r"config.json: expected a JSON object, got list"):
        render_run(run)


def test_status_polls_need_integer_controller_times(tmp_path):
    run = write_run(tmp_path / "run", OPS, polls=[{"time": 1.5, "node": "n1", "status": None}])
    with pytest.raises(ReportError, match=r"status.jsonl:1: time must be an integer of nanoseconds"):
        load_run(run)


def test_a_status_file_cut_mid_line_by_a_crash_keeps_the_complete_polls(tmp_path):
    run = write_run(tmp_path / "run", OPS, polls=[poll(0.0, "n1", "leader", 1, "n1")])
    with open(run + "/status.jsonl", "a") as f:
        f.write('{"time": 5000')
    assert len(read_status(run + "/status.jsonl")) == 1


def test_missing_optional_files_are_listed_on_the_page(tmp_path):
    with open(render_run(write_run(tmp_path / "run", OPS)), encoding="utf-8") as f:
        page = f.read()
    assert "Missing from the run directory: config.json, results.json, status.jsonl, nodes/*." in page
    assert "No status polls (status.jsonl) in this run: no timeline." in page


def test_an_empty_history_still_renders(tmp_path):
    run = write_run(tmp_path / "run", [],
                    results={"valid": "unknown", "reason": "The run crashed before any operation."})
    with open(render_run(run), encoding="utf-8") as f:
        page = f.read()
    assert "The run crashed before any operation." in page
    assert "The history has no client operations." in page


def test_a_path_that_is_not_a_directory_is_an_error(tmp_path):
    with pytest.raises(ReportError, match="not a directory"):
        render_run(tmp_path / "nope")


def test_another_systems_logs_are_listed_and_do_not_count_as_missing(tmp_path):
    run = write_run(tmp_path / "run", OPS)
    folder = tmp_path / "run" / "nodes" / "n1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stderr.log").write_text('{"level":"info","msg":"etcd started"}\nplain text\n')
    with open(render_run(run), encoding="utf-8") as f:
        page = f.read()
    assert "nodes/*" not in page.split("Missing from the run directory:")[1].split(".")[0]
    assert 'href="../nodes/n1/stderr.log"' in page
    assert "Elections and leader changes from the node logs" not in page
