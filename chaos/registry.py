"""Registries of the pluggable parts, filled from Python entry points.

A plugin that lives in its own package (outside this tree) declares, in its pyproject.toml:

    [project.entry-points."splitbrain.dbs"]
    mydb = "mypkg.db:make_db"            # (config: RunConfig, run_id: str) -> chaos.interfaces.DB
    [project.entry-points."splitbrain.workloads"]
    mywl = "mypkg.workload:MyWorkload"   # a workloads.base.Workload subclass (built with the config)
    [project.entry-points."splitbrain.faults"]
    myfault = "mypkg.faults:KIND"        # a chaos.faults.FaultKind
    [project.entry-points."splitbrain.checkers"]
    mycheck = "mypkg.check:check"        # (ops, context: dict) -> {"valid": ..., ...}

and `splitbrain run --db mydb --workload mywl`, `nightly` and `reproduce` find them. The parts
that ship with splitbrain are registered the same way (pyproject.toml), with the table below as
a fallback for a checkout that was never installed.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any, Iterator

GROUPS = ("splitbrain.dbs", "splitbrain.workloads", "splitbrain.faults", "splitbrain.checkers")

BUILTIN: dict[str, dict[str, str]] = {
    "splitbrain.dbs": {"raftnode": "systems.raftnode.db:make_db"},
    "splitbrain.workloads": {"register": "workloads.register:RegisterWorkload",
                             "set": "workloads.set:SetWorkload"},
    "splitbrain.faults": {},
    "splitbrain.checkers": {},
}


class RegistryError(LookupError):
    """A name that no registry entry has, or an entry that does not load."""


def _entry_points(group: str) -> dict[str, str]:
    found = dict(BUILTIN.get(group, {}))
    try:
        eps = metadata.entry_points(group=group)
    except Exception:  # noqa: BLE001 - a broken distribution must not stop the built-ins
        eps = metadata.EntryPoints(())
    for ep in eps:
        found[ep.name] = ep.value
    return found


def names(group: str) -> list[str]:
    return sorted(_entry_points(group))


def _load(group: str, name: str, target: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise RegistryError(f"{group} entry {name!r} ({target}) does not load: {e}") from e
    return obj


def load(group: str, name: str) -> Any:
    entries = _entry_points(group)
    if name not in entries:
        kind = group.split(".", 1)[1].rstrip("s")
        raise RegistryError(f"unknown {kind} {name!r} (valid: {', '.join(sorted(entries)) or 'none'})")
    return _load(group, name, entries[name])


def entry_point_objects(group: str) -> Iterator[tuple[str, Any]]:
    """Every entry of a group, loaded (for registries that index by a field of the object)."""
    for name, target in _entry_points(group).items():
        yield name, _load(group, name, target)


def db_defaults(name: str) -> dict:
    """RunConfig fields a DB wants when the user does not say (e.g. {"provisioner": "local",
    "nodes": 1} for a single-server system): the factory's `defaults` attribute."""
    try:
        factory = load("splitbrain.dbs", name)
    except RegistryError:
        return {}  # validation reports the unknown name
    defaults = getattr(factory, "defaults", None)
    return dict(defaults) if isinstance(defaults, dict) else {}
