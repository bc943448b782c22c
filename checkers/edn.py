"""A small EDN reader: enough of the format for Jepsen/Knossos histories.

Reads maps, vectors, lists, sets, keywords, strings, integers, floats, nil and true/false;
character literals are not needed by histories and are rejected. Keywords become the
`Keyword` str subclass so a caller can tell `:read` from `"read"`; tagged literals (`#inst "..."`,
`#jepsen.history.Op{...}`) yield their value. Errors raise EdnError with the offset.
"""

from __future__ import annotations

from typing import Any


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


_DELIMS = set(" \t\r\n,()[]{}\";")
_WS = set(" \t\r\n,")


class _Reader:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def skip_ws(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            c = text[self.pos]
            if c in _WS:
                self.pos += 1
            elif c == ";":  # comment to end of line
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end + 1
            elif text.startswith("#_", self.pos):  # discard the next form
                self.pos += 2
                self.read()
            else:
                return

    def at_end(self) -> bool:
        self.skip_ws()
        return self.pos >= len(self.text)

    def read(self) -> Any:
        self.skip_ws()
        text = self.text
        if self.pos >= len(text):
            raise EdnError(self.pos, "unexpected end of input (truncated?)")
        c = text[self.pos]
        if c == "{":
            self.pos += 1
            items = self._read_until("}")
            if len(items) % 2:
                raise EdnError(self.pos - 1, "map literal has an odd number of forms")
            out = {}
            for k, v in zip(items[::2], items[1::2]):
                out[_hashable(k)] = v
            return out
        if c == "[":
            self.pos += 1
            return self._read_until("]")
        if c == "(":
            self.pos += 1
            return self._read_until(")")
        if c == '"':
            return self._read_string()
        if c == "#":
            if text.startswith("#{", self.pos):
                self.pos += 2
                return set(_hashable(x) for x in self._read_until("}"))
            self.pos += 1
            self._read_token()  # the tag; its value stands for the whole literal
            return self.read()
        if c in ")]}":
            raise EdnError(self.pos, f"unexpected {c!r}")
        return self._read_atom()

    def _read_until(self, close: str) -> list:
        items = []
        while True:
            self.skip_ws()
            if self.pos >= len(self.text):
                raise EdnError(self.pos, f"unexpected end of input: missing {close!r} (truncated?)")
            if self.text[self.pos] == close:
                self.pos += 1
                return items
            items.append(self.read())

    def _read_string(self) -> str:
        text = self.text
        start = self.pos
        self.pos += 1
        parts = []
        while True:
            end = text.find('"', self.pos)
            slash = text.find("\\", self.pos)
            if end < 0:
                raise EdnError(start, "unterminated string (truncated?)")
            if 0 <= slash < end:
                parts.append(text[self.pos:slash])
                if slash + 1 >= len(text):
                    raise EdnError(slash, "unterminated escape")
                esc = text[slash + 1]
                mapping = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
                if esc == "u":
                    parts.append(chr(int(text[slash + 2:slash + 6], 16)))
                    self.pos = slash + 6
                    continue
                if esc not in mapping:
                    raise EdnError(slash, f"unknown escape \\{esc}")
                parts.append(mapping[esc])
                self.pos = slash + 2
                continue
            parts.append(text[self.pos:end])
            self.pos = end + 1
            return "".join(parts)

    def _read_token(self) -> str:
        text, n = self.text, len(self.text)
        start = self.pos
        while self.pos < n and text[self.pos] not in _DELIMS:
            self.pos += 1
        return text[start:self.pos]

    def _read_atom(self) -> Any:
        start = self.pos
        tok = self._read_token()
        if not tok:
            raise EdnError(start, f"unexpected character {self.text[start]!r}")
        if tok[0] == ":":
            if len(tok) == 1:
                raise EdnError(start, "empty keyword")
            return Keyword(tok[1:])
        if tok == "nil":
            return None
        if tok == "true":
            return True
        if tok == "false":
            return False
        if tok[0] == "\\":
            raise EdnError(start, "character literals are not supported")
        num = tok[:-1] if tok[-1] in "NM" else tok
        try:
            return int(num)
        except ValueError:
            pass
        try:
            return float(num)
        except ValueError:
            pass
        return _Symbol(tok)


class _Symbol(str):
    """A bare EDN symbol (rare in histories); kept as its text."""

    __slots__ = ()


def _hashable(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_hashable(i) for i in x)
    if isinstance(x, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in x.items()))
    if isinstance(x, set):
        return frozenset(x)
    return x


def loads(text: str) -> Any:
    """Parse exactly one EDN form (whitespace around it allowed)."""
    r = _Reader(text)
    value = r.read()
    if not r.at_end():
        raise EdnError(r.pos, "unexpected text after the form")
    return value


def iter_forms(text: str):
    """Yield (offset, form) for each top-level form in text."""
    r = _Reader(text)
    while not r.at_end():
        start = r.pos
        yield start, r.read()
