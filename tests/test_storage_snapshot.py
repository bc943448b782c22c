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


def test_an_installed_snapshot_beyond_a_shorter_log_replaces_it_and_the_log_resumes_after_it(tmp_path):
    storage = Storage(str(tmp_path))
    storage.load()
    storage.persist(None, None, [entry(i) for i in range(1, 6)])
    storage.install_snapshot(50, 4, b"s", keep_log_after=False)
    storage.persist(None, None, [entry(51, 4)])
    storage.close()
    storage = Storage(str(tmp_path))
    state = storage.load()
    assert state.snapshot_index == 50 and [e.index for e in state.entries] == [51]
    assert len(list(tmp_path.glob("*.seg"))) == 1, "the replaced log's segments are deleted"
    storage.persist(None, None, [entry(52, 4)])
    storage.close()
    assert [e.index for e in Storage(str(tmp_path)).load().entries] == [51, 52]


def test_an_installed_snapshot_the_log_already_holds_keeps_the_entries_after_it(tmp_path):
    storage = Storage(str(tmp_path), segment_bytes=250)
    storage.load()
    storage.persist(None, None, [entry(i) for i in range(1, 31)])
    storage.install_snapshot(20, 1, b"s", keep_log_after=True)
    storage.close()
    state = Storage(str(tmp_path), segment_bytes=250).load()
    assert (state.snapshot_index, state.snapshot_term) == (20, 1)
    assert [e.index for e in state.entries] == list(range(21, 31))


def test_a_snapshot_written_elsewhere_is_verified_and_moved_into_place(tmp_path):
    storage = Storage(str(tmp_path))
    storage.load()
    part = storage.snapshot_temp_path(10)
    Storage.write_snapshot_file(part, 10, 2, b"state-at-10")
    assert storage.adopt_snapshot_file(part, 10, 2) == b"state-at-10"
    assert not (tmp_path / "snapshot.bin.10.part").exists()
    assert storage.load_snapshot() == (10, 2, b"state-at-10")
    # an older one arriving late is discarded, not installed over the newer one
    old = storage.snapshot_temp_path(5)
    Storage.write_snapshot_file(old, 5, 1, b"state-at-5")
    assert storage.adopt_snapshot_file(old, 5, 1) is None
    assert storage.load_snapshot()[0] == 10 and not (tmp_path / "snapshot.bin.5.part").exists()
    storage.close()


def test_a_damaged_snapshot_from_the_snapshot_process_is_refused(tmp_path):
    storage = Storage(str(tmp_path))
    storage.load()
    part = storage.snapshot_temp_path(10)
    Storage.write_snapshot_file(part, 10, 2, b"state")
    with open(part, "r+b") as f:
        f.seek(-1, 2)
        f.write(b"X")
    with pytest.raises(StorageCorruption):
        storage.adopt_snapshot_file(part, 10, 2)
    assert storage.load_snapshot() is None and storage.snapshot_index == 0
    storage.close()


def test_leftover_partial_snapshots_are_removed_at_start_up(tmp_path):
    (tmp_path / "snapshot.bin.77.part").write_bytes(b"half")
    Storage(str(tmp_path)).load()
    assert not (tmp_path / "snapshot.bin.77.part").exists()
