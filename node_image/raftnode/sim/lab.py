"""Scripted scenarios on the simulator, in the spirit of the MIT 6.5840 Raft lab tester.

    lab = Lab(3)
    leader = lab.check_one_leader()
    index = lab.one("x", expected_servers=3)
    lab.disconnect(leader); lab.crash("n2"); lab.restart("n2"); ...
    lab.add_learner("n4"); lab.promote("n4"); lab.remove("n1"); lab.transfer("n2")

Every step still runs the simulator's invariant checks (raising Violation on the first problem).
Commands are KV puts whose value is the test's token, so applied logs can be compared by value.
"""

from __future__ import annotations

from ..membership import PROMOTE, REMOVE, ConfChange
from ..types import LEADER, NotLeader
from .checks import ABSENT
from .cluster import ARRIVE, US, Cluster, NetConfig


class LabError(AssertionError):
    pass


class _Waiter:
    """A one-shot client: receives the node's answer to one request."""

    def __init__(self):
        self.answer = None

    def on_reply(self, payload):
        self.answer = payload[1]

    def on_timeout(self, request):
        pass


class _Req:
    __slots__ = ("client", "command", "is_read", "node", "sent_at")

    def __init__(self, client, command, is_read, node, now):
        self.client, self.command, self.is_read, self.node, self.sent_at = client, command, is_read, node, now


class Lab(Cluster):
    def __init__(self, n: int = 3, seed: int = 1, reliable: bool = True, **kwargs):
        super().__init__(n, seed=seed, net=NetConfig(), **kwargs)
        self.disconnected: set[str] = set()
        self._token = 0
        if not reliable:
            self.set_unreliable(True)

    # -- faults ----------------------------------------------------------------------------------
    def set_unreliable(self, unreliable: bool, drop: float = 0.1, duplicate: float = 0.05,
                       delay_max_us: int = 25_000) -> None:
        self.net.drop = drop if unreliable else 0.0
        self.net.duplicate = duplicate if unreliable else 0.0
        self.net.delay_max_us = delay_max_us if unreliable else NetConfig().delay_max_us

    def disconnect(self, node_id: str) -> None:
        super().disconnect(node_id)
        self.disconnected.add(node_id)

    def connect(self, node_id: str) -> None:
        self.disconnected.discard(node_id)
        self.cut = {(a, b) for a, b in self.cut
                    if not ((a == node_id and b not in self.disconnected)
                            or (b == node_id and a not in self.disconnected))}
        self.log(f"connect {node_id}")

    def restart(self, node_id: str) -> None:
        self.crash(node_id)
        self.start(node_id)

    def connected_up(self) -> list[str]:
        return [i for i in self.ids if self.nodes[i].up and i not in self.disconnected]

    # -- observations ----------------------------------------------------------------------------
    def wait_until(self, predicate, timeout: float = 5.0, step: float = 0.01) -> bool:
        deadline = self.now + int(timeout * US)
        while self.now < deadline:
            if predicate():
                return True
            self.run_for(step)
        return bool(predicate())

    def leaders_by_term(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for i in self.connected_up():
            core = self.nodes[i].core
            if core.role == LEADER:
                out.setdefault(core.term, []).append(i)
        return out

    def check_one_leader(self, timeout: float = 5.0) -> str:
        """Wait until the connected nodes have exactly one leader in their newest leader term."""
        deadline = self.now + int(timeout * US)
        while self.now < deadline:
            self.run_for(0.05)
            by_term = self.leaders_by_term()
            for term, leaders in by_term.items():
                if len(leaders) > 1:
                    raise LabError(f"term {term} has {len(leaders)} leaders: {leaders}")
            if by_term:
                return by_term[max(by_term)][0]
        raise LabError(f"expected one leader among {self.connected_up()}, got none")

    def check_no_leader(self) -> None:
        for i in self.connected_up():
            if self.nodes[i].core.role == LEADER:
                raise LabError(f"expected no leader among connected nodes, but {i} claims to lead")

    def check_terms(self) -> int:
        terms = {self.nodes[i].core.term for i in self.connected_up()}
        if len(terms) != 1:
            raise LabError(f"connected nodes disagree on the term: {terms}")
        return terms.pop()

    def applied_value(self, node_id: str, index: int):
        """The token committed at index as node_id applied it (None: not applied / not ours)."""
        node = self.nodes[node_id]
        if not node.up or node.kv.last_applied < index:
            return None
        entry = self.checker.ledger[index - 1]
        return entry.data.get("value") if isinstance(entry.data, dict) else None

    def n_committed(self, index: int) -> tuple[int, object]:
        """How many live nodes applied index, and the token there."""
        count = 0
        for i in self.ids:
            node = self.nodes[i]
            if node.up and node.kv.last_applied >= index:
                count += 1
        if count == 0:
            return 0, None
        entry = self.checker.ledger[index - 1]
        return count, entry.data.get("value") if isinstance(entry.data, dict) else None

    # -- commands --------------------------------------------------------------------------------
    def token(self) -> str:
        self._token += 1
        return f"t{self._token}"

    def start_command(self, node_id: str, value, key: str = "k") -> tuple[int, int] | None:
        """Propose a put on node_id if it is a live leader: (index, term), else None."""
        node = self.nodes[node_id]
        if not node.up:
            return None
        try:
            index, term = node.core.propose({"op": "put", "key": key, "value": value})
        except NotLeader:
            return None
        self._process(node)
        return index, term

    def one(self, value, expected_servers: int, retry: bool = True, timeout: float = 10.0) -> int:
        """Like the lab's cfg.one(): get value committed on at least expected_servers nodes."""
        deadline = self.now + int(timeout * US)
        start = 0
        while self.now < deadline:
            index = None
            for k in range(len(self.ids)):
                candidate = self.ids[(start + k) % len(self.ids)]
                if candidate in self.disconnected:
                    continue
                started = self.start_command(candidate, value)
                if started:
                    index = started[0]
                    break
            start += 1
            if index is not None:
                wait_until = self.now + 2 * US
                while self.now < wait_until:
                    count, got = self.n_committed(index)
                    if count >= expected_servers and got == value:
                        return index
                    self.run_for(0.02)
                if not retry:
                    raise LabError(f"one({value!r}) failed to reach agreement on {expected_servers}")
            else:
                self.run_for(0.05)
        raise LabError(f"one({value!r}) failed to reach agreement on {expected_servers} within {timeout}s")

    def write(self, node_id: str, key: str, value, timeout: float = 2.0):
        """A client put through node_id as the HTTP server answers it: ("ok", ...), ("redirect",
        leader) or ("unknown", None); None when no answer came (node down or cut off)."""
        return self._request(node_id, {"op": "put", "key": key, "value": value}, False, timeout)

    def read(self, node_id: str, key: str, timeout: float = 2.0):
        """A linearizable read through node_id, checked by the checker like a client's read."""
        floor = self.checker.read_floor(key)
        answer = self._request(node_id, {"op": "get", "key": key}, True, timeout)
        if answer and answer[0] == "read":
            _, value, served_at = answer
            self.checker.read_completed(node_id, key, served_at, value, floor)
            return ("read", None if value is ABSENT else value, served_at)
        return answer

    def _request(self, node_id: str, command: dict, is_read: bool, timeout: float):
        waiter = _Waiter()
        request = _Req(waiter, command, is_read, node_id, self.now)
        self.at(self.now + 200, ARRIVE, node_id, request)
        if not self.wait_until(lambda: waiter.answer is not None, timeout):
            return None
        answer = waiter.answer
        if answer[0] == "ok" and not is_read:
            _, result, index, term = answer
            self.checker.write_acknowledged(index, term, command["key"])
        return answer

    # -- membership ------------------------------------------------------------------------------
    RETRY = ("no leader", "node down", "change_in_progress", "leader_not_ready", "not_caught_up")

    def change(self, change: ConfChange, timeout: float = 5.0) -> int:
        """Propose `change` to the leader, retrying while it is refused for now (as an operator
        retries a 409 / 503), and wait until the leader that appended it has committed it.
        Returns its index; raises LabError when it is refused for good or times out."""
        deadline = self.now + int(timeout * US)
        outcome = None
        while self.now < deadline:
            leader = self.leader()
            outcome = self.change_once(change)
            if isinstance(outcome, tuple):
                index, term = outcome
                committed = lambda leader=leader, index=index, term=term: self._committed_by(leader, index, term)  # noqa: E731
                if self.wait_until(committed, (deadline - self.now) / US):
                    return index
                outcome = "not committed"
                continue
            if outcome not in self.RETRY and not outcome.startswith(("NotLeader", "TransferInProgress")):
                raise LabError(f"{change.op} {change.node_id} refused: {outcome}")
            self.run_for(0.05)
        raise LabError(f"{change.op} {change.node_id} not done within {timeout}s (last: {outcome})")

    def change_once(self, change: ConfChange, node_id: str | None = None):
        """One attempt: (index, term) once appended, else why it was refused."""
        return Cluster.change(self, change, node_id)

    def _committed_by(self, node_id, index: int, term: int) -> bool:
        node = self.nodes.get(node_id)
        return (node is not None and node.up and node.core.commit_index >= index
                and node.core.term_at(index) == term)

    def add_learner(self, node_id: str, timeout: float = 5.0) -> int:
        """Start node_id with an empty disk and add it as a learner."""
        if node_id not in self.nodes:
            self.add_node(node_id)
        return self.change(self.learner_change(node_id), timeout)

    def promote(self, node_id: str, timeout: float = 10.0) -> int:
        return self.change(ConfChange(PROMOTE, node_id), timeout)

    def remove(self, node_id: str, timeout: float = 5.0) -> int:
        return self.change(ConfChange(REMOVE, node_id), timeout)

    def configuration(self, node_id: str | None = None):
        node_id = node_id or self.check_one_leader()
        return self.nodes[node_id].core.configuration
