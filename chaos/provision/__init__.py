"""Provisioners: run a system's service on nodes (docker containers, local processes), and the
DB a run uses, found by name in the registry.

    db = make_db(config, run_id)   # the config's db (raftnode, etcd, a plugin's) on its provisioner
    nodes = db.setup(config.nodes) # waits until the service is ready
    ...
    db.teardown()                  # idempotent; removes everything the run created
"""

from __future__ import annotations

from chaos.provision.base import ProvisionedDB, ProvisionError

PROVISIONERS = ("docker", "local", "ssh")


def make_db(config, run_id: str, **overrides):
    """The DB of a run: the `splitbrain.dbs` registry entry named config.db, built with the
    run's config (it picks the provisioner and reads its node options); overrides are
    constructor settings decided for this run (chaos.provision.allocate.run_overrides)."""
    from chaos.registry import load

    factory = load("splitbrain.dbs", config.db)
    return factory(config, run_id, **overrides) if overrides else factory(config, run_id)


__all__ = ["make_db", "ProvisionError", "ProvisionedDB", "PROVISIONERS"]
