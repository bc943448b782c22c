"""The hard state carries a CRC: any damage to hardstate.json stops the node with an error naming
the file; files written before the CRC existed are still read."""

import json

import pytest

from raftnode.storage import Storage, StorageCorruption
from raftnode.types import HardState


WRITTEN = HardState(3, "n2", 5)


def written(tmp_path, hs=WRITTEN):
    storage = Storage(str(tmp_path))
    storage.load()
    storage.save_hard_state(hs)
    storage.close()
    return tmp_path / "hardstate.json"


def test_the_hard_state_round_trips_with_its_crc(tmp_path):
    path = written(tmp_path)
    doc = json.loads(path.read_text())
    assert set(doc) == {"term", "voted_for", "commit", "acked", "crc"}
    hs = Storage(str(tmp_path)).load().hard_state
    assert (hs.term, hs.voted_for, hs.commit) == (3, "n2", 5)


def test_a_hard_state_of_an_older_node_without_a_crc_is_still_read(tmp_path):
    (tmp_path / "hardstate.json").write_text('{"term": 7, "voted_for": "n1", "commit": 2}')
    hs = Storage(str(tmp_path)).load().hard_state
    assert (hs.term, hs.voted_for, hs.commit, hs.acked) == (7, "n1", 2, 0)


@pytest.mark.parametrize("byte", range(0, 40, 3))
def test_every_single_bit_flip_is_refused_naming_the_file(tmp_path, byte):
    path = written(tmp_path)
    data = bytearray(path.read_bytes())
    for bit in range(8):
        damaged = bytearray(data)
        damaged[byte] ^= 1 << bit
        path.write_bytes(bytes(damaged))
        with pytest.raises(StorageCorruption) as err:
            Storage(str(tmp_path)).load()
        assert "hardstate.json" in str(err.value) and "byte offset" in str(err.value)


@pytest.mark.parametrize("keep", [0, 1, 10, 30])
def test_a_truncated_hard_state_is_refused(tmp_path, keep):
    path = written(tmp_path)
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(StorageCorruption, match="hardstate.json: corrupt file at byte offset"):
        Storage(str(tmp_path)).load()


def test_a_missing_hard_state_is_a_fresh_node(tmp_path):
    hs = Storage(str(tmp_path)).load().hard_state
    assert (hs.term, hs.voted_for, hs.acked) == (0, None, 0)
