"""A node that a heal brings back but that does not come back is a finding of the run: the
nemesis records it in the history with the node's last stderr lines, and the run is invalid
for that reason, named first, however linearizable the client history looks."""

import io
import json
import os

from chaos.config import RunConfig
from chaos.history import read_jsonl
from chaos.runner import Runner
from fake_node import FakeDB

FATAL = "raftnode: fatal: /data/log-00000001.seg: corrupt log at byte offset 1613"


class NodeThatCannotRestart(FakeDB):
    """n2 dies for good when killed: start() leaves it down, as a bricked data directory would."""

    def start(self, node):
        if node.id == "n2" and self._fake(node).server is None:
            return
        super().start(node)

    def exit_report(self, node, lines=20):
        return "exit status 2\n" + FATAL


class NodeThatDiesByItself(FakeDB):
    """n3 exits mid-run without any fault (a poison entry, a crash) and cannot be started."""

    def setup(self, nodes):
        out = super().setup(nodes)
        import threading
        threading.Timer(0.3, lambda: self.kill(self.nodes[2])).start()
        return out

    def start(self, node):
        if node.id != "n3":
            super().start(node)

    def exit_report(self, node, lines=20):
        return "Traceback (most recent call last):\nValueError: Out of range float values are not JSON compliant"


def run(tmp_path, db, **kw):
    config = RunConfig(test_name="health", nodes=3, workload="register", time_limit=1.5, concurrency=3,
                       seed=2, provisioner="local", store=str(tmp_path / "store"), request_timeout=1.0,
                       recovery_timeout=3.0, final_read_timeout=2.0, **kw)
    runner = Runner(config, db_factory=lambda cfg, run_id: db, render=lambda path: None, out=io.StringIO(),
                    progress_stream=io.StringIO(), progress_tty=False, install_signal_handlers=False)
    code = runner.execute()
    results = json.load(open(os.path.join(runner.run.path, "results.json")))
    return code, results, read_jsonl(os.path.join(runner.run.path, "history.jsonl"))


def test_a_node_that_cannot_restart_after_a_kill_makes_the_run_invalid_with_its_stderr(tmp_path, monkeypatch):
    import chaos.nemesis.common as common
    monkeypatch.setattr(common, "RESTART_BOUND_S", 1.0)
    schedule = [{"at": 0.2, "f": "kill", "value": {"target": ["n2"]}},
                {"at": 0.6, "f": "start", "value": {"target": "killed"}}]
    code, results, ops = run(tmp_path, NodeThatCannotRestart(), schedule=schedule)
    assert code == 1
    assert results["valid"] is False
    assert results["reason"].startswith("node-health: n2 could not restart after start: raftnode: fatal:")
    health = results["checkers"]["node-health"]
    assert health["down"][0]["node"] == "n2" and FATAL in health["down"][0]["why"]
    # the finding is in the history itself, on the start op's completion
    start = next(op for op in ops if op.is_nemesis and op.f == "start" and op.type == "info")
    assert "n2" in start.value["down"]
    # the client history alone would have passed
    assert results["checkers"]["linearizable"]["valid"] is True


def test_a_node_that_died_on_its_own_is_found_at_the_end_of_the_run(tmp_path, monkeypatch):
    import chaos.nemesis.common as common
    monkeypatch.setattr(common, "RESTART_BOUND_S", 1.0)
    code, results, ops = run(tmp_path, NodeThatDiesByItself(), nemesis=[])
    assert code == 1
    assert results["reason"].startswith("node-health: n3 was down at the end of the run: ValueError: Out of range")
    assert "Out of range float values" in results["checkers"]["node-health"]["down"][0]["why"]


def test_a_healthy_run_has_a_valid_node_health_check(tmp_path):
    schedule = [{"at": 0.2, "f": "kill", "value": {"target": ["n2"]}},
                {"at": 0.6, "f": "start", "value": {"target": "killed"}}]
    code, results, _ = run(tmp_path, FakeDB(), schedule=schedule)
    assert code == 0
    assert results["checkers"]["node-health"] == {"name": "node-health", "valid": True, "down": [],
                                                  "expected_down": []}
