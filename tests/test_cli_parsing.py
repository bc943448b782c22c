"""`splitbrain` command-line parsing: flags, --nemesis lists, scenario overrides, reproduce and
nightly configs, and exit code 255 (never argparse's 2, which means "unknown") on bad input."""

import os
import subprocess
import sys

import pytest

from chaos import cli
from chaos.config import FAULTS, RunConfig
from chaos.store import create_run_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_for(*argv):
    args = cli.build_parser().parse_args(["run", *argv])
    return cli.config_from_args(args)


def test_run_defaults():
    cfg = config_for()
    assert ((cfg.nodes, cfg.workload, cfg.concurrency, cfg.time_limit, cfg.provisioner)
            == (5, "register", 10, 60, "docker"))
    assert cfg.nemesis == list(FAULTS)
    assert cfg.seed > 0  # a random seed, recorded


def test_run_flags():
    cfg = config_for("--nodes", "3", "--workload", "set", "--nemesis", "partition,kill", "--time-limit", "30",
                     "--concurrency", "4", "--rate", "100", "--seed", "42", "--provisioner", "local",
                     "--bug", "stale-read", "--store", "/tmp/x", "--no-pre-vote")
    assert (cfg.nodes, cfg.workload, cfg.nemesis, cfg.time_limit, cfg.concurrency, cfg.rate, cfg.seed,
            cfg.provisioner, cfg.bug, cfg.store, cfg.db) == \
        (3, "set", ["partition", "kill"], 30, 4, 100, 42, "local", "stale-read", "/tmp/x", "raftnode")
    # the bundled node's own flags are node options of its DB
    assert cfg.node_options == {"pre-vote": "false"}
    assert cfg.test_name == "set"


def test_node_options_reach_the_config_and_the_legacy_flags_are_node_options_too():
    cfg = config_for("--node-option", "snapshot-every=50", "--node-option", "tick=5",
                     "--election-timeout", "300-600")
    assert cfg.node_options == {"snapshot-every": "50", "tick": "5", "election-timeout": "300-600"}


@pytest.mark.parametrize("text,faults", [("all", list(FAULTS)), ("none", []), ("clock", ["clock"]),
                                         ("kill, pause", ["kill", "pause"]), ("kill,kill", ["kill"])])
def test_nemesis_lists(text, faults):
    assert config_for("--nemesis", text).nemesis == faults


def run_cli(*argv):
    return subprocess.run([sys.executable, "-m", "chaos.cli", *argv], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


@pytest.mark.parametrize("argv,message", [
    (["run", "--nemesis", "partition,meteor"], "unknown nemesis 'meteor'"),
    (["run", "--nodes", "0"], "nodes must be an integer from 1 to 64"),
    (["run", "--workload", "queue"], "unknown workload 'queue' (valid: register, set)"),
    (["run", "--db", "mongo"], "unknown db 'mongo' (valid: "),
    (["run", "--node-option", "snapshot-every"], "expected NAME=VALUE"),
    (["run", "--time-limit", "-1"], "must be positive"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_bad_command_lines_exit_255_with_the_problem(argv, message):
    proc = run_cli(*argv)
    assert proc.returncode == 255
    assert message in proc.stderr


def test_a_bad_scenario_exits_255_naming_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnemesis: [partition, meteor]\n")
    proc = run_cli("run", "--scenario", str(bad))
    assert proc.returncode == 255
    assert f"{bad}:2: unknown nemesis 'meteor'" in proc.stderr


def test_scenario_values_are_kept_unless_a_flag_overrides_them():
    path = os.path.join(ROOT, "scenarios", "leader-kill-loop.yaml")
    cfg = config_for("--scenario", path, "--time-limit", "20", "--seed", "3", "--provisioner", "local")
    assert (cfg.test_name, cfg.time_limit, cfg.seed, cfg.provisioner, cfg.nodes) == \
        ("leader-kill-loop", 20, 3, "local", 5)
    assert all(step["at"] < 20 for step in cfg.schedule)
    assert "--scenario" in cfg.command_line()


def test_nemesis_flag_with_a_scenario_is_refused():
    with pytest.raises(Exception, match="do not mix"):
        config_for("--scenario", os.path.join(ROOT, "scenarios", "pause-storm.yaml"), "--nemesis", "kill")


def test_command_line_round_trips():
    cfg = config_for("--nodes", "7", "--nemesis", "pause", "--seed", "9", "--rate", "50", "--time-limit", "12",
                     "--keys", "3", "--no-check-quorum", "--election-timeout", "300-600",
                     "--provisioner-option", "base_address=127.0.3.11", "--provisioner-option", "leader_timeout=60")
    assert cfg.provisioner_options == {"base_address": "127.0.3.11", "leader_timeout": 60}
    args = cli.build_parser().parse_args(__import__("shlex").split(cfg.command_line())[1:])
    again = cli.config_from_args(args)
    assert again.to_dict() == cfg.to_dict()


def test_reproduce_uses_the_config_seed_and_the_executed_schedule_with_node_names(tmp_path):
    run = create_run_dir(str(tmp_path / "store"), "orig", now=0)
    cfg = RunConfig(test_name="orig", nodes=5, seed=77, time_limit=30, store=str(tmp_path / "store"))
    doc = cfg.to_dict()
    doc["schedule"] = [{"at": 2.0, "f": "kill", "value": {"target": "leader"}, "result": {"nodes": ["n4"]}}]
    doc["replay_schedule"] = [{"at": 2.0, "f": "kill", "value": {"target": ["n4"]}},
                              {"at": 6.0, "f": "start", "value": {"target": "killed"}}]
    doc["command"] = "x"
    run.write_json("config.json", doc)
    again = cli.reproduce_config(run.path, provisioner="local")
    assert (again.seed, again.nodes, again.time_limit, again.provisioner) == (77, 5, 30, "local")
    assert again.schedule[0] == {"at": 2.0, "f": "kill", "value": {"target": ["n4"]}}
    assert again.faults_in_use == ["kill"]
    assert again.command_line().startswith("splitbrain reproduce " + run.path)


def test_nightly_dry_run_validates_and_lists_the_matrix():
    proc = run_cli("nightly", os.path.join(ROOT, "scenarios", "nightly-matrix.yaml"), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "14 run(s)" in proc.stdout and "leader-isolation.yaml seed 2" in proc.stdout


def test_nightly_matrix_errors_name_the_line(tmp_path):
    from chaos.nightly import load_matrix
    from chaos.scenario import ScenarioError

    m = tmp_path / "m.yaml"
    m.write_text("runs:\n  - scenario: nope.yaml\n")
    with pytest.raises(ScenarioError, match=r"m.yaml:2: no such scenario file"):
        load_matrix(str(m))
    m.write_text("runs:\n  - name: a\n    nemesis: kill\n    nodez: 3\n")
    with pytest.raises(ScenarioError, match=r"m.yaml:4: unknown key 'nodez'"):
        load_matrix(str(m))
    m.write_text("runs:\n  - name: a\n    nemesis: [kill, fire]\n")
    with pytest.raises(ScenarioError, match=r"m.yaml:3: unknown nemesis 'fire'"):
        load_matrix(str(m))
    m.write_text("time_budget: 10\nruns:\n  - {name: a, nemesis: kill, seeds: [1, 2]}\n")
    planned, budget, store = load_matrix(str(m), store="s", provisioner="local")
    assert [p.config.seed for p in planned] == [1, 2] and budget == 10
    assert all(p.config.provisioner == "local" and p.config.store == "s" for p in planned)


def test_every_subcommand_exists_even_before_its_package_is_installed():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) >= {"run", "check", "report", "reproduce", "nightly", "serve", "image",
                                "cluster", "clean"}


def test_scenario_command_line_keeps_the_overrides():
    path = os.path.join(ROOT, "scenarios", "everything-mixed.yaml")
    cfg = config_for("--scenario", path, "--nodes", "3", "--time-limit", "20", "--seed", "4",
                     "--provisioner", "local", "--provisioner-option", "base_address=127.0.10.11")
    line = cfg.command_line()
    assert "--nodes 3" in line and "--time-limit 20" in line and "base_address=127.0.10.11" in line
    args = cli.build_parser().parse_args(__import__("shlex").split(line)[1:])
    assert cli.config_from_args(args).to_dict() == cfg.to_dict()
