"""The report renders what the real runner writes: a run of chaos.runner against the in-process
fake cluster (tests/fake_node.py), with a kill/start/pause schedule and the default checker."""

import io
import json
import os
import re

from chaos.config import RunConfig
from chaos.runner import Runner
from fake_node import FakeDB, fake_nemesis_factory

from reports import render_index, render_run


def test_a_runner_run_renders_with_its_verdict_faults_and_timeline(tmp_path):
    schedule = [{"at": 0.3, "f": "kill", "value": {"target": "leader"}},
                {"at": 0.8, "f": "start", "value": {"target": "killed"}},
                {"at": 1.1, "f": "pause", "value": {"target": "one"}},
                {"at": 1.4, "f": "resume", "value": {"target": "paused"}}]
    config = RunConfig(test_name="fake", nodes=3, workload="register", nemesis=[], time_limit=2.0, concurrency=4,
                       seed=11, provisioner="local", store=str(tmp_path / "store"), request_timeout=1.0,
                       recovery_timeout=5.0, final_read_timeout=5.0, schedule=schedule)
    rendered = []
    runner = Runner(config, db_factory=lambda cfg, run_id: FakeDB(), nemesis_factory=fake_nemesis_factory,
                    render=lambda path: rendered.append(render_run(path)) or rendered[-1],
                    out=io.StringIO(), progress_stream=io.StringIO(), progress_tty=False,
                    install_signal_handlers=False)
    runner.execute()
    run_dir = runner.run.path
    assert rendered == [os.path.join(run_dir, "report", "index.html")]
    with open(os.path.join(run_dir, "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    with open(rendered[0], encoding="utf-8") as f:
        page = f.read()
    verdict = {True: "valid", False: "invalid"}.get(results["valid"], "unknown")
    assert f'data-verdict="{verdict}"' in page
    faults = re.search(r'<table class="faults".*?</table>', page, flags=re.S).group(0)
    assert re.search(r"■</span> kill</td><td class=\"wrap\">leader: n\d</td>", faults)
    assert re.search(r"■</span> pause</td><td class=\"wrap\">one: n\d</td>", faults)
    assert faults.count(">start</td>") == 1 and faults.count(">resume</td>") == 1
    assert page.count('<rect class="band"') >= 2 * 4  # both faults, on each of the 4 time plots
    lanes = re.findall(r'<text class="lane-label"[^>]*>([^<]+)</text>', page)
    assert lanes[0] == "cluster" and len(lanes) == 4  # the cluster lane and 3 nodes
    with open(render_index(tmp_path / "store"), encoding="utf-8") as f:
        assert f'{os.path.basename(os.path.dirname(run_dir))}/{os.path.basename(run_dir)}/report/index.html' in f.read()
