"""Disk faults: lost unsynced writes and file corruption, each done while the node is down.

lose-unsynced (Jepsen's lazyfs "lose-unfsynced-writes"): SIGKILL the service, then make its
data directory forget everything not fsynced, as a power loss would (the DB's lazy disk,
chaos.lazydisk); the node stays down until `restart-lost`. Values:

    {"target": T}                 drop every unsynced write and directory change
    {"target": T, "tear": true}   the same, but each file's last unsynced write survives in part

corrupt (Jepsen's bitflip and truncate-file): SIGKILL the service, damage one data file of each
target, and keep the node down until `restart-corrupted`:

    {"target": T, "mode": "bitflip", "file": GLOB, "flips": n, "offset": k}
        flip n random bits (default 1) of one file matching GLOB (default "*", relative to the
        data directory); with offset, the byte at offset k (negative: from the end)
    {"target": T, "mode": "truncate", "file": GLOB, "bytes": n}
        cut n bytes (default: a random number, at least one) off the end of one such file

T is a target as for kill ("one", "minority", "majority", "all", "leader", or node ids).
A node whose files were corrupted on purpose and that then refuses to start is the expected
outcome, not a finding: `restart-corrupted` names it in "expected_down" (checkers.node_health)
and it stays down for the rest of the run. A node that lost only unsynced writes must come back
like after any crash: one that does not is a finding ("down").
"""

from __future__ import annotations

import fnmatch
import os

from chaos.history import Op
from chaos.interfaces import Nemesis, Node, require
from chaos.nemesis.common import complete, current_leader, down_nodes, on_nodes, process_state, value_dict, with_down
from chaos.nemesis.topology import select_targets

CORRUPT_MODES = ("bitflip", "truncate")
MAX_FLIPS = 1024


def _sorted(ids):
    return sorted(ids, key=lambda s: (len(s), s))


class _DiskNemesis(Nemesis):
    capability = ""
    start_f = heal_f = ""

    def __init__(self, db, nodes, view, rng):
        require(db, "kill", f"the {self.capability} fault (it kills the node first)")
        require(db, self.capability, f"the {self.capability} fault")
        self.db, self.nodes, self.view, self.rng = db, nodes, view, rng
        self.state = process_state(db)
        self.down: set[str] = set()  # the nodes this nemesis holds down

    @property
    def by_id(self) -> dict:
        # the run's roster, shared: nodes added or retired mid-run (membership) are seen here
        return {n.id: n for n in self.nodes}

    def _targets(self, target) -> list[Node]:
        with self.state.lock:
            gone = set(self.state.damaged)
        # Nodes a corruption put down for good are not drawn again ("one" hits a live node).
        ids = [n.id for n in self.nodes if n.id not in gone or isinstance(target, (list, tuple))]
        if not ids:
            return []
        leader = current_leader(self.db, self.view) if target == "leader" else None
        return [self.by_id[i] for i in select_targets(target, ids, self.rng, leader=leader) if i not in gone]

    def _crash(self, nodes: list[Node]) -> None:
        on_nodes(self.db.kill, nodes)
        with self.state.lock:
            for n in nodes:
                self.state.killed.add(n.id)
                self.state.paused.discard(n.id)
        self.down.update(n.id for n in nodes)

    def _restart(self) -> tuple[list[Node], dict[str, str]]:
        nodes = [self.by_id[i] for i in _sorted(self.down) if i in self.by_id]
        with self.state.lock:
            for n in nodes:
                self.state.killed.discard(n.id)
        on_nodes(self.db.start, nodes)
        self.down.clear()
        return nodes, down_nodes(self.db, nodes)

    def heal_all(self) -> None:
        if self.down:
            self._restart()


class LoseUnsyncedNemesis(_DiskNemesis):
    capability = "lose-unsynced"
    fs = frozenset({"lose-unsynced", "restart-lost"})

    def invoke(self, op: Op) -> Op:
        value = value_dict(op)
        if op.f == "lose-unsynced":
            tear = value.get("tear", False)
            if not isinstance(tear, bool):
                raise ValueError(f"lose-unsynced: tear must be true or false, got {tear!r}")
            nodes = self._targets(value.get("target", "one"))
            self._crash(nodes)
            seeds = {n.id: self.rng.randrange(1 << 31) if tear else None for n in nodes}
            lost = dict(on_nodes(lambda n: (n.id, self.db.lose_unsynced_writes(n, seeds[n.id])), nodes))
            return complete(op, {"nodes": [n.id for n in nodes],
                                 "lost": {nid: _lost_text(r) for nid, r in lost.items()}})
        if op.f == "restart-lost":
            nodes, down = self._restart()
            return complete(op, with_down({"nodes": [n.id for n in nodes]}, down))
        raise ValueError(f"the lose-unsynced nemesis does not handle {op.f!r} (it handles lose-unsynced, restart-lost)")


def _lost_text(report: dict) -> str:
    text = (f"{report.get('unsynced_bytes', 0)} unsynced bytes in {report.get('unsynced_files', 0)} file(s), "
            f"{report.get('unsynced_dirs', 0)} directory(ies) with unsynced entries")
    if report.get("kept_bytes"):
        text += f"; the tear kept {report['kept_bytes']} of those bytes"
    return text


class CorruptNemesis(_DiskNemesis):
    capability = "corrupt"
    fs = frozenset({"corrupt", "restart-corrupted"})

    def __init__(self, db, nodes, view, rng):
        super().__init__(db, nodes, view, rng)
        self.corrupted: set[str] = set()

    def invoke(self, op: Op) -> Op:
        value = value_dict(op)
        if op.f == "corrupt":
            spec = corruption_spec(value)
            nodes = self._targets(value.get("target", "one"))
            self._crash(nodes)
            done = {}
            for node in nodes:  # one rng, in node order: a seed gives one outcome
                done[node.id] = corrupt_files(self.db.data_path(node), spec, self.rng)
            self.corrupted.update(nid for nid, what in done.items() if what)
            return complete(op, {"nodes": [n.id for n in nodes], "files": done})
        if op.f == "restart-corrupted":
            nodes, down = self._restart()
            value = with_down({"nodes": [n.id for n in nodes]}, down)
            expected = _sorted(nid for nid in down if nid in self.corrupted)
            if expected:
                # Damaged on purpose and refusing to start: what a node that detects corruption
                # must do. It stays down (held, so that no later heal counts it as a finding).
                value["expected_down"] = expected
                with self.state.lock:
                    self.state.damaged.update(expected)
            self.corrupted -= {n.id for n in nodes}
            return complete(op, value)
        raise ValueError(f"the corrupt nemesis does not handle {op.f!r} (it handles corrupt, restart-corrupted)")


def corruption_spec(value: dict) -> dict:
    """The corruption a corrupt op asks for, checked (errors name the field and the choices)."""
    mode = value.get("mode", "bitflip")
    if mode not in CORRUPT_MODES:
        raise ValueError(f"corrupt: unknown mode {mode!r} (valid: {', '.join(CORRUPT_MODES)})")
    pattern = value.get("file", "*")
    if not isinstance(pattern, str) or not pattern or pattern.startswith("/") or ".." in pattern.split("/"):
        raise ValueError(f"corrupt: file must be a glob relative to the data directory, got {pattern!r}")
    spec = {"mode": mode, "file": pattern}
    if mode == "bitflip":
        flips = value.get("flips", 1)
        if isinstance(flips, bool) or not isinstance(flips, int) or not 1 <= flips <= MAX_FLIPS:
            raise ValueError(f"corrupt: flips must be an integer within 1..{MAX_FLIPS}, got {flips!r}")
        spec["flips"] = flips
        if "offset" in value:
            offset = value["offset"]
            if isinstance(offset, bool) or not isinstance(offset, int):
                raise ValueError(f"corrupt: offset must be an integer (negative: from the end), got {offset!r}")
            spec["offset"] = offset
    else:
        if "bytes" in value:
            cut = value["bytes"]
            if isinstance(cut, bool) or not isinstance(cut, int) or cut < 1:
                raise ValueError(f"corrupt: bytes must be a positive integer, got {cut!r}")
            spec["bytes"] = cut
    return spec


def data_files(root: str) -> list[tuple[str, int]]:
    """(path relative to root, size) of every non-empty regular file under root, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                size = os.lstat(path).st_size
            except OSError:
                continue
            if size > 0 and os.path.isfile(path) and not os.path.islink(path):
                found.append((os.path.relpath(path, root), size))
    return sorted(found)


def corrupt_files(root: str, spec: dict, rng) -> str:
    """Damage one file under root as spec says; return what was done ("" when no file matched).
    The change is fsynced: on a lazy disk too it is what the node finds at its next start."""
    candidates = [(rel, size) for rel, size in data_files(root) if fnmatch.fnmatchcase(rel, spec["file"])]
    if not candidates:
        return ""
    rel, size = rng.choice(candidates)
    path = os.path.join(root, rel)
    fd = os.open(path, os.O_RDWR)
    try:
        if spec["mode"] == "truncate":
            cut = min(spec.get("bytes") or rng.randint(1, size), size)
            os.ftruncate(fd, size - cut)
            what = f"{rel}: cut {cut} of {size} bytes off the end (now {size - cut})"
        else:
            flipped = []
            for _ in range(spec["flips"]):
                if "offset" in spec:
                    offset = spec["offset"] if spec["offset"] >= 0 else size + spec["offset"]
                    if not 0 <= offset < size:
                        raise ValueError(f"corrupt: offset {spec['offset']} is outside {rel} ({size} bytes)")
                else:
                    offset = rng.randrange(size)
                bit = rng.randrange(8)
                byte = os.pread(fd, 1, offset)[0]
                os.pwrite(fd, bytes([byte ^ (1 << bit)]), offset)
                flipped.append(f"bit {bit} of byte {offset}")
            what = f"{rel} ({size} bytes): flipped " + ", ".join(flipped)
        os.fsync(fd)
    finally:
        os.close(fd)
    return what
