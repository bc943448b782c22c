"""In the simulator: a follower whose log file loses its tail while it is down (the truncate-file
fault, or a damaged last record taken for a torn write) must not help elect a leader that lacks
the entries it had acknowledged. Three nodes; X is committed by the leader and n2 only; n2's
log loses X; the leader dies; n2 and the lagging n3 could elect each other and lose X."""

import os

import pytest

from raftnode.core import RaftCore
from raftnode.sim.checks import Violation
from raftnode.sim.lab import Lab

pytestmark = pytest.mark.timeout(120)


def truncate_to(lab, node_id, path, size):
    files = lab.nodes[node_id].files
    fd = files.open(path, os.O_WRONLY)
    files.ftruncate(fd, size)
    files.fsync(fd)
    files.close(fd)


def scenario(lab):
    """Returns X's index; leaves n1 (the only other holder of X) down, n2 truncated, n3 behind."""
    lab.one("base", 3)
    leader = lab.check_one_leader()
    others = [i for i in lab.ids if i != leader]
    holder, lagging = others
    segment = sorted(f for f in lab.nodes[holder].files.listdir(lab.nodes[holder].data_dir) if f.endswith(".seg"))[-1]
    path = f"{lab.nodes[holder].data_dir}/{segment}"
    size_before = lab.nodes[holder].files.getsize(path)
    lab.disconnect(lagging)
    x_index = lab.one("X", 2)
    lab.run_for(0.5)  # the holder's mark covers X (raised after every fsync in the simulator)
    lab.crash(holder)
    truncate_to(lab, holder, path, size_before)  # X's records gone, at a record boundary
    lab.crash(leader)
    lab.connect(lagging)
    lab.start(holder)
    return leader, holder, lagging, x_index


def test_the_truncated_follower_neither_votes_nor_campaigns_so_x_survives():
    lab = Lab(3, seed=3)
    leader, holder, lagging, x_index = scenario(lab)
    assert lab.nodes[holder].core.last_log_index < x_index  # its log really went backwards
    lab.run_for(3.0)
    lab.check_no_leader()  # the lagging node cannot win without the truncated one's vote
    lab.start(leader)
    new_leader = lab.check_one_leader(timeout=10)
    assert new_leader == leader  # the only node whose log holds X can win
    lab.one("after", 3)
    assert lab.nodes[holder].core.last_log_index >= x_index
    assert lab.n_committed(x_index) == (3, "X")


def test_without_the_rule_the_same_scenario_loses_the_acknowledged_write(monkeypatch):
    """The scenario is a real hazard: with the vote refusal switched off, the simulator's safety
    checks catch it as soon as the two survivors elect one of them: a leader without X."""
    monkeypatch.setattr(RaftCore, "_behind_acknowledged", lambda self: False)
    lab = Lab(3, seed=3)
    leader, holder, lagging, x_index = scenario(lab)
    with pytest.raises(Violation, match="leader completeness: .* without committed entry"):
        lab.check_one_leader(timeout=5)
        lab.one("after", 2)
