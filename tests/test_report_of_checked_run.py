"""The report reads what our own checker writes: a synthetic run checked by `splitbrain check`
(our Python checker, no Go needed) renders with the checker's verdict, its words and ours."""

import argparse
import json
import os
import re

from reports import render_run
from tests.fixtures.run_factory import build_run


def check(run_dir):
    from checkers import cli
    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers(dest="command"))
    args = p.parse_args(["check", run_dir, "--checker", "python"])
    return args.func(args)


def checked_run(tmp_path, **kw):
    run = build_run(tmp_path, write_results=False, **kw)
    check(run)
    with open(os.path.join(run, "results.json"), encoding="utf-8") as f:
        return run, json.load(f)


def test_a_checked_valid_run_reports_valid(tmp_path):
    run, results = checked_run(tmp_path, ops=2000, seed=5)
    assert results["valid"] is True
    with open(render_run(run), encoding="utf-8") as f:
        page = f.read()
    assert 'data-verdict="valid"' in page and 'id="anomaly"' not in page


def test_a_checked_stale_read_is_reported_with_the_checkers_words_and_ours(tmp_path):
    run, results = checked_run(tmp_path, ops=3000, seed=1, stale_read_key=True)
    assert results["valid"] is False
    key = results["checkers"]["linearizable"]["first_illegal_key"]
    with open(render_run(run), encoding="utf-8") as f:
        page = f.read()
    assert 'data-verdict="invalid"' in page
    section = re.search(r'<section id="anomaly">.*?</section>', page, flags=re.S).group(0)
    assert f'key <b class="mono">{key}</b>' in section
    assert re.search(r'<p class="words">Read of \d+ at [\d.]+ s by process \d+ returned a value overwritten', section)
    description = results["checkers"]["linearizable"]["keys"][key]["anomaly"]["description"]
    assert description.split(":")[0] in section  # the checker's own sentence is shown too
