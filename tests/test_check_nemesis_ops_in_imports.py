"""Nemesis operations are not client operations: Jepsen's info pairs and lone infos (and ours)
are accepted in every format, and nothing pairs or checks them."""

import json

import pytest

from chaos.history import HistoryError
from checkers import check_history
from checkers.formats import parse_history

JEPSEN_EDN = """\
{:process :nemesis, :type :info, :f :start, :value nil, :time 10}
{:process 0, :type :invoke, :f :write, :value 1, :time 20}
{:process :nemesis, :type :info, :f :start, :value [:isolated {"n1" #{"n2" "n3"}}], :time 30}
{:process 0, :type :ok, :f :write, :value 1, :time 40}
{:process :nemesis, :type :info, :f :stop, :value nil, :time 50}
{:process 1, :type :invoke, :f :read, :value nil, :time 60}
{:process :nemesis, :type :info, :f :stop, :value :network-healed, :time 70}
{:process 1, :type :ok, :f :read, :value 1, :time 80}
{:process :nemesis, :type :info, :f :kill, :value #{}, :time 90}
"""


def client_ops(ops):
    return [(op.process, op.type, op.f, op.extra["line"]) for op in ops]


def test_jepsen_nemesis_info_pairs_and_a_lone_info_in_edn_are_accepted():
    ops, fmt = parse_history(JEPSEN_EDN)
    assert fmt == "edn"
    assert client_ops(ops) == [(0, "invoke", "write", 2), (0, "ok", "write", 4),
                               (1, "invoke", "read", 6), (1, "ok", "read", 8)]
    assert [op.time for op in ops] == [20, 40, 60, 80]  # the nemesis's :time does not matter either


def test_a_history_that_starts_with_a_lone_nemesis_completion_is_accepted():
    ops, _ = parse_history('[{:process :nemesis, :type :info, :f :stop, :value "healed"}\n'
                           ' {:process 0, :type :invoke, :f :read, :value nil}\n'
                           ' {:process 0, :type :ok, :f :read, :value nil}]\n')
    assert client_ops(ops) == [(0, "invoke", "read", 2), (0, "ok", "read", 3)]


def test_jepsen_log_nemesis_lines_are_accepted():
    ops, fmt = parse_history("INFO  jepsen.util - :nemesis\t:info\t:start\tnil\n"
                             "INFO  jepsen.util - 0\t:invoke\t:write\t1\n"
                             'INFO  jepsen.util - :nemesis\t:info\t:start\t[:isolated {"n1" #{"n2"}}]\n'
                             "INFO  jepsen.util - 0\t:ok\t:write\t1\n"
                             "INFO  jepsen.util - :nemesis\t:info\t:stop\tnil\n")
    assert fmt == "jepsen-log" and client_ops(ops) == [(0, "invoke", "write", 2), (0, "ok", "write", 4)]


def jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


LONE_NEMESIS_JSONL = jsonl([
    {"process": "nemesis", "type": "info", "f": "partition", "value": {"groups": [["n1"], ["n2", "n3"]]}, "time": 5},
    {"process": 0, "type": "invoke", "f": "write", "key": "r0", "value": 1, "time": 10},
    {"process": "nemesis", "type": "invoke", "f": "heal", "value": None, "time": 12},
    {"process": 0, "type": "ok", "f": "write", "key": "r0", "value": 1, "time": 20},
    {"process": "nemesis", "type": "info", "f": "heal", "value": None, "time": 25},
    {"process": "nemesis", "type": "info", "f": "kill", "value": ["n2"], "time": 30},
])


def test_a_lone_nemesis_info_in_our_own_format_is_accepted_and_not_checked():
    ops, fmt = parse_history(LONE_NEMESIS_JSONL)
    assert fmt == "jsonl" and len(ops) == 6
    result = check_history(ops, checker="python")
    assert result["valid"] is True
    assert result["checkers"]["stats"]["count"] == 1  # the one client write, no nemesis op
    assert result["checkers"]["availability"]["during_faults"]["ops"] == 1  # the write ran under the partition


def test_a_lone_client_completion_is_still_an_error_naming_its_line():
    text = LONE_NEMESIS_JSONL + jsonl([{"process": 3, "type": "info", "f": "read", "key": "r0", "value": None,
                                        "time": 40}])
    with pytest.raises(HistoryError) as e:
        parse_history(text)
    assert e.value.line == 7 and "without an open invocation" in str(e.value)
