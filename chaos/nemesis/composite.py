"""One nemesis made of several, each handling its own ops (by f)."""

from __future__ import annotations

from chaos.history import Op
from chaos.interfaces import Nemesis


class CompositeNemesis(Nemesis):
    """`heal_rank` (op f -> rank, from chaos.faults) orders heal_all: network first (so
    restarted nodes find their peers), then processes, then clocks."""

    def __init__(self, nemeses: list[Nemesis], heal_rank: dict[str, int] | None = None):
        self.nemeses = list(nemeses)
        self.heal_rank = dict(heal_rank or {})
        self._by_f: dict[str, Nemesis] = {}
        for nemesis in self.nemeses:
            for f in nemesis.fs:
                if f in self._by_f:
                    raise ValueError(f"two nemeses handle {f!r}")
                self._by_f[f] = nemesis
        self.fs = frozenset(self._by_f)

    def setup(self, db, nodes) -> None:
        for nemesis in self.nemeses:
            nemesis.setup(db, nodes)

    def invoke(self, op: Op) -> Op:
        nemesis = self._by_f.get(op.f)
        if nemesis is None:
            raise ValueError(f"no nemesis handles {op.f!r} in this run "
                             f"(handled: {', '.join(sorted(self.fs)) or 'none'})")
        return nemesis.invoke(op)

    def heal_all(self) -> None:
        """Undo everything, trying every part even when one fails; then raise the first error."""
        def rank(nemesis):
            return min((self.heal_rank.get(f, 50) for f in nemesis.fs), default=50)
        errors = []
        for nemesis in sorted(self.nemeses, key=rank):
            try:
                nemesis.heal_all()
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        if errors:
            raise errors[0]
