"""The leader's view of each follower: replication state, the in-flight window, snapshot transfer.

Pure and deterministic (no clocks: times are the leader's tick counts passed in), in the spirit
of etcd-raft's tracker package. A follower's Progress is in one of three states:

  PROBE      the leader does not know where the follower's log matches its own. One append is
             outstanding at a time (`probe_sent`); heartbeats carry an empty probe. Any success
             moves to REPLICATE; a rejection moves `next` back and allows the next probe.
  REPLICATE  appends are pipelined from `next` while the in-flight window has room: at most
             `max_msgs` messages and `max_bytes` bytes of entries sent and not yet acknowledged.
             An acknowledged match index frees every in-flight append at or below it. The
             message limit starts small (SLOW_START_MSGS) each time a follower enters this
             state and grows by every append acknowledged, up to max_msgs (TCP's slow start):
             a follower that just left probing, and may reject again, is not sent a full
             window at once. (On a link that reorders messages, appends that overtake each
             other are rejected and send the follower back to probing; with a full window
             each such round trip would resend hundreds of appends.)
  SNAPSHOT   the follower needs entries the leader has compacted: the snapshot goes in chunks,
             one chunk in flight at a time. Only the reply to that chunk moves the transfer on;
             a chunk without a reply is sent again only after a timeout (`chunk_timed_out`).
             Once the follower reports the snapshot installed, it is replicated from there.

A learner's Progress also measures whether it has caught up (thesis §4.2.1): replication goes
in rounds, each one up to the leader's last index when the round began; a round ends when the
learner holds that index, and the next one starts there. The learner is caught up while its
last round took less than an election timeout and the current one has not been open longer:
promoting it then adds a voter that slows commitment down for at most about an election timeout.
"""

from __future__ import annotations

from collections import deque

STATE_PROBE, STATE_REPLICATE, STATE_SNAPSHOT = "probe", "replicate", "snapshot"
SLOW_START_MSGS = 4


class Inflights:
    """The appends sent to one follower and not yet acknowledged, oldest first, as
    (last index, bytes) pairs. Full once either limit is reached."""

    __slots__ = ("max_msgs", "max_bytes", "limit", "bytes", "_sent")

    def __init__(self, max_msgs: int, max_bytes: int):
        if max_msgs < 1 or max_bytes < 1:
            raise ValueError(f"an in-flight window needs room for at least one message and one "
                             f"byte, got {max_msgs} messages and {max_bytes} bytes")
        self.max_msgs = max_msgs
        self.max_bytes = max_bytes
        self.limit = max_msgs        # the message limit now (slow start: see Progress)
        self.bytes = 0
        self._sent: deque[tuple[int, int]] = deque()

    @property
    def count(self) -> int:
        return len(self._sent)

    def full(self) -> bool:
        return len(self._sent) >= self.limit or self.bytes >= self.max_bytes

    def room(self) -> int:
        """Bytes that may still be sent before the window is full (0 when it is)."""
        if len(self._sent) >= self.limit:
            return 0
        return max(0, self.max_bytes - self.bytes)

    def add(self, last_index: int, size: int) -> None:
        sent = self._sent
        if sent and last_index <= sent[-1][0]:
            raise ValueError(f"in-flight appends must end at increasing indexes: {last_index} "
                             f"after {sent[-1][0]}")
        sent.append((last_index, size))
        self.bytes += size

    def free_to(self, index: int) -> int:
        """The follower holds every entry up to index: the appends ending there are delivered.
        Returns how many were."""
        sent = self._sent
        freed = 0
        while sent and sent[0][0] <= index:
            self.bytes -= sent.popleft()[1]
            freed += 1
        return freed

    def reset(self, limit: int | None = None) -> None:
        """Empty the window; `limit`: the message limit from now on (default: max_msgs)."""
        self._sent.clear()
        self.bytes = 0
        self.limit = self.max_msgs if limit is None else max(1, min(limit, self.max_msgs))

    def grow(self, messages: int) -> None:
        if self.limit < self.max_msgs:
            self.limit = min(self.max_msgs, self.limit + messages)


class Progress:
    """The leader's view of one follower (see the module docstring for the states)."""

    __slots__ = ("state", "match", "next", "probe_sent", "inflights", "active", "last_heard",
                 "read_ack", "snapshot_index", "snapshot_term", "snapshot_data", "chunk_offset",
                 "chunk_size", "chunk_in_flight", "chunk_sent_at", "chunk_retried", "chunks_resent",
                 "learner", "round_end", "round_started", "rounds", "last_round", "caught_up")

    def __init__(self, next_index: int, max_inflight_msgs: int, max_inflight_bytes: int):
        self.state = STATE_PROBE
        self.match = 0
        self.next = next_index
        self.probe_sent = False
        self.inflights = Inflights(max_inflight_msgs, max_inflight_bytes)
        self.active = False          # heard from since the last check-quorum round
        self.last_heard = -1 << 62   # leader tick of the last response (lease-read bug only)
        self.read_ack = 0            # highest ReadIndex round this follower acknowledged
        # SNAPSHOT state: the snapshot being sent (kept even if the leader compacts again, so a
        # transfer always finishes) and the one chunk in flight.
        self.snapshot_index = 0
        self.snapshot_term = 0
        self.snapshot_data: bytes | None = None
        self.chunk_offset = 0        # where the chunk in flight (or the next one) starts
        self.chunk_size = 0
        self.chunk_in_flight = False
        self.chunk_sent_at = 0
        self.chunk_retried = False    # the chunk in flight went again after a timeout
        self.chunks_resent = 0       # retransmissions after a timeout, over this leadership
        # Catch-up rounds (learners only; see the module docstring).
        self.learner = False
        self.round_end = 0           # the round ends once match reaches this index
        self.round_started = 0       # leader tick at which the current round began
        self.rounds = 0              # rounds completed
        self.last_round = -1         # ticks the last completed round took (-1: none yet)
        self.caught_up = False

    def __repr__(self) -> str:
        return (f"Progress({self.state}, match={self.match}, next={self.next}, "
                f"inflight={self.inflights.count}/{self.inflights.bytes}B)")

    # -- state transitions ---------------------------------------------------------------------
    def become_probe(self) -> None:
        """Find the match point again from just after the last known match."""
        self.state = STATE_PROBE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()
        self._drop_snapshot()

    def become_replicate(self) -> None:
        self.state = STATE_REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset(SLOW_START_MSGS)
        self._drop_snapshot()

    def become_snapshot(self, index: int, term: int, data: bytes) -> None:
        self.state = STATE_SNAPSHOT
        self.probe_sent = False
        self.inflights.reset()
        self.snapshot_index, self.snapshot_term, self.snapshot_data = index, term, data
        self.chunk_offset = 0
        self.chunk_size = 0
        self.chunk_in_flight = False
        self.chunk_retried = False

    def _drop_snapshot(self) -> None:
        self.snapshot_data = None
        self.chunk_in_flight = False

    # -- appends ---------------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        """Whether the leader must wait for an answer before sending this follower more."""
        if self.state == STATE_PROBE:
            return self.probe_sent
        if self.state == STATE_REPLICATE:
            return self.inflights.full()
        return self.chunk_in_flight

    def sent_append(self, last_index: int, size: int) -> None:
        """An append carrying entries up to last_index (size bytes of them) went out."""
        if self.state == STATE_REPLICATE:
            if size:
                self.inflights.add(last_index, size)
            self.next = last_index + 1   # optimistic pipelining
        else:
            self.probe_sent = True

    def acknowledged(self, match: int) -> bool:
        """The follower holds our log up to match. Returns whether that is news (match moved)."""
        freed = self.inflights.free_to(match)
        if freed:
            self.inflights.grow(freed)
        if match <= self.match:
            return False
        self.match = match
        if self.next <= match:
            self.next = match + 1
        return True

    def rejected(self, rejected: int, next_index: int) -> bool:
        """The follower refused the append after `rejected` and suggests resuming at next_index.
        Returns False (and changes nothing) for the answer to an older append."""
        if self.state == STATE_SNAPSHOT:
            return False
        if self.state == STATE_PROBE and rejected != self.next - 1:
            return False
        if self.state == STATE_REPLICATE and rejected <= self.match:
            return False
        self.become_probe()
        self.next = max(self.match + 1, min(next_index, rejected))
        return True

    # -- catching up (learners) ------------------------------------------------------------------
    def start_rounds(self, last_index: int, now: int) -> None:
        """Begin measuring catch-up rounds: the first one runs to last_index."""
        self.learner = True
        self.round_end = last_index
        self.round_started = now
        self.rounds = 0
        self.last_round = -1
        self.caught_up = False

    def update_rounds(self, last_index: int, now: int, timeout: int) -> None:
        """After an acknowledgement or a tick: end the round if the learner reached its end (and
        start the next, up to last_index); a round open for `timeout` ticks or more means the
        learner is not caught up."""
        if self.match >= self.round_end:
            self.last_round = now - self.round_started
            self.rounds += 1
            self.caught_up = self.last_round < timeout
            self.round_end = last_index
            self.round_started = now
        elif now - self.round_started >= timeout:
            self.caught_up = False

    # -- snapshot transfer -----------------------------------------------------------------------
    def next_chunk(self, chunk_bytes: int) -> tuple[int, bytes, bool] | None:
        """(offset, data, done) of the chunk to send now, or None while one is in flight."""
        if self.state != STATE_SNAPSHOT or self.chunk_in_flight:
            return None
        data = self.snapshot_data
        assert data is not None, "a transfer in SNAPSHOT state has its snapshot"
        offset = self.chunk_offset
        chunk = data[offset:offset + chunk_bytes]
        return offset, chunk, offset + len(chunk) >= len(data)

    def chunk_sent(self, size: int, now: int) -> None:
        self.chunk_size = size
        self.chunk_in_flight = True
        self.chunk_sent_at = now

    def chunk_timed_out(self, now: int, timeout: int) -> bool:
        return self.chunk_in_flight and now - self.chunk_sent_at >= timeout

    def resend_chunk(self) -> None:
        """Send the chunk in flight again (after a timeout)."""
        self.chunk_in_flight = False
        self.chunk_retried = True
        self.chunks_resent += 1

    def chunk_reply(self, success: bool, offset: int) -> bool:
        """A reply to a chunk of this transfer: `offset` is how many bytes the follower held
        when it answered. Returns whether a chunk may go now: the reply answered the chunk in
        flight, or the follower refused a chunk and holds something else (nothing, e.g. after
        a restart; more, when the reply to the chunk in flight is still on its way)."""
        if self.state != STATE_SNAPSHOT or not self.chunk_in_flight:
            return False
        if success:
            if offset != self.chunk_offset + self.chunk_size:
                return False  # a duplicate or an answer to an earlier chunk
        else:
            if offset == self.chunk_offset:
                return False  # it holds what precedes the chunk in flight: that chunk is coming
            if 0 < offset < self.chunk_offset and not self.chunk_retried:
                # Most likely it refused a duplicate of an earlier chunk before ours arrived;
                # believe that it is behind only once the chunk in flight timed out.
                return False
            assert self.snapshot_data is not None, "a transfer in SNAPSHOT state has its snapshot"
            if not 0 <= offset < len(self.snapshot_data):
                offset = 0
        self.chunk_offset = offset
        self.chunk_in_flight = False
        self.chunk_retried = False
        return True
