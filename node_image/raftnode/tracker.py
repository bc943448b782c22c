"""The leader's view of each follower: replication state, the in-flight window, snapshot transfer.

Pure and deterministic (no clocks: times are the leader's tick counts passed in), in the spirit
of etcd-raft's tracker package. A follower's Progress is in one of three states:

  PROBE      the leader does not know where the follower's log matches its own. One append is
             outstanding at a time (`probe_sent`); heartbeats carry an empty probe. Any success
             moves to REPLICATE; a rejection moves `next` back and allows the next probe.
  REPLICATE  appends are pipelined from `next` while the in-flight window has room: at most
             `max_msgs` messages and `max_bytes` bytes of entries sent and not yet acknowledged.
             An acknowledged match index frees every in-flight append at or below it.
  SNAPSHOT   the follower needs entries the leader has compacted: the snapshot goes in chunks,
             one chunk in flight at a time. Only the reply to that chunk moves the transfer on;
             a chunk without a reply is sent again only after a timeout (`chunk_timed_out`).
             Once the follower reports the snapshot installed, it is replicated from there.
"""

from __future__ import annotations

from collections import deque

STATE_PROBE, STATE_REPLICATE, STATE_SNAPSHOT = "probe", "replicate", "snapshot"


class Inflights:
    """The appends sent to one follower and not yet acknowledged, oldest first, as
    (last index, bytes) pairs. Full once either limit is reached."""

    __slots__ = ("max_msgs", "max_bytes", "bytes", "_sent")

    def __init__(self, max_msgs: int, max_bytes: int):
        if max_msgs < 1 or max_bytes < 1:
            raise ValueError(f"an in-flight window needs room for at least one message and one "
                             f"byte, got {max_msgs} messages and {max_bytes} bytes")
        self.max_msgs = max_msgs
        self.max_bytes = max_bytes
        self.bytes = 0
        self._sent: deque = deque()

    @property
    def count(self) -> int:
        return len(self._sent)

    def full(self) -> bool:
        return len(self._sent) >= self.max_msgs or self.bytes >= self.max_bytes

    def room(self) -> int:
        """Bytes that may still be sent before the window is full (0 when it is)."""
        if len(self._sent) >= self.max_msgs:
            return 0
        return max(0, self.max_bytes - self.bytes)

    def add(self, last_index: int, size: int) -> None:
        sent = self._sent
        if sent and last_index <= sent[-1][0]:
            raise ValueError(f"in-flight appends must end at increasing indexes: {last_index} "
                             f"after {sent[-1][0]}")
        sent.append((last_index, size))
        self.bytes += size

    def free_to(self, index: int) -> None:
        """The follower holds every entry up to index: the appends ending there are delivered."""
        sent = self._sent
        while sent and sent[0][0] <= index:
            self.bytes -= sent.popleft()[1]

    def reset(self) -> None:
        self._sent.clear()
        self.bytes = 0


class Progress:
    """The leader's view of one follower (see the module docstring for the states)."""

    __slots__ = ("state", "match", "next", "probe_sent", "inflights", "active", "last_heard",
                 "read_ack", "snapshot_index", "snapshot_term", "snapshot_data", "chunk_offset",
                 "chunk_size", "chunk_in_flight", "chunk_sent_at", "chunk_retried", "chunks_resent")

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
        self.inflights.reset()
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
        self.inflights.free_to(match)
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

    # -- snapshot transfer -----------------------------------------------------------------------
    def next_chunk(self, chunk_bytes: int) -> tuple[int, bytes, bool] | None:
        """(offset, data, done) of the chunk to send now, or None while one is in flight."""
        if self.state != STATE_SNAPSHOT or self.chunk_in_flight:
            return None
        data = self.snapshot_data
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
            if not 0 <= offset < len(self.snapshot_data):
                offset = 0
        self.chunk_offset = offset
        self.chunk_in_flight = False
        self.chunk_retried = False
        return True
