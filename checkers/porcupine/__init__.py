"""Porcupine (github.com/anishathalye/porcupine) through a small Go helper run as a subprocess.

`ensure_binary()` builds checkers/porcupine/main.go once with the Go toolchain into a cache
folder ($SPLITBRAIN_CACHE, else ~/.cache/splitbrain), named by a hash of the sources, so a
changed helper is rebuilt and an unchanged one never is. `check_batch()` sends any number of
histories (already partitioned into keys) in one call: the process start costs a few
milliseconds, so checking 102 histories means one process, not 102.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from typing import Any

from ..prepare import INF, KeyHistory

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCES = ("main.go", "go.mod", "go.sum")
GO_FALLBACKS = ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")
DEFAULT_MEMORY_LIMIT_MB = 2048


class PorcupineUnavailable(RuntimeError):
    """No Go toolchain, or the helper failed to build or to run."""


def cache_dir() -> str:
    base = os.environ.get("SPLITBRAIN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "splitbrain")
    return base


def source_hash() -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        with open(os.path.join(SOURCE_DIR, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read() + b"\0")
    return h.hexdigest()[:16]


def find_go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    for candidate in GO_FALLBACKS:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def binary_path() -> str:
    return os.path.join(cache_dir(), f"porcupine-check-{source_hash()}")


_built: str | None = None
_failed: dict[str, str] = {}  # binary path -> why building it failed (not retried in this process)


def ensure_binary() -> str:
    """Path of the built helper, building it on first use. Raises PorcupineUnavailable."""
    global _built
    path = binary_path()
    if _built == path or os.access(path, os.X_OK):
        _built = path
        return path
    if path in _failed:
        raise PorcupineUnavailable(_failed[path])
    try:
        return _build(path)
    except PorcupineUnavailable as e:
        _failed[path] = str(e)
        raise


def _build(path: str) -> str:
    global _built
    go = find_go()
    if go is None:
        raise PorcupineUnavailable("no Go toolchain found (looked for `go` on PATH and in "
                                   + ", ".join(GO_FALLBACKS) + ")")
    go_build(go, SOURCE_DIR, path, "the porcupine helper", PorcupineUnavailable)
    _built = path
    return path


def go_build(go: str, source_dir: str, path: str, what: str, error: type[Exception]) -> None:
    """Build the Go program in source_dir into path, offline (local toolchain, module cache,
    no cgo); failures raise `error` naming `what`. Shared by every Go helper we build."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Build into a temporary name and rename: concurrent first uses never see half a binary.
        fd, tmp = tempfile.mkstemp(prefix=".go-build-", dir=os.path.dirname(path))
        os.close(fd)
    except OSError as e:
        raise error(f"cannot write {what} into {os.path.dirname(path)}: {e} "
                    "(set SPLITBRAIN_CACHE to a writable folder)") from None
    env = dict(os.environ)
    env.setdefault("GOTOOLCHAIN", "local")   # never download another toolchain
    env.setdefault("GOFLAGS", "-mod=mod")
    env.setdefault("CGO_ENABLED", "0")
    try:
        proc = subprocess.run([go, "build", "-trimpath", "-o", tmp, "."], cwd=source_dir, env=env,
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise error(f"building {what} failed:\n{proc.stderr.strip()}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except subprocess.TimeoutExpired:
        raise error(f"building {what} took over 600 s") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def available() -> bool:
    try:
        ensure_binary()
        return True
    except PorcupineUnavailable:
        return False


def encode_key(kh: KeyHistory) -> list[dict]:
    """A key's ops as the helper reads them; info ops return after every other event."""
    clients: dict[Any, int] = {}
    infinity = 2 * len(kh.ops) + 1 + max((op.call for op in kh.ops), default=0)
    out = []
    for op in kh.ops:
        c = clients.setdefault(op.process, len(clients))
        d = {"c": c, "call": op.call, "ret": infinity if op.ret == INF else op.ret, "f": op.f, "i": op.index}
        if op.inp is not None:
            d["in"] = op.inp
        if op.inp2 is not None:
            d["in2"] = op.inp2
        if op.out is not None:
            d["out"] = op.out
        if op.info:
            d["info"] = True
        out.append(d)
    return out


def check_batch(histories: list[tuple[str, list[KeyHistory], dict[Any, str]]], *, model: str,
                append_mode: str = "list", init: str = "null", timeout_s: float | None = None,
                key_timeout_s: float | None = None, all_keys: bool = False,
                memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB) -> list[dict]:
    """Check many histories in one helper process.

    histories: (name, keys, {key: visualization path}) per history. Returns, per history, a dict
    {key: {"result": "ok"|"illegal"|"unknown"|"skipped", "ms": float, "visualization": path?,
    "error": why unknown?}}. timeout_s bounds the whole batch, key_timeout_s each key; past
    memory_limit_mb of heap the helper answers at once (unfinished keys unknown).
    """
    binary = ensure_binary()
    request = {
        "model": model, "append": append_mode, "init": init,
        "timeout_ms": int(timeout_s * 1000) if timeout_s else 0, "all_keys": all_keys,
        "key_timeout_ms": int(key_timeout_s * 1000) if key_timeout_s else 0,
        "memory_limit_mb": memory_limit_mb or 0,
        "histories": [
            {"name": name, "keys": [{"key": str(kh.key), "visualization": vis.get(kh.key, ""),
                                     "ops": encode_key(kh)} for kh in keys]}
            for name, keys, vis in histories],
    }
    env = dict(os.environ)
    if memory_limit_mb:
        # The collector works harder as the heap nears the bound; the helper's watchdog enforces it.
        env["GOMEMLIMIT"] = f"{memory_limit_mb}MiB"
    wall = None if not timeout_s else timeout_s + 30
    try:
        proc = subprocess.run([binary], input=json.dumps(request, separators=(",", ":")).encode(),
                              capture_output=True, env=env, timeout=wall)
    except subprocess.TimeoutExpired:
        raise PorcupineUnavailable("the porcupine helper did not finish within its time budget") from None
    if proc.returncode != 0:
        raise PorcupineUnavailable(f"the porcupine helper failed (exit {proc.returncode}): "
                                   f"{proc.stderr.decode(errors='replace').strip()[-2000:] or proc.stdout[:2000]!r}")
    response = json.loads(proc.stdout)
    results = []
    for (_name, keys, _), hist in zip(histories, response["histories"], strict=True):
        by_name = {r["key"]: r for r in hist["keys"]}
        results.append({kh.key: by_name[str(kh.key)] for kh in keys})
    return results
