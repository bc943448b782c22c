"""Reports are self-contained: they open from the file system with no network at all."""

import re

from reports import render_index, render_run
from tests.fixtures.run_factory import build_run


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def external_references(page: str) -> list[str]:
    refs = re.findall(r'\b(?:src|href|action|data|poster)\s*=\s*"([^"]*)"', page, flags=re.I)
    refs += re.findall(r"url\(\s*['\"]?([^'\")]+)", page)
    refs += re.findall(r"@import\s+['\"]?([^'\";]+)", page)
    return [r for r in refs if re.match(r"^(?:[a-z][a-z0-9+.-]*:|//)", r, flags=re.I) and not r.startswith("data:")
            and not r.startswith("#")]


def test_run_report_references_nothing_outside_the_run_directory(tmp_path):
    page = read(render_run(build_run(tmp_path, ops=800, stale_read_key=True)))
    assert external_references(page) == []
    assert not re.search(r"<link[^>]+stylesheet", page)
    assert not re.search(r"<script[^>]+src=", page)
    assert "@font-face" not in page
    # the plots are inline SVG, generated in Python
    assert page.count("<svg class=\"plot timeplot") == 4


def test_run_report_links_are_relative_to_the_store(tmp_path):
    page = read(render_run(build_run(tmp_path, ops=300)))
    hrefs = re.findall(r'href="([^"#][^"]*)"', page)
    assert "../nodes/n1/node.log" in hrefs
    assert "../history.jsonl" in hrefs
    assert "../../../index.html" in hrefs  # back to the store's index
    assert all(not h.startswith("/") for h in hrefs)


def test_store_index_references_nothing_outside_the_store(tmp_path):
    build_run(tmp_path, ops=300)
    page = read(render_index(tmp_path))
    assert external_references(page) == []
    assert "register-partition/20261124T010000/report/index.html" in page
