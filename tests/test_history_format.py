"""The history file: one JSON operation per line, streamed, validated with line numbers."""

import json

import pytest

from chaos.history import (FAIL, INFO, INVOKE, NEMESIS, OK, HistoryError, HistoryWriter, Op, pair_ops,
                           read_jsonl, write_jsonl)


def test_writer_streams_each_operation_to_disk_before_close(tmp_path):
    path = tmp_path / "history.jsonl"
    writer = HistoryWriter(path)
    writer.append(Op(process=0, type=INVOKE, f="write", key="r0", value=1, time=10, node="n1"))
    # Flushed per operation: a crash of the controller here still leaves the line.
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {"index": 0, "process": 0, "type": "invoke", "f": "write", "key": "r0",
                                    "value": 1, "time": 10, "node": "n1"}
    writer.append(Op(process=0, type=OK, f="write", key="r0", value=1, time=20, node="n1"))
    writer.close()
    ops = read_jsonl(path)
    assert [(op.index, op.type) for op in ops] == [(0, "invoke"), (1, "ok")]


def test_round_trip_keeps_every_field_including_unknown_ones(tmp_path):
    ops = [Op(process=NEMESIS, type=INFO, f="partition", value={"topology": "halves"}, time=5, index=0,
              extra={"final": True}),
           Op(process=3, type=FAIL, f="cas", key="r1", value=[1, 2], time=6, index=1, error="cas mismatch")]
    path = tmp_path / "h.jsonl"
    write_jsonl(ops, path)
    back = read_jsonl(path)
    assert [op.to_dict() for op in back] == [
        {**ops[0].to_dict(), "line": 1}, {**ops[1].to_dict(), "line": 2}]
    assert back[0].is_nemesis and not back[1].is_nemesis


def test_truncated_last_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"process":0,"type":"invoke","f":"read","time":1}\n{"process":0,"type":"ok","f":"re')
    with pytest.raises(HistoryError) as err:
        read_jsonl(path)
    assert err.value.line == 2
    assert "truncated" in str(err.value) and f"{path}:2" in str(err.value)


@pytest.mark.parametrize("line, problem", [
    ('["not", "an", "object"]', "expected a JSON object"),
    ('{"type": "invoke", "f": "read"}', "no 'process' field"),
    ('{"process": 1, "type": "started", "f": "read"}', "unknown type 'started'"),
    ('{"process": 1, "type": "ok", "f": "read", "time": "noon"}', "time must be an integer"),
])
def test_malformed_operations_are_rejected_with_the_problem(tmp_path, line, problem):
    path = tmp_path / "h.jsonl"
    path.write_text('{"process":0,"type":"invoke","f":"read","time":1}\n' + line + "\n")
    with pytest.raises(HistoryError, match=problem) as err:
        read_jsonl(path)
    assert err.value.line == 2


def _ops(*rows):
    return [Op(process=p, type=t, f=f, index=i) for i, (p, t, f) in enumerate(rows)]


def test_pairs_match_invocations_and_completions_per_process():
    pairs = pair_ops(_ops((0, INVOKE, "read"), (1, INVOKE, "write"), (1, INFO, "write"), (0, OK, "read")))
    assert [(p.invoke.index, p.complete.index, p.type) for p in pairs] == [(0, 3, OK), (1, 2, INFO)]


def test_an_invocation_that_never_completes_counts_as_info():
    pairs = pair_ops(_ops((0, INVOKE, "write")))
    assert pairs[0].complete is None and pairs[0].type == INFO


def test_an_operation_that_completes_twice_is_an_error():
    with pytest.raises(HistoryError, match="without an open invocation") as err:
        pair_ops(_ops((0, INVOKE, "read"), (0, OK, "read"), (0, OK, "read")))
    assert err.value.line == 3


def test_a_completion_without_an_invocation_is_an_error():
    with pytest.raises(HistoryError, match="without an open invocation"):
        pair_ops(_ops((4, FAIL, "cas")))


def test_a_process_cannot_invoke_twice_without_completing():
    with pytest.raises(HistoryError, match="has not completed"):
        pair_ops(_ops((0, INVOKE, "read"), (0, INVOKE, "write")))


def test_a_completion_must_match_its_invocation_f():
    with pytest.raises(HistoryError, match="does not match"):
        pair_ops(_ops((0, INVOKE, "read"), (0, OK, "write")))
