"""The few small interfaces a test is composed of, in the spirit of Jepsen.

    DB        - lifecycle of the system under test on a set of nodes (provisioners implement it)
    Client    - one worker's connection to the system: open, invoke, close
    Nemesis   - injects and heals faults
    Generator - what to do next (client ops and nemesis ops), bounded in count and time
    Checker   - decides whether a history is correct

The runner (chaos.runner) composes one of each. A second system under test plugs in by
implementing DB (or reusing a provisioner with another NodeSpec) and Client.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Iterable

from chaos.history import Op


@dataclass
class Node:
    """One node of a running cluster, as the framework sees it."""

    id: str
    client_url: str              # where clients send HTTP requests, e.g. http://10.77.0.2:8000
    address: str                 # the node's IP on the test network (or 127.0.0.x for local)
    peer_port: int = 9000
    client_port: int = 8000
    meta: dict = field(default_factory=dict)  # provisioner specifics (container id, pid, ...)


class DB(abc.ABC):
    """Lifecycle of the system under test. Implemented by provisioners (docker, local)."""

    #: the faults this DB can carry: subset of {"partition", "kill", "pause", "clock"}
    supported_faults: frozenset = frozenset()

    @abc.abstractmethod
    def setup(self, nodes: int) -> list[Node]:
        """Create the network and nodes, start the service on each, return the nodes."""

    @abc.abstractmethod
    def teardown(self) -> None:
        """Remove everything setup created. Idempotent; safe after a partial setup."""

    @abc.abstractmethod
    def start(self, node: Node) -> None:
        """(Re)start the service process on a node whose process is not running."""

    @abc.abstractmethod
    def kill(self, node: Node) -> None:
        """SIGKILL the service process (the node's network identity and data survive)."""

    @abc.abstractmethod
    def pause(self, node: Node) -> None:
        """SIGSTOP the service process."""

    @abc.abstractmethod
    def resume(self, node: Node) -> None:
        """SIGCONT the service process."""

    @abc.abstractmethod
    def exec(self, node: Node, argv: list[str], check: bool = True) -> str:
        """Run a command in the node's environment (its network namespace); return stdout."""

    @abc.abstractmethod
    def collect_logs(self, node: Node, dest_dir: str) -> list[str]:
        """Copy the node's log files into dest_dir; return the paths written."""

    def set_clock(self, node: Node, spec: str) -> None:
        """Set the node's libfaketime spec (e.g. "+5 x0.5", "-2", "+0 x1"); optional."""
        raise NotImplementedError(f"{type(self).__name__} does not support clock faults")


class Client(abc.ABC):
    """One worker's view of the system. invoke() never raises for an expected failure: it
    returns the completion (type ok/fail/info) for the given invocation."""

    @abc.abstractmethod
    def open(self, nodes: list[Node], node: Node) -> "Client":
        """Return a client bound to `node` (preferred node; may follow redirects)."""

    @abc.abstractmethod
    def invoke(self, op: Op) -> Op:
        """Perform the operation; return its completion."""

    def close(self) -> None:
        pass


class Nemesis(abc.ABC):
    #: the fault kinds this nemesis handles, e.g. {"partition"} (f names in the history)
    fs: frozenset = frozenset()

    def setup(self, db: DB, nodes: list[Node]) -> None:
        pass

    @abc.abstractmethod
    def invoke(self, op: Op) -> Op:
        """Inject or heal; return the completion op (type info, value = what was done)."""

    def heal_all(self) -> None:
        """Undo every fault this nemesis injected."""

    def teardown(self) -> None:
        self.heal_all()


class Checker(abc.ABC):
    @abc.abstractmethod
    def check(self, history: list[Op], opts: dict | None = None) -> dict:
        """Return at least {"valid": True | False | "unknown"} plus details."""


def merge_valid(values: Iterable[Any]) -> Any:
    """Combine verdicts as Jepsen does: invalid beats unknown beats valid."""
    values = list(values)
    if any(v is False for v in values):
        return False
    if any(v != True for v in values):  # noqa: E712 - "unknown" and anything odd count as unknown
        return "unknown"
    return True
