"""`splitbrain check`: formats in, verdict and exit code out, results.json in a run folder."""

import json
import os

from chaos.history import Op, write_jsonl
from checkers.cli import main
from checkers.formats import parse_history

STALE = [(2, "invoke", "write", 3, 1_000_000_000), (2, "ok", "write", 3, 1_500_000_000),
         (2, "invoke", "write", 5, 11_900_000_000), (2, "ok", "write", 5, 12_020_000_000),
         (7, "invoke", "read", None, 12_410_000_000), (7, "ok", "read", 3, 12_430_000_000)]


def write_run(tmp_path, specs):
    run = tmp_path / "run"
    run.mkdir()
    ops = [Op(process=p, type=t, f=f, key="r0", value=v, time=tm, index=i) for i, (p, t, f, v, tm) in enumerate(specs)]
    write_jsonl(ops, run / "history.jsonl")
    (run / "config.json").write_text(json.dumps({"workload": "register"}))
    return run


def test_run_dir_check_writes_results_json_and_exits_1_when_invalid(tmp_path, capsys):
    run = write_run(tmp_path, STALE)
    assert main(["check", str(run), "--checker", "python"]) == 1
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is False
    assert "read of 3 by process 7" in results["reason"]
    assert results["checkers"]["linearizable"]["first_illegal_key"] == "r0"
    assert "INVALID" in capsys.readouterr().out


def test_valid_history_exits_0_and_json_flag_prints_the_result(tmp_path, capsys):
    run = write_run(tmp_path, STALE[:4])
    assert main(["check", str(run / "history.jsonl"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["valid"] is True and printed["format"] == "jsonl"
    assert not os.path.exists(run / "results.json")  # only a RUN_DIR check writes it


def test_undecided_within_budget_exits_2(tmp_path):
    from checkers.generate import register_history
    ops = register_history(5, n_ops=200, processes=10, unique_values=False, value_domain=2, p_info=0.3)
    path = tmp_path / "h.jsonl"
    write_jsonl(ops, path)
    assert main(["check", str(path), "--checker", "python", "--time-budget", "0.000001"]) == 2


def test_edn_one_map_per_line_with_keys_and_cas(tmp_path, capsys):
    path = tmp_path / "h.edn"
    path.write_text('{:process 0, :type :invoke, :f :write, :key "a", :value 3}\n'
                    '{:process 0, :type :ok, :f :write, :key "a", :value 3}\n'
                    '{:process 1, :type :invoke, :f :cas, :key "a", :value [3 4]}\n'
                    '{:process 1, :type :ok, :f :cas, :key "a", :value [3 4]}\n'
                    '{:process 0, :type :invoke, :f :read, :key "a", :value nil}\n'
                    '{:process 0, :type :ok, :f :read, :key "a", :value 4}\n')
    assert main(["check", str(path), "--model", "register", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "edn"


def test_edn_vector_history_with_an_illegal_read(tmp_path):
    path = tmp_path / "h.edn"
    path.write_text('[{:process 0, :type :invoke, :f :write, :value 3}\n'
                    ' {:process 0, :type :ok, :f :write, :value 3}\n'
                    ' {:process 1, :type :invoke, :f :read, :value nil}\n'
                    ' {:process 1, :type :ok, :f :read, :value 4}]\n')
    assert main(["check", str(path)]) == 1


def test_jepsen_log_lines_with_tabs_or_spaces_are_read_and_other_lines_skipped():
    text = ("2015-01-01 INFO  jepsen.core - Running test\n"
            "INFO  jepsen.util - 0\t:invoke\t:write\t4\n"
            "INFO  jepsen.util - :nemesis\t:info\t:start\tnil\n"
            "INFO  jepsen.util - 0   :ok     :write  4\n"
            "INFO  jepsen.util - 1\t:invoke\t:cas\t[4 5]\n"
            "INFO  jepsen.util - 1\t:fail\t:cas\t[4 5]\n")
    ops, fmt = parse_history(text)
    assert fmt == "jepsen-log"
    assert [(o.process, o.type, o.f, o.value, o.extra["line"]) for o in ops] == [
        (0, "invoke", "write", 4, 2), (0, "ok", "write", 4, 4), (1, "invoke", "cas", [4, 5], 5),
        (1, "fail", "cas", [4, 5], 6)]


def test_kv_model_on_a_knossos_kv_history(tmp_path, capsys):
    path = tmp_path / "kv.txt"
    path.write_text('{:process 0, :type :invoke, :f :put, :key "1", :value "x 0 0 y"}\n'
                    '{:process 0, :type :ok, :f :put, :key "1", :value "x 0 0 y"}\n'
                    '{:process 1, :type :invoke, :f :append, :key "1", :value "x 1 0 y"}\n'
                    '{:process 1, :type :ok, :f :append, :key "1", :value "x 1 0 y"}\n'
                    '{:process 0, :type :invoke, :f :get, :key "1", :value nil}\n'
                    '{:process 0, :type :ok, :f :get, :key "1", :value "x 1 0 y"}\n')
    assert main(["check", str(path), "--model", "kv", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["checkers"]["linearizable"]["keys"]["1"]["valid"] is False
