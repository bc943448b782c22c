"""The first anomaly in words, with the part of the history around it."""

import re

from reports import render_run
from reports.analysis import analyse
from reports.anomaly import find_anomalies
from reports.load import load_run
from tests.fixtures.run_factory import build_run, history, write_run


def anomalies(tmp_path, ops, results):
    run = load_run(write_run(tmp_path / "run", ops, results=results))
    an = analyse(run)
    return find_anomalies(run.results, an.client, an.nemesis)


def illegal(key="r0", **extra):
    return {"valid": False, "checkers": {"linearizable": {"valid": False, "first_illegal_key": key,
                                                          "keys": {key: {"valid": False, **extra}}}}}


STALE = history((2, "invoke", "write", "r0", 3, 10.00), (2, "ok", "write", "r0", 3, 10.02),
                (5, "invoke", "write", "r0", 4, 12.00), (5, "ok", "write", "r0", 4, 12.02),
                (7, "invoke", "read", "r0", None, 12.41), (7, "ok", "read", "r0", 3, 12.45),
                (8, "invoke", "read", "r1", None, 12.5), (8, "ok", "read", "r1", None, 12.6))


def test_a_stale_read_is_told_as_a_read_of_a_value_overwritten_earlier(tmp_path):
    [a] = anomalies(tmp_path, STALE, illegal())
    assert a.sentences[0] == ("read of 3 at 2.410 s by process 7 returned a value overwritten at 2.020 s by "
                              "process 5 (its write of 4, invoked at 2.000 s, after 3 had been written by "
                              "process 2 at 0.020 s).")
    assert a.roles == {4: "anomalous (stale) read", 0: "wrote the value read", 2: "overwrote it before the read began"}
    assert a.anchor == 4
    assert [r["op"].index for r in a.rows] == [0, 2, 4]  # only ops on r0


def test_a_read_of_a_value_nobody_wrote_is_named(tmp_path):
    ops = history((1, "invoke", "write", "r0", 1, 0.0), (1, "ok", "write", "r0", 1, 0.1),
                  (2, "invoke", "read", "r0", None, 0.2), (2, "ok", "read", "r0", 99, 0.3))
    [a] = anomalies(tmp_path, ops, illegal())
    assert a.sentences[0] == ("read of 99 at 0.200 s by process 2 returned a value that no operation on this key "
                              "ever wrote.")


def test_a_read_of_a_value_written_only_later_is_named(tmp_path):
    ops = history((2, "invoke", "read", "r0", None, 0.0), (2, "ok", "read", "r0", 5, 0.1),
                  (1, "invoke", "write", "r0", 5, 0.5), (1, "ok", "write", "r0", 5, 0.6))
    [a] = anomalies(tmp_path, ops, illegal())
    assert "only began writing at 0.500 s, after the read had completed at 0.100 s" in a.sentences[0]


def test_an_empty_read_after_a_completed_write_is_named(tmp_path):
    ops = history((1, "invoke", "write", "r0", 1, 0.0), (1, "ok", "write", "r0", 1, 0.1),
                  (2, "invoke", "read", "r0", None, 0.2), (2, "ok", "read", "r0", None, 0.3))
    [a] = anomalies(tmp_path, ops, illegal())
    assert a.sentences[0].startswith("read of nothing (null) at 0.200 s by process 2 returned an empty register")


def test_the_checkers_own_description_and_cited_operations_are_used(tmp_path):
    # a cas history our explanation cannot pin down: the checker's words and indices stand
    ops = history((1, "invoke", "cas", "r0", [None, 1], 0.0), (1, "ok", "cas", "r0", [None, 1], 0.1),
                  (2, "invoke", "cas", "r0", [None, 2], 0.2), (2, "ok", "cas", "r0", [None, 2], 0.3))
    [a] = anomalies(tmp_path, ops, illegal(anomaly={"description": "cas from null succeeded twice", "ops": [1, 3]}))
    assert a.sentences == ["cas from null succeeded twice"]
    assert a.roles == {0: "cited by the checker", 2: "cited by the checker"}
    assert a.raw == {"description": "cas from null succeeded twice", "ops": [1, 3]}


def test_without_any_explanation_the_report_still_says_no_linearization_exists(tmp_path):
    ops = history((1, "invoke", "cas", "r0", [None, 1], 0.0), (1, "ok", "cas", "r0", [None, 1], 0.1))
    [a] = anomalies(tmp_path, ops, illegal())
    assert a.sentences[0].startswith("no linearization of the 1 operations on key r0 exists")


def test_the_first_illegal_key_comes_first(tmp_path):
    results = {"valid": False, "checkers": {"linearizable": {"valid": False, "first_illegal_key": "r1", "keys": {
        "r0": {"valid": False}, "r1": {"valid": False}, "r2": {"valid": True}}}}}
    assert [a.key for a in anomalies(tmp_path, STALE, results)] == ["r1", "r0"]


def test_a_lost_set_element_is_told_with_its_add_and_the_final_read(tmp_path):
    ops = history((1, "invoke", "add", "s0", 1, 0.0), (1, "ok", "add", "s0", 1, 0.1),
                  (2, "invoke", "add", "s0", 2, 0.2), (2, "ok", "add", "s0", 2, 0.3),
                  (3, "invoke", "read", "s0", None, 1.0, {"final": True}), (3, "ok", "read", "s0", [1], 1.1))
    results = {"valid": False, "checkers": {"set": {"valid": False, "lost": [2], "duplicated": [], "unexpected": []}}}
    [a] = anomalies(tmp_path, ops, results)
    assert a.sentences == ["element 2, added by process 2 (acknowledged at 0.300 s), is missing from the final "
                           "read at 1.000 s by process 3."]


def test_the_report_shows_the_words_the_excerpt_faults_and_porcupines_view(tmp_path):
    run = build_run(tmp_path, ops=3000, stale_read_key=True)
    with open(render_run(run), encoding="utf-8") as f:
        page = f.read()
    section = re.search(r'<section id="anomaly">.*?</section>', page, flags=re.S).group(0)
    assert re.search(r'<p class="words">Read of \d+ at [\d.]+ s by process \d+ returned a value overwritten at',
                     section)
    excerpt = re.search(r'<table class="excerpt".*?</table>', section, flags=re.S).group(0)
    assert excerpt.count('class="hl"') == 3
    assert 'class="fault-row"' in excerpt  # the partition active around the anomaly
    assert re.search(r'<iframe class="porcupine" id="porcupine-frame" src="porcupine/r\d+\.html"', section)


def test_a_long_legal_key_has_nothing_to_explain(tmp_path):
    from reports.anomaly import explain_register
    from reports.analysis import ClientOp
    # 30,000 writes, each overlapping the next, each read back before the next completes: legal
    ops = []
    for i in range(30_000):
        t = i * 1.0
        ops.append(ClientOp(3 * i, 1, "write", "r0", "ok", t, t + 1.5, i, i, None, None, None))
        ops.append(ClientOp(3 * i + 1, 2, "read", "r0", "ok", t + 1.2, t + 1.3, None, i, None, None, None))
        ops.append(ClientOp(3 * i + 2, 3, "read", "r0", "ok", t + 1.2, t + 1.3, None, i - 1 if i else None,
                            None, None, None))
    assert explain_register(ops) == ([], {}, None)
