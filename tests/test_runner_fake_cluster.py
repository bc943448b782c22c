"""The runner composes DB, workload clients, nemesis, generator and checker into one run, and
cleans up whatever happens. Here against an in-process fake cluster (tests/fake_node.py), so
each run takes a couple of seconds and no Raft is involved."""

import io
import json
import os

import pytest

from chaos.config import RunConfig
from chaos.history import pair_ops, read_jsonl
from chaos.runner import EXIT_CRASHED, Runner
from fake_node import FakeDB, fake_nemesis_factory


def make_config(tmp_path, **kw):
    base = dict(test_name="fake", nodes=3, workload="register", nemesis=[], time_limit=1.5,
                concurrency=4, seed=7, provisioner="local", store=str(tmp_path / "store"),
                request_timeout=1.0, recovery_timeout=5.0, final_read_timeout=5.0)
    base.update(kw)
    return RunConfig(**base)


class Recorder:
    """A checker stand-in that records what it was given and returns a fixed verdict."""

    def __init__(self, valid=True):
        self.valid = valid
        self.calls = []

    def __call__(self, ops, **kw):
        self.calls.append((ops, kw))
        return {"valid": self.valid, "reason": "recorded", "checkers": {}}


def run(tmp_path, checker=None, db=None, **kw):
    db = db or FakeDB()
    checker = checker or Recorder()
    out = io.StringIO()
    runner = Runner(make_config(tmp_path, **kw), db_factory=lambda cfg, run_id: db,
                    nemesis_factory=fake_nemesis_factory, checker=checker,
                    render=lambda path: os.path.join(path, "report", "index.html"),
                    out=out, progress_stream=io.StringIO(), progress_tty=False,
                    install_signal_handlers=False)
    code = runner.execute()
    return code, runner, db, checker, out.getvalue()


def test_a_run_records_a_paired_history_with_final_reads_and_exits_by_the_verdict(tmp_path):
    code, runner, db, checker, out = run(tmp_path)
    assert code == 0
    run_dir = runner.run.path
    for name in ("config.json", "history.jsonl", "status.jsonl", "results.json", "controller.log"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    ops = read_jsonl(os.path.join(run_dir, "history.jsonl"))
    pairs = pair_ops(ops)
    assert len(pairs) > 20
    assert all(p.complete is not None for p in pairs)
    assert {op.f for op in ops} >= {"read", "write", "cas"}
    assert all(op.node in ("n1", "n2", "n3") for op in ops)
    # invoke time before completion time, on the controller's monotonic clock
    assert all(p.invoke.time <= p.complete.time for p in pairs)
    finals = [op for op in ops if op.extra.get("final")]
    assert finals and all(op.f == "read" for op in finals)
    assert db.torn_down and sorted(db.logs_collected) == ["n1", "n2", "n3"]
    assert os.path.exists(os.path.join(run_dir, "nodes", "n1", "node.log"))
    assert "report: " in out
    assert os.path.realpath(os.path.join(str(tmp_path / "store"), "latest")) == run_dir
    status_lines = open(os.path.join(run_dir, "status.jsonl")).read().splitlines()
    assert status_lines and {json.loads(line)["node"] for line in status_lines} == {"n1", "n2", "n3"}
    kw = checker.calls[0][1]
    assert kw["workload"] == "register"
    # the checker draws porcupine's visualizations into the report folder, where the report links them
    assert kw["out_dir"] == os.path.join(run_dir, "report")


@pytest.mark.parametrize("valid,code", [(True, 0), (False, 1), ("unknown", 2)])
def test_exit_code_follows_the_verdict(tmp_path, valid, code):
    assert run(tmp_path, checker=Recorder(valid), time_limit=0.5)[0] == code


def test_writes_are_unique_per_key_and_keys_rotate(tmp_path):
    code, runner, *_ = run(tmp_path, ops_per_key=10, keys=2, time_limit=1.0)
    ops = read_jsonl(os.path.join(runner.run.path, "history.jsonl"))
    invokes = [op for op in ops if op.type == "invoke" and not op.extra.get("final")]
    per_key = {}
    for op in invokes:
        per_key.setdefault(op.key, []).append(op)
    assert len(per_key) > 2
    assert all(len(v) <= 10 for v in per_key.values())
    for key, key_ops in per_key.items():
        written = [op.value if op.f == "write" else op.value[1] for op in key_ops if op.f != "read"]
        assert len(written) == len(set(written)), key


def test_kill_and_pause_schedule_is_in_the_history_and_in_config(tmp_path):
    schedule = [{"at": 0.2, "f": "kill", "value": {"target": "leader"}},
                {"at": 0.6, "f": "start", "value": {"target": "killed"}},
                {"at": 0.8, "f": "pause", "value": {"target": ["n2"]}}]
    code, runner, db, *_ = run(tmp_path, schedule=schedule, time_limit=1.5)
    assert code == 0
    ops = read_jsonl(os.path.join(runner.run.path, "history.jsonl"))
    nem = [op for op in ops if op.process == "nemesis"]
    fs = [(op.type, op.f) for op in nem]
    assert fs[:6] == [("invoke", "kill"), ("info", "kill"), ("invoke", "start"), ("info", "start"),
                      ("invoke", "pause"), ("info", "pause")]
    # heal-everything at the end resumes and restarts
    assert ("invoke", "resume") in fs and ("invoke", "start") in fs[6:]
    config = json.load(open(os.path.join(runner.run.path, "config.json")))
    executed = config["schedule"]
    assert [e["f"] for e in executed[:3]] == ["kill", "start", "pause"]
    assert executed[0]["result"] == {"nodes": ["n1"]}
    assert config["replay_schedule"][0]["value"]["target"] == ["n1"]
    assert config["command"] == f"splitbrain reproduce {runner.run.path}"
    assert config["run_command"].startswith("splitbrain run")
    # after an info the worker continues as process p + C: processes never overlap
    pair_ops(ops)


def test_the_set_workload_reads_every_key_at_the_end(tmp_path):
    code, runner, db, checker, _ = run(tmp_path, workload="set", elements_per_key=20, time_limit=1.0)
    assert code == 0
    ops = read_jsonl(os.path.join(runner.run.path, "history.jsonl"))
    keys = {op.key for op in ops if op.f == "add"}
    finals = {op.key: op.value for op in ops if op.extra.get("final") and op.type == "ok"}
    assert keys and set(finals) == keys
    added_ok = {op.value for op in ops if op.f == "add" and op.type == "ok"}
    assert added_ok <= {e for v in finals.values() for e in v}
    results = json.load(open(os.path.join(runner.run.path, "results.json")))
    assert results["checkers"]["final-reads"] == {"valid": True, "unread_keys": []}


def test_set_verdict_is_unknown_when_a_final_read_never_succeeds(tmp_path):
    db = FakeDB()

    from chaos import phases

    original = phases.recover

    def recover_then_break(ctx):
        original(ctx)
        ctx.db.cluster.leader = None  # every node answers 503 from now on

    phases.recover = recover_then_break
    try:
        code, runner, *_ = run(tmp_path, db=db, workload="set", time_limit=0.5, final_read_timeout=0.5)
    finally:
        phases.recover = original
    assert code == 2
    results = json.load(open(os.path.join(runner.run.path, "results.json")))
    assert results["valid"] == "unknown"
    assert results["checkers"]["final-reads"]["unread_keys"]


def test_a_400_from_the_node_aborts_the_run_with_255_and_still_tears_down(tmp_path):
    db = FakeDB()
    original_setup = db.setup

    def setup(n):
        nodes = original_setup(n)
        db.cluster.state._execute = lambda op, key, body: (400, {"error": "unknown field"})
        return nodes

    db.setup = setup
    code, runner, db, checker, _ = run(tmp_path, db=db, time_limit=2.0)
    assert code == EXIT_CRASHED
    assert db.torn_down
    assert not checker.calls
    results = json.load(open(os.path.join(runner.run.path, "results.json")))
    assert results["valid"] == "unknown" and "client" in results["reason"]


def test_an_exception_during_setup_tears_down_and_exits_255(tmp_path):
    db = FakeDB()

    def broken_setup(n):
        raise RuntimeError("no leader elected")

    db.setup = broken_setup
    code, runner, db, checker, _ = run(tmp_path, db=db)
    assert code == EXIT_CRASHED and db.torn_down
    assert "no leader elected" in open(os.path.join(runner.run.path, "controller.log")).read()


def test_faults_the_db_cannot_inject_are_refused_before_anything_starts(tmp_path):
    db = FakeDB()
    errors = io.StringIO()
    runner = Runner(make_config(tmp_path, nemesis=["partition"]), db_factory=lambda cfg, run_id: db,
                    checker=Recorder(), render=lambda p: None, out=io.StringIO(), progress_stream=errors,
                    progress_tty=False, install_signal_handlers=False)
    assert runner.execute() == EXIT_CRASHED
    assert db.cluster is None  # never set up
    assert "the partition fault needs the 'partition' capability, which 'fake' lacks" in errors.getvalue()
    assert runner.run is None and not os.path.exists(tmp_path / "store")  # no run, no report


def test_a_setting_the_db_refuses_is_a_clear_error_not_a_crash(tmp_path):
    def factory(cfg, run_id):
        raise ValueError("raftnode has no node option 'snapshot-evry' (valid: bug, check-quorum, ...)")

    errors = io.StringIO()
    runner = Runner(make_config(tmp_path), db_factory=factory, checker=Recorder(), render=lambda p: None,
                    out=io.StringIO(), progress_stream=errors, progress_tty=False, install_signal_handlers=False)
    assert runner.execute() == EXIT_CRASHED
    assert "splitbrain: raftnode: raftnode has no node option 'snapshot-evry'" in errors.getvalue()


def test_rate_limit_bounds_the_number_of_operations(tmp_path):
    code, runner, *_ = run(tmp_path, rate=20, time_limit=1.0)
    ops = read_jsonl(os.path.join(runner.run.path, "history.jsonl"))
    invokes = [op for op in ops if op.type == "invoke" and not op.extra.get("final")]
    assert 10 <= len(invokes) <= 25


def test_reproduce_replays_the_executed_schedule_on_the_same_nodes(tmp_path):
    from chaos.cli import reproduce_config

    schedule = [{"at": 0.2, "f": "kill", "value": {"target": "leader"}},
                {"at": 0.5, "f": "start", "value": {"target": "killed"}},
                {"at": 0.7, "f": "pause", "value": {"target": "one"}}]
    code, first, *_ = run(tmp_path, schedule=schedule, time_limit=1.0)
    assert code == 0
    executed = json.load(open(os.path.join(first.run.path, "config.json")))["schedule"]
    again = reproduce_config(first.run.path)
    assert again.seed == first.config.seed and again.reproduces == first.run.path
    db = FakeDB()
    runner = Runner(again, db_factory=lambda cfg, run_id: db, nemesis_factory=fake_nemesis_factory,
                    checker=Recorder(), render=lambda p: None, out=io.StringIO(),
                    progress_stream=io.StringIO(), progress_tty=False, install_signal_handlers=False)
    assert runner.execute() == 0
    replayed = json.load(open(os.path.join(runner.run.path, "config.json")))["schedule"]

    def hit(entries):
        return [(e["f"], (e["result"] or {}).get("nodes")) for e in entries[:3]]
    assert hit(replayed) == hit(executed)
    assert replayed[0]["value"] == {"target": [executed[0]["result"]["nodes"][0]]}
