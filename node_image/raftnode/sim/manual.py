"""Helpers for driving one RaftCore by hand, message by message (unit tests, debugging)."""

import random

from ..core import RaftCore
from ..types import (APPEND, APPEND_RESP, COMMAND, Config, Entry, HardState, Message,
                            StorageState)

PEERS = ["n1", "n2", "n3"]


def make_core(node="n1", peers=PEERS, term=0, voted_for=None, log_terms=(), seed=0, **config):
    entries = [Entry(i + 1, t, COMMAND, {"op": "put", "key": "k", "value": i + 1})
               for i, t in enumerate(log_terms)]
    state = StorageState(HardState(term, voted_for), entries)
    return RaftCore(Config(node, list(peers), **config), state, random.Random(seed))


def drain(core):
    """ready() + advance() (as if persisted) until the core is quiet; all Readies returned."""
    out = []
    while core.has_ready():
        rd = core.ready()
        core.advance(rd)
        out.append(rd)
    return out


def messages(readies, kind=None):
    return [m for rd in readies for m in rd.messages if kind is None or m.kind == kind]


def events(readies, kind=None):
    return [e for rd in readies for e in rd.events if kind is None or e.kind == kind]


def make_leader(core):
    """Run a core to leadership of a 3-node cluster by feeding it the votes it asks for."""
    while core.role != "leader":
        core.tick()
        for m in messages(drain(core)):
            if m.kind in ("PreVote", "RequestVote"):
                kind = "PreVoteResp" if m.kind == "PreVote" else "RequestVoteResp"
                core.step(Message(kind, m.dst, core.id, m.term, granted=True))
    drain(core)
    return core


def append(src, dst, term, prev_index, prev_term, entries=(), commit=0, context=0):
    return Message(APPEND, src, dst, term, prev_log_index=prev_index, prev_log_term=prev_term,
                   entries=list(entries), leader_commit=commit, context=context, needs_persist=False)


def ack(src, dst, term, match, prev_index=0, context=0):
    return Message(APPEND_RESP, src, dst, term, success=True, match_index=match,
                   prev_log_index=prev_index, context=context)


def entry(index, term, value=None):
    return Entry(index, term, COMMAND, {"op": "put", "key": "k", "value": value if value is not None else index})
