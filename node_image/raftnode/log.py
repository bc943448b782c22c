"""The Raft log as the core holds it: the snapshot it starts after, the entries after it, and how
much of it the driver has been handed and made durable.

    snapshot (index, term, data) | entries snapshot_index+1 .. last_index
                                   ^ handed out in Readies up to unstable_from - 1
                                   ^ durable and still ours up to persisted

Entries are never modified once appended, only truncated away (a conflicting suffix) or
compacted into a snapshot. Durability is tracked by (index, term): an entry handed to the driver
and truncated before its fsync completed is not counted as durable when the fsync completes
(see advance_persisted).
"""

from __future__ import annotations

import bisect

from .codec import _ENTRY_HEAD, PreEncoded, encode_entry_data
from .types import Entry, SafetyViolation

_ENTRY_HEAD_BYTES = _ENTRY_HEAD.size


def _term_key(entry: Entry) -> int:
    return entry.term


def _term_bytes_key(entry: Entry) -> int:
    return entry._term_bytes


def entry_size(entry: Entry) -> int:
    """An entry's bytes on the wire: its encoded data plus the entry head. The data's encoding is
    cached on the entry where the codec looks for it (codec._entry_data_bytes), so it is made
    once per entry, here or in the transport, whichever comes first."""
    cache = entry.__dict__
    wire = cache.get("_wire")
    if wire is None:
        data = entry.data
        wire = cache["_wire"] = data.wire if type(data) is PreEncoded else encode_entry_data(data)
    return len(wire) + _ENTRY_HEAD_BYTES


class RaftLog:
    __slots__ = (
        "entries",
        "persisted",
        "snapshot_data",
        "snapshot_index",
        "snapshot_term",
        "truncate_from",
        "unstable_from",
    )

    def __init__(self, snapshot_index: int, snapshot_term: int, snapshot_data: bytes | None,
                 entries: list[Entry]) -> None:
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self.snapshot_data = snapshot_data
        self.entries: list[Entry] = list(entries)
        for offset, entry in enumerate(self.entries):
            if entry.index != snapshot_index + 1 + offset:
                raise ValueError(f"log is not contiguous after snapshot index {snapshot_index}: "
                                 f"position {offset} holds index {entry.index}")
        if self.entries and self.entries[0].term < snapshot_term:
            # The storage installs a snapshot atomically with the log after it (SnapshotInstall):
            # entries of an older term after the snapshot cannot continue it.
            raise ValueError(f"log entry {self.entries[0].index} has term {self.entries[0].term}, older "
                             f"than the snapshot it follows (index {snapshot_index}, term "
                             f"{snapshot_term}): the stored log does not continue the snapshot")
        self.persisted = self.last_index        # durable and equal to our in-memory log
        self.unstable_from = self.last_index + 1  # the first entry not handed to the driver yet
        self.truncate_from: int | None = None   # a truncation the driver must still apply

    # -- reading ---------------------------------------------------------------------------------
    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot_term

    def term_at(self, index: int) -> int | None:
        """The term of the entry at index, or None if compacted away or beyond the log."""
        offset = index - self.snapshot_index - 1
        if offset < 0:
            return self.snapshot_term if index == self.snapshot_index else None
        if offset >= len(self.entries):
            return None
        return self.entries[offset].term

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.snapshot_index - 1]

    def slice(self, first: int, last: int) -> list[Entry]:
        """Entries first..last inclusive (both within the log after the snapshot)."""
        base = self.snapshot_index + 1
        return self.entries[first - base:last - base + 1]

    def first_index_of_term(self, term: int) -> int:
        """The first index at or after the snapshot whose entry has `term` or a later one (the
        hint a follower gives for fast backtracking)."""
        return self.snapshot_index + 1 + bisect.bisect_left(self.entries, term, key=_term_key)

    def last_index_of_term(self, term: int) -> int | None:
        """The index of our last entry of `term`, or None if we have no entry of it."""
        pos = bisect.bisect_right(self.entries, term, key=_term_key)
        if pos > 0 and self.entries[pos - 1].term == term:
            return self.entries[pos - 1].index
        return None

    def up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a log ending at (last_index, last_term) is at least as up to date as ours
        (RequestVote's check, §5.4.1)."""
        my_term = self.last_term
        return last_term > my_term or (last_term == my_term and last_index >= self.last_index)

    # -- changing --------------------------------------------------------------------------------
    def append(self, entry: Entry) -> None:
        self.entries.append(entry)

    def merge(self, entries: list[Entry], commit_index: int) -> int | None:
        """A follower appends entries that follow a matching entry: only a conflicting suffix is
        truncated (entries already present are kept). Returns the index truncated from, if any."""
        last = self.last_index
        first = entries[0].index
        if first > last:
            self.entries.extend(entries)
            return None
        base = self.snapshot_index + 1
        log = self.entries
        for i, entry in enumerate(entries):
            idx = entry.index
            if idx > last:
                log.extend(entries[i:])
                return None
            if log[idx - base].term != entry.term:
                self.truncate(idx, commit_index)
                log.extend(entries[i:])
                return idx
        return None

    def truncate(self, index: int, commit_index: int) -> None:
        """Drop the entries from index on (a conflicting suffix: never a committed entry)."""
        if index <= commit_index:
            raise SafetyViolation(f"asked to truncate committed entry {index} (commit index {commit_index})")
        del self.entries[index - self.snapshot_index - 1:]
        if index < self.unstable_from:
            # Already handed to the driver: the disk must drop it too.
            if self.truncate_from is None or index < self.truncate_from:
                self.truncate_from = index
            self.unstable_from = index
        if self.persisted >= index:
            self.persisted = index - 1

    def compact(self, index: int, data: bytes) -> None:
        """Drop the entries through index: a durable snapshot (data) covers them."""
        term = self.term_at(index)
        assert term is not None, f"compact to {index}: not in the log"
        del self.entries[:index - self.snapshot_index]
        self.snapshot_index, self.snapshot_term, self.snapshot_data = index, term, data

    def install(self, index: int, term: int, data: bytes) -> bool:
        """A snapshot from the leader replaces the log up to index. Returns keep_log_after (see
        types.SnapshotInstall): whether the storage keeps its entries after the snapshot."""
        holds = self.term_at(index) == term
        # The storage keeps its entries after the snapshot only if the log already handed to it
        # (below unstable_from: earlier Readies, written before this one) holds (index, term).
        keep_log_after = holds and index < self.unstable_from
        if holds:
            # We hold a later prefix of the same log: keep the entries after the snapshot (if
            # the storage restarts its log, the unstable bound below hands them out again).
            del self.entries[:index - self.snapshot_index]
        else:
            # Our log conflicts with (or is shorter than) the snapshot: replace it entirely.
            self.entries = []
        if not keep_log_after:
            # The storage restarts its log after the snapshot: no truncation is left to do, and
            # until this Ready is advanced only the old snapshot counts as durable.
            self.truncate_from = None
            self.persisted = min(self.persisted, self.snapshot_index)
        self.snapshot_index, self.snapshot_term, self.snapshot_data = index, term, data
        self.unstable_from = min(max(self.unstable_from, index + 1), self.last_index + 1)
        return keep_log_after

    # -- the driver ------------------------------------------------------------------------------
    def take_unstable(self) -> list[Entry]:
        """The entries not handed to the driver yet (the next Ready persists them)."""
        last = self.snapshot_index + len(self.entries)
        if self.unstable_from > last:
            return []
        out = self.slice(self.unstable_from, last)
        self.unstable_from = last + 1
        return out

    def take_truncation(self) -> int | None:
        out, self.truncate_from = self.truncate_from, None
        return out

    def advance_persisted(self, written: list[Entry]) -> bool:
        """The driver made `written` (one Ready's entries) durable. An entry is durable only if
        our in-memory log still holds that very entry (a later truncation may have replaced
        it); by log matching, so are all before it. Entries a snapshot covers since then are
        committed, hence ours. Returns whether `persisted` moved."""
        if not written or written[-1].index <= self.persisted:
            return False
        for entry in reversed(written):
            index = entry.index
            if index <= self.persisted:
                return False
            if index <= self.snapshot_index or self.term_at(index) == entry.term:
                self.persisted = index
                return True
        return False

    def batch(self, first: int, budget: int, at_least_one: bool, max_entries: int,
              term: int) -> tuple[list[Entry], int]:
        """Entries from `first` for one append: at most max_entries of them and at most `budget`
        bytes (one entry regardless of its size when at_least_one), and their size in bytes.
        Entries of `term` (the leader's) carry the running total of the term's bytes (see
        RaftCore.propose), so a run of them is sized in O(log n)."""
        base = self.snapshot_index + 1
        log = self.entries
        start = first - base
        stop = min(len(log), start + max_entries)
        if start >= stop:
            return [], 0
        if start > 0 and log[start - 1].term == term:
            before = log[start - 1]._term_bytes
            total = log[stop - 1]._term_bytes - before
            if total > budget:
                stop = bisect.bisect_right(log, before + budget, start, stop, key=_term_bytes_key)
                if stop == start and at_least_one:
                    stop += 1
                total = log[stop - 1]._term_bytes - before if stop > start else 0
            return log[start:stop], total
        total = 0
        i = start
        while i < stop:
            entry = log[i]
            wire = entry.__dict__.get("_wire")
            size = len(wire) + _ENTRY_HEAD_BYTES if wire is not None else entry_size(entry)
            if total + size > budget and (i > start or not at_least_one):
                break
            total += size
            i += 1
        return log[start:i], total
