"""Durable Raft state on disk: hard state, the log, and a state-machine snapshot.

Every file operation goes through a file layer (raftnode.files: `OsFiles` by default; the
simulator passes `raftnode.sim.files.SimFiles`, which loses unsynced data at a simulated crash).

Layout of the data directory:

    hardstate.json         {"term", "voted_for", "commit", "acked", "crc"}; replaced atomically
                           (write temp file, fsync, rename, fsync the directory). "crc" is the
                           CRC32 of the other fields (files of older nodes, without "crc" and
                           "acked", are still read). "acked" is the highest log index that was
                           durable, hence possibly acknowledged, when it was written: raised at
                           most every `acked_mark_interval` seconds after a log fsync (0: after
                           every one), lowered before a truncation of the log below it is written.
    snapshot.bin           optional: magic, index, term, CRC32, data; replaced atomically
                           (data: membership.pack_snapshot: the configuration, then the state)
    identity.json          {"id", "incarnation", "crc"}: written once, on the empty disk (issue 12);
                           the incarnation is drawn at random then, so a wiped disk has another
                           one and its peers refuse it under the old id (membership.py)
    log-00000001.seg ...   append-only log segments, numbered in write order

A segment starts with an 8-byte magic and holds records:

    length  u32   size of the body
    crc     u32   CRC32 of the body
    body          u8 type (1 = batch), u64 truncate_from (0 = none), u32 count,
                  then per entry: u64 index, u64 term, u8 kind, u32 n, n bytes of JSON data
               or u8 type (2 = group): several batch bodies under one CRC (see encode_group)
               or u8 type (3 = restart), u64 index, u64 term: "the log restarts after index"

One record is written per Ready (group commit: all of a Ready's entries, and the truncation of a
conflicting suffix, in one record and one fdatasync). A truncation is therefore durable exactly
when the entries that replace it are, and replay applies it in order, so a truncated suffix never
reappears. Replay rules after a crash:

  * a bad record (short header, length past the end of the file, CRC mismatch, zero filler)
    that is the last thing in the newest segment is a torn write that was never acknowledged:
    it is truncated away (and reported in `recovery_notes`);
  * a bad record with valid data after it, or anywhere in an older segment (older segments were
    fsynced in full before the next one was started), is corruption of acknowledged data: a
    fatal `StorageCorruption` naming the file and the byte offset. Silently truncating there
    could lose committed entries.

Compaction (issue 3): `save_snapshot()` (or a snapshot file written by a forked child and moved
into place by `adopt_snapshot_file()`) stores the snapshot atomically, then `compact()` deletes
whole segments whose entries all lie at or below the snapshot index; replay drops entries covered
by the snapshot. A new segment is started once the current one exceeds `segment_bytes`, so
compaction frees disk without rewriting live data.

Installing a snapshot received from the leader (`install_snapshot`, issue 9) is atomic: a crash
at any point leaves either the old state (old snapshot, old log) or the new one (the new snapshot
and the log after it: the old entries after its index when the core says the log already handed
to the storage holds the snapshot's (index, term), `keep_log_after`; otherwise no entry at all).
The hard state is not part of it (the driver persists a Ready's hard state before its install).
The protocol, each step complete before the next begins:

  1. write the snapshot to snapshot.bin.<index>.part and fsync it (so that the rename below
     can never expose a file whose data is not on disk);
  2. unless keep_log_after: create the next segment holding only a restart record
     "the log restarts after (index, term)", fdatasync it, fsync the directory (directory
     operations on different names reach the disk in no promised order: without this fsync
     the rename could survive a crash that the new segment does not);
  3. rename the .part file over snapshot.bin and fsync the directory: the commit point;
  4. unless keep_log_after: unlink every segment before the restart segment, fsync the directory.
     With keep_log_after: compact() the segments the snapshot covers.

Replay honours the newest restart record whose index is at or below the stored snapshot's index:
every segment before it is dead (deleted at start-up if step 4 did not finish) and replay never
reads the old entries, so a gap between the old log and the new one cannot arise. A restart
record above the stored snapshot's index is an install that crashed between steps 2 and 3 (the
old state): it can only be the newest segment and hold nothing else, and it is deleted. A
snapshot already stored at or above the index (saved by the node meanwhile) skips steps 1 and 3;
the restart record is then honoured as soon as step 2 is durable. The install holds the snapshot
lock throughout, so a snapshot adopted concurrently never lands between steps 2 and 3. For the
same reason of unordered unlinks, replay accepts a segment missing before another (compaction's
deletions reaching the disk out of order) when only entries the snapshot covers are missing.
tests/test_storage_snapshot_install_crash.py crashes the install after each file operation.

Seeded bugs (Config.bugs): "no-fsync" skips every fsync (writes are acknowledged while only in the
page cache); "forget-vote" never persists voted_for, so a restarted node can vote twice in a term;
"snapshot-gap" installs a leader's snapshot without dropping the old log, so the node cannot restart
(the gap between the old log and the entries after the snapshot is a fatal corruption at replay).
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
import zlib
from typing import Any

from .codec import _ENTRY_HEAD, _ENTRY_KIND_CODES, _ENTRY_KIND_NAMES, _entry_data_bytes
from .files import OS_FILES
from .types import Entry, HardState, StorageState

SEGMENT_MAGIC = b"RNLOG\x00\x00\x01"
SNAPSHOT_MAGIC = b"RNSNAP\x00\x01"
HARD_STATE_FILE = "hardstate.json"
IDENTITY_FILE = "identity.json"
SNAPSHOT_FILE = "snapshot.bin"
DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024
# How stale the hard state's "acked" mark may get: each raise is one more atomic hard-state
# write (two fsyncs), so it is raised at most this often rather than after every log fsync.
DEFAULT_ACKED_MARK_INTERVAL_S = 0.2
_HARD_STATE_KEYS = {"term", "voted_for", "commit", "acked", "crc"}
MAX_RECORD_BYTES = 1 << 30

_RECORD_HEAD = struct.Struct(">II")
_U32 = struct.Struct(">I")
_BATCH_HEAD = struct.Struct(">BQI")
_SNAPSHOT_HEAD = struct.Struct(">8sQQI")  # magic, index, term, crc32 of data
_REC_BATCH = 1
_REC_GROUP = 2  # several batch records (consecutive Readies) under one CRC: written atomically
_GROUP_HEAD = struct.Struct(">BQI")  # type, 0, count (same size as a batch head)
_REC_RESTART = 3  # the log restarts after (index, term): written by install_snapshot
_RESTART = struct.Struct(">BQQ")
_RESTART_SEGMENT_BYTES = len(SEGMENT_MAGIC) + _RECORD_HEAD.size + _RESTART.size


class IdentityMismatch(Exception):
    """The data directory belongs to another node id: starting on it would reuse its disk."""


class StorageCorruption(Exception):
    """Acknowledged data on disk is damaged: the node must not start (names file and offset)."""

    def __init__(self, path: str, offset: int, problem: str):
        what = "log" if path.endswith(".seg") else "file"
        super().__init__(f"{path}: corrupt {what} at byte offset {offset}: {problem}")
        self.path = path
        self.offset = offset
        self.problem = problem


def _hard_state_crc(doc: dict) -> int:
    """CRC32 of a hard state's fields other than "crc", in a canonical encoding."""
    fields = {k: doc[k] for k in ("term", "voted_for", "commit", "acked") if k in doc}
    return zlib.crc32(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode())


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} is not a non-negative integer: {value!r}")
    return value


def _write_fully(files, fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[files.write(fd, view):]


def atomic_write(path: str, data: bytes, sync: bool = True, files=OS_FILES) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new content."""
    tmp = path + ".tmp"
    fd = files.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_fully(files, fd, data)
        if sync:
            files.fsync(fd)
    finally:
        files.close(fd)
    files.replace(tmp, path)
    if sync:
        files.fsync_dir(os.path.dirname(path) or ".")


def encode_batch(truncate_from: int | None, entries: list[Entry]) -> bytes:
    """One log record (head + body) holding a truncation and/or contiguous entries."""
    parts = [_BATCH_HEAD.pack(_REC_BATCH, truncate_from or 0, len(entries))]
    pack_head = _ENTRY_HEAD.pack
    for entry in entries:
        raw = _entry_data_bytes(entry)
        parts.append(pack_head(entry.index, entry.term, _ENTRY_KIND_CODES[entry.kind], len(raw)))
        parts.append(raw)
    body = b"".join(parts)
    return _RECORD_HEAD.pack(len(body), zlib.crc32(body)) + body


def encode_group(records: list[bytes]) -> bytes:
    """Several encode_batch() records as one record, so that a crash during their single write
    tears the whole group (a torn tail) and can never leave a bad record before a good one.
    Inside, each batch body is only length-prefixed (no CRC head of its own), so no part of a
    group can ever be mistaken for a top-level record."""
    parts = [_GROUP_HEAD.pack(_REC_GROUP, 0, len(records))]
    for record in records:
        parts.append(_U32.pack(len(record) - _RECORD_HEAD.size))
        parts.append(record[_RECORD_HEAD.size:] if isinstance(record, bytes) else bytes(record)[_RECORD_HEAD.size:])
    body = b"".join(parts)
    return _RECORD_HEAD.pack(len(body), zlib.crc32(body)) + body


def encode_restart(index: int, term: int) -> bytes:
    body = _RESTART.pack(_REC_RESTART, index, term)
    return _RECORD_HEAD.pack(len(body), zlib.crc32(body)) + body


def _restart_at_head(head: bytes) -> tuple[int, int] | None:
    """(index, term) of the restart record a segment begins with, or None."""
    start = len(SEGMENT_MAGIC)
    if len(head) < _RESTART_SEGMENT_BYTES or head[:start] != SEGMENT_MAGIC:
        return None
    length, crc = _RECORD_HEAD.unpack_from(head, start)
    body = head[start + _RECORD_HEAD.size:start + _RECORD_HEAD.size + _RESTART.size]
    if length != _RESTART.size or body[0] != _REC_RESTART or zlib.crc32(body) != crc:
        return None
    _, index, term = _RESTART.unpack(body)
    return index, term


def _decode_record(body: bytes) -> list[tuple[int, list[Entry]]]:
    """The (truncate_from, entries) pairs of one record body, in order."""
    if body[0] != _REC_GROUP:
        return [_decode_batch(body)]
    _, _, count = _GROUP_HEAD.unpack_from(body, 0)
    pos = _GROUP_HEAD.size
    out = []
    for _ in range(count):
        (length,) = _U32.unpack_from(body, pos)
        pos += _U32.size
        if pos + length > len(body):
            raise ValueError("a group's inner record runs past the group")
        out.append(_decode_batch(body[pos:pos + length]))
        pos += length
    if pos != len(body):
        raise ValueError(f"{len(body) - pos} stray bytes after a group's records")
    return out


def _decode_batch(body: bytes) -> tuple[int, list[Entry]]:
    rtype, truncate_from, count = _BATCH_HEAD.unpack_from(body, 0)
    if rtype != _REC_BATCH:
        raise ValueError(f"unknown record type {rtype}")
    pos = _BATCH_HEAD.size
    entries = []
    decode = json.JSONDecoder().decode
    for _ in range(count):
        index, term, kind, n = _ENTRY_HEAD.unpack_from(body, pos)
        pos += _ENTRY_HEAD.size
        name = _ENTRY_KIND_NAMES.get(kind)
        if name is None:
            raise ValueError(f"unknown entry kind {kind} at index {index}")
        if pos + n > len(body):
            raise ValueError(f"entry {index} data runs past the record")
        raw = body[pos:pos + n]
        pos += n
        entry = Entry(index, term, name, decode(raw.decode("utf-8")) if n else None)
        entry.__dict__["_wire"] = raw
        entries.append(entry)
    if pos != len(body):
        raise ValueError(f"{len(body) - pos} stray bytes after the entries")
    return truncate_from, entries


def _intact_record_after(data: bytes, pos: int) -> int | None:
    """Offset of a record with a plausible header and a matching CRC somewhere after `pos`."""
    size = len(data)
    for rtype in (_REC_BATCH, _REC_GROUP, _REC_RESTART):
        q = data.find(bytes([rtype]), pos + 1 + _RECORD_HEAD.size)
        while q != -1:
            start = q - _RECORD_HEAD.size
            length, crc = _RECORD_HEAD.unpack_from(data, start)
            if length >= _BATCH_HEAD.size and q + length <= size and zlib.crc32(data[q:q + length]) == crc:
                return start
            q = data.find(bytes([rtype]), q + 1)
    return None


def ready_ops(rd, tag) -> list[tuple]:
    """The storage operations for one Ready, in the order Storage.run_ops must run them.

    Both drivers (the asyncio node and the simulator) queue these and hand every queued one to
    run_ops on their storage thread, so they persist identically. A "log" op carries `tag`,
    the driver's handle for "this Ready is durable once its job completes" (None for an op that
    is only a prefix of the Ready). With a snapshot to install, the hard state goes first: the
    stored snapshot's term must never be newer than the persisted currentTerm."""
    entries = rd.entries
    record = (encode_batch(rd.truncate_from, entries)
              if rd.truncate_from is not None or entries else None)
    last = entries[-1].index if entries else None
    snap = rd.snapshot
    if snap is None:
        return [("log", tag, rd.hard_state, record, rd.truncate_from, last)]
    ops: list[tuple] = []
    if rd.hard_state is not None:
        ops.append(("log", None, rd.hard_state, None, None, None))
    ops.append(("install", snap.index, snap.term, snap.data, snap.keep_log_after))
    ops.append(("log", tag, None, record, rd.truncate_from, last))
    return ops


class Storage:
    """Owns the data directory. Not thread-safe, except that save_snapshot/adopt_snapshot_file
    may run on a snapshot thread concurrently with the log writes of the storage thread."""

    def __init__(self, data_dir: str, bugs: frozenset = frozenset(),
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES, files=None,
                 acked_mark_interval: float = DEFAULT_ACKED_MARK_INTERVAL_S, clock=None):
        self.data_dir = data_dir
        self.files = files if files is not None else OS_FILES
        self.sync_enabled = "no-fsync" not in bugs
        self.forget_vote = "forget-vote" in bugs
        self.snapshot_gap = "snapshot-gap" in bugs
        self.segment_bytes = segment_bytes
        self.recovery_notes: list[str] = []
        self._segments: list[list] = []  # [seq, path, max entry index written (0 if none)]
        self._next_seq = 1
        self._fd: int | None = None
        self._size = 0
        self._persisted_hs: tuple | None = None
        self._hs = HardState()          # the hard state as last written (or loaded)
        self._acked_mark = 0            # the "acked" stored in the hard-state file
        self.acked_mark_interval = acked_mark_interval
        self._clock = clock or time.monotonic
        self._mark_written = self._clock()
        self._last_index = 0
        self.snapshot_index = 0
        self.snapshot_term = 0
        self._snapshot_lock = threading.Lock()
        self.fsyncs = 0
        self.files.makedirs(data_dir)

    def _path(self, name: str) -> str:
        return os.path.join(self.data_dir, name)

    def _fsync_dir(self) -> None:
        if self.sync_enabled:
            self.files.fsync_dir(self.data_dir)

    # ---------------------------------------------------------------- recovery

    def load(self) -> StorageState:
        """Recover the state from disk (truncating a torn tail); open the log for appending."""
        files = self.files
        state = StorageState(hard_state=self._load_hard_state())
        snap = self.load_snapshot()
        if snap is not None:
            self.snapshot_index, self.snapshot_term = snap[0], snap[1]
            state.snapshot_data = snap[2]
        state.snapshot_index, state.snapshot_term = self.snapshot_index, self.snapshot_term
        names = files.listdir(self.data_dir)
        for name in names:
            if name.startswith(SNAPSHOT_FILE + ".") and name.endswith(".part"):
                files.unlink(self._path(name))  # a snapshot that never made it
        segments = []
        for name in sorted(n for n in names if n.startswith("log-") and n.endswith(".seg")):
            try:
                seq = int(name[4:-4])
            except ValueError:
                raise StorageCorruption(self._path(name), 0, "unparsable segment name") from None
            segments.append((seq, self._path(name)))
        if segments:
            self._next_seq = segments[-1][0] + 1
        segments, restart = self._live_segments(segments)
        entries: list[Entry] = []
        for i, (seq, path) in enumerate(segments):
            max_index = self._replay_segment(path, entries, last=(i == len(segments) - 1),
                                             restart=restart if i == 0 else None)
            self._segments.append([seq, path, max_index])
        # Entries covered by the snapshot are already in it.
        first_kept = 0
        while first_kept < len(entries) and entries[first_kept].index <= self.snapshot_index:
            first_kept += 1
        entries = entries[first_kept:]
        if entries and entries[0].index != self.snapshot_index + 1:
            raise StorageCorruption(self._segments[0][1] if self._segments else self.data_dir, 0,
                                    f"log starts at index {entries[0].index} but the snapshot ends at "
                                    f"{self.snapshot_index}: entries are missing")
        state.entries = entries
        self._last_index = entries[-1].index if entries else self.snapshot_index
        self._open_for_append()
        return state

    def _live_segments(self, segments: list[tuple]) -> tuple[list[tuple], tuple | None]:
        """Drop what an install left behind: the segments before the newest honoured restart
        record (dead), and a restart record above the stored snapshot (an install that never
        reached its commit point). Returns the live segments and the honoured restart record."""
        files = self.files
        start, restart = 0, None
        for i, (_, path) in enumerate(segments):
            marker = _restart_at_head(files.read_file(path, _RESTART_SEGMENT_BYTES))
            if marker is None:
                continue
            if marker[0] <= self.snapshot_index:
                if marker[0] == self.snapshot_index and marker[1] != self.snapshot_term:
                    raise StorageCorruption(path, len(SEGMENT_MAGIC),
                                            f"the log restarts after index {marker[0]} term {marker[1]}, "
                                            f"but the snapshot there has term {self.snapshot_term}")
                start, restart = i, marker
                continue
            if i != len(segments) - 1 or files.getsize(path) != _RESTART_SEGMENT_BYTES:
                raise StorageCorruption(path, len(SEGMENT_MAGIC),
                                        f"the log restarts after index {marker[0]}, beyond the snapshot "
                                        f"(index {self.snapshot_index}), yet more log follows: the "
                                        "installed snapshot it belongs to is missing")
            files.unlink(path)
            self._fsync_dir()
            self.recovery_notes.append(f"{path}: removed the restart record of a snapshot install "
                                       f"(index {marker[0]}) that never completed")
            segments = segments[:-1]
        if start:
            assert restart is not None  # start moves only with the restart record honoured there
            for _, path in segments[:start]:
                files.unlink(path)
            self._fsync_dir()
            self.recovery_notes.append(f"removed {start} log segment(s) that a completed snapshot "
                                       f"install (index {restart[0]}) superseded")
        return segments[start:], restart

    def _load_hard_state(self) -> HardState:
        path = self._path(HARD_STATE_FILE)
        try:
            raw = self.files.read_file(path)
        except FileNotFoundError:
            # Never written, or its creation was never made durable: a fresh node's state.
            return HardState()
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise StorageCorruption(path, getattr(exc, "pos", getattr(exc, "start", 0)),
                                    f"unreadable hard state: {exc}") from None
        try:
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            unknown = set(doc) - _HARD_STATE_KEYS
            if unknown:
                raise ValueError(f"unknown field(s) {', '.join(sorted(map(repr, unknown)))}")
            if "crc" in doc:
                if doc["crc"] != _hard_state_crc(doc):
                    raise StorageCorruption(path, 0, "hard state CRC mismatch")
            elif "acked" in doc:
                raise ValueError("a hard state with \"acked\" but no \"crc\"")  # written by us: has both
            hs = HardState(term=_count(doc["term"], "term"), voted_for=doc["voted_for"],
                           commit=_count(doc.get("commit", 0), "commit"), acked=_count(doc.get("acked", 0), "acked"))
            if hs.voted_for is not None and not isinstance(hs.voted_for, str):
                raise ValueError("voted_for is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageCorruption(path, 0, f"unreadable hard state: {exc}") from None
        self._persisted_hs = (hs.term, hs.voted_for)
        self._hs = hs
        self._acked_mark = hs.acked
        return hs

    def _replay_segment(self, path: str, entries: list[Entry], last: bool, restart: tuple | None) -> int:
        data = self.files.read_file(path)
        size = len(data)
        if data[:len(SEGMENT_MAGIC)] != SEGMENT_MAGIC:
            good = 0
            while good < min(size, len(SEGMENT_MAGIC)) and data[good] == SEGMENT_MAGIC[good]:
                good += 1
            if last and data.count(0, good) == size - good:
                # Crash while creating the segment (its header cut short, or never written over
                # the zeros of a grown file): nothing in it was ever acknowledged.
                self._truncate_tail(path, size, 0, "incomplete segment header")
                return 0
            raise StorageCorruption(path, 0, "file too short for a segment header" if size < len(SEGMENT_MAGIC)
                                    else "bad segment magic")
        pos = len(SEGMENT_MAGIC)
        max_index = 0
        opening = True  # before this segment's first entry
        while pos < size:
            problem = None
            end = size
            if size - pos < _RECORD_HEAD.size:
                problem = "short record header"
            else:
                length, crc = _RECORD_HEAD.unpack_from(data, pos)
                end = pos + _RECORD_HEAD.size + length
                if length < _BATCH_HEAD.size:
                    problem = f"record length {length} too small"
                    end = size
                elif end > size:
                    problem = f"record length {length} runs past the end of the file"
                    end = size
                elif zlib.crc32(data[pos + _RECORD_HEAD.size:end]) != crc:
                    problem = "CRC mismatch"
            if problem is not None:
                # A torn tail is the last record written, followed by nothing but zero filler. A
                # damaged length field can make a middle record look like it runs to the end of
                # the file: look for an intact record after it before calling it torn.
                torn = (last and data[end:].count(0) == size - end
                        and (problem == "CRC mismatch" or _intact_record_after(data, pos) is None))
                if not torn:
                    raise StorageCorruption(path, pos, problem + " (valid data follows, so this is not a torn tail)"
                                            if last else problem + " (in a segment that was completely synced)")
                self._truncate_tail(path, size, pos, problem)
                return max_index
            body = data[pos + _RECORD_HEAD.size:end]
            if body[0] == _REC_RESTART:
                # _live_segments put the honoured restart record at the head of the first segment.
                if restart is None or pos != len(SEGMENT_MAGIC) or len(body) != _RESTART.size:
                    raise StorageCorruption(path, pos, "a log restart record that does not begin the log")
                # Nothing before it is part of the log; the snapshot's index bounds what follows
                # (load() checks that the entries after the snapshot continue it).
                entries.clear()
                pos = end
                continue
            try:
                batches = _decode_record(body)
            except (ValueError, struct.error, UnicodeDecodeError) as exc:
                raise StorageCorruption(path, pos, f"undecodable record with a valid CRC: {exc}") from None
            for truncate_from, batch in batches:
                if truncate_from:
                    while entries and entries[-1].index >= truncate_from:
                        entries.pop()
                for entry in batch:
                    expected = entries[-1].index + 1 if entries else None
                    if expected is not None and entry.index != expected:
                        if not (opening and entry.index <= self.snapshot_index + 1):
                            raise StorageCorruption(path, pos,
                                                    f"entry index {entry.index} where {expected} was expected")
                        # An older segment is gone but the next one was not: compaction's unlinks
                        # became durable out of order. Only entries the snapshot covers are missing.
                        entries.clear()
                    opening = False
                    entries.append(entry)
                    if entry.index > max_index:
                        max_index = entry.index
            pos = end
        return max_index

    def _truncate_tail(self, path: str, size: int, offset: int, problem: str) -> None:
        files = self.files
        self.recovery_notes.append(f"{path}: truncated a torn tail of {size - offset} bytes at offset {offset} "
                                   f"({problem})")
        fd = files.open(path, os.O_WRONLY)
        try:
            files.ftruncate(fd, max(offset, 0))
            if self.sync_enabled:
                files.fsync(fd)
        finally:
            files.close(fd)

    def _open_for_append(self) -> None:
        if self._segments:
            seq, path, _ = self._segments[-1]
            self._fd = self.files.open(path, os.O_WRONLY | os.O_APPEND)
            self._size = self.files.size(self._fd)
            if self._size == 0:  # truncated away a torn header
                self._write_all(SEGMENT_MAGIC)
                self._sync_fd()
        else:
            self._start_segment()

    def _start_segment(self, head: bytes = b"") -> None:
        """Continue the log in a new segment (after a restart record `head`, if given): durable,
        name included, when this returns."""
        files = self.files
        seq = self._next_seq
        path = self._path(f"log-{seq:08d}.seg")
        if self._fd is not None:
            self._sync_fd()
            files.close(self._fd)
            self._fd = None
        self._fd = files.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o644)
        self._next_seq = seq + 1
        self._size = 0
        self._write_all(SEGMENT_MAGIC + head)
        self._sync_fd()
        self._fsync_dir()
        self._segments.append([seq, path, 0])

    # ---------------------------------------------------------------- writing

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None  # the open segment: load() and every rollover open one
        _write_fully(self.files, self._fd, data)
        self._size += len(data)

    def _sync_fd(self) -> None:
        if self.sync_enabled:
            assert self._fd is not None  # the open segment, as in _write_all
            self.files.fdatasync(self._fd)
            self.fsyncs += 1

    def persist(self, hard_state: HardState | None, truncate_from: int | None, entries: list[Entry]) -> None:
        """Make one Ready durable: hard state first, then one log record, one fdatasync.

        Hard state goes first so that the log never holds entries of a term newer than the
        persisted currentTerm. Only (term, voted_for) changes rewrite the hard-state file: the
        commit index in it is advisory (re-learned from the leader), and rewriting it on every
        commit would cost three extra fsyncs per Ready.
        """
        record = encode_batch(truncate_from, entries) if truncate_from is not None or entries else None
        self.persist_encoded(hard_state, record, truncate_from, entries[-1].index if entries else None)

    def persist_encoded(self, hard_state: HardState | None, record: bytes | None,
                        truncate_from: int | None, last_index: int | None) -> None:
        """persist() with the log record already built by encode_batch()."""
        self.persist_batch(hard_state, [] if record is None else [(record, truncate_from, last_index)])

    def persist_batch(self, hard_state: HardState | None, records: list[tuple]) -> None:
        """Hard state, then several encode_batch() records (of consecutive Readies, in order)
        with one fdatasync. The driver encodes on its own thread and runs only this part
        (system calls, which release the GIL) on the storage thread."""
        lowest = min((r[1] for r in records if r[1] is not None), default=None)
        if lowest is not None and lowest - 1 < self._acked_mark:
            # The log is about to be truncated below the mark, legitimately (a new leader's
            # conflicting suffix): lower the mark first, or a crash after the truncation would
            # leave a node that believes its log went backwards.
            self._acked_mark = lowest - 1
            self._write_hard_state(hard_state or self._hs)
        elif hard_state is not None:
            self.save_hard_state(hard_state)
        if not records:
            return
        if self._size >= self.segment_bytes:
            self._start_segment()
        self._write_all(records[0][0] if len(records) == 1 else encode_group([r[0] for r in records]))
        self._sync_fd()
        seg = self._segments[-1]
        for _, truncate_from, last_index in records:
            if truncate_from is not None:
                self._last_index = min(self._last_index, truncate_from - 1)
            if last_index is not None:
                self._last_index = last_index
                if last_index > seg[2]:
                    seg[2] = last_index
        self._maybe_raise_acked_mark()

    def _maybe_raise_acked_mark(self) -> None:
        """After a log fsync: record the durable log's end in the hard state, at most every
        acked_mark_interval seconds (entries acknowledged since the last raise are not
        covered by it: the cost of not rewriting the hard state after every fsync)."""
        if not self.sync_enabled or self._last_index <= self._acked_mark:
            return
        now = self._clock()
        if now - self._mark_written < self.acked_mark_interval:
            return
        self._acked_mark = self._last_index
        self._write_hard_state(self._hs)

    def run_ops(self, ops: list[tuple]) -> None:
        """Run storage operations built by ready_ops() (and ("compact", index)), in order:
        consecutive log records are written together with one fdatasync."""
        batch = []
        hard_state = None
        for op in ops:
            kind = op[0]
            if kind == "log":
                _, _, hs, record, truncate_from, last_index = op
                if hs is not None:
                    hard_state = hs  # the newest one covers the terms of every record here
                if record is not None:
                    batch.append((record, truncate_from, last_index))
                continue
            if hard_state is not None or batch:
                self.persist_batch(hard_state, batch)
                batch, hard_state = [], None
            if kind == "install":
                self.install_snapshot(*op[1:])
            elif kind == "compact":
                self.compact(op[1])
            else:
                raise ValueError(f"unknown storage operation {kind!r}")
        if hard_state is not None or batch:
            self.persist_batch(hard_state, batch)

    def save_hard_state(self, hs: HardState) -> None:
        voted_for = None if self.forget_vote else hs.voted_for  # BUG forget-vote: vote not persisted
        key = (hs.term, voted_for)
        if key == self._persisted_hs:
            return
        if self.sync_enabled:
            # written before this Ready's records: the log durable so far is what it may claim
            self._acked_mark = max(self._acked_mark, self._last_index)
        self._write_hard_state(hs)

    def _write_hard_state(self, hs: HardState) -> None:
        voted_for = None if self.forget_vote else hs.voted_for
        doc = {"term": hs.term, "voted_for": voted_for, "commit": hs.commit, "acked": self._acked_mark}
        doc["crc"] = _hard_state_crc(doc)
        atomic_write(self._path(HARD_STATE_FILE), json.dumps(doc).encode(), self.sync_enabled, self.files)
        if self.sync_enabled:
            self.fsyncs += 2
        self._persisted_hs = (hs.term, voted_for)
        self._hs = HardState(hs.term, hs.voted_for, hs.commit, self._acked_mark)
        self._mark_written = self._clock()

    @property
    def last_index(self) -> int:
        return self._last_index

    # ---------------------------------------------------------------- snapshots and compaction

    def save_snapshot(self, index: int, term: int, data: bytes) -> bool:
        """Atomically store a snapshot of the state machine through `index`.

        May run on its own thread, concurrently with log appends (the snapshot file is separate
        from the log). Returns False, storing nothing, when a newer snapshot is already stored
        (e.g. one installed from the leader while this one was being written)."""
        with self._snapshot_lock:
            if index <= self.snapshot_index:
                return False
            blob = _SNAPSHOT_HEAD.pack(SNAPSHOT_MAGIC, index, term, zlib.crc32(data)) + data
            atomic_write(self._path(SNAPSHOT_FILE), blob, self.sync_enabled, self.files)
            self.snapshot_index, self.snapshot_term = index, term
            return True

    def snapshot_temp_path(self, index: int) -> str:
        return self._path(f"{SNAPSHOT_FILE}.{index}.part")

    @staticmethod
    def write_snapshot_file(path: str, index: int, term: int, data: bytes, sync: bool = True,
                            files=OS_FILES) -> None:
        """Write a complete snapshot file at `path` (not yet in place; see adopt_snapshot_file).
        Used by a forked child that serializes the state while the node keeps running."""
        blob = _SNAPSHOT_HEAD.pack(SNAPSHOT_MAGIC, index, term, zlib.crc32(data)) + data
        fd = files.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_fully(files, fd, blob)
            if sync:
                files.fsync(fd)
        finally:
            files.close(fd)

    def discard_snapshot_file(self, path: str) -> None:
        """Remove a snapshot file that will not be adopted (its writer failed)."""
        if self.files.exists(path):
            self.files.unlink(path)

    def adopt_snapshot_file(self, path: str, index: int, term: int) -> bytes | None:
        """Check a snapshot written by write_snapshot_file and move it into place atomically.
        Returns its state-machine bytes, or None if a newer snapshot is already stored."""
        files = self.files
        with self._snapshot_lock:
            try:
                if index <= self.snapshot_index:
                    return None
                blob = files.read_file(path)
                magic, got_index, got_term, crc = _SNAPSHOT_HEAD.unpack_from(blob, 0)
                data = blob[_SNAPSHOT_HEAD.size:]
                if magic != SNAPSHOT_MAGIC or (got_index, got_term) != (index, term) or zlib.crc32(data) != crc:
                    raise StorageCorruption(path, 0, "snapshot written by the snapshot process does not verify")
                files.replace(path, self._path(SNAPSHOT_FILE))
                self._fsync_dir()
                self.snapshot_index, self.snapshot_term = index, term
                return data
            finally:
                if files.exists(path):
                    files.unlink(path)

    def load_snapshot(self) -> tuple[int, int, bytes] | None:
        path = self._path(SNAPSHOT_FILE)
        try:
            blob = self.files.read_file(path)
        except FileNotFoundError:
            return None
        if len(blob) < _SNAPSHOT_HEAD.size:
            raise StorageCorruption(path, 0, "snapshot file shorter than its header")
        magic, index, term, crc = _SNAPSHOT_HEAD.unpack_from(blob, 0)
        data = blob[_SNAPSHOT_HEAD.size:]
        if magic != SNAPSHOT_MAGIC:
            raise StorageCorruption(path, 0, "bad snapshot magic")
        if zlib.crc32(data) != crc:
            raise StorageCorruption(path, _SNAPSHOT_HEAD.size, "snapshot CRC mismatch")
        return index, term, data

    def compact(self, through_index: int) -> int:
        """Delete whole segments holding only entries <= through_index (covered by a snapshot).

        Returns the number of segments removed. The newest segment is never removed.
        """
        if through_index > self.snapshot_index:
            raise ValueError(f"cannot compact through {through_index}: the snapshot ends at {self.snapshot_index}")
        removed = 0
        while len(self._segments) > 1 and self._segments[0][2] <= through_index:
            self.files.unlink(self._segments[0][1])
            self._segments.pop(0)
            removed += 1
        if removed:
            self._fsync_dir()
        return removed

    def install_snapshot(self, index: int, term: int, data: bytes, keep_log_after: bool) -> None:
        """Install a snapshot received from the leader, atomically (the protocol is in the module
        docstring). keep_log_after: the log handed to the storage so far holds (index, term), so
        the entries after index continue the snapshot and stay; otherwise the log is emptied."""
        files = self.files
        if self.snapshot_gap:
            # SEEDED BUG snapshot-gap: the install keeps the old, shorter log on disk (no restart
            # record), as before issue 9: the next replay meets a gap after it and the node cannot
            # restart.
            keep_log_after = True
        with self._snapshot_lock:
            part = None
            if index > self.snapshot_index:
                part = self.snapshot_temp_path(index)
                self.write_snapshot_file(part, index, term, data, self.sync_enabled, files)
            if not keep_log_after:
                self._start_segment(encode_restart(index, term))
            if part is not None:
                files.replace(part, self._path(SNAPSHOT_FILE))
                self._fsync_dir()
                self.snapshot_index, self.snapshot_term = index, term
            if keep_log_after:
                self._last_index = max(self._last_index, index)
            else:
                for _, path, _ in self._segments[:-1]:
                    files.unlink(path)
                if len(self._segments) > 1:
                    self._fsync_dir()
                del self._segments[:-1]
                self._last_index = index
        if keep_log_after:
            self.compact(index)

    # ---------------------------------------------------------------- identity

    def identity(self, node_id: str, new_incarnation: str) -> str:
        """This disk's incarnation for node_id: the stored one, or `new_incarnation`, stored
        durably now (the first start on an empty disk). Raises IdentityMismatch if the disk
        belongs to another id, StorageCorruption if the file is damaged."""
        path = self._path(IDENTITY_FILE)
        try:
            raw = self.files.read_file(path)
        except FileNotFoundError:
            doc: dict[str, Any] = {"id": node_id, "incarnation": new_incarnation}
            doc["crc"] = zlib.crc32(json.dumps(doc, sort_keys=True).encode())
            atomic_write(path, json.dumps(doc, sort_keys=True).encode(), self.sync_enabled, self.files)
            return new_incarnation
        try:
            doc = json.loads(raw)
            crc = doc.pop("crc")
            ok = (isinstance(doc.get("id"), str) and isinstance(doc.get("incarnation"), str)
                  and zlib.crc32(json.dumps(doc, sort_keys=True).encode()) == crc)
        except (ValueError, AttributeError, KeyError, TypeError):
            ok = False
        if not ok:
            raise StorageCorruption(path, 0, "the identity file is damaged")
        if doc["id"] != node_id:
            raise IdentityMismatch(f"{self.data_dir} holds the data of node {doc['id']!r}, not {node_id!r}")
        return doc["incarnation"]

    def disk_bytes(self) -> int:
        total = 0
        for name in self.files.listdir(self.data_dir):
            try:
                total += self.files.getsize(self._path(name))
            except OSError:
                pass
        return total

    def close(self) -> None:
        if self._fd is not None:
            try:
                self._sync_fd()
            finally:
                self.files.close(self._fd)
                self._fd = None
