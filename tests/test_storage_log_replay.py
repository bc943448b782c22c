"""The log replays exactly what was persisted: appends, truncations of a conflicting suffix, segments."""

from raftnode.storage import Storage
from raftnode.types import COMMAND, NOOP, Entry, HardState


def cmd(index, term, value=None):
    return Entry(index, term, COMMAND,
                 {"op": "put", "key": f"k{index}", "value": value if value is not None else index})


def reopen(path, **kw):
    storage = Storage(str(path), **kw)
    return storage, storage.load()


def test_a_fresh_directory_recovers_an_empty_log_and_zero_hard_state(tmp_path):
    storage, state = reopen(tmp_path)
    assert state.entries == [] and state.hard_state == HardState()
    assert state.snapshot_index == 0
    storage.close()


def test_entries_and_hard_state_survive_a_restart(tmp_path):
    storage, _ = reopen(tmp_path)
    storage.persist(HardState(3, "n2", 0), None, [Entry(1, 3, NOOP, None), cmd(2, 3), cmd(3, 3, {"nested": [1, "x"]})])
    storage.persist(None, None, [cmd(4, 3)])
    storage.close()
    _, state = reopen(tmp_path)
    assert state.hard_state.term == 3 and state.hard_state.voted_for == "n2"
    assert ([(e.index, e.term, e.kind) for e in state.entries]
            == [(1, 3, NOOP), (2, 3, COMMAND), (3, 3, COMMAND), (4, 3, COMMAND)])
    assert state.entries[2].data == {"op": "put", "key": "k3", "value": {"nested": [1, "x"]}}


def test_a_truncated_conflicting_suffix_never_reappears_on_replay(tmp_path):
    storage, _ = reopen(tmp_path)
    storage.persist(HardState(1, "n1"), None, [cmd(i, 1) for i in range(1, 6)])
    storage.persist(HardState(2, None), 3, [cmd(3, 2, "new3"), cmd(4, 2, "new4")])
    storage.close()
    _, state = reopen(tmp_path)
    assert [(e.index, e.term) for e in state.entries] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert state.entries[2].data["value"] == "new3"


def test_a_truncation_without_new_entries_is_durable(tmp_path):
    storage, _ = reopen(tmp_path)
    storage.persist(None, None, [cmd(i, 1) for i in range(1, 4)])
    storage.persist(None, 2, [])
    storage.close()
    storage, state = reopen(tmp_path)
    assert [e.index for e in state.entries] == [1]
    assert storage.last_index == 1
    storage.close()


def test_the_log_rolls_over_into_new_segments_and_replays_across_them(tmp_path):
    storage, _ = reopen(tmp_path, segment_bytes=300)
    for i in range(1, 21):
        storage.persist(None, None, [cmd(i, 1, "v" * 50)])
    storage.persist(None, 15, [cmd(15, 2)])  # truncation reaching back into an older segment
    storage.close()
    segments = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".seg"))
    assert len(segments) > 3
    _, state = reopen(tmp_path, segment_bytes=300)
    assert [e.index for e in state.entries] == list(range(1, 16))
    assert state.entries[-1].term == 2


def test_hard_state_is_rewritten_only_when_term_or_vote_changes(tmp_path):
    storage, _ = reopen(tmp_path)
    storage.persist(HardState(1, "n1", 0), None, [])
    before = storage.fsyncs
    storage.persist(HardState(1, "n1", 5), None, [])  # commit only: advisory, not rewritten
    assert storage.fsyncs == before
    storage.persist(HardState(2, None, 5), None, [])
    assert storage.fsyncs > before
    storage.close()
    _, state = reopen(tmp_path)
    assert (state.hard_state.term, state.hard_state.voted_for) == (2, None)


def test_one_persist_call_costs_one_log_fsync_however_many_entries(tmp_path):
    storage, _ = reopen(tmp_path)
    before = storage.fsyncs
    storage.persist(None, None, [cmd(i, 1) for i in range(1, 501)])
    assert storage.fsyncs - before == 1
    storage.close()


def test_records_of_several_readies_written_as_one_group_replay_in_order(tmp_path):
    from raftnode.storage import encode_batch
    storage, _ = reopen(tmp_path)
    before = storage.fsyncs
    storage.persist_batch(HardState(2, "n1"), [
        (encode_batch(None, [cmd(1, 1), cmd(2, 1), cmd(3, 1)]), None, 3),
        (encode_batch(2, [cmd(2, 2, "b")]), 2, 2),
        (encode_batch(None, [cmd(3, 2, "c")]), None, 3),
    ])
    assert storage.fsyncs - before == 3  # hard state (file + directory) and one for the group
    storage.close()
    _, state = reopen(tmp_path)
    assert [(e.index, e.term) for e in state.entries] == [(1, 1), (2, 2), (3, 2)]
