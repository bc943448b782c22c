"""Set workload runs: adds and final reads are plotted, and a lost element is told in words."""

import re

from reports import render_run
from tests.fixtures.run_factory import build_run


def page_of(tmp_path, **kw):
    with open(render_run(build_run(tmp_path, test="set", workload="set", ops=2500, **kw)), encoding="utf-8") as f:
        return f.read()


def test_a_lost_element_is_told_with_its_acknowledged_add_and_the_final_read(tmp_path):
    page = page_of(tmp_path, lost_element=True)
    assert 'data-verdict="invalid"' in page
    section = re.search(r'<section id="anomaly">.*?</section>', page, flags=re.S).group(0)
    assert 'set checker, key <b class="mono">s0</b>' in section
    assert re.search(r'<p class="words">Element \d+, added by process \d+ \(acknowledged at [\d.]+ s\), is missing '
                     r'from the final read at [\d.]+ s by process 10000\.</p>', section)
    excerpt = re.search(r'<table class="excerpt".*?</table>', section, flags=re.S).group(0)
    assert "acknowledged add" in excerpt and "final read without it" in excerpt
    set_table = re.search(r"<h3>Set</h3>.*?</table>", page, flags=re.S).group(0)
    assert re.search(r'<td>lost</td><td class="num" data-v="1">1</td>', set_table)


def test_adds_are_plotted_with_their_own_marker_and_a_valid_set_run_is_valid(tmp_path):
    page = page_of(tmp_path)
    assert 'data-verdict="valid"' in page and 'id="anomaly"' not in page
    assert re.search(r'<path class="pts pts-ok" data-f="add" fill="#1f9e6e" stroke="none" '
                     r'd="M[\d.]+ [\d.]+l3.4 3.4', page)
