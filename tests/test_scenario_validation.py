"""Scenario files are validated before anything starts; every error names the file, the line
and the valid choices."""

import glob
import os

import pytest

from chaos.config import TOPOLOGIES
from chaos.scenario import ScenarioError, load_scenario, parse_scenario

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = sorted(p for p in glob.glob(os.path.join(ROOT, "scenarios", "*.yaml")) if "matrix" not in p)


def error_of(text, source="s.yaml"):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source)
    return info.value


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_every_shipped_scenario_is_valid(path):
    cfg = load_scenario(path)
    assert cfg.test_name == os.path.splitext(os.path.basename(path))[0]
    assert cfg.schedule or cfg.nemesis
    for step in cfg.schedule or []:
        assert 0 <= step["at"] < cfg.time_limit


def test_the_required_scenarios_are_shipped():
    names = {os.path.basename(p) for p in SHIPPED}
    assert names >= {"leader-isolation.yaml", "flapping-partitions.yaml", "leader-kill-loop.yaml",
                     "pause-storm.yaml", "clock-skew-leader.yaml", "everything-mixed.yaml"}


def test_unknown_top_level_key_names_file_line_and_valid_keys():
    e = error_of("name: x\nnodes: 5\ntime_limt: 30\n")
    assert (e.source, e.line) == ("s.yaml", 3)
    assert "unknown key 'time_limt'" in str(e) and "time_limit" in str(e)
    assert str(e).startswith("s.yaml:3:")


def test_unknown_nemesis_names_the_line_and_the_choices():
    e = error_of("nodes: 5\nnemesis:\n  faults: [partition, explode]\n")
    assert e.line == 3
    assert "unknown nemesis 'explode'" in str(e) and "partition, kill, pause, clock" in str(e)


def test_unknown_topology_names_the_line_and_the_choices():
    e = error_of("time_limit: 30\nschedule:\n  - {at: 1, f: partition, topology: isolate-leder}\n")
    assert e.line == 3
    assert "isolate-leder" in str(e)
    assert all(t in str(e) for t in TOPOLOGIES)


def test_unknown_node_in_a_target_names_the_valid_nodes():
    e = error_of("nodes: 3\nschedule:\n  - at: 1\n    f: kill\n    target: [n1, n4]\n")
    assert e.line == 5
    assert "unknown node 'n4'" in str(e) and "n1, n2, n3" in str(e)


def test_unknown_node_in_partition_groups():
    e = error_of("nodes: 3\nschedule:\n  - at: 1\n    f: partition\n    topology: groups\n"
                 "    groups: [[n1], [n2, n9]]\n")
    assert e.line == 6 and "n9" in str(e)


def test_unknown_nemesis_op_and_unknown_step_key():
    assert "unknown nemesis op 'partitoin'" in str(error_of("schedule:\n  - {at: 1, f: partitoin}\n"))
    e = error_of("schedule:\n  - {at: 1, f: kill, target: leader, how: hard}\n")
    assert "unknown key 'how' for kill (valid: at, f, target)" in str(e)


def test_bad_values_are_refused_with_their_line():
    assert error_of("name: x\nnodes: 0\n").line == 2
    assert "nodes must be an integer from 1 to 64" in str(error_of("nodes: 0\n"))
    e = error_of("workload: queue\n")
    assert e.line == 1 and "register, set" in str(e)
    assert error_of("name: x\ntime_limit: -3\n").line == 2
    error = error_of("time_limit: 30\nschedule:\n  - {at: 40, f: heal}\n")
    assert "at 40.0 s is not before the time limit" in str(error)


def test_clock_skew_needs_its_parameters():
    assert "needs delta" in str(error_of("schedule:\n  - {at: 1, f: clock-skew, target: leader, mode: bump}\n"))
    assert "unknown clock mode 'warp'" in str(
        error_of("schedule:\n  - {at: 1, f: clock-skew, target: leader, mode: warp}\n"))
    assert "needs rate" in str(error_of("schedule:\n  - {at: 1, f: clock-skew, target: one, mode: rate}\n"))


def test_nemesis_and_schedule_together_are_refused():
    assert "not both" in str(error_of("nemesis: [kill]\nschedule:\n  - {at: 1, f: heal}\n"))


def test_groups_may_overlap_like_a_bridge_but_must_cover_every_node():
    cfg = parse_scenario("nodes: 5\nschedule:\n  - {at: 1, f: partition, topology: groups, "
                         "groups: [[n1, n2, n3], [n3, n4, n5]]}\n")
    assert cfg.schedule[0]["value"]["groups"] == [["n1", "n2", "n3"], ["n3", "n4", "n5"]]
    e = error_of("nodes: 5\nschedule:\n  - {at: 1, f: partition, topology: groups, groups: [[n1], [n2, n3]]}\n")
    assert "n4, n5 are in no group" in str(e)


def test_repeating_schedule_expands_within_the_time_limit():
    cfg = parse_scenario("time_limit: 20\nschedule:\n  start: 2\n  period: 5\n  steps:\n"
                         "    - {at: 0, f: kill, target: leader}\n    - {at: 3, f: start}\n")
    assert [(s["at"], s["f"]) for s in cfg.schedule] == [
        (2, "kill"), (5, "start"), (7, "kill"), (10, "start"), (12, "kill"), (15, "start"), (17, "kill")]
    assert cfg.schedule[0]["value"] == {"target": "leader"}
    assert cfg.schedule[1]["value"] == {"target": "killed"}


def test_step_outside_its_period_is_refused():
    e = error_of("schedule:\n  period: 5\n  steps:\n    - {at: 6, f: heal}\n")
    assert e.line == 4 and "not inside the period" in str(e)


def test_a_single_node_name_target_becomes_a_list():
    cfg = parse_scenario("nodes: 3\nschedule:\n  - {at: 1, f: pause, target: n2}\n")
    assert cfg.schedule[0]["value"] == {"target": ["n2"]}


def test_invalid_yaml_names_the_line():
    e = error_of("name: x\nnodes: [5\n")
    assert "not valid YAML" in str(e) and e.line is not None


def test_empty_file_and_non_mapping_are_refused():
    assert "empty" in str(error_of(""))
    assert "mapping" in str(error_of("- a\n- b\n"))


def test_duplicate_keys_are_refused():
    e = error_of("nodes: 3\nnodes: 5\n")
    assert e.line == 2 and "duplicate key" in str(e)


def test_overrides_from_the_command_line_win():
    cfg = parse_scenario("nodes: 3\ntime_limit: 30\nseed: 1\n", overrides={"seed": 9, "time_limit": 5})
    assert (cfg.seed, cfg.time_limit, cfg.nodes) == (9, 5, 3)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        load_scenario(str(tmp_path / "nope.yaml"))


def test_a_node_block_sets_node_options_and_the_old_top_level_keys_still_do():
    from chaos.scenario import parse_scenario

    cfg = parse_scenario("name: x\nnodes: 3\nnode: {snapshot-every: 50, pre-vote: false}\n"
                         "election_timeout: 300-600\n", "s.yaml")
    assert cfg.node_options == {"snapshot-every": 50, "pre-vote": False, "election-timeout": "300-600"}
    assert error_of("name: x\nnode: [1, 2]\n").line == 2
    assert "node option snapshot-every must be" in str(error_of("node: {snapshot-every: [1]}\n"))
