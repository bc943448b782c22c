"""Flow control on the leader: appends bounded by bytes, an in-flight window per follower, one
probe at a time, and a bound on the uncommitted log (etcd's MaxSizePerMsg, MaxInflightMsgs /
MaxInflightBytes, MaxUncommittedEntriesSize)."""

import random
from collections import deque

import pytest

from raftnode.codec import PreEncoded, encode_message
from raftnode.core import RaftCore, entry_size
from raftnode.sim.manual import ack, drain, make_core, make_leader, messages
from raftnode.types import (APPEND, APPEND_RESP, COMMAND, Config, Entry, HardState, ProposalDropped,
                            StorageState)


def command(value_bytes: bytes, key="k") -> PreEncoded:
    """A put as the HTTP layer builds it (its JSON encoding attached)."""
    cmd = PreEncoded(op="put", key=key)
    cmd.wire = b'{"op":"put","key":"%s","value":"%s"}' % (key.encode(), value_bytes)
    return cmd


def replicating_leader(**config):
    core = make_leader(make_core(pre_vote=False, **config))
    for follower in ("n2", "n3"):
        core.step(ack(follower, "n1", core.term, core.last_log_index))
    drain(core)
    return core


def appends_to(readies, peer):
    return [m for m in messages(readies, APPEND) if m.dst == peer]


def entry_bytes(msg) -> int:
    return sum(entry_size(e) for e in msg.entries)


# -- bytes per AppendEntries ---------------------------------------------------------------------

def test_a_catch_up_of_large_entries_goes_in_frames_the_codec_accepts():
    # 70 entries of 1 MB each exceed the 64 MiB frame limit together. A new leader catching up
    # a follower that has none of them sends them in appends of at most 1 MiB (the default
    # bound), and every frame encodes.
    value = command(b"x" * 1_000_000)
    log = [Entry(i + 1, 1, COMMAND, value) for i in range(70)]
    leader = make_leader(RaftCore(Config("n1", ["n1", "n2", "n3"], pre_vote=False),
                                  StorageState(HardState(1), log), random.Random(0)))
    follower = make_core("n2", term=leader.term)
    sent = []
    for _ in range(300):
        leader.tick()                 # heartbeats probe n2 (make_leader drained the first probe)
        out = appends_to(drain(leader), "n2")
        if not out and follower.last_log_index == leader.last_log_index:
            break
        for msg in out:
            frame = encode_message(msg)
            assert len(frame) < 2 * 1024 * 1024
            sent.append(msg)
            follower.step(msg)
        for reply in messages(drain(follower), APPEND_RESP):
            leader.step(reply)
    assert follower.last_log_index == leader.last_log_index == 71
    assert sum(len(m.entries) for m in sent) >= 71


def test_entries_are_batched_up_to_max_bytes_per_append():
    core = replicating_leader(max_bytes_per_append=1000)
    one = command(b"v" * 200)
    size = entry_size(Entry(0, 0, COMMAND, one))
    for _ in range(10):
        core.propose(one)
    sent = appends_to(drain(core), "n2")
    per_message = 1000 // size
    assert [len(m.entries) for m in sent] == [per_message] * (10 // per_message) + (
        [10 % per_message] if 10 % per_message else [])
    assert all(entry_bytes(m) <= 1000 for m in sent)


def test_an_entry_larger_than_the_bound_still_goes_alone():
    core = replicating_leader(max_bytes_per_append=1000)
    core.propose(command(b"v" * 5000))
    core.propose(command(b"w" * 10))
    sent = appends_to(drain(core), "n2")
    assert [len(m.entries) for m in sent][0] == 1 and entry_bytes(sent[0]) > 1000


def test_the_entry_count_bound_still_applies():
    core = replicating_leader(max_entries_per_append=3)
    for i in range(7):
        core.propose(command(b"%d" % i))
    assert [len(m.entries) for m in appends_to(drain(core), "n2")] == [3, 3, 1]


# -- the in-flight window ------------------------------------------------------------------------

def test_a_replicating_follower_gets_no_more_than_the_window_until_it_acknowledges():
    core = replicating_leader(max_bytes_per_append=1000, max_inflight_bytes=3000)
    cmd = command(b"v" * 100)
    size = entry_size(Entry(0, 0, COMMAND, cmd))
    for _ in range(100):
        core.propose(cmd)
    sent = appends_to(drain(core), "n2")
    in_flight = sum(entry_bytes(m) for m in sent)
    assert in_flight <= 3000 < in_flight + size, "the window is filled, not overfilled"
    assert sum(len(m.entries) for m in sent) < 100
    # An acknowledgement frees what it covers, and only that much more goes out.
    freed = entry_bytes(sent[0])
    core.step(ack("n2", "n1", core.term, sent[0].entries[-1].index))
    more = appends_to(drain(core), "n2")
    assert more and more[0].prev_log_index == sent[-1].entries[-1].index
    in_flight += sum(entry_bytes(m) for m in more) - freed
    assert in_flight <= 3000 < in_flight + size


def test_the_window_also_bounds_the_messages_in_flight():
    core = replicating_leader(max_entries_per_append=1, max_inflight_msgs=4)
    for i in range(20):
        core.propose(command(b"%d" % i))
    assert len(appends_to(drain(core), "n2")) == 4


def test_a_heartbeat_to_a_follower_with_a_full_window_carries_no_entries():
    core = replicating_leader(max_bytes_per_append=1000, max_inflight_bytes=1000)
    for _ in range(30):
        core.propose(command(b"v" * 100))
    drain(core)
    for _ in range(core.heartbeat_ticks):
        core.tick()
    beats = appends_to(drain(core), "n2")
    assert len(beats) == 1 and beats[0].entries == []
    assert beats[0].leader_commit == core.commit_index


class _Link:
    """An ordered link (like the peer transport's TCP stream) with a delay counted in steps."""

    def __init__(self):
        self.queue = deque()

    def push(self, msgs):
        self.queue.extend(msgs)

    def pop(self, n):
        return [self.queue.popleft() for _ in range(min(n, len(self.queue)))]


@pytest.mark.timeout(120)
def test_bytes_in_flight_to_a_follower_100k_entries_behind_never_exceed_the_window():
    # The leader and n3 hold 100k entries of ~250 bytes (25 MB, three times the default 8 MiB
    # window); n2 has nothing. Over ordered links n2 catches up, and after every delivery the
    # bytes sent to n2 and not yet answered stay within max_inflight_bytes.
    behind = 100_000
    value = command(b"v" * 200)
    entries = [Entry(i + 1, 1, COMMAND, value) for i in range(behind)]
    peers = ["n1", "n2", "n3"]

    def node(node_id, log):
        state = StorageState(HardState(1), list(log))
        return RaftCore(Config(node_id, peers, pre_vote=False), state, random.Random(7))

    leader = make_leader(node("n1", entries))
    followers = {"n2": node("n2", []), "n3": node("n3", entries)}
    window = leader.config.max_inflight_bytes
    to = {p: _Link() for p in followers}
    back = {p: _Link() for p in followers}
    unanswered = {p: deque() for p in followers}   # bytes of each append n2 has not answered
    peak = 0

    def leader_out():
        for rd in drain(leader):
            for m in rd.messages:
                if m.dst in to and m.kind == APPEND:
                    to[m.dst].push([m])
                    unanswered[m.dst].append(entry_bytes(m))

    leader_out()
    for step in range(20_000):
        if followers["n2"].last_log_index >= leader.last_log_index and not to["n2"].queue:
            break
        if step % 3 == 0:
            leader.tick()
            leader_out()
        for peer, core in followers.items():
            for m in to[peer].pop(2):
                core.step(m)
            for rd in drain(core):
                back[peer].push([m for m in rd.messages if m.kind == APPEND_RESP])
            for r in back[peer].pop(2):
                unanswered[peer].popleft()   # an ordered link: the oldest append is answered
                leader.step(r)
            leader_out()
            in_flight = sum(unanswered["n2"])
            peak = max(peak, in_flight)
            assert in_flight <= window, f"step {step}: {in_flight} bytes in flight to n2"
    assert followers["n2"].last_log_index == leader.last_log_index
    assert leader.progress["n2"].match == leader.last_log_index
    assert peak > window // 2, "the test must actually fill the window"
    print(f"peak {peak} bytes in flight to n2 (window {window}), {step} steps")


# -- probing -------------------------------------------------------------------------------------

def test_a_probing_follower_that_never_answers_gets_only_empty_probes_on_heartbeats():
    core = make_leader(make_core(pre_vote=False, check_quorum=False))  # its probe (the no-op) is out
    sent = []
    for i in range(2000):
        core.propose(command(b"%d" % i))
        sent += appends_to(drain(core), "n2")
    assert sent == [], "nothing more while the probe is unanswered"
    for _ in range(20 * core.heartbeat_ticks):
        core.tick()
        sent += appends_to(drain(core), "n2")
    assert len(sent) == 20 and all(m.entries == [] for m in sent), "one empty probe per heartbeat"
    assert core.progress["n2"].state == "probe"


def test_a_probe_answered_with_a_rejection_is_followed_by_one_probe_at_the_hint():
    core = make_leader(make_core(term=2, log_terms=(1, 1, 1), pre_vote=False))
    from raftnode.types import Message
    core.step(Message(APPEND_RESP, "n2", "n1", core.term, success=False, prev_log_index=3,
                      conflict_index=2, conflict_term=0))
    sent = appends_to(drain(core), "n2")
    assert len(sent) == 1 and sent[0].prev_log_index == 1 and len(sent[0].entries) == 3


# -- the uncommitted log -------------------------------------------------------------------------

def test_proposals_past_the_uncommitted_bound_are_dropped_without_being_appended():
    cmd = command(b"v" * 100)
    size = entry_size(Entry(0, 0, COMMAND, cmd))
    core = replicating_leader(max_uncommitted_bytes=5 * size)
    for _ in range(5):
        core.propose(cmd)
    last = core.last_log_index
    with pytest.raises(ProposalDropped) as info:
        core.propose(cmd)
    assert core.last_log_index == last, "nothing was appended"
    assert info.value.limit == 5 * size and core.uncommitted_bytes == 5 * size
    drain(core)
    core.step(ack("n2", "n1", core.term, last))    # a majority holds them: committed
    assert core.commit_index == last and core.uncommitted_bytes == 0
    core.propose(cmd)


def test_an_empty_backlog_takes_one_entry_larger_than_the_bound():
    core = replicating_leader(max_uncommitted_bytes=100)
    core.propose(command(b"v" * 1000))
    with pytest.raises(ProposalDropped):
        core.propose(command(b"w"))


def test_a_new_leader_starts_with_an_empty_uncommitted_count():
    core = replicating_leader(max_uncommitted_bytes=1000)
    assert core.uncommitted_bytes == 0
    assert make_core().uncommitted_bytes == 0


# -- configuration -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, problem", [
    (dict(max_bytes_per_append=0), "max_bytes_per_append"),
    (dict(max_bytes_per_append=64 * 1024 * 1024), "max_bytes_per_append"),
    (dict(max_inflight_msgs=0), "max_inflight_msgs"),
    (dict(max_inflight_bytes=1000, max_bytes_per_append=2000), "max_inflight_bytes"),
    (dict(max_uncommitted_bytes=0), "max_uncommitted_bytes"),
    (dict(snapshot_chunk_bytes=0), "snapshot_chunk_bytes"),
])
def test_a_bad_flow_control_config_is_rejected_naming_the_problem(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        RaftCore(Config("n1", ["n1", "n2", "n3"], **kwargs), StorageState(), random.Random(0))
