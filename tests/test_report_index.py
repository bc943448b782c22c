"""The store index: a row per run, failing runs first, sortable, with a trend per scenario."""

import html
import os
import re

from reports import render_index
from tests.fixtures.run_factory import build_run, history, write_run


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def make_store(tmp_path):
    build_run(tmp_path, test="leader-isolation", timestamp="20261101T020000", ops=300, seed=1)
    build_run(tmp_path, test="leader-isolation", timestamp="20261102T020000", ops=1500, seed=2, stale_read_key=True)
    build_run(tmp_path, test="leader-isolation", timestamp="20261103T020000", ops=300, seed=3)
    build_run(tmp_path, test="pause-storm", timestamp="20261103T030000", ops=300, seed=4, write_results=False)
    build_run(tmp_path, test="pause-storm", timestamp="20261104T030000", ops=300, seed=5)
    os.symlink(os.path.join("pause-storm", "20261104T030000"), tmp_path / "latest")
    return tmp_path


def run_rows(page):
    table = re.search(r'<table class="sortable-table runs".*?</table>', page, flags=re.S).group(0)
    rows = re.findall(r'<tr class="run (\w+)">(.*?)</tr>', table, flags=re.S)
    out = []
    for verdict, row in rows:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        out.append((verdict, re.sub("<[^>]+>", "", cells[0]), re.sub("<[^>]+>", "", cells[1])))
    return out


def test_one_row_per_run_failing_runs_first_then_newest_first(tmp_path):
    page = read(render_index(make_store(tmp_path)))
    assert run_rows(page) == [
        ("invalid", "2026-11-02 02:00:00", "leader-isolation"),
        ("unknown", "2026-11-03 03:00:00", "pause-storm"),
        ("valid", "2026-11-04 03:00:00", "pause-storm"),
        ("valid", "2026-11-03 02:00:00", "leader-isolation"),
        ("valid", "2026-11-01 02:00:00", "leader-isolation")]
    assert "5 runs" in page and "1 invalid, 1 unknown, 3 valid." in page


def test_rows_carry_operations_faults_anomalies_and_a_link_to_the_report(tmp_path):
    page = read(render_index(make_store(tmp_path)))
    row = re.search(r'<tr class="run invalid">(.*?)</tr>', page, flags=re.S).group(1)
    assert '<td class="num" data-v="1500">1,500</td>' in row
    assert "partition ×1" in row
    assert re.search(r'<td class="num" data-v="1">1</td>', row)  # one illegal key
    assert 'href="leader-isolation/20261102T020000/report/index.html"' in row
    assert os.path.isfile(tmp_path / "leader-isolation" / "20261102T020000" / "report" / "index.html")


def test_columns_are_sortable_with_numeric_values_for_numeric_columns(tmp_path):
    page = read(render_index(make_store(tmp_path)))
    heads = re.findall(r"<th([^>]*)>([^<]*)</th>", re.search(r'<table class="sortable-table runs".*?</thead>', page,
                                                            flags=re.S).group(0))
    sortable = {text: attrs for attrs, text in heads if "sortable" in attrs}
    assert set(sortable) == {"date", "scenario", "verdict", "ops", "faults", "anomalies", "ok/s", "p99 ms"}
    assert all('data-type="num"' in sortable[c] for c in ("ops", "anomalies", "ok/s", "p99 ms", "verdict"))
    assert "setupSort" in page


def test_a_trend_per_scenario_shows_each_run_in_date_order(tmp_path):
    page = read(render_index(make_store(tmp_path)))
    trend = re.search(r'<table class="trend">.*?</table>', page, flags=re.S).group(0)
    rows = re.findall(r"<tr>(.*?)</tr>", trend, flags=re.S)[1:]
    assert len(rows) == 2
    li = rows[0]
    assert "leader-isolation" in li
    squares = re.findall(r"<rect [^>]*fill=\"(#[0-9a-f]+)\"><title>([^<]*)</title>", li)
    assert [(c, html.unescape(t).split(":")[0]) for c, t in squares] == [
        ("#1f9e6e", "2026-11-01 02"), ("#d62839", "2026-11-02 02"), ("#1f9e6e", "2026-11-03 02")]
    assert "<polyline" in li


def test_summaries_are_reused_until_the_run_changes(tmp_path):
    store = make_store(tmp_path)
    render_index(store)
    report = store / "leader-isolation" / "20261101T020000" / "report" / "index.html"
    first = os.path.getmtime(report)
    os.utime(report, (first - 100, first - 100))
    render_index(store)
    assert os.path.getmtime(report) == first - 100  # not rendered again
    results = store / "leader-isolation" / "20261101T020000" / "results.json"
    os.utime(results, (first + 100, first + 100))
    render_index(store)
    assert os.path.getmtime(report) > first - 100  # the results changed: rendered again


def test_a_run_whose_report_fails_is_listed_with_the_reason(tmp_path):
    broken = write_run(tmp_path / "t" / "20261105T000000", history((0, "ok", "read", "r0", 1, 0.0)),
                       results={"valid": False, "reason": "lost writes"})
    page = read(render_index(tmp_path))
    [(verdict, date, name)] = run_rows(page)
    assert (verdict, date, name) == ("invalid", "2026-11-05 00:00:00", "t")
    assert "lost writes (report failed:" in html.unescape(page)
    assert 'href="t/20261105T000000/"' in page
    assert broken


def test_an_empty_store_says_so(tmp_path):
    assert "No runs in this store yet" in read(render_index(tmp_path))


def test_rendering_a_run_in_a_store_refreshes_the_store_index(tmp_path):
    from reports import render_run
    first = build_run(tmp_path, test="a", timestamp="20261101T020000", ops=300)
    render_run(first)
    second = build_run(tmp_path, test="b", timestamp="20261102T020000", ops=300, write_results=False)
    render_run(second)
    page = read(tmp_path / "index.html")
    assert [r[2] for r in run_rows(page)] == ["b", "a"]  # b is unknown (never checked): first
    assert 'href="../../../index.html"' in read(os.path.join(second, "report", "index.html"))
