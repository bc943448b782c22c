"""`splitbrain nightly`: every run of the matrix, bounded by the time budget, the worst exit
code, and the index rendered at the end."""

import io
import os

from chaos.nightly import run_matrix
from fake_node import FakeDB, fake_nemesis_factory


def matrix(tmp_path, text):
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    return str(path)


def runner_kw(verdicts):
    calls = iter(verdicts)
    return dict(db_factory=lambda cfg, run_id: FakeDB(), nemesis_factory=fake_nemesis_factory,
                checker=lambda ops, **kw: {"valid": next(calls), "reason": "test", "checkers": {}},
                render=lambda path: None, out=io.StringIO(), progress_stream=io.StringIO(),
                progress_tty=False, install_signal_handlers=False)


def test_runs_every_entry_and_seed_and_returns_the_worst_verdict(tmp_path):
    store = str(tmp_path / "store")
    path = matrix(tmp_path, f"store: {store}\ndefaults: {{nodes: 3, time_limit: 0.5, provisioner: local,"
                  " recovery_timeout: 3}\nruns:\n  - {name: a, nemesis: kill, seeds: [1, 2]}\n"
                  "  - {name: b, nemesis: none, workload: set}\n")
    out = io.StringIO()
    code = run_matrix(path, runner_kw=runner_kw([True, "unknown", True]), out=out)
    assert code == 2
    text = out.getvalue()
    assert "3 run(s)" in text and "unknown" in text and "a seed 2" in text
    assert sorted(os.listdir(store)) == ["a", "b", "index.html", "latest"] or \
        sorted(d for d in os.listdir(store) if not d.endswith(".html")) == ["a", "b", "latest"]
    assert len(os.listdir(os.path.join(store, "a"))) == 2


def test_an_invalid_run_makes_the_nightly_invalid(tmp_path):
    path = matrix(tmp_path, f"store: {tmp_path / 's'}\ndefaults: {{nodes: 3, time_limit: 0.3, provisioner: local}}\n"
                  "runs:\n  - {name: a, nemesis: none, seeds: [1, 2]}\n")
    assert run_matrix(path, runner_kw=runner_kw([False, True]), out=io.StringIO()) == 1


def test_the_time_budget_stops_starting_runs(tmp_path):
    path = matrix(tmp_path, f"store: {tmp_path / 's'}\ntime_budget: 0.1\n"
                  "defaults: {nodes: 3, time_limit: 0.5, provisioner: local}\n"
                  "runs:\n  - {name: a, nemesis: none, seeds: [1, 2, 3]}\n")
    out = io.StringIO()
    assert run_matrix(path, runner_kw=runner_kw([True, True, True]), out=out) == 0
    assert out.getvalue().count("skipping") == 2


def test_the_index_is_rendered_after_the_runs(tmp_path):
    store = tmp_path / "s"
    path = matrix(tmp_path, f"store: {store}\ndefaults: {{nodes: 3, time_limit: 0.3, provisioner: local}}\n"
                  "runs:\n  - {name: a, nemesis: none}\n")
    out = io.StringIO()
    run_matrix(path, runner_kw=runner_kw([True]), out=out)
    assert "index: " in out.getvalue(), out.getvalue()
    assert os.path.exists(out.getvalue().split("index: ")[1].strip())
