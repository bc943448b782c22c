"""Membership changes as faults (Jepsen's membership nemesis), through the DB's Membership
capability: nothing here knows how a system changes its configuration.

    {"f": "membership", "value": {"change": "grow"}}       a new node: provisioned, added as a
                                                           learner, promoted once caught up
    {"f": "membership", "value": {"change": "shrink"}}     a voter removed and its node retired
                                                           (never below MIN_VOTERS voters)
    {"f": "membership", "value": {"change": "replace"}}    grow, then shrink another voter
    {"f": "membership", "value": {"change": "transfer"}}   leadership handed to another voter
    {"f": "membership", "value": {"change": "add-learner"}} grow's first half: a new node added
                                                           as a learner, not promoted
    {"f": "membership", "value": {"change": "promote"}}    grow's second half: a learner (the
                                                           first, or "node") promoted
    {"f": "settle"}                                        finish what is half done (a learner
                                                           left unpromoted), then compare our
                                                           view with the cluster's configuration

"node" names the voter to remove or to hand the leadership to ("leader" for shrink: remove the
leader itself), or the learner to promote; without it one is drawn among the legal ones.
"wait": false (promote) sends the change without waiting for it to commit, for a leader cut off
from its majority (it appends the change and cannot commit it): the outcome is then usually
unknown, and the next op resolves it from the cluster's configuration like any other unknown.
"retire": false (shrink) keeps the removed node in the roster and its process as other faults
left it (killed, say), for a schedule that restarts it later: a configuration that still has
it (a sibling appended elsewhere) may yet count on it. The nemesis keeps its own view of
the configuration (voters, learners, the change in flight) and draws only changes that are legal
from it; a change whose outcome is unknown (a timeout) is resolved by reading the cluster's
configuration before anything else is drawn. Every op's completion carries the steps taken
(each with its outcome: ok, fail, unknown), the view after it and the cluster's configuration.

The nodes added join the run's roster (the list the other nemeses, the final reads and log
collection share) and its status view; retired nodes leave them (their logs are still
collected: Roster.retired).
"""

from __future__ import annotations

import logging
import time

from chaos.history import Op
from chaos.interfaces import CHANGE_FAIL, CHANGE_OK, CHANGE_UNKNOWN, Nemesis, Node, require
from chaos.nemesis.common import complete, current_leader, process_state, value_dict

log = logging.getLogger("splitbrain")

CHANGES = ("grow", "shrink", "replace", "transfer", "add-learner", "promote")
MIN_VOTERS = 3       # a shrink never leaves fewer voters (a minority of one fault would stop it)
MAX_MEMBERS = 7      # a grow never makes more members than this
RETRY_FOR_S = 8.0    # how long a "not now" refusal (a learner catching up, no leader) is retried
CONFIG_WAIT_S = 10.0  # how long an unknown outcome waits for the cluster to say its configuration


def check_value(value: dict, f: str = "membership") -> None:
    """A bad membership value is an error naming the key and the valid choices."""
    if f != "membership":
        return
    change = value.get("change")
    if change not in CHANGES:
        raise ValueError(f"membership: unknown change {change!r} (valid: {', '.join(CHANGES)})")
    node = value.get("node")
    if node is not None:
        if change not in ("shrink", "transfer", "promote"):
            raise ValueError("membership: node is only for change shrink or transfer (a voter) or promote "
                             f"(a learner), not {change}")
        if not isinstance(node, str) or not node:
            raise ValueError(f"membership: node must be a node id or 'leader', got {node!r}")
    for key, only in (("wait", "promote"), ("retire", "shrink")):
        if key in value:
            if change != only:
                raise ValueError(f"membership: {key} is only for change {only}, not {change}")
            if not isinstance(value[key], bool):
                raise ValueError(f"membership: {key} must be true or false, got {value[key]!r}")


def _sorted(ids):
    return sorted(ids, key=lambda s: (len(s), s))


class MembershipNemesis(Nemesis):
    fs = frozenset({"membership", "settle"})

    def __init__(self, db, nodes, view, rng, min_voters: int = MIN_VOTERS, max_members: int = MAX_MEMBERS):
        require(db, "membership", "the membership fault")
        self.db, self.nodes, self.view, self.rng = db, nodes, view, rng
        self.min_voters, self.max_members = min_voters, max_members
        self.voters: set[str] | None = None   # our view; read from the cluster at the first op
        self.learners: set[str] = set()
        self.pending: dict | None = None      # a change whose outcome is not known yet
        self.history: list[dict] = []         # (time, voters, learners) after each op, for reports

    # -- the view --------------------------------------------------------------------------------
    def _by_id(self) -> dict[str, Node]:
        return {n.id: n for n in self.nodes}

    def _init_view(self) -> None:
        if self.voters is not None:
            return
        conf = self._cluster_configuration(wait=CONFIG_WAIT_S)
        if conf is not None:
            self.voters, self.learners = set(conf["voters"]), set(conf["learners"])
        else:  # no leader answered: the bootstrap configuration, every node a voter
            self.voters, self.learners = {n.id for n in self.nodes}, set()

    def _cluster_configuration(self, wait: float = 0.0) -> dict | None:
        deadline = time.monotonic() + wait
        while True:
            try:
                conf = self.db.configuration()
            except Exception as e:  # noqa: BLE001 - a DB that cannot answer now is "unknown"
                log.warning("membership: reading the configuration failed: %s", e)
                conf = None
            if conf is not None and conf.get("committed", True):
                return conf
            if time.monotonic() >= deadline:
                return conf
            time.sleep(0.2)

    def _resolve(self, steps: list[dict]) -> dict | None:
        """After an unknown outcome, the cluster's configuration decides our view."""
        conf = self._cluster_configuration(wait=CONFIG_WAIT_S)
        if conf is not None:
            self.voters, self.learners = set(conf["voters"]), set(conf["learners"])
            self.pending = None
        steps.append({"op": "read-configuration", "outcome": CHANGE_OK if conf else CHANGE_UNKNOWN,
                      "configuration": conf})
        return conf

    def _view(self) -> dict:
        return {"voters": _sorted(self.voters or ()), "learners": _sorted(self.learners)}

    # -- ops -------------------------------------------------------------------------------------
    def invoke(self, op: Op) -> Op:
        value = value_dict(op)
        check_value(value, op.f)
        self._init_view()
        steps: list[dict] = []
        t0 = time.monotonic()
        if self.pending is not None:
            self._resolve(steps)
        if op.f == "settle":
            result = self._settle(steps)
        elif op.f == "membership":
            change = value["change"]
            result = getattr(self, f"_{change.replace('-', '_')}")(value, steps)
        else:
            raise ValueError(f"the membership nemesis does not handle {op.f!r} (it handles membership, settle)")
        result.update(self._view(), steps=steps, ms=round((time.monotonic() - t0) * 1000, 1))
        self.history.append({"time": time.monotonic_ns(), **self._view()})
        return complete(op, result)

    def _step(self, steps: list[dict], name: str, node: str | None, call) -> dict:
        t0 = time.monotonic()
        deadline = t0 + RETRY_FOR_S
        tries = 0
        while True:
            tries += 1
            try:
                outcome = dict(call())
            except Exception as e:  # noqa: BLE001 - a failed provisioning step is a failed change
                outcome = {"outcome": CHANGE_FAIL, "detail": f"{type(e).__name__}: {e}"}
            if not (outcome.get("outcome") == CHANGE_FAIL and outcome.get("retry")) or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        step = {"op": name, "node": node, "outcome": outcome.get("outcome", CHANGE_UNKNOWN),
                "detail": outcome.get("detail", ""), "tries": tries,
                "ms": round((time.monotonic() - t0) * 1000, 1)}
        if outcome.get("error"):
            step["error"] = outcome["error"]
        steps.append(step)
        return step

    def _grow(self, value: dict, steps: list[dict]) -> dict:
        return self._add(steps, "grow", promote=True)

    def _add_learner(self, value: dict, steps: list[dict]) -> dict:
        return self._add(steps, "add-learner", promote=False)

    def _add(self, steps: list[dict], change: str, promote: bool) -> dict:
        if len(self.voters) + len(self.learners) >= self.max_members:
            return {"change": change, "outcome": "skipped",
                    "detail": f"the cluster has {self.max_members} members already (the most this nemesis makes)"}
        learner = next(iter(_sorted(self.learners)), None) if promote else None
        if learner is None:
            t0 = time.monotonic()
            try:
                node = self.db.provision_node()
            except Exception as e:  # noqa: BLE001
                steps.append({"op": "provision", "outcome": CHANGE_FAIL, "detail": f"{type(e).__name__}: {e}"})
                return {"change": change, "outcome": CHANGE_FAIL, "nodes": []}
            steps.append({"op": "provision", "node": node.id, "outcome": CHANGE_OK,
                          "ms": round((time.monotonic() - t0) * 1000, 1)})
            self._join_roster(node)
            self.pending = {"op": "add-learner", "node": node.id}
            step = self._step(steps, "add-learner", node.id, lambda: self.db.add_learner(node))
            if step["outcome"] == CHANGE_OK:
                self.learners.add(node.id)
                self.pending = None
            elif step["outcome"] == CHANGE_UNKNOWN:
                self._resolve(steps)
            else:
                self.pending = None
            if node.id not in self.learners:
                # never added: retire the node we started, it can never become a member now
                self._retire(node.id, steps)
                return {"change": change, "outcome": step["outcome"], "nodes": [node.id]}
            if not promote:
                return {"change": change, "outcome": CHANGE_OK, "nodes": [node.id]}
            learner = node.id
        return self._promote_learner(learner, steps, change)

    def _promote(self, value: dict, steps: list[dict]) -> dict:
        learner = value.get("node") or next(iter(_sorted(self.learners)), None)
        if learner is None or learner not in self.learners:
            return {"change": "promote", "outcome": "skipped",
                    "detail": f"{learner} is not a learner" if learner else "no learner to promote"}
        return self._promote_learner(learner, steps, "promote", wait=value.get("wait", True))

    def _promote_learner(self, learner: str, steps: list[dict], change: str, wait: bool = True) -> dict:
        self.pending = {"op": "promote", "node": learner}
        if wait:
            step = self._step(steps, "promote", learner, lambda: self.db.promote(learner))
        else:
            step = self._step(steps, "promote", learner, lambda: self.db.promote(learner, wait=False))
        if step["outcome"] == CHANGE_OK:
            self.learners.discard(learner)
            self.voters.add(learner)
            self.pending = None
        elif step["outcome"] == CHANGE_UNKNOWN:
            if wait:
                self._resolve(steps)
            # not waiting: the change stays pending (our view keeps the learner a learner) and the
            # next op resolves it from the cluster's configuration
        else:
            self.pending = None  # still a learner: the next grow or settle promotes it
        return {"change": change, "outcome": step["outcome"], "nodes": [learner]}

    def _shrink(self, value: dict, steps: list[dict], change: str = "shrink", avoid: str | None = None) -> dict:
        if len(self.voters) <= self.min_voters:
            return {"change": change, "outcome": "skipped",
                    "detail": f"{len(self.voters)} voters: a shrink never leaves fewer than {self.min_voters}"}
        wanted = value.get("node")
        if wanted == "leader":
            wanted = current_leader(self.db, self.view)
            if wanted is None:
                return {"change": change, "outcome": "skipped", "detail": "no leader to remove"}
        if wanted is not None and wanted not in self.voters:
            return {"change": change, "outcome": "skipped", "detail": f"{wanted} is not a voter"}
        victim = wanted or self.rng.choice(_sorted(self.voters - {avoid}))
        self.pending = {"op": "remove", "node": victim}
        step = self._step(steps, "remove", victim, lambda: self.db.remove(victim))
        if step["outcome"] == CHANGE_OK:
            self.voters.discard(victim)
            self.pending = None
        elif step["outcome"] == CHANGE_UNKNOWN:
            self._resolve(steps)
        else:
            self.pending = None
        if victim not in self.voters and victim not in self.learners and victim in self._by_id():
            if value.get("retire", True):
                self._retire(victim, steps)
        return {"change": change, "outcome": step["outcome"], "nodes": [victim]}

    def _remove_learner(self, learner: str, steps: list[dict]) -> None:
        self.pending = {"op": "remove", "node": learner}
        step = self._step(steps, "remove", learner, lambda: self.db.remove(learner))
        if step["outcome"] == CHANGE_OK:
            self.learners.discard(learner)
            self.pending = None
        elif step["outcome"] == CHANGE_UNKNOWN:
            self._resolve(steps)
        else:
            self.pending = None
        if learner not in self.learners and learner not in self.voters:
            self._retire(learner, steps)

    def _replace(self, value: dict, steps: list[dict]) -> dict:
        grown = self._grow({}, steps)
        if grown["outcome"] != CHANGE_OK:
            return {**grown, "change": "replace"}
        new = grown["nodes"][0]
        shrunk = self._shrink({}, steps, change="replace", avoid=new)
        return {"change": "replace", "outcome": shrunk["outcome"], "nodes": [new, *shrunk.get("nodes", [])]}

    def _transfer(self, value: dict, steps: list[dict]) -> dict:
        leader = current_leader(self.db, self.view)
        wanted = value.get("node")
        held = process_state(self.db).held_down()
        choices = _sorted(v for v in self.voters if v != leader and v not in held) or \
            _sorted(v for v in self.voters if v != leader)
        if wanted is not None and wanted not in self.voters:
            return {"change": "transfer", "outcome": "skipped", "detail": f"{wanted} is not a voter"}
        if wanted is None and not choices:
            return {"change": "transfer", "outcome": "skipped", "detail": "no other voter"}
        to = wanted or self.rng.choice(choices)
        step = self._step(steps, "transfer-leadership", to, lambda: self.db.transfer_leadership(to))
        return {"change": "transfer", "outcome": step["outcome"], "nodes": [to], "from": leader}

    def _settle(self, steps: list[dict]) -> dict:
        for learner in _sorted(self.learners):
            self._promote_learner(learner, steps, "settle")
            if learner in self.learners:
                # one that cannot be promoted is removed: the run ends with voters only
                self._remove_learner(learner, steps)
        conf = self._cluster_configuration(wait=CONFIG_WAIT_S)
        agrees = conf is not None and set(conf["voters"]) == self.voters and set(conf["learners"]) == self.learners
        if conf is not None and not agrees:
            log.warning("membership: the cluster's configuration %s differs from the nemesis's view %s",
                        conf, self._view())
        return {"change": "settle", "outcome": CHANGE_OK if conf else CHANGE_UNKNOWN,
                "configuration": conf, "agrees": agrees}

    # -- the roster ------------------------------------------------------------------------------
    def _join_roster(self, node: Node) -> None:
        if node.id not in self._by_id():
            self.nodes.append(node)
        if self.view is not None and hasattr(self.view, "add_node"):
            self.view.add_node(node)

    def _retire(self, node_id: str, steps: list[dict]) -> None:
        node = self._by_id().get(node_id)
        if node is None:
            return
        t0 = time.monotonic()
        try:
            self.db.retire_node(node)
            outcome, detail = CHANGE_OK, ""
        except Exception as e:  # noqa: BLE001
            outcome, detail = CHANGE_FAIL, f"{type(e).__name__}: {e}"
        steps.append({"op": "retire", "node": node_id, "outcome": outcome, "detail": detail,
                      "ms": round((time.monotonic() - t0) * 1000, 1)})
        self.nodes[:] = [n for n in self.nodes if n.id != node_id]
        retired = getattr(self.nodes, "retired", None)
        if retired is not None:
            retired.append(node)
        if self.view is not None and hasattr(self.view, "remove_node"):
            self.view.remove_node(node_id)
        state = process_state(self.db)
        with state.lock:
            state.killed.discard(node_id)
            state.paused.discard(node_id)

    def heal_all(self) -> None:
        """Membership changes are not undone at the end (the cluster keeps its configuration);
        the final settle op finishes what is half done."""
