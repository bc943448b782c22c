"""Scenario files: YAML, validated completely before anything starts.

A scenario names a workload, a cluster and a fault schedule:

    name: leader-isolation
    description: Cut the leader off from everyone, heal, repeat.
    nodes: 5
    workload: register
    time_limit: 60
    schedule:                 # repeated cycles (or a plain list of steps with absolute `at`)
      start: 5                # seconds after the load starts
      period: 15
      steps:
        - {at: 0, f: partition, topology: isolate-leader}
        - {at: 8, f: heal}

or, for a random schedule over some fault kinds:

    nemesis: {faults: [partition, kill], interval: 5}

Every error names the file, the line and the valid choices: "leader.yaml:12: unknown topology
'isolate-leder' (valid: isolate-one, isolate-leader, ...)".
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from chaos.config import (CLOCK_MODES, FAULTS, LEGACY_NODE_OPTIONS, TARGETS, TOPOLOGIES, ConfigError,
                          RunConfig, node_names)
from chaos.faults import fault_names, nemesis_fs, step_params
from chaos.generator import EMPTY, Generator, before, random_nemesis, schedule_generator


class ScenarioError(ValueError):
    def __init__(self, source: str, line: int | None, problem: str):
        self.source, self.line, self.problem = source, line, problem
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {problem}")


# Top-level scenario keys -> RunConfig field (None: handled specially).
SCENARIO_KEYS = {
    "name": "test_name", "description": "description", "nodes": "nodes", "workload": "workload",
    "time_limit": "time_limit", "concurrency": "concurrency", "rate": "rate", "seed": "seed",
    "provisioner": "provisioner", "bug": "bug", "keys": "keys", "ops_per_key": "ops_per_key",
    "elements_per_key": "elements_per_key", "request_timeout": "request_timeout",
    "recovery_timeout": "recovery_timeout", "final_read_timeout": "final_read_timeout",
    "subnet": "subnet", "checker": "checker", "provisioner_options": "provisioner_options",
    "db": "db", "node": None, "nemesis": None, "schedule": None,
    # the bundled node's settings, from before they were node options (node: {election-timeout: ...})
    "election_timeout": None, "heartbeat_ms": None, "pre_vote": None, "check_quorum": None,
}
NEMESIS_KEYS = ("faults", "interval")
REPEAT_KEYS = ("start", "period", "cycles", "steps")

# -- YAML with line numbers -------------------------------------------------------------------

class Located:
    """A parsed YAML document plus the line of every value and mapping key, by path."""

    def __init__(self, source: str):
        self.source = source
        self.lines: dict[tuple, int] = {}

    def line(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, path: tuple, problem: str) -> ScenarioError:
        return ScenarioError(self.source, self.line(path), problem)


def load_yaml_located(text: str, source: str) -> tuple[Any, Located]:
    loc = Located(source)
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise ScenarioError(source, mark.line + 1 if mark else None, f"not valid YAML: {problem}") from None
    if node is None:
        raise ScenarioError(source, 1, "the file is empty")
    return _convert(node, (), loc), loc


def _convert(node: yaml.Node, path: tuple, loc: Located) -> Any:
    loc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node)) if not isinstance(key_node, yaml.ScalarNode) \
                else _scalar(key_node)
            if key in out:
                raise ScenarioError(loc.source, key_node.start_mark.line + 1, f"duplicate key {key!r}")
            loc.lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, path + (key,), loc)
            # The key's own line is more useful than the value's for "unknown key" errors.
            loc.lines[path + (key,)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), loc) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    # Resolve the scalar exactly as safe_load would (ints, floats, bools, null, strings).
    return yaml.safe_load(yaml.serialize(node))


# -- validation -------------------------------------------------------------------------------

def load_scenario(path: str, overrides: dict | None = None) -> RunConfig:
    """Read and validate a scenario file; `overrides` (e.g. seed from the CLI) win."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ScenarioError(path, None, f"cannot read scenario: {e.strerror}") from None
    return parse_scenario(text, path, overrides)


def parse_scenario(text: str, source: str = "<scenario>", overrides: dict | None = None,
                   defaults: dict | None = None) -> RunConfig:
    data, loc = load_yaml_located(text, source)
    cfg = config_from_mapping(data, loc, (), overrides=overrides, defaults=defaults,
                              default_name=_name_from_source(source))
    cfg.scenario = source
    return cfg


def _name_from_source(source: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "", os.path.splitext(os.path.basename(source))[0])
    return name.lstrip("._-")[:64] or "scenario"


def fields_from_keys(d: dict) -> dict:
    """Scenario keys (name, time_limit, ...) -> RunConfig fields (test_name, ...)."""
    out = {}
    for key, value in d.items():
        if key not in SCENARIO_KEYS:
            raise ConfigError(f"unknown key {key!r} (valid: {', '.join(SCENARIO_KEYS)})")
        if key == "nemesis":
            out["nemesis"] = value
        elif (field := SCENARIO_KEYS[key]) is not None:
            out[field] = value
    return out


def config_from_mapping(data: Any, loc: Located, path: tuple = (), *, overrides: dict | None = None,
                        defaults: dict | None = None, default_name: str = "scenario") -> RunConfig:
    """Validate one scenario mapping (a file, or an entry of a nightly matrix at `path`).
    `defaults` (RunConfig fields) apply where the mapping says nothing; `overrides` win."""
    if not isinstance(data, dict):
        raise loc.error(path, "a scenario must be a mapping of settings (name: ..., nodes: ..., ...)")
    for key in data:
        if key not in SCENARIO_KEYS:
            raise loc.error(path + (key,), f"unknown key {key!r} (valid: {', '.join(SCENARIO_KEYS)})")
    fields: dict[str, Any] = dict(defaults or {})
    for key, value in data.items():
        target = SCENARIO_KEYS[key]
        if target is not None:
            fields[target] = value
    if "name" not in data and "test_name" not in fields:
        fields["test_name"] = default_name
    options = dict(fields.get("node_options") or {})
    for key in LEGACY_NODE_OPTIONS:
        if key in data:
            options[LEGACY_NODE_OPTIONS[key]] = data[key]
    if "node" in data:
        if not isinstance(data["node"], dict):
            raise loc.error(path + ("node",), "node must be a mapping of node options "
                            "(e.g. node: {snapshot-every: 50})")
        for key, value in data["node"].items():
            if not isinstance(value, (str, int, float, bool)):
                raise loc.error(path + ("node", key), f"node option {key} must be a string, number or "
                                f"true/false, got {value!r}")
            options[str(key)] = value
    fields["node_options"] = options
    over = dict(overrides or {})
    if "node_options" in over:
        fields["node_options"] = {**options, **over.pop("node_options")}
    fields.update(over)
    try:
        cfg = RunConfig(**fields)
    except TypeError as e:
        raise loc.error(path, str(e)) from None
    if "nemesis" in data and "schedule" in data:
        raise loc.error(path + ("schedule",), "give either nemesis (a random schedule) or schedule "
                        "(an explicit one), not both")
    if "nemesis" in data:
        cfg.nemesis, interval = _nemesis(data["nemesis"], loc, path + ("nemesis",))
        if interval is not None:
            cfg.nemesis_interval = interval
    elif "nemesis" not in (defaults or {}) and "nemesis" not in (overrides or {}):
        cfg.nemesis = []
    # Validate plain settings first so that the schedule is checked against the right node count.
    try:
        _check_types(data, loc, path)
        cfg.validate()
    except ConfigError as e:
        key = _key_named_in(str(e), data)
        raise loc.error(path + ((key,) if key else ()), str(e)) from None
    if "schedule" in data:
        cfg.schedule = validate_schedule(data["schedule"], cfg, loc, path + ("schedule",))
    return cfg


def _check_types(data: dict, loc: Located, path: tuple = ()) -> None:
    from chaos.registry import names

    for key in ("nodes", "concurrency", "keys", "ops_per_key", "elements_per_key", "seed", "heartbeat_ms"):
        if key in data and (isinstance(data[key], bool) or not isinstance(data[key], int)):
            raise loc.error(path + (key,), f"{key} must be an integer, got {data[key]!r}")
    for key in ("pre_vote", "check_quorum"):
        if key in data and not isinstance(data[key], bool):
            raise loc.error(path + (key,), f"{key} must be true or false, got {data[key]!r}")
    for key, choices in (("workload", names("splitbrain.workloads")), ("db", names("splitbrain.dbs"))):
        if key in data and data[key] is not None and data[key] not in choices:
            raise loc.error(path + (key,), f"unknown {key} {data[key]!r} (valid: {', '.join(choices)})")
    # The DB's own choices when its registry entry states them (chaos.provision.base.db_factory):
    # checked here too, so that the error names the line.
    classes = _db_classes(data.get("db", "raftnode"))
    if classes:
        choices_of = {"provisioner": sorted({c.provisioner for c in classes}),
                      "bug": sorted({b for c in classes for b in c.seeded_bugs})}
        for key, choices in choices_of.items():
            if key in data and data[key] is not None and data[key] not in choices:
                raise loc.error(path + (key,), f"unknown {key} {data[key]!r} (valid: {', '.join(choices) or 'none'})")


def _db_classes(name: str) -> tuple:
    from chaos.registry import RegistryError, load
    try:
        return tuple(getattr(load("splitbrain.dbs", name), "classes", ()))
    except RegistryError:
        return ()


def _key_named_in(message: str, data: dict) -> str | None:
    for key, target in SCENARIO_KEYS.items():
        if key in data and (message.startswith(f"{target} ") or f" {target} " in message
                            or message.startswith(f"{key} ") or f" {key} " in message):
            return key
    return None


def _nemesis(value: Any, loc: Located, path: tuple = ("nemesis",)) -> tuple[list[str], float | None]:
    interval = None
    if isinstance(value, dict):
        for key in value:
            if key not in NEMESIS_KEYS:
                raise loc.error(path + (key,), f"unknown key {key!r} in nemesis (valid: {', '.join(NEMESIS_KEYS)})")
        if "interval" in value:
            interval = value["interval"]
            if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
                raise loc.error(path + ("interval",),
                                f"interval must be a positive number of seconds, got {interval!r}")
        faults_value = value.get("faults", "all")
        path = path + ("faults",)
    else:
        faults_value = value
    if isinstance(faults_value, str):
        items, paths = faults_value.split(","), [path] * len(faults_value.split(","))
    elif isinstance(faults_value, list):
        items, paths = faults_value, [path + (i,) for i in range(len(faults_value))]
    else:
        raise loc.error(path, f"nemesis faults must be a list or a comma list, got {faults_value!r}")
    faults: list[str] = []
    for item, item_path in zip(items, paths, strict=True):
        name = str(item).strip()
        if name == "all":
            return list(FAULTS), interval  # "all": the built-in kinds
        if name == "none":
            continue
        if name not in fault_names():
            raise loc.error(item_path, f"unknown nemesis {name!r} (valid: {', '.join(fault_names())}, all, none)")
        if name not in faults:
            faults.append(name)
    return faults, interval


def validate_schedule(value: Any, cfg: RunConfig, loc: Located | None = None,
                      path: tuple = ("schedule",)) -> list[dict]:
    """A schedule (list of steps, or a repeating cycle) -> sorted absolute steps
    [{"at": s, "f": ..., "value": {...} | None}], every step checked."""
    loc = loc or Located("<schedule>")
    names = _schedule_names(value, cfg)
    if isinstance(value, dict):
        for key in value:
            if key not in REPEAT_KEYS:
                raise loc.error(path + (key,), f"unknown key {key!r} in schedule (valid: {', '.join(REPEAT_KEYS)})")
        if "period" not in value or "steps" not in value:
            raise loc.error(path, "a repeating schedule needs period and steps")
        period = _number(value["period"], loc, path + ("period",), "period", positive=True)
        start = _number(value.get("start", 0), loc, path + ("start",), "start")
        cycles = value.get("cycles")
        if cycles is not None and (isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 1):
            raise loc.error(path + ("cycles",), f"cycles must be a positive integer, got {cycles!r}")
        steps_value = value["steps"]
        if not isinstance(steps_value, list) or not steps_value:
            raise loc.error(path + ("steps",), "steps must be a non-empty list")
        cycle = [_step(s, cfg, loc, path + ("steps", i), names) for i, s in enumerate(steps_value)]
        for i, step in enumerate(cycle):
            if step["at"] >= period:
                raise loc.error(path + ("steps", i, "at"), f"at {step['at']} is not inside the period {period}")
        max_cycles = cycles if cycles is not None else 100_000
        steps = []
        n = 0
        while n < max_cycles and start + n * period < cfg.time_limit:
            for step in cycle:
                at = start + n * period + step["at"]
                if at < cfg.time_limit:
                    steps.append({**step, "at": round(at, 3)})
            n += 1
    elif isinstance(value, list):
        steps = [_step(s, cfg, loc, path + (i,), names) for i, s in enumerate(value)]
        for i, step in enumerate(steps):
            if step["at"] >= cfg.time_limit:
                raise loc.error(path + (i, "at"), f"at {step['at']} s is not before the time limit "
                                f"({cfg.time_limit} s)")
    else:
        raise loc.error(path, "schedule must be a list of steps or a mapping with period and steps")
    steps.sort(key=lambda s: s["at"])
    return steps


def _number(value: Any, loc: Located, path: tuple, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (positive and value == 0):
        kind = "a positive" if positive else "a non-negative"
        raise loc.error(path, f"{name} must be {kind} number of seconds, got {value!r}")
    return float(value)


MAX_ADDED_NODES = 32  # the most nodes a run may add (the local provisioner's bound)


def _schedule_names(value: Any, cfg: RunConfig) -> list[str]:
    """The node names steps may use: the run's nodes, and in a schedule that grows the cluster
    (membership grow, replace or add-learner) the ids nodes added mid-run get, n<nodes+1>
    onwards, so that a reproduction can name the nodes a run added (numbered in the order added)."""
    raw = value.get("steps") if isinstance(value, dict) else value
    adding = ("grow", "replace", "add-learner")
    grows = any(isinstance(s, dict) and s.get("f") == "membership" and s.get("change") in adding
                for s in raw or ()) if isinstance(raw, list) else False
    if not grows and not (cfg.nemesis and "membership" in cfg.nemesis):
        return node_names(cfg.nodes)
    return node_names(cfg.nodes + MAX_ADDED_NODES)


def _step(step: Any, cfg: RunConfig, loc: Located, path: tuple, names: list[str] | None = None) -> dict:
    if not isinstance(step, dict):
        raise loc.error(path, f"a schedule step must be a mapping like {{at: 5, f: heal}}, got {step!r}")
    if "f" not in step:
        raise loc.error(path, f"schedule step has no f (valid: {', '.join(nemesis_fs())})")
    f = step["f"]
    if f not in nemesis_fs():
        raise loc.error(path + ("f",), f"unknown nemesis op {f!r} (valid: {', '.join(nemesis_fs())})")
    if "at" not in step:
        raise loc.error(path, "schedule step has no at (seconds since the load started)")
    at = _number(step["at"], loc, path + ("at",), "at")
    params = step_params(f)
    for key in step:
        if key not in ("at", "f") and key not in params:
            valid = ", ".join(["at", "f", *params])
            raise loc.error(path + (key,), f"unknown key {key!r} for {f} (valid: {valid})")
    for key, required in params.items():
        if required and key not in step:
            raise loc.error(path, f"{f} needs {key}")
    value = {k: v for k, v in step.items() if k not in ("at", "f")}
    names = names or node_names(cfg.nodes)
    if f == "partition":
        topology = value["topology"]
        if topology not in TOPOLOGIES:
            raise loc.error(path + ("topology",), f"unknown topology {topology!r} (valid: {', '.join(TOPOLOGIES)})")
        if topology == "groups":
            if "groups" not in value:
                raise loc.error(path, "topology groups needs groups: [[n1, n2], [n3, n4, n5]]")
            value["groups"] = _groups(value["groups"], names, loc, path + ("groups",))
        elif "groups" in value:
            raise loc.error(path + ("groups",), "groups is only for topology: groups")
        if "node" in value:
            if topology not in ("isolate-one", "deaf-one", "mute-one"):
                raise loc.error(path + ("node",), "node is only for topology: isolate-one, deaf-one, mute-one")
            _node_name(value["node"], names, loc, path + ("node",))
        if topology == "one-way":
            if "links" not in value:
                raise loc.error(path, "topology one-way needs links: [[sender, receiver], ...] "
                                "(the receiver stops hearing the sender)")
            from chaos.nemesis.topology import make_partition
            try:
                make_partition({"topology": "one-way", "links": value["links"]}, names, None)
            except ValueError as e:
                raise loc.error(path + ("links",), str(e)) from None
        elif "links" in value:
            raise loc.error(path + ("links",), "links is only for topology: one-way")
    elif f in ("kill", "pause", "clock-skew"):
        value["target"] = _target(value["target"], names, loc, path + ("target",))
    elif f == "start":
        target = value.get("target", "killed")
        value["target"] = "killed" if target == "killed" else _target(target, names, loc, path + ("target",))
    elif "target" in value:  # a plugin's fault kind that takes a target: the same targets
        value["target"] = _target(value["target"], names, loc, path + ("target",))
    if f == "membership":
        from chaos.nemesis.membership import check_value as check_membership
        try:
            check_membership(value)
        except ValueError as e:
            key = "change" if "unknown change" in str(e) else "node"
            raise loc.error(path + (key,) if key in value else path, str(e)) from None
    if f in ("lossy", "slow", "throttle"):  # link faults: their numbers and links, checked now
        from chaos.nemesis.packet import KINDS, check_value
        kind = next(k for k, (start, _, _) in KINDS.items() if start == f)
        try:
            check_value(kind, value, names)
        except ValueError as e:
            raise loc.error(path, str(e)) from None
    if f == "clock-skew":
        mode = value["mode"]
        if mode not in CLOCK_MODES:
            raise loc.error(path + ("mode",), f"unknown clock mode {mode!r} (valid: {', '.join(CLOCK_MODES)})")
        if mode in ("bump", "strobe"):
            delta = value.get("delta")
            if isinstance(delta, bool) or not isinstance(delta, (int, float)) or delta == 0:
                raise loc.error(path + ("delta",) if "delta" in value else path,
                                f"clock mode {mode} needs delta: a non-zero number of seconds (e.g. 5 or -5)")
        if mode == "strobe":
            value.setdefault("period", 1.0)
            _number(value["period"], loc, path + ("period",), "period", positive=True)
        if mode == "rate":
            rate = value.get("rate")
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
                raise loc.error(path + ("rate",) if "rate" in value else path,
                                "clock mode rate needs rate: a positive clock speed factor (e.g. 0.5 or 2)")
    return {"at": at, "f": f, "value": value or None}


def _node_name(name: Any, names: list[str], loc: Located, path: tuple) -> str:
    if name not in names:
        raise loc.error(path, f"unknown node {name!r} (valid: {', '.join(names)})")
    return name


def _target(target: Any, names: list[str], loc: Located, path: tuple) -> str | list[str]:
    if isinstance(target, list):
        if not target:
            raise loc.error(path, "a target list needs at least one node")
        for i, name in enumerate(target):
            _node_name(name, names, loc, path + (i,))
        if len(set(target)) != len(target):
            raise loc.error(path, f"target lists a node twice: {target}")
        return list(target)
    if target in TARGETS:
        return target
    if target in names:
        return [target]
    raise loc.error(path, f"unknown target {target!r} (valid: {', '.join(TARGETS)}, a node "
                    f"({', '.join(names)}) or a list of nodes)")


def _groups(groups: Any, names: list[str], loc: Located, path: tuple) -> list[list[str]]:
    """Two nodes can talk iff some group holds both. Disjoint groups are a plain partition;
    overlapping groups describe a bridge or a ring (what `reproduce` replays them as)."""
    if not isinstance(groups, list) or len(groups) < 2 or not all(isinstance(g, list) and g for g in groups):
        raise loc.error(path, "groups must be a list of at least two non-empty lists of nodes")
    seen: set[str] = set()
    for i, group in enumerate(groups):
        for j, name in enumerate(group):
            _node_name(name, names, loc, path + (i, j))
        if len(set(group)) != len(group):
            raise loc.error(path + (i,), f"group {group} names a node twice")
        seen.update(group)
    # names beyond the run's own (a schedule with membership changes: see _schedule_names): the
    # nodes in the cluster at that moment are not known here, so no such check
    missing = [n for n in names if n not in seen] if len(names) <= MAX_ADDED_NODES else []
    if missing:
        raise loc.error(path, f"nodes {', '.join(missing)} are in no group (every node must be in one)")
    return [list(g) for g in groups]


def validate_steps(steps: list[dict], cfg: RunConfig, source: str = "<schedule>") -> list[dict]:
    """Validate already-normalized steps ({"at", "f", "value"}), e.g. from a config.json."""
    flat = []
    for s in steps:
        if not isinstance(s, dict) or "f" not in s:
            raise ScenarioError(source, None, f"malformed schedule step {s!r}")
        flat.append({"at": s.get("at"), "f": s["f"], **(s.get("value") or {})})
    return validate_schedule(flat, cfg, Located(source))


# -- compiling ------------------------------------------------------------------------------------

def compile_nemesis(cfg: RunConfig) -> Generator:
    """A validated scenario (or run config) -> its nemesis generator: the explicit schedule as
    ops timed at their `at`, or else the seeded random schedule over cfg.nemesis; in both, only
    ops before cfg.time_limit (seconds after the start of the run)."""
    if cfg.schedule is not None:
        return before(cfg.time_limit, schedule_generator(cfg.schedule))
    if not cfg.nemesis:
        return EMPTY
    return before(cfg.time_limit, random_nemesis(cfg.nemesis, cfg.nemesis_interval, cfg.seed, cfg.nodes))
