"""CPU cost of the pure Raft core on the leader path, per proposal (no I/O, no encoding).

    python bench/bench_core.py [--proposals 200000] [--repeat 5]

A 3-node leader (n1) whose followers acknowledge every append at once: each round proposes a
batch of commands, takes the Ready (the AppendEntries to both followers), advances it (its own
fsync), steps both followers' acks (which commit the batch) and takes the Ready that hands the
committed entries out. The figure is process CPU time per proposal, best of --repeat runs, for
batches of 64 and one proposal at a time (the README's "Core speed on the leader path").

Commands are built as the HTTP layer builds them (codec.PreEncoded, which carries its own JSON),
so sizing an entry for the byte bounds costs what it costs in the node; --plain uses plain dicts
instead (as the simulator does), whose JSON the core then encodes once per entry.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "node_image"))

from raftnode.codec import PreEncoded  # noqa: E402
from raftnode.core import RaftCore  # noqa: E402
from raftnode.types import APPEND_RESP, Config, HardState, Message, StorageState  # noqa: E402


def _leader() -> RaftCore:
    core = RaftCore(Config("n1", ["n1", "n2", "n3"], pre_vote=False), StorageState(HardState()),
                    random.Random(0))
    while core.role != "leader":
        core.tick()
        for rd in _drain(core):
            for m in rd.messages:
                if m.kind == "RequestVote":
                    core.step(Message("RequestVoteResp", m.dst, "n1", m.term, granted=True))
    for follower in ("n2", "n3"):   # both hold the no-op: they leave probing for replicating
        core.step(Message(APPEND_RESP, follower, "n1", core.term, success=True,
                          match_index=core.last_log_index))
    _drain(core)
    return core


def _drain(core):
    out = []
    while core.has_ready():
        rd = core.ready()
        core.advance(rd)
        out.append(rd)
    return out


def _command(i: int, plain: bool):
    if plain:
        return {"op": "put", "key": f"k{i % 100}", "value": i}
    command = PreEncoded(op="put", key=f"k{i % 100}", value=i)
    command.wire = b'{"op":"put","key":"k%d","value":%d}' % (i % 100, i)
    return command


def run(proposals: int, batch: int, plain: bool) -> float:
    """CPU seconds per proposal."""
    core = _leader()
    term = core.term
    commands = [_command(i, plain) for i in range(proposals)]
    acks = {}
    start = time.process_time()
    for first in range(0, proposals, batch):
        for command in commands[first:first + batch]:
            core.propose(command)
        rd = core.ready()
        core.advance(rd)
        for m in rd.messages:
            if m.kind == "AppendEntries" and m.entries:
                acks[m.dst] = Message(APPEND_RESP, m.dst, "n1", term, success=True,
                                      match_index=m.entries[-1].index,
                                      prev_log_index=m.prev_log_index)
        for ack in acks.values():
            core.step(ack)
        acks.clear()
        rd = core.ready()
        core.advance(rd)
    elapsed = time.process_time() - start
    if core.commit_index != core.last_log_index:
        raise SystemExit(f"benchmark broken: commit {core.commit_index} < last {core.last_log_index}")
    return elapsed / proposals


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--proposals", type=int, default=200_000, help="proposals per run (default 200000)")
    p.add_argument("--repeat", type=int, default=5, help="runs per figure; the best counts (default 5)")
    p.add_argument("--plain", action="store_true", help="plain dict commands (as the simulator)")
    args = p.parse_args(argv)
    if args.proposals < 64 or args.repeat < 1:
        p.error("--proposals must be at least 64 and --repeat at least 1")
    for batch in (64, 1):
        n = args.proposals if batch > 1 else max(64, args.proposals // 4)
        best = min(run(n, batch, args.plain) for _ in range(args.repeat))
        print(f"batches of {batch:>2}: {best * 1e6:6.2f} us of CPU per proposal ({n} proposals, "
              f"best of {args.repeat}{', plain dicts' if args.plain else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
