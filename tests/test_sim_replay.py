"""The simulator is deterministic: a seed replays exactly, and the CLI prints how to replay it."""

import pytest

from raftnode.sim.__main__ import main
from raftnode.sim.runner import run_seed


def test_the_same_seed_replays_the_same_run_event_for_event():
    a = run_seed(7, seconds=10, trace=True)
    b = run_seed(7, seconds=10, trace=True)
    assert a.trace == b.trace and a.stats == b.stats
    assert a.trace, "a traced run records what happened"


def test_different_seeds_differ():
    assert run_seed(1, seconds=10).stats != run_seed(2, seconds=10).stats


def test_every_run_has_faults_and_client_traffic():
    result = run_seed(3, seconds=30)
    s = result.stats
    assert result.ok and s.crashes >= 1 and s.partitions >= 1 and s.writes_acked >= 100 and s.reads_ok > 0


def test_the_cli_prints_the_trace_the_summary_and_the_replay_command(capsys):
    assert main(["--seed", "4", "--seconds", "8"]) == 0
    out = capsys.readouterr().out
    assert "won election" in out and "seed 4: OK" in out
    assert "replay: python -m raftnode.sim --seed 4 --nodes 7 --seconds 8" in out


def test_the_cli_exits_nonzero_on_a_violation_and_names_the_bug_in_the_replay_command(capsys):
    assert main(["--seed", "0", "--seconds", "20", "--bug", "ack-before-commit", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: acknowledged write lost" in out
    assert "--seed 0 --nodes 3 --seconds 20 --bug ack-before-commit" in out


@pytest.mark.parametrize("argv, problem", [
    (["--seed", "1", "--nodes", "2"], "--nodes must be between 3 and 9"),
    (["--seed", "1", "--seconds", "1"], "--seconds must be at least 5"),
    (["--seed", "1", "--bug", "typo"], "invalid choice"),
    (["--nodes", "3"], "--seed"),
])
def test_the_cli_rejects_bad_arguments_naming_them(argv, problem, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and problem in capsys.readouterr().err
