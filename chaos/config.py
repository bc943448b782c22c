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

from chaos import faults as _faults

# The built-in fault kinds, their ops and the targets they take: one table, chaos.faults (which
# also holds the kinds plugins add; code that must see those asks chaos.faults at run time).
# `--nemesis all`: every built-in kind except those asked for by name only (disk damage).
FAULTS = tuple(k.name for k in _faults.BUILTIN_KINDS if k.in_all)
FAULT_OPS = {k.name: (k.start, k.heal) for k in _faults.BUILTIN_KINDS}
START_OPS = {k.start: k.name for k in _faults.BUILTIN_KINDS}
HEAL_OPS = {k.heal: k.name for k in _faults.BUILTIN_KINDS}
NEMESIS_FS = tuple(f for k in _faults.BUILTIN_KINDS for f in (k.start, k.heal))
TOPOLOGIES = _faults.TOPOLOGIES
TARGETS = _faults.TARGETS
CLOCK_MODES = _faults.CLOCK_MODES

# The shipped parts' names (plugins add their own through chaos.registry); a run checks its
# names against the registry itself, so these lists only serve help texts.
WORKLOADS = ("register", "set")
PROVISIONERS = ("docker", "local")
# Settings that older runs (and the CLI flags of the bundled node) name at the top level: they
# are node options of the raftnode DB now.
LEGACY_NODE_OPTIONS = {"election_timeout": "election-timeout", "heartbeat_ms": "heartbeat",
                       "pre_vote": "pre-vote", "check_quorum": "check-quorum"}
NODE_OPTION_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")

TEST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ConfigError(ValueError):
    """A configuration problem; the message names the setting and the valid choices."""


def node_names(count: int) -> list[str]:
    return [f"n{i}" for i in range(1, count + 1)]


def parse_nemesis(text: str | list | tuple | None) -> list[str]:
    """`"partition,kill"`, `"all"`, `"none"` (or a list of the same) -> a list of fault kinds."""
    if text is None:
        return []
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    known = _faults.fault_names()
    faults: list[str] = []
    for raw in items:
        name = str(raw).strip().lower()
        if not name:
            continue
        if name == "all":
            return list(FAULTS)
        if name == "none":
            continue
        if name not in known:
            raise ConfigError(f"unknown nemesis {name!r} (valid: {', '.join(known)}, all, none)")
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
    db: str = "raftnode"                   # the system under test (chaos.registry: splitbrain.dbs)
    node_options: dict = field(default_factory=dict)  # the DB's own settings (--node-option K=V)
    subnet: str | None = None              # docker: the run network's subnet (None = default)
    provisioner_options: dict = field(default_factory=dict)  # extra keywords for the provisioner
    scenario: str | None = None            # the scenario file this came from, if any
    reproduces: str | None = None          # the run directory this run reproduces, if any
    description: str = ""

    def validate(self) -> "RunConfig":
        if not TEST_NAME_RE.match(self.test_name or ""):
            raise ConfigError(f"test name {self.test_name!r} must be 1-64 letters, digits, '.', '_' "
                              "or '-' (it names a folder in the store)")
        if isinstance(self.nodes, bool) or not isinstance(self.nodes, int) or not 1 <= self.nodes <= 64:
            raise ConfigError(f"nodes must be an integer from 1 to 64, got {self.nodes!r}")
        from chaos.registry import names
        _choice("db", self.db, names("splitbrain.dbs"))
        _choice("workload", self.workload, names("splitbrain.workloads"))
        if not isinstance(self.provisioner, str) or not self.provisioner:
            raise ConfigError(f"provisioner must be a name, got {self.provisioner!r}")
        if self.bug is not None and (not isinstance(self.bug, str) or not self.bug):
            raise ConfigError(f"bug must be a seeded bug's name, got {self.bug!r}")
        self.nemesis = parse_nemesis(self.nemesis)
        _positive("time_limit", self.time_limit)
        _positive("nemesis_interval", self.nemesis_interval)
        if not isinstance(self.concurrency, int) or not 1 <= self.concurrency <= 1000:
            raise ConfigError(f"concurrency must be an integer between 1 and 1000, got {self.concurrency!r}")
        if self.rate is not None:
            _positive("rate", self.rate)
        for name in ("keys", "ops_per_key", "elements_per_key"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("request_timeout", "recovery_timeout", "final_read_timeout"):
            _positive(name, getattr(self, name))
        for name, opts in (("node_options", self.node_options), ("provisioner_options", self.provisioner_options)):
            if not isinstance(opts, dict):
                raise ConfigError(f"{name} must map option names to values, got {opts!r}")
        for key, value in self.node_options.items():
            if not isinstance(key, str) or not NODE_OPTION_NAME_RE.match(key):
                raise ConfigError(f"node option name {key!r} must be lower-case letters, digits, '-' or '_'")
            if not isinstance(value, (str, int, float, bool)):
                raise ConfigError(f"node option {key} must be a string, number or true/false, got {value!r}")
        if not all(isinstance(k, str) and k.isidentifier() for k in self.provisioner_options):
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
                kind = _faults.kind_of_op(step["f"])
                if kind is not None and kind.name not in kinds:
                    kinds.append(kind.name)
            return kinds
        return list(self.nemesis)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        """A config from its dict form; the settings older runs kept at the top level
        (election_timeout, heartbeat_ms, pre_vote, check_quorum) become node options."""
        d = dict(d)
        options = dict(d.get("node_options") or {})
        for old, new in LEGACY_NODE_OPTIONS.items():
            if old in d:
                value = d.pop(old)
                if value is not None and options.get(new) is None:
                    options[new] = value
        d["node_options"] = options
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
        argv += ["--test-name", self.test_name, "--db", self.db, "--nodes", str(self.nodes),
                 "--workload", self.workload]
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
                           ("request_timeout", "--request-timeout"), ("subnet", "--subnet"),
                           ("checker", "--checker")):
            value = getattr(self, name)
            if value != RunConfig.__dataclass_fields__[name].default:
                argv += [flag, _num(value) if isinstance(value, float) else str(value)]
        for key, value in sorted(self.node_options.items()):
            argv += ["--node-option", f"{key}={_option_text(value)}"]
        for key, value in sorted(self.provisioner_options.items()):
            argv += ["--provisioner-option", f"{key}={value}"]
        return shlex.join(argv)


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _num(value) if isinstance(value, float) else str(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r} (valid: {', '.join(map(str, choices))})")


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
