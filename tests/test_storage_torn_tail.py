"""A torn write at the end of the log (a crash mid-append) is detected and truncated, never applied."""

import os

from raftnode.storage import SEGMENT_MAGIC, Storage
from raftnode.types import COMMAND, Entry


def fill(path, n=5):
    storage = Storage(str(path))
    storage.load()
    for i in range(1, n + 1):
        storage.persist(None, None, [Entry(i, 1, COMMAND, {"op": "put", "key": "k", "value": i})])
    storage.close()
    (segment,) = [p for p in path.iterdir() if p.name.endswith(".seg")]
    return segment


def recovered(path):
    storage = Storage(str(path))
    state = storage.load()
    return storage, state


def test_a_half_written_last_record_is_truncated_and_the_rest_kept(tmp_path):
    segment = fill(tmp_path)
    size = segment.stat().st_size
    with open(segment, "r+b") as f:
        f.truncate(size - 7)
    storage, state = recovered(tmp_path)
    assert [e.index for e in state.entries] == [1, 2, 3, 4]
    assert len(storage.recovery_notes) == 1 and "torn tail" in storage.recovery_notes[0]
    # the log is appendable after the repair and the repair is permanent
    storage.persist(None, None, [Entry(5, 2, COMMAND, {"op": "delete", "key": "k"})])
    storage.close()
    storage, state = recovered(tmp_path)
    assert [(e.index, e.term) for e in state.entries][-1] == (5, 2)
    assert storage.recovery_notes == []
    storage.close()


def test_a_last_record_with_a_bad_checksum_is_truncated(tmp_path):
    segment = fill(tmp_path)
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF
    segment.write_bytes(bytes(data))
    storage, state = recovered(tmp_path)
    assert [e.index for e in state.entries] == [1, 2, 3, 4]
    storage.close()


def test_zero_filler_after_a_torn_record_is_also_truncated(tmp_path):
    segment = fill(tmp_path)
    size = segment.stat().st_size
    with open(segment, "r+b") as f:
        f.truncate(size - 5)
        f.seek(0, os.SEEK_END)
        f.write(b"\0" * 4096)
    storage, state = recovered(tmp_path)
    assert [e.index for e in state.entries] == [1, 2, 3, 4]
    assert os.path.getsize(segment) < size
    storage.close()


def test_a_record_header_cut_short_is_a_torn_tail(tmp_path):
    segment = fill(tmp_path, n=2)
    with open(segment, "ab") as f:
        f.write(b"\x00\x00\x01")
    storage, state = recovered(tmp_path)
    assert [e.index for e in state.entries] == [1, 2]
    storage.close()


def test_a_segment_whose_header_was_torn_at_creation_is_repaired(tmp_path):
    fill(tmp_path, n=2)
    (tmp_path / "log-00000002.seg").write_bytes(SEGMENT_MAGIC[:3])
    storage, state = recovered(tmp_path)
    assert [e.index for e in state.entries] == [1, 2]
    storage.persist(None, None, [Entry(3, 1, COMMAND, {"op": "put", "key": "k", "value": 3})])
    storage.close()
    _, state = recovered(tmp_path)
    assert [e.index for e in state.entries] == [1, 2, 3]


def test_a_torn_group_of_records_is_dropped_as_a_whole(tmp_path):
    from raftnode.storage import encode_batch
    segment = fill(tmp_path, n=2)
    storage = Storage(str(tmp_path))
    storage.load()
    def put(index):
        return encode_batch(None, [Entry(index, 1, COMMAND, {"op": "put", "key": "k", "value": index})])
    storage.persist_batch(None, [(put(3), None, 3), (put(4), None, 4)])
    storage.close()
    data = bytearray(segment.read_bytes())
    data[-40] ^= 0xFF  # damage inside the second record of the group: the whole group is torn
    segment.write_bytes(bytes(data))
    storage, state = recovered(tmp_path)
    assert [e.index for e in state.entries] == [1, 2]
    storage.close()
