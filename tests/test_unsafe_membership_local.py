"""Ongaro's 2015 single-server membership bug in a real run (scenarios/unsafe-membership.yaml,
local processes): with the seeded bug unsafe-membership the new leader removes a voter before
an entry of its own term committed, the isolated old leader is elected under its sibling
configuration and overwrites what the new one committed, and the run is invalid because
acknowledged writes are lost (the linearizability checker). The correct node's runs of the same
scenario are measured valid in docs/seeded-bugs.md."""

import json
import os

import pytest

from test_e2e_local import ROOT, base_address, splitbrain

SCENARIO = os.path.join(ROOT, "scenarios", "unsafe-membership.yaml")


@pytest.mark.timeout(90)
def test_the_unsafe_membership_bug_loses_acknowledged_writes_in_a_real_run(tmp_path):
    store = str(tmp_path / "store")
    proc = splitbrain("run", "--scenario", SCENARIO, "--provisioner", "local", "--store", store,
                      "--provisioner-option", f"base_address={base_address()}",
                      "--bug", "unsafe-membership", "--seed", "1", timeout=85)
    run_dir = os.path.realpath(os.path.join(store, "latest"))
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    assert proc.returncode == 1 and results["valid"] is False, proc.stderr[-4000:]
    linearizable = results["checkers"]["linearizable"]
    assert linearizable["valid"] is False, linearizable
    # the sequence happened as scripted: the removal committed on the new leader's side
    with open(os.path.join(run_dir, "history.jsonl")) as f:
        ops = [json.loads(line) for line in f]
    shrink = [op for op in ops if op.get("process") == "nemesis" and op.get("type") == "info"
              and op.get("f") == "membership" and (op.get("value") or {}).get("change") == "shrink"]
    assert shrink and shrink[0]["value"]["outcome"] == "ok", shrink
