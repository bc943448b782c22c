"""The deterministic Raft simulator: `python -m raftnode.sim --seed N` replays one seed exactly."""

from .checks import Checker, Violation
from .cluster import Cluster, NetConfig
from .runner import SimResult, run_seed

__all__ = ["Checker", "Cluster", "NetConfig", "SimResult", "Violation", "run_seed"]
