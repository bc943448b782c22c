"""Cluster membership (issue 12): the configuration, single-server changes, and how they travel.

Pure: no I/O. The core (raftnode.core) decides when a change may be made; this module says what
a configuration is and which changes are legal from a given one.

The algorithm is the thesis's single-server change (Ongaro 2014, §4.1): each change adds or
removes at most one voter, so the majorities of the old and the new configuration always overlap
and no joint configuration is needed. The admin API's operations are such changes by nature:

    add_learner  a new member that receives the log but does not vote or count (no voter changes)
    promote      a learner becomes a voter (+1 voter)
    remove       a voter or a learner leaves (-1 voter at most); its id is retired for good

A configuration is an entry in the log (Entry kind CONFIG, data = Configuration.to_json()) and
takes effect on append: every node uses the latest configuration in its log, committed or not.
So a follower whose suffix is truncated goes back to the latest configuration left in its log
(or its snapshot's). The core adds the two rules that make this safe:

  * one change at a time: a leader appends a configuration only once the previous one committed;
  * a leader appends one only after an entry of its own term committed (its no-op). Without this
    rule two leaders of different terms can each append a sibling change of one configuration,
    and the two children have disjoint majorities (Ongaro's raft-dev report of 2015; the seeded
    bug `unsafe-membership` drops the rule).

Each entry carries the whole configuration, not a delta: a node knows the configuration in force
at any index from the latest entry at or below it. Members carry their addresses (so a new node
learns where everyone is, and everyone learns where the new node is, from the log) and their
incarnation: a random id the node draws once, on its empty disk, and keeps there. The
configuration names the incarnation it admitted, and peers refuse a connection that presents
another one, so a node id is never reused with an empty disk (a wiped node must be removed and
added again under a new id; removed ids are retired and cannot be added again).

Snapshots carry the configuration in force at their index: pack_snapshot() puts it in front of
the state machine's bytes, so the snapshot file and InstallSnapshot carry it with the state.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

VOTER, LEARNER = "voter", "learner"
ADD_LEARNER, PROMOTE, REMOVE = "add_learner", "promote", "remove"
CHANGE_OPS = (ADD_LEARNER, PROMOTE, REMOVE)

MAX_MEMBERS = 64
MAX_ID_BYTES = 255           # as the peer protocol's node ids (codec.MAX_ID_BYTES)
MAX_INCARNATION_CHARS = 64
MAX_ADDRESS_CHARS = 300


class ChangeRefused(Exception):
    """A membership change (or leadership transfer) that is not legal now; nothing was appended.
    `code` is the machine-readable reason the admin API answers with (HTTP 409)."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class ConfChange:
    op: str
    node_id: str
    peer: str | None = None         # add_learner: "host:port" of its peer protocol
    client: str | None = None       # add_learner: "host:port" of its HTTP API
    incarnation: str | None = None  # add_learner: the id the node drew on its disk


@dataclass(frozen=True)
class Member:
    role: str
    peer: str | None = None
    client: str | None = None
    incarnation: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "peer": self.peer, "client": self.client,
                "incarnation": self.incarnation}


def id_problem(node_id: object) -> str | None:
    if not isinstance(node_id, str) or not node_id:
        return "a node id must be a non-empty string"
    if len(node_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        return f"node id {node_id[:40]!r}... is longer than {MAX_ID_BYTES} bytes"
    if not node_id.isprintable() or any(c in node_id for c in " ,=/"):
        return f"node id {node_id[:40]!r} may not contain spaces, ',', '=', '/' or control characters"
    return None


def address_problem(text: object) -> str | None:
    """Why text is not host:port (a bracketed IPv6 host is allowed), or None."""
    if not isinstance(text, str) or not text or len(text) > MAX_ADDRESS_CHARS:
        return f"an address must be host:port of at most {MAX_ADDRESS_CHARS} characters"
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return f"{text[:60]!r} is not host:port (port 1-65535)"
    if not host.isprintable() or any(c in host for c in " /,="):
        return f"{text[:60]!r} has an invalid host"
    return None


def incarnation_problem(value: object) -> str | None:
    if (not isinstance(value, str) or not 0 < len(value) <= MAX_INCARNATION_CHARS
            or not value.isascii() or not value.isprintable() or " " in value):
        return f"an incarnation must be 1 to {MAX_INCARNATION_CHARS} printable ASCII characters without spaces"
    return None


class Configuration:
    """Who the members are (voters and learners, their addresses and incarnations) and which
    ids are retired. Immutable; `change` is the change that produced it (None for a
    bootstrap configuration)."""

    __slots__ = ("change", "learners", "members", "retired", "voters")

    def __init__(self, members: dict[str, Member], retired: Iterable[str] = frozenset(),
                 change: dict[str, Any] | None = None) -> None:
        self.members = dict(members)
        self.retired = frozenset(retired)
        self.change = change
        self.voters = frozenset(i for i, m in self.members.items() if m.role == VOTER)
        self.learners = frozenset(i for i, m in self.members.items() if m.role == LEARNER)

    @classmethod
    def bootstrap(cls, voters: Iterable[str], meta: dict[str, Any] | None = None) -> Configuration:
        """The configuration a cluster starts with (index 0): `voters`, with their addresses
        from `meta` (id -> {"peer", "client", "incarnation"}). Empty for a joining node."""
        meta = meta or {}
        return cls({v: Member(VOTER, meta.get(v, {}).get("peer"), meta.get(v, {}).get("client"),
                              meta.get(v, {}).get("incarnation")) for v in voters})

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Configuration) and self.members == other.members
                and self.retired == other.retired)

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.voters)), tuple(sorted(self.learners))))

    def __repr__(self) -> str:
        return f"Configuration(voters={sorted(self.voters)}, learners={sorted(self.learners)})"

    def role(self, node_id: str) -> str | None:
        member = self.members.get(node_id)
        return member.role if member else None

    def is_voter(self, node_id: str) -> bool:
        return node_id in self.voters

    # -- changes ---------------------------------------------------------------------------------
    def apply(self, change: ConfChange) -> Configuration:
        """The configuration after `change`; raises ChangeRefused naming why it is not legal."""
        op, node_id = change.op, change.node_id
        if op not in CHANGE_OPS:
            raise ChangeRefused("bad_change", f"unknown change {op!r} (valid: {', '.join(CHANGE_OPS)})")
        problem = id_problem(node_id)
        if problem:
            raise ChangeRefused("bad_change", problem)
        member = self.members.get(node_id)
        members = dict(self.members)
        record = {"op": op, "id": node_id}
        if op == ADD_LEARNER:
            if member is not None:
                raise ChangeRefused("already_member", f"{node_id} is already a {member.role}")
            if node_id in self.retired:
                raise ChangeRefused("id_retired", f"{node_id} was removed before; a removed id is never "
                                                  "used again (add the node under a new id)")
            for name, value, check in (("peer", change.peer, address_problem),
                                       ("client", change.client, address_problem),
                                       ("incarnation", change.incarnation, incarnation_problem)):
                problem = check(value)
                if problem:
                    raise ChangeRefused("bad_change", f"{name}: {problem}")
            for other_id, other in self.members.items():
                if other.peer == change.peer:
                    raise ChangeRefused("address_in_use", f"{other_id} already has peer address {change.peer}")
                if other.client == change.client:
                    raise ChangeRefused("address_in_use", f"{other_id} already has client address {change.client}")
                if other.incarnation == change.incarnation:
                    raise ChangeRefused("incarnation_in_use", f"{other_id} already has incarnation "
                                                              f"{change.incarnation}")
            if len(members) >= MAX_MEMBERS:
                raise ChangeRefused("too_many_members", f"a cluster has at most {MAX_MEMBERS} members")
            members[node_id] = Member(LEARNER, change.peer, change.client, change.incarnation)
            return Configuration(members, self.retired, record)
        if member is None:
            raise ChangeRefused("not_a_member", f"{node_id} is not a member"
                                + (" (it was removed)" if node_id in self.retired else ""))
        if op == PROMOTE:
            if member.role != LEARNER:
                raise ChangeRefused("not_a_learner", f"{node_id} is already a voter")
            members[node_id] = Member(VOTER, member.peer, member.client, member.incarnation)
            return Configuration(members, self.retired, record)
        if member.role == VOTER and len(self.voters) == 1:
            raise ChangeRefused("last_voter", f"{node_id} is the only voter; a cluster needs one")
        del members[node_id]
        return Configuration(members, self.retired | {node_id}, record)

    def with_incarnations(self, known: dict[str, str]) -> Configuration:
        """This configuration with the incarnations in `known` (id -> incarnation) filled in for
        members that have none yet (bootstrap members, pinned by the first change)."""
        members = dict(self.members)
        changed = False
        for node_id, member in self.members.items():
            incarnation = known.get(node_id)
            if member.incarnation is None and incarnation and not incarnation_problem(incarnation):
                members[node_id] = Member(member.role, member.peer, member.client, incarnation)
                changed = True
        return Configuration(members, self.retired, self.change) if changed else self

    # -- peers -----------------------------------------------------------------------------------
    def admission_problem(self, src: str, incarnation: str) -> str | None:
        """Why a peer connection from `src` presenting `incarnation` is refused, or None.
        A node with no configuration yet (joining) accepts any member that holds the cluster
        secret: it does not know who the leader is until the log tells it."""
        if not self.members:
            return None
        member = self.members.get(src)
        if member is None:
            if src in self.retired:
                return f"{src[:40]!r} was removed from the cluster"
            # An id we have never seen: a member added by a configuration our log does not
            # hold yet (a node catching up replays older ones; ids are never reused, and it
            # holds the cluster secret). Refusing it would refuse the leader we need.
            return None
        if member.incarnation is not None and incarnation != member.incarnation:
            return (f"{src} presents incarnation {incarnation[:70]!r} but the configuration admitted "
                    f"incarnation {member.incarnation!r}: a node id is never reused with a new disk "
                    f"(remove {src} and add the node again under a new id)")
        return None

    # -- encoding --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"members": {i: self.members[i].to_json() for i in sorted(self.members)},
                "retired": sorted(self.retired), "change": self.change}

    @classmethod
    def from_json(cls, doc: Any) -> Configuration:
        """Raises ValueError naming the first problem (the doc comes from a peer or the disk)."""
        if not isinstance(doc, dict) or not isinstance(doc.get("members"), dict):
            raise ValueError("a configuration must be an object with a members object")
        raw = doc["members"]
        if len(raw) > MAX_MEMBERS:
            raise ValueError(f"a configuration has at most {MAX_MEMBERS} members, got {len(raw)}")
        members = {}
        for node_id, m in raw.items():
            problem = id_problem(node_id)
            if problem:
                raise ValueError(problem)
            if not isinstance(m, dict) or m.get("role") not in (VOTER, LEARNER):
                raise ValueError(f"member {node_id[:40]!r} needs role voter or learner")
            for name, check in (("peer", address_problem), ("client", address_problem),
                                ("incarnation", incarnation_problem)):
                value = m.get(name)
                if value is not None and check(value):
                    raise ValueError(f"member {node_id[:40]!r}: {name}: {check(value)}")
            members[node_id] = Member(m["role"], m.get("peer"), m.get("client"), m.get("incarnation"))
        retired = doc.get("retired", [])
        if not isinstance(retired, list) or any(id_problem(r) for r in retired):
            raise ValueError("retired must be a list of node ids")
        change = doc.get("change")
        if change is not None and (not isinstance(change, dict) or change.get("op") not in CHANGE_OPS
                                   or id_problem(change.get("id"))):
            raise ValueError("change must be null or {op, id}")
        if members and not any(m.role == VOTER for m in members.values()):
            raise ValueError("a configuration with members needs at least one voter")
        return cls(members, retired, change)


EMPTY = Configuration({})


def config_entry_problem(data: Any) -> str | None:
    """What is wrong with a CONFIG entry's data, or None (the codec drops frames with one)."""
    try:
        conf = Configuration.from_json(data)
    except ValueError as exc:
        return str(exc)
    if not conf.voters:
        return "a configuration entry needs at least one voter"
    return None


# -- snapshots ---------------------------------------------------------------------------------
# A snapshot's bytes: this head, the configuration in force at its index as JSON (null when the
# node only knew the bootstrap configuration there), then the state machine's own bytes.
_ENVELOPE_MAGIC = b"RNSNAPCF"
_ENVELOPE_HEAD = struct.Struct(">8sI")


def pack_snapshot(conf: Configuration | None, state: bytes) -> bytes:
    """`conf`: the configuration in force at the snapshot's index (None or an empty one: the
    bootstrap configuration, which a node that joined later does not know)."""
    doc = json.dumps(conf.to_json() if conf is not None and conf.members else None,
                     separators=(",", ":")).encode()
    return _ENVELOPE_HEAD.pack(_ENVELOPE_MAGIC, len(doc)) + doc + state


def _split(data: bytes) -> tuple[Configuration | None, int]:
    head = _ENVELOPE_HEAD.size
    if len(data) < head or bytes(data[:8]) != _ENVELOPE_MAGIC:
        return None, 0  # a snapshot written before configurations were kept: the bootstrap one
    _, length = _ENVELOPE_HEAD.unpack_from(data, 0)
    if head + length > len(data):
        raise ValueError(f"snapshot configuration of {length} bytes runs past the snapshot")
    try:
        doc = json.loads(bytes(data[head:head + length]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"snapshot configuration is not JSON: {str(exc)[:200]}") from None
    return (None if doc is None else Configuration.from_json(doc)), head + length


def snapshot_configuration(data: bytes) -> Configuration | None:
    """The configuration a snapshot carries (None: the bootstrap one). Reads only its head."""
    return _split(data)[0]


def unpack_snapshot(data: bytes) -> tuple[Configuration | None, bytes]:
    """(configuration or None, the state machine's bytes). Raises ValueError if malformed."""
    conf, start = _split(data)
    return conf, (data if start == 0 else bytes(data[start:]))
