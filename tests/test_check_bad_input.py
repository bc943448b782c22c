"""A malformed history is a clear error naming its line, never a crash or a pass (exit 255)."""

import json

import pytest

from chaos.history import HistoryError
from checkers.cli import main
from checkers.formats import parse_history

GOOD = [
    {"index": 0, "process": 0, "type": "invoke", "f": "write", "key": "r0", "value": 1, "time": 10},
    {"index": 1, "process": 0, "type": "ok", "f": "write", "key": "r0", "value": 1, "time": 20},
    {"index": 2, "process": 1, "type": "invoke", "f": "read", "key": "r0", "value": None, "time": 30},
    {"index": 3, "process": 1, "type": "ok", "f": "read", "key": "r0", "value": 1, "time": 40},
]


def jsonl(ops):
    return "".join(json.dumps(o) + "\n" for o in ops)


def error_of(text):
    with pytest.raises(HistoryError) as e:
        parse_history(text)
    return e.value


def test_truncated_last_line_names_its_line():
    text = jsonl(GOOD)[:-15]
    e = error_of(text)
    assert e.line == 4 and "truncated" in str(e)


def test_garbage_line_names_its_line():
    e = error_of(jsonl(GOOD[:2]) + "this is not json\n" + jsonl(GOOD[2:]))
    assert e.line == 3 and "not valid JSON" in str(e)


def test_operation_completing_twice_names_the_second_completion():
    e = error_of(jsonl(GOOD[:2] + [GOOD[1]] + GOOD[2:]))
    assert e.line == 3 and "without an open invocation" in str(e)


def test_completion_without_invocation_names_its_line():
    e = error_of(jsonl([GOOD[3]]))
    assert e.line == 1


def test_unknown_type_names_its_line():
    bad = dict(GOOD[1], type="done")
    e = error_of(jsonl([GOOD[0], bad]))
    assert e.line == 2 and "unknown type" in str(e)


def test_second_invocation_before_completion_names_its_line():
    e = error_of(jsonl([GOOD[0], dict(GOOD[0], index=1)]))
    assert e.line == 2 and "has not completed" in str(e)


def test_truncated_edn_vector_is_an_error_with_a_line():
    e = error_of('[{:process 0, :type :invoke, :f :write, :value 3}\n {:process 0, :type :ok, :f :write')
    assert e.line == 2 and "truncated" in str(e)


def test_edn_completion_without_invocation_names_its_line():
    e = error_of('{:process 0, :type :invoke, :f :read, :value nil}\n'
                 '{:process 0, :type :ok, :f :read, :value nil}\n'
                 '{:process 0, :type :ok, :f :read, :value nil}\n')
    assert e.line == 3


def test_malformed_jepsen_log_value_names_its_line():
    e = error_of("INFO  jepsen.util - 0\t:invoke\t:cas\t[1 2\n")
    assert e.line == 1


def test_cas_without_a_pair_of_values_is_rejected_by_the_checker(tmp_path):
    bad = [dict(GOOD[0], f="cas", value=5), dict(GOOD[1], f="cas", value=5)]
    path = tmp_path / "h.jsonl"
    path.write_text(jsonl(bad))
    assert main(["check", str(path)]) == 255


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-15],
    lambda t: t.replace('"type": "ok"', '"type": "okay"', 1),
    lambda t: t + json.dumps(GOOD[3]) + "\n",
])
def test_cli_exits_255_with_the_line_on_malformed_history(tmp_path, capsys, mangle):
    path = tmp_path / "history.jsonl"
    path.write_text(mangle(jsonl(GOOD)))
    assert main(["check", str(path)]) == 255
    err = capsys.readouterr().err
    assert "malformed history" in err and "history.jsonl:" in err


def test_cli_missing_file_exits_255(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.jsonl")]) == 255
    assert "cannot read" in capsys.readouterr().err
