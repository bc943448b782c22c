"""Provisioners: bring a cluster of nodes up and down (docker containers or local processes).

    db = get_db("docker", run_id, nodes=5, options=NodeOptions())
    nodes = db.setup()          # waits for a leader
    ...
    db.teardown()               # idempotent; removes everything the run created
"""

from __future__ import annotations

from chaos.provision.base import NodeOptions, ProvisionError, Provisioner

PROVISIONERS = ("docker", "local")


def get_db(name: str, run_id: str, nodes: int = 5, options: NodeOptions | None = None, **kw) -> Provisioner:
    """A provisioner by name ("docker" or "local"); extra keywords go to its constructor
    (docker: subnet, image, leader_timeout; local: base_address, data_root, leader_timeout)."""
    if name == "docker":
        from chaos.provision.docker import DockerDB as cls
    elif name == "local":
        from chaos.provision.local import LocalDB as cls
    else:
        raise ValueError(f"unknown provisioner {name!r} (choose one of: {', '.join(PROVISIONERS)})")
    import inspect
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "run_id", "options", "nodes")]
    for key in kw:
        if key not in accepted:
            raise ValueError(f"the {name} provisioner has no option {key!r} (its options: {', '.join(accepted)})")
    return cls(run_id, options=options, nodes=nodes, **kw)


__all__ = ["get_db", "NodeOptions", "ProvisionError", "Provisioner", "PROVISIONERS"]
