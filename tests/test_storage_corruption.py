"""Damage to acknowledged log data is a fatal start-up error naming the file and the byte offset."""

import pytest

from raftnode.storage import SEGMENT_MAGIC, Storage, StorageCorruption, encode_batch
from raftnode.types import COMMAND, Entry


def entry(i):
    return Entry(i, 1, COMMAND, {"op": "put", "key": "k", "value": i})


def fill(path, n=5, **kw):
    storage = Storage(str(path), **kw)
    storage.load()
    for i in range(1, n + 1):
        storage.persist(None, None, [entry(i)])
    storage.close()
    return sorted(p for p in path.iterdir() if p.name.endswith(".seg"))


def record_offset(k):
    """Byte offset of the k-th (0-based) single-entry record in a segment written by fill()."""
    return len(SEGMENT_MAGIC) + sum(len(encode_batch(None, [entry(i)])) for i in range(1, k + 1))


def test_a_flipped_byte_in_a_middle_record_is_fatal_with_file_and_offset(tmp_path):
    (segment,) = fill(tmp_path)
    data = bytearray(segment.read_bytes())
    offset = record_offset(2)
    data[offset + 12] ^= 0x40
    segment.write_bytes(bytes(data))
    with pytest.raises(StorageCorruption) as err:
        Storage(str(tmp_path)).load()
    assert err.value.path == str(segment) and err.value.offset == offset
    assert str(segment) in str(err.value) and f"offset {offset}" in str(err.value)
    assert segment.read_bytes() == bytes(data), "a fatal error must not modify the log"


def test_a_damaged_length_field_in_the_middle_is_not_mistaken_for_a_torn_tail(tmp_path):
    (segment,) = fill(tmp_path)
    data = bytearray(segment.read_bytes())
    offset = record_offset(1)
    data[offset:offset + 4] = (10 ** 6).to_bytes(4, "big")
    segment.write_bytes(bytes(data))
    with pytest.raises(StorageCorruption) as err:
        Storage(str(tmp_path)).load()
    assert err.value.offset == offset


def test_a_bad_record_in_an_older_fully_synced_segment_is_fatal_even_at_its_end(tmp_path):
    segments = fill(tmp_path, n=12, segment_bytes=200)
    assert len(segments) > 1
    first = segments[0]
    with open(first, "r+b") as f:
        f.truncate(first.stat().st_size - 3)
    with pytest.raises(StorageCorruption) as err:
        Storage(str(tmp_path)).load()
    assert err.value.path == str(first)


def test_an_unreadable_hard_state_file_is_fatal(tmp_path):
    fill(tmp_path, n=1)
    (tmp_path / "hardstate.json").write_text("{not json")
    with pytest.raises(StorageCorruption, match="hardstate.json"):
        Storage(str(tmp_path)).load()


def test_a_segment_with_a_foreign_magic_is_fatal(tmp_path):
    (segment,) = fill(tmp_path, n=2)
    data = bytearray(segment.read_bytes())
    data[0:2] = b"XX"
    segment.write_bytes(bytes(data))
    with pytest.raises(StorageCorruption, match="magic"):
        Storage(str(tmp_path)).load()
