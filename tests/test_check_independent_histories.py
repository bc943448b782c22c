"""Jepsen `independent` histories (each value [key value]) are split into one register per key,
by an explicit rule: a plain register history is never split, whatever its values look like."""

import copy
import glob
import json
import os
import random

import pytest

from chaos.history import HistoryError
from checkers import check_history
from checkers.cli import main
from checkers.formats import load_history, parse_history
from checkers.generate import inject_stale_read, register_history
from checkers.independent import split_independent

TWO_REGISTERS = """\
; an independent history: a register per key, the key first in each value
{:process 0, :type :invoke, :f :write, :value [1 3]}
{:process 0, :type :ok, :f :write, :value [1 3]}
{:process 1, :type :invoke, :f :read, :value [2 nil]}
{:process 1, :type :ok, :f :read, :value [2 nil]}
{:process 2, :type :invoke, :f :cas, :value [1 [3 4]]}
{:process 2, :type :ok, :f :cas, :value [1 [3 4]]}
{:process 1, :type :invoke, :f :read, :value [1 nil]}
{:process 1, :type :ok, :f :read, :value [1 4]}
{:process 0, :type :invoke, :f :write, :value [2 7]}
{:process 0, :type :info, :f :write, :value [2 7]}
"""

PORCUPINE = os.environ.get("SPLITBRAIN_PORCUPINE_DATA", os.path.join(os.path.dirname(__file__), "..", "..",
                                                                     "shared", "data", "porcupine"))
if not os.path.isdir(PORCUPINE):
    PORCUPINE = "/work/shared/data/porcupine"


def as_independent(ops):
    """Jepsen's shape of a keyed register history: the key moves into every value."""
    out = []
    for op in copy.deepcopy(ops):
        if not op.is_nemesis:
            op.value, op.key = [op.key, op.value], None
        out.append(op)
    return out


def test_an_independent_history_is_split_by_key_and_comes_out_valid(tmp_path, capsys):
    path = tmp_path / "independent.edn"
    path.write_text(TWO_REGISTERS)
    assert main(["check", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    lin = result["checkers"]["linearizable"]
    assert result["valid"] is True and sorted(lin["keys"]) == ["1", "2"]
    assert lin["independent"] == {"independent": True, "decided_by": "auto", "keys": 2}
    assert lin["keys"]["1"]["ops"] == 3
    # the same history read as one register is the false alarm this rule removes
    assert main(["check", str(path), "--no-independent"]) == 1
    assert "Key default is not linearizable" in capsys.readouterr().out


def test_each_key_of_a_split_history_gets_the_verdict_of_its_keyed_form():
    keyed = register_history(3, n_ops=400, processes=6, keys=4, p_info=0.1)
    broken = inject_stale_read(keyed, random.Random(3))
    assert broken is not None
    for history in (keyed, broken):
        want = check_history(history, checker="python", all_keys=True)["checkers"]["linearizable"]
        got = check_history(as_independent(history), checker="python", all_keys=True)["checkers"]["linearizable"]
        assert got["independent"]["independent"] is True
        assert {k: r["valid"] for k, r in got["keys"].items()} == {k: r["valid"] for k, r in want["keys"].items()}
        assert got["valid"] is want["valid"] and got["first_illegal_key"] == want["first_illegal_key"]
    assert want["valid"] is False


PLAIN_PAIRS = """\
{:process 0, :type :invoke, :f :write, :value [1 2]}
{:process 0, :type :ok, :f :write, :value [1 2]}
{:process 1, :type :invoke, :f :cas, :value [[1 2] [3 4]]}
{:process 1, :type :ok, :f :cas, :value [[1 2] [3 4]]}
{:process 2, :type :invoke, :f :read, :value nil}
{:process 2, :type :ok, :f :read, :value [3 4]}
"""

PLAIN_CAS = """\
[{:process 0, :type :invoke, :f :write, :value 1}
 {:process 0, :type :ok, :f :write, :value 1}
 {:process 1, :type :invoke, :f :cas, :value [1 2]}
 {:process 1, :type :ok, :f :cas, :value [1 2]}
 {:process 2, :type :invoke, :f :cas, :value [2 3]}
 {:process 2, :type :fail, :f :cas, :value [2 3]}]
"""


def plain_histories():
    yield "cas register", parse_history(PLAIN_CAS)[0]
    # every value a pair, and still a plain register: its reads are invoked with nil
    yield "pair values", parse_history(PLAIN_PAIRS)[0]
    for seed in range(5):
        ops = register_history(seed, n_ops=200, processes=5, keys=1, unique_values=False, value_domain=3)
        for op in ops:
            op.key = None
        yield f"generated {seed}", ops
    for path in sorted(glob.glob(os.path.join(PORCUPINE, "jepsen", "etcd_*.log"))):
        yield os.path.basename(path), load_history(path)[0]


@pytest.mark.parametrize("name,ops", list(plain_histories()), ids=lambda x: x if isinstance(x, str) else "")
def test_a_plain_register_history_is_never_split_into_keys(name, ops):
    kept, note = split_independent(ops)
    assert note["independent"] is False and kept is ops, note
    if ops:
        keys = check_history(ops, checker="python", time_budget_s=30)["checkers"]["linearizable"]["keys"]
        assert list(keys) == ["default"]


def test_the_etcd_histories_are_all_there_to_be_tested():
    if not os.path.isdir(os.path.join(PORCUPINE, "jepsen")):
        pytest.skip("shared porcupine data not present")
    assert len(glob.glob(os.path.join(PORCUPINE, "jepsen", "etcd_*.log"))) == 103


def test_a_completion_on_another_key_is_not_independent_and_forcing_it_names_the_line(tmp_path, capsys):
    text = TWO_REGISTERS.replace("{:process 1, :type :ok, :f :read, :value [1 4]}",
                                 "{:process 1, :type :ok, :f :read, :value [2 4]}")
    ops, _ = parse_history(text)
    _, note = split_independent(ops)
    assert note["independent"] is False and "completes with key 2" in note["why_not"]
    with pytest.raises(HistoryError) as e:
        split_independent(ops, True)
    assert e.value.line == 9 and "--independent" in str(e.value)
    path = tmp_path / "h.edn"
    path.write_text(text)
    assert main(["check", str(path), "--independent"]) == 255
    assert f"{path}:9: --independent: completes with key 2" in capsys.readouterr().err


def test_forcing_independent_on_a_plain_history_is_an_error_naming_the_line(tmp_path, capsys):
    path = tmp_path / "plain.edn"
    path.write_text(PLAIN_CAS)
    assert main(["check", str(path), "--independent"]) == 255
    assert f"{path}:1: --independent: value must be [key value], got 1" in capsys.readouterr().err


def test_independent_is_refused_for_a_set_history(tmp_path, capsys):
    path = tmp_path / "set.edn"
    path.write_text('{:process 0, :type :invoke, :f :add, :value [1 3]}\n'
                    '{:process 0, :type :ok, :f :add, :value [1 3]}\n')
    assert main(["check", str(path), "--independent"]) == 255
    assert "not a set history" in capsys.readouterr().err


def test_a_split_history_keeps_the_original_operations_unchanged():
    ops, _ = parse_history(TWO_REGISTERS)
    before = [op.to_dict() for op in ops]
    split, note = split_independent(ops)
    assert note["independent"] is True
    assert [op.to_dict() for op in ops] == before
    assert [(op.key, op.value) for op in split[:4]] == [(1, 3), (1, 3), (2, None), (2, None)]
    assert (split[4].key, split[4].value) == (1, [3, 4])
