"""The report says at once whether the run held, why, and how to reproduce it."""

import html
import json
import os
import re

import pytest

from reports import ReportError, render_run
from tests.fixtures.run_factory import build_run, history, write_run


def banner(page: str) -> tuple[str, str]:
    m = re.search(r'<section class="banner (\w+)" id="verdict" data-verdict="(\w+)">'
                  r'<div class="verdict">(\w+)</div><div class="reason">(.*?)</div>', page)
    assert m, "no verdict banner"
    assert m.group(1) == m.group(2)
    return m.group(2), html.unescape(m.group(4))


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_valid_run_shows_a_valid_banner_with_the_checkers_reason(tmp_path):
    page = read(render_run(build_run(tmp_path, ops=400, seed=3)))
    verdict, reason = banner(page)
    assert verdict == "valid"
    assert reason == "All 1 checkers passed: every key is linearizable."


def test_invalid_run_shows_an_invalid_banner_naming_the_illegal_key(tmp_path):
    run = build_run(tmp_path, ops=1500, seed=1, stale_read_key=True)
    page = read(render_run(run))
    verdict, reason = banner(page)
    assert verdict == "invalid"
    assert re.match(r"Key r\d+ is not linearizable", reason)


def test_run_without_results_is_unknown_and_says_it_was_never_checked(tmp_path):
    run = build_run(tmp_path, ops=300, write_results=False)
    page = read(render_run(run))
    verdict, reason = banner(page)
    assert verdict == "unknown"
    assert "results.json is missing" in reason
    assert "Missing from the run directory: results.json" in page


def test_reason_is_composed_from_the_checkers_when_results_give_none(tmp_path):
    ops = history((0, "invoke", "read", "r0", None, 0.0), (0, "ok", "read", "r0", None, 0.01))
    results = {"valid": "unknown", "checkers": {"linearizable": {"valid": "unknown"}, "stats": {"valid": True}}}
    page = read(render_run(write_run(tmp_path / "run", ops, results=results, config={"seed": 1})))
    assert banner(page) == ("unknown", "The linearizable check could not decide.")


def test_the_command_from_config_is_shown_verbatim(tmp_path):
    run = build_run(tmp_path, ops=300, seed=42)
    page = read(render_run(run))
    m = re.search(r'<pre id="repro-cmd">(.*?)</pre>', page)
    assert html.unescape(m.group(1)) == "splitbrain run --nodes 5 --workload register --seed 42 --time-limit 2"


def test_without_a_command_the_report_offers_splitbrain_reproduce_of_the_run_dir(tmp_path):
    ops = history((0, "invoke", "read", "r0", None, 0.0), (0, "ok", "read", "r0", None, 0.01))
    run = write_run(tmp_path / "store" / "t" / "20260101T000000", ops, config={"seed": 9}, results={"valid": True})
    page = read(render_run(run))
    m = re.search(r'<pre id="repro-cmd">(.*?)</pre>', page)
    assert html.unescape(m.group(1)) == f"splitbrain reproduce {os.path.abspath(run)}"
    assert "seed <b>9</b>" in page


def test_a_directory_that_is_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match=r"not a run directory \(no history.jsonl, config.json or results.json\)"):
        render_run(tmp_path)


def test_a_run_that_crashed_before_its_history_shows_why_from_the_controller_log(tmp_path):
    run = tmp_path / "register" / "20261124T235351"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"test_name": "register", "seed": 3, "command": "splitbrain run --seed 3"}')
    (run / "results.json").write_text('{"valid": "unknown", "crashed": true, "checkers": {}, "reason": '
                                      '"the run did not complete: ModuleNotFoundError: No module named \'x\'"}')
    (run / "controller.log").write_text("23:53:51 run started\n23:53:51 run crashed: ModuleNotFoundError: <x>\n")
    page = read(render_run(run))
    assert banner(page) == ("unknown", "the run did not complete: ModuleNotFoundError: No module named 'x'")
    assert "Missing from the run directory: history.jsonl" in page
    crash = re.search(r'<section id="crash">.*?</section>', page, flags=re.S).group(0)
    assert "run crashed: ModuleNotFoundError: &lt;x&gt;" in crash


def test_a_checker_that_only_measures_is_shown_as_measured_not_unknown(tmp_path):
    run_dir = build_run(tmp_path, ops=400, seed=3)
    results_path = os.path.join(run_dir, "results.json")
    with open(results_path) as f:
        results = json.load(f)
    results["checkers"]["availability"] = {"during_faults": {"ops": 10, "ok": 9}, "outside_faults": {"ops": 5, "ok": 5}}
    with open(results_path, "w") as f:
        json.dump(results, f)
    page = read(render_run(run_dir))
    row = re.search(r"<tr><td>availability</td><td>(.*?)</td>", page)
    assert row, "no availability row in the checker table"
    assert "measured" in row.group(1) and "unknown" not in row.group(1)
