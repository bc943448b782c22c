"""A simulated disk that loses every write not yet fsynced when its machine crashes."""

from __future__ import annotations

from ..types import Entry, HardState, Ready, StorageState


class DiskError(AssertionError):
    """The core asked the disk for something impossible (e.g. a gap in the log)."""


class SimDisk:
    def __init__(self):
        # Durable state: what survives a crash.
        self.hard_state = HardState()
        self.snapshot: tuple[int, int, bytes] | None = None
        self.log: list[Entry] = []   # contiguous entries after the snapshot
        # Written but not yet synced (the page cache), in write order.
        self._unsynced: list[tuple] = []
        self._written = 0   # operations written so far (markers count these)
        self._synced = 0    # operations made durable so far
        self.syncs = 0

    # -- writes --------------------------------------------------------------------------------
    def write(self, rd: Ready) -> int:
        """Queue a Ready's persistent parts; returns a marker for sync_through()."""
        if rd.snapshot is not None:
            self._unsynced.append(("snapshot", rd.snapshot.index, rd.snapshot.term, rd.snapshot.data))
        if rd.hard_state is not None:
            self._unsynced.append(("hard_state", rd.hard_state))
        if rd.truncate_from is not None:
            self._unsynced.append(("truncate", rd.truncate_from))
        if rd.entries:
            self._unsynced.append(("append", rd.entries))
        self._written = self._synced + len(self._unsynced)
        return self._written

    def sync_through(self, marker: int) -> None:
        """fsync: everything written up to marker (a value write() returned) becomes durable."""
        count = marker - self._synced
        if count <= 0:
            return
        ops, self._unsynced = self._unsynced[:count], self._unsynced[count:]
        self._synced += count
        self.syncs += 1
        for op in ops:
            self._apply(op)

    def sync_all(self) -> None:
        self.sync_through(self._synced + len(self._unsynced))

    def pending_ops(self) -> int:
        return len(self._unsynced)

    def save_snapshot_now(self, index: int, term: int, data: bytes) -> None:
        """A state-machine snapshot written atomically and synced (temp file, fsync, rename):
        it becomes durable at once, then the log before it is compacted."""
        self._apply(("snapshot", index, term, data))

    def crash(self) -> None:
        self._unsynced = []
        self._written = self._synced

    def _apply(self, op: tuple) -> None:
        kind = op[0]
        base = self.snapshot[0] if self.snapshot else 0
        if kind == "hard_state":
            hs = op[1]
            self.hard_state = HardState(hs.term, hs.voted_for, hs.commit)
        elif kind == "snapshot":
            _, index, term, data = op
            if self.snapshot and index <= self.snapshot[0]:
                return
            # Entries after the snapshot survive only if the log holds the snapshot's last entry
            # (then they continue the same log); otherwise the snapshot replaces the whole log.
            pos = index - base - 1
            if 0 <= pos < len(self.log) and self.log[pos].term == term:
                self.log = self.log[pos + 1:]
            else:
                self.log = []
            self.snapshot = (index, term, data)
        elif kind == "truncate":
            cut = op[1]
            if cut <= base:
                self.log = []
            else:
                del self.log[cut - base - 1:]
        elif kind == "append":
            entries = op[1]
            last = self.log[-1].index if self.log else base
            first = entries[0].index
            if first <= base:
                entries = [e for e in entries if e.index > base]
                if not entries:
                    return
                first = entries[0].index
            if first != last + 1:
                raise DiskError(f"append of entries from {first} leaves a gap or overlap: "
                                f"the durable log ends at {last}")
            self.log.extend(entries)

    # -- reads ---------------------------------------------------------------------------------
    def load(self, forget_vote: bool = False) -> StorageState:
        hs = self.hard_state
        state = StorageState(HardState(hs.term, None if forget_vote else hs.voted_for, hs.commit),
                             list(self.log))
        if self.snapshot:
            state.snapshot_index, state.snapshot_term, state.snapshot_data = self.snapshot
        return state
