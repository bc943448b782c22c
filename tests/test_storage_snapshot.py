"""Snapshots are stored atomically and checked; compaction drops only segments the snapshot covers."""

import pytest

from raftnode.storage import Storage, StorageCorruption
from raftnode.types import COMMAND, Entry


def entry(i, term=1):
    return Entry(i, term, COMMAND, {"op": "put", "key": "k", "value": "x" * 40})


def test_restart_from_snapshot_plus_remaining_log(tmp_path):
    storage = Storage(str(tmp_path), segment_bytes=250)
    storage.load()
    for i in range(1, 31):
        storage.persist(None, None, [entry(i)])
    segments_before = len(list(tmp_path.glob("*.seg")))
    storage.save_snapshot(20, 1, b'{"kv": {}}')
    removed = storage.compact(20)
    assert removed > 0 and len(list(tmp_path.glob("*.seg"))) == segments_before - removed
    storage.close()
    storage = Storage(str(tmp_path), segment_bytes=250)
    state = storage.load()
    assert (state.snapshot_index, state.snapshot_term) == (20, 1)
    assert [e.index for e in state.entries] == list(range(21, 31))
    assert storage.load_snapshot() == (20, 1, b'{"kv": {}}')
    storage.close()


def test_compaction_beyond_the_snapshot_is_refused(tmp_path):
    storage = Storage(str(tmp_path))
    storage.load()
    with pytest.raises(ValueError):
        storage.compact(5)
    storage.close()


def test_a_damaged_snapshot_is_fatal(tmp_path):
    storage = Storage(str(tmp_path))
    storage.load()
    storage.save_snapshot(3, 1, b"state")
    storage.close()
    path = tmp_path / "snapshot.bin"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(StorageCorruption, match="snapshot"):
        Storage(str(tmp_path)).load()


def test_reset_log_after_an_installed_snapshot_drops_every_entry(tmp_path):
    storage = Storage(str(tmp_path))
    storage.load()
    storage.persist(None, None, [entry(i) for i in range(1, 6)])
    storage.save_snapshot(50, 4, b"s")
    storage.reset_log(50, 4)
    storage.persist(None, None, [entry(51, 4)])
    storage.close()
    state = Storage(str(tmp_path)).load()
    assert state.snapshot_index == 50 and [e.index for e in state.entries] == [51]
