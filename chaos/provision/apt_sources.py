"""Read the host's apt sources to find the Debian mirror the base image is bootstrapped from.

There is no container registry where splitbrain runs, but a Debian host always has a package
mirror it can reach: the one its own apt sources name. Both formats apt reads are parsed:

- deb822 `*.sources` files (stanzas of `Key: value` fields separated by blank lines; the fields
  used are Types, URIs, Suites, Components and Enabled), and
- one-line `*.list` files and /etc/apt/sources.list
  (`deb [option=value ...] URI SUITE [COMPONENT ...]`).

No mirror address is ever written into the repository: it is always read from the host.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field


class AptSourcesError(ValueError):
    """A malformed sources file; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class AptSource:
    type: str                  # "deb" or "deb-src"
    uri: str
    suite: str
    components: tuple = ()
    options: dict = field(default_factory=dict, compare=False, hash=False)
    origin: str = ""           # "file:line" it was read from, for messages

    @property
    def is_binary(self) -> bool:
        return self.type == "deb"


def parse_one_line(text: str, origin: str = "sources.list") -> list[AptSource]:
    """Parse the one-line format: `deb [opts] URI SUITE [COMPONENTS...]` per line."""
    sources = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{origin}:{number}"
        kind, _, rest = line.partition(" ")
        if kind not in ("deb", "deb-src"):
            raise AptSourcesError(f"{where}: expected 'deb' or 'deb-src', got {kind!r}")
        rest = rest.strip()
        options: dict = {}
        if rest.startswith("["):
            close = rest.find("]")
            if close < 0:
                raise AptSourcesError(f"{where}: option list '[' is never closed")
            for item in rest[1:close].split():
                key, sep, value = item.partition("=")
                if not sep:
                    raise AptSourcesError(f"{where}: option {item!r} is not key=value")
                options[key.rstrip("+-")] = value
            rest = rest[close + 1:].strip()
        words = rest.split()
        if len(words) < 2:
            raise AptSourcesError(f"{where}: expected a URI and a suite after {kind!r}")
        uri, suite, components = words[0], words[1], tuple(words[2:])
        if not suite.endswith("/") and not components:
            raise AptSourcesError(f"{where}: suite {suite!r} needs at least one component")
        sources.append(AptSource(kind, uri, suite, components, options, where))
    return sources


_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):(.*)$")


def parse_deb822(text: str, origin: str = "debian.sources") -> list[AptSource]:
    """Parse deb822 stanzas; each stanza yields one source per (type, URI, suite)."""
    stanzas: list[tuple[int, dict]] = []
    current: dict | None = None
    last_key = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.startswith("#"):
            continue
        if not raw.strip():
            current, last_key = None, None
            continue
        if raw[0] in " \t":
            # A continuation line belongs to the previous field (multi-line values, e.g. a key).
            if current is None or last_key is None:
                raise AptSourcesError(f"{origin}:{number}: continuation line without a field")
            current[last_key] += "\n" + raw.strip()
            continue
        match = _FIELD.match(raw)
        if not match:
            raise AptSourcesError(f"{origin}:{number}: expected 'Field: value', got {raw.strip()!r}")
        if current is None:
            current = {}
            stanzas.append((number, current))
        last_key = match.group(1).lower()
        current[last_key] = match.group(2).strip()

    sources = []
    for number, stanza in stanzas:
        where = f"{origin}:{number}"
        if stanza.get("enabled", "yes").strip().lower() == "no":
            continue
        for required in ("types", "uris", "suites"):
            if not stanza.get(required, "").strip():
                raise AptSourcesError(f"{where}: stanza has no {required.capitalize()} field")
        types = stanza["types"].split()
        for kind in types:
            if kind not in ("deb", "deb-src"):
                raise AptSourcesError(f"{where}: unknown type {kind!r} (expected deb or deb-src)")
        components = tuple(stanza.get("components", "").split())
        options = {k: v for k, v in stanza.items() if k not in ("types", "uris", "suites", "components")}
        for kind in types:
            for uri in stanza["uris"].split():
                for suite in stanza["suites"].split():
                    sources.append(AptSource(kind, uri, suite, components, options, where))
    return sources


def read_host_sources(root: str = "/") -> list[AptSource]:
    """Every source the host's apt reads: sources.list, then sources.list.d/*.list and *.sources."""
    etc = os.path.join(root, "etc/apt")
    sources: list[AptSource] = []
    main = os.path.join(etc, "sources.list")
    if os.path.isfile(main):
        with open(main, encoding="utf-8") as f:
            sources += parse_one_line(f.read(), main)
    for path in sorted(glob.glob(os.path.join(etc, "sources.list.d", "*"))):
        if path.endswith(".list"):
            parse = parse_one_line
        elif path.endswith(".sources"):
            parse = parse_deb822
        else:
            continue  # apt ignores other names too (e.g. *.disabled, *.save)
        with open(path, encoding="utf-8") as f:
            sources += parse(f.read(), path)
    return sources


def host_codename(root: str = "/") -> str | None:
    """The host's Debian codename from os-release (VERSION_CODENAME), or None."""
    path = os.path.join(root, "etc/os-release")
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == "VERSION_CODENAME":
                    return value.strip().strip('"') or None
    except OSError:
        return None
    return None


def pick_mirror(sources: list[AptSource], suite: str) -> str:
    """The URI of the first binary source carrying `suite` itself with the `main` component.

    Suites such as bookworm-updates or bookworm-security live on other archives or only hold
    updates; debootstrap needs the full release, so only an exact suite match counts.
    """
    usable_schemes = ("http://", "https://", "file:/")
    for source in sources:
        if (source.is_binary and source.suite == suite and "main" in source.components
                and source.uri.startswith(usable_schemes)):
            return source.uri.rstrip("/")
    found = sorted({f"{s.suite} ({s.uri})" for s in sources if s.is_binary}) or ["none"]
    raise AptSourcesError(
        f"no apt source for suite {suite!r} with component 'main' over http(s) or file; "
        f"the host's apt sources have: {', '.join(found)}")


def host_mirror(suite: str | None = None, root: str = "/") -> tuple[str, str]:
    """(mirror URI, suite) for debootstrap, read from the host; suite defaults to the host's."""
    suite = suite or host_codename(root) or "bookworm"
    return pick_mirror(read_host_sources(root), suite), suite
