"""Installing a snapshot received from the leader is atomic (issue 9, bug 1).

The install is crashed after each of its file operations in turn, through the simulated file
layer below Storage, and the power loss keeps nothing, everything, or a random part (torn
writes included) of what was not synced. Every restart must come back with exactly the old
state (old snapshot, old log, hard state) or exactly the new one (the new snapshot, and the old
entries after it only when the old log held the snapshot's (index, term)), and then serve: a
repeated install completes, new entries append and survive the next restart.
"""

import random

import pytest

from raftnode.sim.files import SimFiles, SimulatedCrash
from raftnode.storage import Storage
from raftnode.types import COMMAND, Entry, HardState

DATA_DIR = "/node/data"
HARD_STATE = HardState(7, "n2", 0)


def entry(index, term):
    return Entry(index, term, COMMAND, {"op": "put", "key": f"k{index % 3}", "value": index})


def terms(first, last, term):
    return [(i, term) for i in range(first, last + 1)]


# name: (own snapshot (index, term) or None, old log [(index, term)], install (index, term, keep))
CASES = {
    # bug 1: the follower's log ends far before the snapshot
    "a log shorter than the snapshot": ((5, 1), terms(6, 12, 1), (40, 3, False)),
    # the log reaches past the snapshot but disagrees with it at its index
    "a conflicting log": ((5, 1), terms(6, 20, 1) + terms(21, 30, 2), (25, 3, False)),
    # the log holds the snapshot's entry: the entries after it continue the snapshot
    "a log holding the snapshot's entry": ((5, 1), terms(6, 30, 1), (20, 1, True)),
    # no snapshot before, several segments replaced
    "no earlier snapshot": (None, terms(1, 30, 1), (35, 2, False)),
    # the node saved a newer snapshot of its own meanwhile: only the log restarts
    "an own snapshot already newer": ((30, 1), terms(31, 34, 1), (28, 1, False)),
}


def open_storage(files):
    return Storage(DATA_DIR, files=files, segment_bytes=400)


def build_old_state(case):
    """The old state, fully synced, and the storage that wrote it (still open)."""
    own_snapshot, log, _ = CASES[case]
    files = SimFiles()
    storage = open_storage(files)
    storage.load()
    storage.persist(HARD_STATE, None, [])
    first = own_snapshot[0] + 1 if own_snapshot else 1
    prefix = [entry(i, own_snapshot[1]) for i in range(1, first)] if own_snapshot else []
    for batch_start in range(0, len(prefix), 4):
        storage.persist(None, None, prefix[batch_start:batch_start + 4])
    if own_snapshot:
        storage.save_snapshot(own_snapshot[0], own_snapshot[1], b"own-snapshot")
        storage.compact(own_snapshot[0])
    entries = [entry(i, t) for i, t in log]
    for batch_start in range(0, len(entries), 4):
        storage.persist(None, None, entries[batch_start:batch_start + 4])
    return files, storage


def view(state):
    return (state.snapshot_index, state.snapshot_term, state.snapshot_data,
            [(e.index, e.term, e.data["value"]) for e in state.entries],
            (state.hard_state.term, state.hard_state.voted_for))


def expected_views(case):
    own_snapshot, log, (index, term, keep) = CASES[case]
    hs = (HARD_STATE.term, HARD_STATE.voted_for)
    old_snap = (own_snapshot[0], own_snapshot[1], b"own-snapshot") if own_snapshot else (0, 0, None)
    old = (*old_snap, [(i, t, i) for i, t in log], hs)
    if own_snapshot and own_snapshot[0] >= index:
        new = (*old_snap, [], hs)
    else:
        after = [(i, t, i) for i, t in log if i > index] if keep else []
        new = (index, term, b"leader-snapshot", after, hs)
    return old, new


def install(storage, case):
    index, term, keep = CASES[case][2]
    storage.install_snapshot(index, term, b"leader-snapshot", keep)


def install_operations(case):
    files, storage = build_old_state(case)
    before = files.ops
    install(storage, case)
    return files.ops - before


class _KeepNothing:
    """A power loss that keeps nothing of what was not synced."""

    def randint(self, a, b):
        return a

    def random(self):
        return 1.0

    def randrange(self, n):
        return 0


class _KeepEverything(_KeepNothing):
    """A power loss that keeps every unsynced operation, none of them torn."""

    def randint(self, a, b):
        return b

    def random(self):
        return 0.5


def power_losses():
    yield "nothing unsynced kept", _KeepNothing()
    yield "everything unsynced kept", _KeepEverything()
    for seed in range(16):
        yield f"random part kept (seed {seed})", random.Random(seed)


def restart(files):
    storage = open_storage(files)
    return storage, storage.load()


@pytest.mark.parametrize("case", list(CASES))
def test_a_crash_after_any_file_operation_of_the_install_leaves_the_old_or_the_new_state(case):
    old, new = expected_views(case)
    total = install_operations(case)
    assert total >= 4, f"the install took only {total} file operations"
    outcomes = set()
    for crash_after in range(total + 1):
        for loss, rng in power_losses():
            where = f"crash after operation {crash_after} of {total}, {loss}"
            files, storage = build_old_state(case)
            files.arm(crash_after)
            try:
                install(storage, case)
                completed = True
            except SimulatedCrash:
                completed = False
            files.disarm()
            files.power_loss(rng)

            storage, state = restart(files)
            got = view(state)
            assert got in (old, new), f"{where}: restarted with neither the old nor the new state: {got}"
            assert not completed or got == new, f"{where}: a completed install was lost"
            outcomes.add("new" if got == new else "old")

            # It serves: the leader's repeated install completes, and the log goes on after it.
            if got == old:
                install(storage, case)
                storage.close()
                storage, state = restart(files)
                assert view(state) == new, f"{where}: the repeated install did not complete"
            tail = state.entries[-1].index if state.entries else state.snapshot_index
            more = [entry(tail + 1, 9), entry(tail + 2, 9)]
            storage.persist(HardState(9, None), None, more)
            files.power_loss(rng)  # whatever the close would have synced, the persist did
            _, state = restart(files)
            snap, snap_term, data, entries, _ = new
            assert view(state) == (snap, snap_term, data, entries + [(tail + 1, 9, tail + 1), (tail + 2, 9, tail + 2)],
                                   (9, None)), f"{where}: appending after the restart"
    assert outcomes == {"old", "new"}, "crash points cover both sides of the commit point"


def test_the_replaced_log_s_segments_are_deleted_once_the_install_completes():
    files, storage = build_old_state("no earlier snapshot")
    assert len([n for n in files.listdir(DATA_DIR) if n.endswith(".seg")]) > 1
    install(storage, "no earlier snapshot")
    segments = [n for n in files.listdir(DATA_DIR) if n.endswith(".seg")]
    assert len(segments) == 1 and segments[0] in [p.rsplit("/", 1)[1] for p in files.durable_names()]


def test_an_install_that_never_reached_its_commit_point_is_cleaned_up_at_restart():
    case = "a log shorter than the snapshot"
    old, _ = expected_views(case)
    files, storage = build_old_state(case)
    segments_before = sorted(n for n in files.listdir(DATA_DIR) if n.endswith(".seg"))
    # Up to the restart segment's directory fsync, not the snapshot's rename.
    total = install_operations(case)
    for crash_after in range(total, 0, -1):
        files, storage = build_old_state(case)
        files.arm(crash_after)
        try:
            install(storage, case)
        except SimulatedCrash:
            pass
        files.disarm()
        files.writeback()  # everything done so far is durable: only the order protects us
        files.power_loss(_KeepNothing())
        if any(n.endswith(".part") for n in files.listdir(DATA_DIR)) and \
                len([n for n in files.listdir(DATA_DIR) if n.endswith(".seg")]) > len(segments_before):
            break
    else:
        pytest.fail("no crash point between the restart record and the snapshot's rename")
    storage, state = restart(files)
    assert view(state) == old
    assert any("never completed" in note for note in storage.recovery_notes)
    assert sorted(n for n in files.listdir(DATA_DIR) if n.endswith(".seg")) == segments_before
