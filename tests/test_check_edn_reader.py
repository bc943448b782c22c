"""The EDN reader reads what Jepsen and Knossos histories contain, and says where it is broken."""

import pytest

from checkers import edn
from checkers.formats import parse_history, plain


def test_maps_keywords_vectors_nil_and_numbers():
    v = edn.loads('{:process 3, :type :ok, :f :cas, :value [1 -2 3.5], :ok? true, :err nil}')
    assert plain(v) == {"process": 3, "type": "ok", "f": "cas", "value": [1, -2, 3.5], "ok?": True, "err": None}
    assert isinstance(v[edn.Keyword("type")], edn.Keyword)


def test_strings_with_escapes_sets_lists_comments_discard_and_tags():
    v = edn.loads('; a comment\n{:s "a \\"q\\" \\n \\u00e9", :set #{3 1 2}, :l (1 2), #_ :ignored :t '
                  '#inst "2015-01-01T00:00:00Z"}')
    assert plain(v) == {"s": 'a "q" \n é', "set": [1, 2, 3], "l": [1, 2], "t": "2015-01-01T00:00:00Z"}


def test_big_integer_suffix_is_read_as_a_number():
    assert edn.loads("12345678901234567890N") == 12345678901234567890


@pytest.mark.parametrize("text,where", [
    ('{:a 1', "missing"),
    ('{:a 1 :b}', "odd number"),
    ('"open', "unterminated"),
    (']', "unexpected"),
    ('\\c', "character"),
])
def test_malformed_edn_is_an_error(text, where):
    with pytest.raises(edn.EdnError, match=where):
        edn.loads(text)


def test_history_with_times_uses_them_and_without_uses_order():
    timed, _ = parse_history('{:process 0, :type :invoke, :f :read, :value nil, :time 100}\n'
                             '{:process 0, :type :ok, :f :read, :value nil, :time 250}\n')
    assert [op.time for op in timed] == [100, 250]
    ordered, _ = parse_history('{:process 0, :type :invoke, :f :read, :value nil}\n'
                               '{:process 0, :type :ok, :f :read, :value nil}\n')
    assert [op.time for op in ordered] == [0, 1]


def test_nemesis_ops_of_a_jepsen_history_are_dropped():
    ops, _ = parse_history('{:process :nemesis, :type :info, :f :start, :value nil}\n'
                           '{:process 0, :type :invoke, :f :read, :value nil}\n'
                           '{:process :nemesis, :type :info, :f :start, :value "cut"}\n'
                           '{:process 0, :type :ok, :f :read, :value nil}\n')
    assert [(op.process, op.type, op.extra["line"]) for op in ops] == [(0, "invoke", 2), (0, "ok", 4)]


def test_a_non_map_form_names_its_line():
    from chaos.history import HistoryError
    with pytest.raises(HistoryError) as e:
        parse_history('{:process 0, :type :invoke, :f :read, :value nil}\n:oops\n')
    assert e.value.line == 2


KNOSSOS_STYLE = """\
; A register history in the style of Knossos's test data: comments first,
; then one list of operations, with comments between them.
[{:type :invoke, :f :write, :value 0, :process 0}
 {:type :ok, :f :write, :value 0, :process 0}
 ; the read and the write overlap
 {:type :invoke, :f :read, :value nil, :process 1}
 {:type :invoke, :f :write, :value 4, :process 2}
 {:type :ok, :f :read, :value 4, :process 1}
 {:type :ok, :f :write, :value 4, :process 2}]
"""


def test_a_knossos_history_with_leading_comments_is_read_as_edn():
    ops, fmt = parse_history(KNOSSOS_STYLE)
    assert fmt == "edn"
    assert [(op.process, op.type, op.f, op.value, op.extra["line"]) for op in ops] == [
        (0, "invoke", "write", 0, 3), (0, "ok", "write", 0, 4), (1, "invoke", "read", None, 6),
        (2, "invoke", "write", 4, 7), (1, "ok", "read", 4, 8), (2, "ok", "write", 4, 9)]


def test_one_map_per_line_after_a_comment_is_edn_and_json_lines_stay_json():
    ops, fmt = parse_history("; exported by hand\n\n{:process 0, :type :invoke, :f :read, :value nil}\n"
                             "{:process 0, :type :ok, :f :read, :value nil}\n")
    assert fmt == "edn" and [op.extra["line"] for op in ops] == [3, 4]
    _, fmt = parse_history('\n{"process": 0, "type": "invoke", "f": "read", "value": null, "time": 1}\n'
                           '{"process": 0, "type": "ok", "f": "read", "value": null, "time": 2}\n')
    assert fmt == "jsonl"


def test_a_comment_only_history_is_empty_edn():
    assert parse_history("; nothing recorded\n") == ([], "edn")


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(edn.EdnError, match="nested deeper"):
        edn.loads("[" * 100_000)


def test_an_unclosed_vector_names_where_it_opened_and_is_reported_at_the_end():
    from chaos.history import HistoryError
    with pytest.raises(HistoryError) as e:
        parse_history('[{:process 0, :type :invoke, :f :read, :value nil}\n'
                      ' {:process 0, :type :ok, :f :read, :value nil}\n')
    assert e.value.line == 3 and "missing ']' for '[' at character 1" in str(e.value)


def test_a_wrong_closing_bracket_names_its_line_and_the_opener():
    from chaos.history import HistoryError
    with pytest.raises(HistoryError) as e:
        parse_history('{:process 0, :type :invoke, :f :cas, :value [1 2}\n')
    assert e.value.line == 1 and "unexpected '}'" in str(e.value) and "'['" in str(e.value)


def test_symbolic_values_and_numbers_that_are_not_numbers():
    assert edn.loads("[##Inf ##-Inf]") == [float("inf"), float("-inf")]
    assert edn.loads("nan") == "nan"  # a symbol, not a float
    with pytest.raises(edn.EdnError, match="malformed number"):
        edn.loads("12abc")


def edn_history(n_ops):
    return "".join(f'{{:process {i % 7}, :type :invoke, :f :append, :key "{i % 10}", :value "x {i} y"}}\n'
                   f'{{:process {i % 7}, :type :ok, :f :append, :key "{i % 10}", :value "x {i} y"}}\n'
                   for i in range(n_ops))


@pytest.mark.timeout(120)
def test_reading_time_grows_linearly_with_the_history():
    import gc
    import time

    def seconds(text):
        best = float("inf")
        for _ in range(2):
            gc.collect()
            gc.disable()  # the collector's own cost grows with the live objects: not the reader's
            try:
                t = time.perf_counter()
                parse_history(text)
                best = min(best, time.perf_counter() - t)
            finally:
                gc.enable()
        return best

    small, large = edn_history(1_000), edn_history(8_000)
    ratio = seconds(large) / seconds(small)
    # 8 times the input: about 8 times the time when linear, 64 when quadratic (as it was: a line
    # number counted from the start for every operation, a string's escapes searched to the end)
    assert ratio < 20, ratio
