"""One nemesis made of several, each handling its own ops (by f)."""

from __future__ import annotations

from chaos.history import Op
from chaos.interfaces import Nemesis

# The order heal_all undoes faults in: network first (so restarted nodes find their peers),
# then processes, then clocks.
HEAL_ORDER = ("partition", "pause", "kill", "clock-skew")


class CompositeNemesis(Nemesis):
    def __init__(self, nemeses: list[Nemesis]):
        self.nemeses = list(nemeses)
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
            fs = set(nemesis.fs)
            return min((i for i, f in enumerate(HEAL_ORDER) if f in fs), default=len(HEAL_ORDER))
        errors = []
        for nemesis in sorted(self.nemeses, key=rank):
            try:
                nemesis.heal_all()
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        if errors:
            raise errors[0]
