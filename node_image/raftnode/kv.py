"""The replicated key-value state machine: pure and deterministic.

Every replica applies the same committed entries in the same order and must end in the same state
with the same answers, so nothing here reads a clock, randomness or anything outside the entry.

Commands (Entry.data of a COMMAND entry):

    {"op": "put" | "delete" | "cas" | "append", "key": str, "value": <JSON>,
     "expected": <JSON> (cas only), "client_id": str (optional), "seq": int (optional)}

Answers are (HTTP status, JSON body):
    put / delete -> (200, {})
    cas          -> (200, {"ok": true}) or (409, {"ok": false, "value": <current or null>})
    append       -> (200, {"value": [list after the append]}); a missing key starts a list;
                    appending to a non-list -> (409, {"error": "not_a_list", "value": <current>})
    a malformed command -> (400, {"error": "bad_command", "detail": ...}) (decided the same on
                    every replica, so a bad entry never stops the apply loop)

Apply is total: whatever a committed entry holds (wrong types, a value nested too deep, a number
that is not finite, something that is not JSON at all: from a peer, a log written by an older
version, a bug), `apply` answers it and never raises, and it answers the same on every replica,
because the decision depends on the entry alone. A poison entry that raised would stop every
replica that applies it, on every restart. A value is stored only if it can be encoded as strict
JSON (so every later answer and every snapshot can be encoded too) and is nested at most
MAX_NESTING deep (so nothing that walks it, here or in the encoder, can run out of stack).

Client sessions: a command carrying both client_id and seq is deduplicated when it is applied:
the session remembers the last (seq, answer); the same seq again answers the remembered answer
without applying, a lower seq answers (400, {"error": "stale_seq"}). Sessions expire by a rule on
the log only: at most `max_sessions` sessions are kept, and when a new one would exceed it the
session least recently used *by applied index* is dropped. Every replica sees the same log so
every replica drops the same session. (A retry arriving after its session was dropped is applied
again: choose max_sessions well above the number of concurrent clients.)

Values are treated as immutable once stored: append builds a new list instead of extending the
stored one, so answers and cached session results never change under the caller's feet.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from .codec import PreEncoded
from .jsonenc import compact_encoder
from .types import COMMAND, CONFIG, NOOP, Entry

DEFAULT_MAX_SESSIONS = 4096
SNAPSHOT_FORMAT = 1
WRITE_OPS = ("put", "delete", "cas", "append")
MAX_NESTING = 100  # arrays/objects inside one value: far below the interpreter's recursion limit

_MISSING = object()
# ensure_ascii: a lone surrogate ("\ud800" in a JSON string) is escaped, not an encoding error;
# sort_keys: keys of mixed types fail here, not later in a snapshot (which sorts keys).
_strict_encode = compact_encoder(ensure_ascii=True, sort_keys=True)


def nesting_depth(value: Any, limit: int = MAX_NESTING) -> int:
    """How deep arrays and objects nest in `value` (a scalar is 0, [1] is 1); stops counting
    once past `limit`. Iterative: a value nested 100,000 deep is measured, not a RecursionError."""
    deepest = 0
    stack = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        for child in children:
            if isinstance(child, (dict, list)):
                push((child, depth + 1))
    return deepest


def value_problem(value: Any) -> str | None:
    """Why `value` cannot be stored, or None: it must encode as strict JSON (finite numbers,
    string keys, JSON types only) and nest at most MAX_NESTING deep."""
    try:
        text = _strict_encode(value)
    except RecursionError:
        return f"is nested more than {MAX_NESTING} levels deep"
    except ValueError as exc:  # NaN or an infinity; an integer too long to print
        if "Out of range float" in str(exc):
            return "contains a number that is not finite (NaN or infinity)"
        return f"cannot be encoded as JSON: {str(exc)[:200]}"
    except TypeError as exc:
        return f"is not JSON: {str(exc)[:200]}"
    # Every nesting level writes one bracket, so few brackets prove a shallow value cheaply.
    if text.count("[") + text.count("{") > MAX_NESTING and nesting_depth(value) > MAX_NESTING:
        return f"is nested more than {MAX_NESTING} levels deep"
    return None


def _describe(value: Any) -> str:
    """A short, safe description of an arbitrary value for an error message (never a huge or
    failing repr: a value may be nested 100,000 deep or be an integer of 4,000 digits)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        return repr(value[:40]) + ("..." if len(value) > 40 else "")
    if isinstance(value, int) and -10**18 < value < 10**18:
        return repr(value)
    return f"a value of type {type(value).__name__}"


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: true is not 1, but 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return a == b


def validate_command(command: Any, values_checked: bool = False) -> str | None:
    """The problem with a command dict, or None when it is well formed. `values_checked`: the
    values are known to pass value_problem already (see codec.PreEncoded)."""
    if not isinstance(command, dict):
        return "command must be an object"
    op = command.get("op")
    if not isinstance(op, str) or op not in WRITE_OPS:
        return f"unknown op {_describe(op)} (expected one of {', '.join(WRITE_OPS)})"
    if not isinstance(command.get("key"), str):
        return "key must be a string"
    if op in ("put", "cas", "append") and "value" not in command:
        return f"{op} needs a value"
    if op == "cas" and "expected" not in command:
        return "cas needs expected"
    client_id, seq = command.get("client_id"), command.get("seq")
    if client_id is not None and not isinstance(client_id, str):
        return "client_id must be a string"
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
        return "seq must be a non-negative integer"
    for name in ("value", "expected"):
        if name in command and not values_checked:
            problem = value_problem(command[name])
            if problem is not None:
                return f"{name} {problem}"
    return None


class KVStateMachine:
    def __init__(self, max_sessions: int = DEFAULT_MAX_SESSIONS):
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
        self.max_sessions = max_sessions
        self.data: dict[str, Any] = {}
        # client_id -> [last seq, status, body, index last used]; ordered least recently used first.
        self.sessions: OrderedDict[str, list] = OrderedDict()
        self.last_applied = 0
        self.last_applied_term = 0

    # -- reads -------------------------------------------------------------------------------
    def get(self, key: str) -> tuple[int, dict]:
        value = self.data.get(key, _MISSING)
        if value is _MISSING:
            return 404, {"error": "not_found"}
        return 200, {"value": value}

    # -- writes ------------------------------------------------------------------------------
    def apply(self, entry: Entry) -> tuple[int, dict] | None:
        """Apply the next committed entry; None for a no-op or a configuration entry (the Raft
        core acts on those; a snapshot carries the configuration beside this state, see
        membership.pack_snapshot), else the write's answer."""
        if entry.index != self.last_applied + 1:
            # Applying out of order or twice would silently fork the replicas: refuse loudly.
            raise ValueError(f"entry {entry.index} applied out of order: last applied is "
                             f"{self.last_applied}")
        self.last_applied = entry.index
        self.last_applied_term = entry.term
        if entry.kind == NOOP or entry.kind == CONFIG:
            return None
        if entry.kind != COMMAND:
            return 400, {"error": "bad_command", "detail": f"unknown entry kind {_describe(entry.kind)}"}
        try:
            return self._apply_command(entry)
        except MemoryError:
            raise  # not a property of the entry: another replica may well have had the memory
        except Exception as exc:
            # Unreachable by design (validate_command rejects what _execute cannot take, before
            # anything is changed); if it is reached, every replica reaches it the same way.
            return 400, {"error": "bad_command", "detail": f"cannot be applied: {type(exc).__name__}"}

    def _apply_command(self, entry: Entry) -> tuple[int, dict]:
        command = entry.data
        problem = validate_command(command, values_checked=type(command) is PreEncoded)
        if problem is not None:
            return 400, {"error": "bad_command", "detail": problem}
        client_id, seq = command.get("client_id"), command.get("seq")
        if client_id is None or seq is None:
            return self._execute(command)
        session = self.sessions.get(client_id)
        if session is not None:
            last_seq, status, body, _ = session
            if seq < last_seq:
                return 400, {"error": "stale_seq", "last_seq": last_seq}
            if seq == last_seq:
                session[3] = entry.index
                self.sessions.move_to_end(client_id)
                return status, body
        status, body = self._execute(command)
        if session is None:
            self.sessions[client_id] = [seq, status, body, entry.index]
            if len(self.sessions) > self.max_sessions:
                self.sessions.popitem(last=False)
        else:
            session[:] = [seq, status, body, entry.index]
            self.sessions.move_to_end(client_id)
        return status, body

    def _execute(self, command: dict) -> tuple[int, dict]:
        op, key = command["op"], command["key"]
        if op == "put":
            self.data[key] = command["value"]
            return 200, {}
        if op == "delete":
            self.data.pop(key, None)
            return 200, {}
        current = self.data.get(key, _MISSING)
        if op == "cas":
            # An absent key compares as null, so cas(null -> v) creates a key.
            shown = None if current is _MISSING else current
            if json_equal(shown, command["expected"]):
                self.data[key] = command["value"]
                return 200, {"ok": True}
            return 409, {"ok": False, "value": shown}
        # append
        if current is _MISSING:
            new = [command["value"]]
        elif isinstance(current, list):
            new = current + [command["value"]]
        else:
            return 409, {"error": "not_a_list", "value": current}
        self.data[key] = new
        return 200, {"value": new}

    # -- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """The whole state, sessions included, as canonical JSON bytes."""
        doc = {
            "format": SNAPSHOT_FORMAT,
            "last_applied": self.last_applied,
            "last_applied_term": self.last_applied_term,
            "max_sessions": self.max_sessions,
            "data": self.data,
            # In least-recently-used order so that expiry continues identically after restore.
            "sessions": [[cid, *s] for cid, s in self.sessions.items()],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def restore(self, data: bytes) -> None:
        """Replace the whole state by a snapshot(); raises ValueError naming a malformed part."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError, TypeError) as exc:
            raise ValueError(f"KV snapshot is not valid JSON: {str(exc)[:200]}") from None
        except RecursionError:
            raise ValueError("KV snapshot is nested too deeply to be a snapshot") from None
        if not isinstance(doc, dict) or doc.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"KV snapshot has unknown format (expected format {SNAPSHOT_FORMAT})")
        for name in ("last_applied", "last_applied_term"):
            if not isinstance(doc.get(name), int) or doc[name] < 0:
                raise ValueError(f"KV snapshot field {name} must be a non-negative integer")
        if not isinstance(doc.get("data"), dict):
            raise ValueError("KV snapshot field data must be an object")
        sessions = doc.get("sessions")
        if not isinstance(sessions, list) or not all(
                isinstance(s, list) and len(s) == 5 and isinstance(s[0], str)
                and all(isinstance(n, int) and not isinstance(n, bool) for n in (s[1], s[2], s[4]))
                and isinstance(s[3], dict) for s in sessions):
            raise ValueError("KV snapshot field sessions must be a list of "
                             "[client_id, seq, status, body, index]")
        self.data = doc["data"]
        self.sessions = OrderedDict((s[0], list(s[1:])) for s in sessions)
        self.last_applied = doc["last_applied"]
        self.last_applied_term = doc["last_applied_term"]
        while len(self.sessions) > self.max_sessions:
            self.sessions.popitem(last=False)
