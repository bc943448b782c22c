"""What a workload is to the runner: a generator of client operations, the final reads, the
client each worker uses, and the checkers that judge its history.

A workload is generic: "register" means read/write/cas on keys with unique values, whatever
system answers them. The client that speaks to a given system comes from that system's DB
(`db.client("register", client_id)`); a workload written for one system can bring its own by
overriding `client()`. A plugin registers a Workload subclass in the `splitbrain.workloads`
entry point group (chaos.registry).
"""

from __future__ import annotations

from chaos.interfaces import DB, Client


class Workload:
    name = "base"
    #: the checkers' name for this workload (checkers.check_history(workload=...))
    checker_workload = "base"
    #: True when the verdict is unknown unless every final read succeeded (set)
    final_reads_required = False
    #: more checkers, by name in the `splitbrain.checkers` registry (chaos.registry)
    checkers: tuple[str, ...] = ()

    def __init__(self, config):
        self.config = config

    def generator(self):
        """The client operations of the load, as a generator value (chaos.generator): e.g.
        clients(stagger(0.01, mix([...]))). The runner bounds it by the time limit and runs it
        beside the fault schedule."""
        raise NotImplementedError(f"the {self.name} workload must say what its clients do (generator())")

    def client(self, db: DB, client_id: str) -> Client:
        """The client one worker process uses: by default the DB's client for this workload."""
        return db.client(self.name, client_id)

    def final_reads(self, keys: list[str]) -> list[tuple[str, str, object]]:
        """Operations (f, key, value) read at the very end, through the leader."""
        return [("read", key, None) for key in keys]


def get_workload(name: str, config) -> Workload:
    from chaos.registry import load

    cls = load("splitbrain.workloads", name)
    return cls(config)
