"""A small EDN reader: enough of the format for Jepsen/Knossos histories, fast on large ones.

Reads maps, vectors, lists, sets, keywords, strings, integers (`N` suffix too), floats (`M`,
`##Inf`, `##NaN`), nil and true/false, `;` comments and `#_` discards; character literals are not
needed by histories and are rejected. Keywords become the `Keyword` str subclass so a caller can
tell `:read` from `"read"`; tagged literals (`#inst "..."`, `#jepsen.history.Op{...}`) yield their
value. Errors raise EdnError with the offset of the problem.

Why our own rather than the edn_format package (bench/bench_edn.py, on the porcupine/Jepsen data):
edn_format, a PLY grammar, took 2.2-4.5 times as long per kv history, 1.8-3.5 times on 8.5 MB,
and 68-276 times as long for the values of Jepsen log lines read one by one (ranges over runs on a
shared 2-core machine); its errors carry no position we could turn into a line ("EOF Reached"),
and it refuses `#jepsen.history.Op{...}` records unless each tag gets a handler. This reader is a
regex tokenizer and an explicit stack: linear in the input, and deep nesting is an error message, not a RecursionError.
"""

from __future__ import annotations

import re
from typing import Any, Iterator


class EdnError(ValueError):
    def __init__(self, offset: int, problem: str):
        self.offset = offset
        self.problem = problem
        super().__init__(f"at character {offset + 1}: {problem}")


class Keyword(str):
    """An EDN keyword, without its colon."""

    __slots__ = ()

    def __repr__(self) -> str:
        return ":" + str(self)


class _Symbol(str):
    """A bare EDN symbol (rare in histories); kept as its text."""

    __slots__ = ()


# One token per match. Whitespace includes commas and comments; a string must be closed.
_TOKEN = re.compile(r"""
    (?P<ws>(?:[\s,]+|;[^\n]*)+)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<open>[\[({]|\#\{)
  | (?P<close>[\])}])
  | (?P<discard>\#_)
  | (?P<special>\#\#[^\s,()\[\]{}";]+)
  | (?P<tag>\#[^\s,()\[\]{}";\#_][^\s,()\[\]{}";]*)
  | (?P<atom>[^\s,()\[\]{}";\#][^\s,()\[\]{}";]*)
""", re.X | re.S)
_INT = re.compile(r"[+-]?\d+N?")
_FLOAT = re.compile(r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?M?")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "b": "\b", "f": "\f", "/": "/"}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)
_SPECIAL = {"##Inf": float("inf"), "##-Inf": float("-inf"), "##NaN": float("nan")}
_CLOSER = {"[": "]", "(": ")", "{": "}", "#{": "}"}
MAX_DEPTH = 10_000


def _unescape(body: str, offset: int) -> str:
    def one(m: re.Match) -> str:
        esc = m.group(1)
        if esc[0] == "u" and len(esc) == 5:
            return chr(int(esc[1:], 16))
        if esc in _ESCAPES:
            return _ESCAPES[esc]
        raise EdnError(offset + m.start(), f"unknown escape \\{esc}")
    return _ESCAPE.sub(one, body)


def _atom(tok: str, offset: int) -> Any:
    c = tok[0]
    if c == ":":
        if len(tok) == 1:
            raise EdnError(offset, "empty keyword")
        return Keyword(tok[1:])
    if tok == "nil":
        return None
    if tok == "true":
        return True
    if tok == "false":
        return False
    if c == "\\":
        raise EdnError(offset, "character literals are not supported")
    if c.isdigit() or (c in "+-" and len(tok) > 1 and tok[1].isdigit()):
        if _INT.fullmatch(tok):
            return int(tok.rstrip("N"))
        if _FLOAT.fullmatch(tok):
            return float(tok.rstrip("M"))
        raise EdnError(offset, f"malformed number {tok!r}")
    return _Symbol(tok)


def _hashable(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_hashable(i) for i in x)
    if isinstance(x, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in x.items()))
    if isinstance(x, set):
        return frozenset(x)
    return x


class _Frame:
    """An open collection: its opening token and what it holds so far."""

    __slots__ = ("opener", "offset", "items", "prefixes", "child_start", "child_starts")

    def __init__(self, opener: str, offset: int, record_children: bool):
        self.opener = opener
        self.offset = offset
        self.items: list = []
        self.prefixes: list[str] = []      # pending #_ / #tag that apply to the next form here
        self.child_start: int | None = None
        self.child_starts: list[int] | None = [] if record_children else None


def read_forms(text: str, child_offsets: bool = False) -> Iterator[tuple[int, Any, list[int] | None]]:
    """Yield (offset, form, offsets of its direct children or None) for each top-level form.

    child_offsets: also record where each direct element of a top-level collection starts (to
    name the line of each operation of a history written as one vector).
    """
    top = _Frame("", 0, False)  # the top level, as a frame that is never closed
    stack = [top]
    pos, n = 0, len(text)
    match = _TOKEN.match
    while True:
        m = match(text, pos)
        if m is None:
            if pos >= n:
                break
            c = text[pos]
            if c == '"':
                raise EdnError(pos, "unterminated string (truncated?)")
            raise EdnError(pos, f"unexpected character {c!r}")
        kind = m.lastgroup
        start, pos = pos, m.end()
        if kind == "ws":
            continue
        frame = stack[-1]
        if frame.child_start is None:
            frame.child_start = start
        if kind == "open":
            if len(stack) > MAX_DEPTH:
                raise EdnError(start, f"nested deeper than {MAX_DEPTH} levels")
            stack.append(_Frame(m.group(), start, child_offsets and len(stack) == 1))
            continue
        if kind in ("discard", "tag"):
            frame.prefixes.append(kind)
            continue
        if kind == "close":
            close = m.group()
            if len(stack) == 1:
                raise EdnError(start, f"unexpected {close!r}")
            if _CLOSER[frame.opener] != close:
                raise EdnError(start, f"unexpected {close!r}: {frame.opener!r} at character "
                                      f"{frame.offset + 1} is closed by {_CLOSER[frame.opener]!r}")
            if frame.prefixes:
                raise EdnError(start, f"{'#_' if frame.prefixes[-1] == 'discard' else 'a tag'} "
                                      f"with no form after it before {close!r}")
            stack.pop()
            items = frame.items
            if frame.opener == "{":
                if len(items) % 2:
                    raise EdnError(start, "map literal has an odd number of forms")
                value: Any = {_hashable(k): v for k, v in zip(items[::2], items[1::2], strict=True)}
            elif frame.opener == "#{":
                value = {_hashable(x) for x in items}
            else:
                value = items
            children = frame.child_starts
            frame = stack[-1]
        elif kind == "str":
            body = m.group()[1:-1]
            value = _unescape(body, start + 1) if "\\" in body else body
            children = None
        elif kind == "special":
            tok = m.group()
            if tok not in _SPECIAL:
                raise EdnError(start, f"unknown symbolic value {tok!r}")
            value, children = _SPECIAL[tok], None
        else:
            value, children = _atom(m.group(), start), None
        # A complete form: apply the #_ and tags waiting before it at this level.
        keep = True
        while frame.prefixes:
            if frame.prefixes.pop() == "discard":
                keep = False
                break
        if keep:
            child_start = frame.child_start
            assert child_start is not None  # set by this form's first token (its opener, for a collection)
            if frame is top:
                yield child_start, value, children
            else:
                frame.items.append(value)
                if frame.child_starts is not None:
                    frame.child_starts.append(child_start)
        frame.child_start = None
    if len(stack) > 1:
        frame = stack[-1]
        raise EdnError(n, f"unexpected end of input: missing {_CLOSER[frame.opener]!r} for "
                          f"{frame.opener!r} at character {frame.offset + 1} (truncated?)")
    if top.prefixes:
        raise EdnError(n, "unexpected end of input after #_ or a tag (truncated?)")


def loads(text: str) -> Any:
    """Parse exactly one EDN form (whitespace and comments around it allowed)."""
    forms = read_forms(text)
    first = next(forms, None)
    if first is None:
        raise EdnError(len(text), "unexpected end of input (truncated?)")
    extra = next(forms, None)
    if extra is not None:
        raise EdnError(extra[0], "unexpected text after the form")
    return first[1]


def iter_forms(text: str) -> Iterator[tuple[int, Any]]:
    """Yield (offset, form) for each top-level form in text."""
    for offset, form, _ in read_forms(text):
        yield offset, form
