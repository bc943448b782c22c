"""Incremental Raft invariant checks, run by the simulator after every step.

Each check costs O(entries touched by the step), so running them after every step is cheap:

  election safety         at most one leader per term                     (on each election won)
  log matching            an (index, term) names one entry, always preceded by the same term
                                                                          (on each entry persisted)
  leader completeness     a new leader holds the highest entry ever committed
                                                                          (on each election won)
  state machine safety    every replica applies the same entry at an index, with the same answer
                                                                          (on each entry applied)
  no acknowledged write lost
                          an acknowledged write's (index, term) is what every replica applies there,
                          and by the end of the run every acknowledged write is applied
  linearizable reads      a read observes, for its key, a version at least as new as every write
                          acknowledged and every read completed before it was invoked
"""

from __future__ import annotations

import bisect

from ..kv import KVStateMachine
from ..types import COMMAND, Entry


class Violation(AssertionError):
    def __init__(self, check: str, detail: str):
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


class Checker:
    def __init__(self):
        self.leaders: dict[int, str] = {}                 # term -> leader id
        self.entries: dict[tuple[int, int], tuple] = {}   # (index, term) -> (entry, prev term)
        self.ledger: list[Entry] = []                     # the applied log; ledger[i-1] is index i
        self.results: list = []                           # the model's answer for each index
        self.model = KVStateMachine()
        self.versions: dict[str, list[int]] = {}          # key -> indices where its value changed
        self.values: dict[str, list] = {}                 # key -> values at those indices
        self.acked: dict[int, int] = {}                   # index -> term of acknowledged writes
        self.floor: dict[str, int] = {}                   # key -> version every new read must see
        self.highest_commit = (0, 0)                      # highest (index, term) a leader committed

    # -- elections -------------------------------------------------------------------------------
    def election_won(self, node: str, term: int, core) -> None:
        other = self.leaders.get(term)
        if other is not None and other != node:
            raise Violation("election safety", f"term {term} has two leaders: {other} and {node}")
        self.leaders[term] = node
        index, cterm = self.highest_commit
        if index > core.snapshot_index and core.term_at(index) != cterm:
            raise Violation("leader completeness",
                            f"{node} leads term {term} without committed entry {index} (term {cterm}); "
                            f"its log has term {core.term_at(index)} there")
        if self.ledger:
            last = self.ledger[-1]
            if last.index > core.snapshot_index and core.term_at(last.index) != last.term:
                raise Violation("leader completeness",
                                f"{node} leads term {term} without applied entry {last.index} "
                                f"(term {last.term})")

    def leader_committed(self, node: str, core) -> None:
        index = core.commit_index
        if index > self.highest_commit[0]:
            self.highest_commit = (index, core.term_at(index))

    # -- log matching ------------------------------------------------------------------------------
    def entries_persisted(self, node: str, entries: list[Entry], prev_term: int | None) -> None:
        known = self.entries
        for entry in entries:
            key = (entry.index, entry.term)
            seen = known.get(key)
            if seen is None:
                known[key] = (entry, prev_term)
            else:
                if seen[0] is not entry and (seen[0].kind != entry.kind or seen[0].data != entry.data):
                    raise Violation("log matching", f"{node} holds a different entry at index "
                                    f"{entry.index} term {entry.term}")
                if prev_term is not None and seen[1] is not None and seen[1] != prev_term:
                    raise Violation("log matching",
                                    f"{node}: entry {entry.index} (term {entry.term}) follows term "
                                    f"{prev_term}, elsewhere term {seen[1]}")
            prev_term = entry.term

    # -- applying --------------------------------------------------------------------------------
    def applied(self, node: str, entry: Entry, result) -> None:
        index = entry.index
        ledger = self.ledger
        if index <= len(ledger):
            first = ledger[index - 1]
            if first is not entry and (first.term != entry.term or first.data != entry.data):
                raise Violation("state machine safety",
                                f"{node} applied entry {index} term {entry.term}, another replica "
                                f"applied term {first.term} there")
            if result != self.results[index - 1]:
                raise Violation("state machine safety",
                                f"{node} answered {result} for entry {index}, the model {self.results[index - 1]}")
            return
        if index != len(ledger) + 1:
            raise Violation("state machine safety",
                            f"{node} applied entry {index} but entries {len(ledger) + 1}.. were never applied")
        acked_term = self.acked.get(index)
        if acked_term is not None and acked_term != entry.term:
            raise Violation("acknowledged write lost",
                            f"the write acknowledged at index {index} term {acked_term} was replaced "
                            f"by term {entry.term}")
        ledger.append(entry)
        model_result = self._model_apply(entry)
        self.results.append(model_result)
        if result != model_result:
            raise Violation("state machine safety",
                            f"{node} answered {result} for entry {index}, the model {model_result}")

    def _model_apply(self, entry: Entry):
        command = entry.data if entry.kind == COMMAND else None
        changes = False
        if isinstance(command, dict):
            session = self.model.sessions.get(command.get("client_id"))
            duplicate = session is not None and command.get("seq") is not None and command["seq"] <= session[0]
            changes = not duplicate
        result = self.model.apply(entry)
        if changes and result is not None and result[0] == 200:
            assert isinstance(command, dict)  # only a command dict sets changes
            key = command["key"]
            self.versions.setdefault(key, []).append(entry.index)
            self.values.setdefault(key, []).append(self.model.data.get(key, _ABSENT))
        return result

    def version(self, key: str, index: int) -> int:
        """The index of the last write that changed key at or before index (0: never written)."""
        versions = self.versions.get(key)
        if not versions:
            return 0
        pos = bisect.bisect_right(versions, index)
        return versions[pos - 1] if pos else 0

    # -- clients -------------------------------------------------------------------------------
    def write_acknowledged(self, index: int, term: int, key: str) -> None:
        """A client got a success answer from the entry at (index, term)."""
        if index <= len(self.ledger):
            applied = self.ledger[index - 1]
            if applied.term != term:
                raise Violation("acknowledged write lost",
                                f"the write acknowledged at index {index} term {term} is not what "
                                f"replicas applied there (term {applied.term})")
        self.acked[index] = term
        if index <= len(self.ledger):
            self._raise_floor(key, self.version(key, index))

    def write_acknowledged_later(self, index: int, key: str) -> None:
        if index <= len(self.ledger):
            self._raise_floor(key, self.version(key, index))

    def read_floor(self, key: str) -> int:
        return self.floor.get(key, 0)

    def read_completed(self, node: str, key: str, served_at: int, value, floor: int) -> None:
        """A read served on node from its state at index served_at returned value."""
        observed = self.version(key, served_at)
        if observed < floor:
            raise Violation("linearizable reads",
                            f"read of {key!r} on {node} served at index {served_at} saw version "
                            f"{observed}, but version {floor} was acknowledged before it began")
        expected = _ABSENT
        if observed:
            versions = self.versions[key]
            expected = self.values[key][bisect.bisect_left(versions, observed)]
        if (expected is _ABSENT and value is not _ABSENT) or (expected is not _ABSENT and value != expected):
            raise Violation("state machine safety",
                            f"read of {key!r} on {node} at index {served_at} returned {value!r}, "
                            f"the model has {expected!r}")
        self._raise_floor(key, observed)

    def _raise_floor(self, key: str, version: int) -> None:
        if version > self.floor.get(key, 0):
            self.floor[key] = version

    # -- end of run ------------------------------------------------------------------------------
    def final(self) -> None:
        height = len(self.ledger)
        missing = sorted(i for i in self.acked if i > height)
        if missing:
            raise Violation("acknowledged write lost",
                            f"acknowledged writes at indices {missing[:5]} were never applied "
                            f"(cluster applied up to {height})")


class _Absent:
    def __repr__(self):
        return "<absent>"


_ABSENT = _Absent()
ABSENT = _ABSENT
