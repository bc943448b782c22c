"""The resolved configuration of one test run, and the vocabulary it is written in.

A RunConfig is what `splitbrain run` flags or a scenario file resolve to. It is written to the
run's config.json (with the schedule actually executed) so that `splitbrain reproduce` can build
the same run again.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

# Fault kinds a user names on the command line (`--nemesis partition,kill`).
FAULTS = ("partition", "kill", "pause", "clock")
# The history's nemesis operations per fault kind: (start op, healing op); contracts §1.
FAULT_OPS = {
    "partition": ("partition", "heal"),
    "kill": ("kill", "start"),
    "pause": ("pause", "resume"),
    "clock": ("clock-skew", "clock-reset"),
}
START_OPS = {start: kind for kind, (start, _) in FAULT_OPS.items()}
HEAL_OPS = {heal: kind for kind, (_, heal) in FAULT_OPS.items()}
NEMESIS_FS = tuple(f for pair in FAULT_OPS.values() for f in pair)

# Partition topologies (issue 4); "groups" is an explicit grouping by node name, which is what
# `reproduce` replays so the same nodes are cut off again.
TOPOLOGIES = ("isolate-one", "isolate-leader", "halves", "random-halves", "majorities-ring",
              "bridge", "groups")
# Targets of kill/pause/clock-skew; a list of node names is accepted too.
TARGETS = ("one", "minority", "majority", "all", "leader")
CLOCK_MODES = ("bump", "strobe", "rate")

WORKLOADS = ("register", "set")
PROVISIONERS = ("docker", "local")
# Seeded bugs of the node (issue 3); None runs the correct node.
BUGS = ("stale-read", "no-fsync", "commit-old-term", "lease-read", "ack-before-commit",
        "forget-vote")
NODE_COUNTS = (3, 5, 7)

TEST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ELECTION_TIMEOUT_RE = re.compile(r"^(\d+)-(\d+)$")


class ConfigError(ValueError):
    """A configuration problem; the message names the setting and the valid choices."""


def node_names(count: int) -> list[str]:
    return [f"n{i}" for i in range(1, count + 1)]


def parse_nemesis(text: str | list | tuple | None) -> list[str]:
    """`"partition,kill"`, `"all"`, `"none"` (or a list of the same) -> a list of fault kinds."""
    if text is None:
        return []
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    faults: list[str] = []
    for raw in items:
        name = str(raw).strip().lower()
        if not name:
            continue
        if name == "all":
            return list(FAULTS)
        if name == "none":
            continue
        if name not in FAULTS:
            raise ConfigError(f"unknown nemesis {name!r} (valid: {', '.join(FAULTS)}, all, none)")
        if name not in faults:
            faults.append(name)
    return faults


@dataclass
class RunConfig:
    test_name: str = "register"
    nodes: int = 5
    workload: str = "register"
    nemesis: list[str] = field(default_factory=lambda: list(FAULTS))
    nemesis_interval: float = 5.0          # seconds between fault starts/heals (random schedule)
    schedule: list[dict] | None = None     # explicit schedule (scenario / reproduce); None = random
    time_limit: float = 60.0               # seconds of client load and faults
    concurrency: int = 10
    rate: float | None = None              # total client ops/s; None = as fast as possible
    seed: int = 0
    provisioner: str = "docker"
    bug: str | None = None
    store: str = "store"
    keys: int = 5                          # register: keys in use at a time
    ops_per_key: int = 200                 # register: operations per key before a fresh key
    elements_per_key: int = 100            # set: elements per key before a fresh key
    request_timeout: float = 3.0           # seconds per HTTP request (the node's own is 2 s)
    recovery_timeout: float = 30.0         # bound on waiting for a stable leader after healing
    final_read_timeout: float = 30.0       # bound on retrying the final reads
    check_time_budget: float | None = 120.0
    checker: str = "auto"
    election_timeout: str = "150-300"      # ms, passed to the node
    heartbeat_ms: int = 50
    pre_vote: bool = True
    check_quorum: bool = True
    subnet: str | None = None              # docker: the run network's subnet (None = default)
    provisioner_options: dict = field(default_factory=dict)  # extra keywords for the provisioner
    scenario: str | None = None            # the scenario file this came from, if any
    reproduces: str | None = None          # the run directory this run reproduces, if any
    description: str = ""

    def validate(self) -> "RunConfig":
        if not TEST_NAME_RE.match(self.test_name or ""):
            raise ConfigError(f"test name {self.test_name!r} must be 1-64 letters, digits, '.', '_' "
                              "or '-' (it names a folder in the store)")
        if self.nodes not in NODE_COUNTS:
            raise ConfigError(f"nodes must be 3, 5 or 7, got {self.nodes!r}")
        _choice("workload", self.workload, WORKLOADS)
        _choice("provisioner", self.provisioner, PROVISIONERS)
        if self.bug is not None:
            _choice("bug", self.bug, BUGS)
        self.nemesis = parse_nemesis(self.nemesis)
        _positive("time_limit", self.time_limit)
        _positive("nemesis_interval", self.nemesis_interval)
        if not isinstance(self.concurrency, int) or not 1 <= self.concurrency <= 1000:
            raise ConfigError(f"concurrency must be an integer between 1 and 1000, got {self.concurrency!r}")
        if self.rate is not None:
            _positive("rate", self.rate)
        for name in ("keys", "ops_per_key", "elements_per_key", "heartbeat_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("request_timeout", "recovery_timeout", "final_read_timeout"):
            _positive(name, getattr(self, name))
        m = ELECTION_TIMEOUT_RE.match(str(self.election_timeout))
        if not m or int(m.group(1)) > int(m.group(2)) or int(m.group(1)) < 1:
            raise ConfigError(f"election_timeout must look like MIN-MAX in ms (e.g. 150-300), "
                              f"got {self.election_timeout!r}")
        if not isinstance(self.provisioner_options, dict) or not all(
                isinstance(k, str) and k.isidentifier() for k in self.provisioner_options):
            raise ConfigError(f"provisioner_options must map option names to values, got "
                              f"{self.provisioner_options!r}")
        if self.checker not in ("auto", "porcupine", "python"):
            raise ConfigError(f"checker {self.checker!r} is not one of auto, porcupine, python")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        return self

    @property
    def node_names(self) -> list[str]:
        return node_names(self.nodes)

    @property
    def faults_in_use(self) -> list[str]:
        """The fault kinds this run injects: from the explicit schedule, else --nemesis."""
        if self.schedule is not None:
            kinds = []
            for step in self.schedule:
                kind = START_OPS.get(step["f"]) or HEAL_OPS.get(step["f"])
                if kind and kind not in kinds:
                    kinds.append(kind)
            return kinds
        return list(self.nemesis)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {', '.join(unknown)} "
                              f"(valid: {', '.join(sorted(known))})")
        return cls(**d)

    def command_line(self) -> str:
        """A `splitbrain` command that runs this config again (scenario runs name the file)."""
        if self.reproduces:
            argv = ["splitbrain", "reproduce", self.reproduces, "--provisioner", self.provisioner,
                    "--store", self.store]
            for key, value in sorted(self.provisioner_options.items()):
                argv += ["--provisioner-option", f"{key}={value}"]
            return shlex.join(argv)
        argv = ["splitbrain", "run"]
        if self.scenario:
            # Every setting as a flag too: flags given with --scenario override the file.
            argv += ["--scenario", self.scenario]
        argv += ["--test-name", self.test_name, "--nodes", str(self.nodes), "--workload", self.workload]
        if not self.scenario:
            argv += ["--nemesis", ",".join(self.nemesis) if self.nemesis else "none",
                     "--nemesis-interval", _num(self.nemesis_interval)]
        argv += ["--time-limit", _num(self.time_limit), "--concurrency", str(self.concurrency),
                 "--seed", str(self.seed), "--provisioner", self.provisioner, "--store", self.store]
        if self.rate is not None:
            argv += ["--rate", _num(self.rate)]
        if self.bug:
            argv += ["--bug", self.bug]
        for name, flag in (("keys", "--keys"), ("ops_per_key", "--ops-per-key"),
                           ("request_timeout", "--request-timeout"), ("election_timeout", "--election-timeout"),
                           ("subnet", "--subnet"), ("checker", "--checker")):
            value = getattr(self, name)
            if value != RunConfig.__dataclass_fields__[name].default:
                argv += [flag, _num(value) if isinstance(value, float) else str(value)]
        if not self.pre_vote:
            argv.append("--no-pre-vote")
        if not self.check_quorum:
            argv.append("--no-check-quorum")
        for key, value in sorted(self.provisioner_options.items()):
            argv += ["--provisioner-option", f"{key}={value}"]
        return shlex.join(argv)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r} (valid: {', '.join(map(str, choices))})")


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
