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
