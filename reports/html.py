"""HTML building blocks shared by the run report and the store index.

Everything that comes from a history, a log, a config or a results file goes through esc().
Pages carry a Content-Security-Policy that allows only the page's own inline script (by nonce)
and inline styles, and no network access at all: even a value that escaped escaping could not
run a script or fetch anything.
"""

from __future__ import annotations

import json
import os
import secrets
from html import escape
from typing import Any, Iterable, Sequence

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


def esc(value: Any) -> str:
    return escape(str(value), quote=True)


def jtext(value: Any, limit: int | None = 200) -> str:
    """A JSON rendering of a value for a table cell (escaped, shortened)."""
    text = (value if isinstance(value, str)
            else json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False))
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return esc(text)


def static(name: str) -> str:
    with open(os.path.join(STATIC, name), encoding="utf-8") as f:
        return f.read()


def page(title: str, body: str, nav: Sequence[tuple[str, str]] = (), frames: bool = False) -> str:
    nonce = secrets.token_urlsafe(16)
    # frame-src for porcupine's visualizations next to the report (same directory tree).
    frame_src = "'self' file:" if frames else "'none'"
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data:; "
           f"frame-src {frame_src}; base-uri 'none'; form-action 'none'")
    links = "".join(f'<a href="{esc(href)}">{esc(text)}</a>' for text, href in nav)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>{esc(title)}</title><style>{static('report.css')}</style></head><body>"
            f'<header class="top"><span class="brand">splitbrain</span>{links}</header>'
            f"<main>{body}</main><script nonce=\"{nonce}\">{static('report.js')}</script></body></html>\n")


def pill(kind: str, text: str | None = None) -> str:
    return f'<span class="pill {esc(kind)}">{esc(text if text is not None else kind)}</span>'


def verdict_word(valid: Any) -> str:
    return "valid" if valid is True else "invalid" if valid is False else "unknown"


def table(headers: Sequence[str | tuple[str, ...]], rows: Iterable[str], page_size: int | None = None,
          cls: str = "", attrs: str = "") -> str:
    """A table; headers may be (text, css class) or (text, css class, data-type). Rows are
    pre-rendered <tr>…</tr> strings.

    With page_size, rows beyond the first page are hidden and the page script adds a pager.
    """
    def th(h: str | tuple) -> str:
        if not isinstance(h, tuple):
            return f"<th>{esc(h)}</th>"
        extra = f' data-type="{esc(h[2])}"' if len(h) > 2 else ""
        return f'<th class="{esc(h[1])}"{extra}>{esc(h[0])}</th>'
    head = "".join(th(h) for h in headers)
    body: list[str] = []
    for i, r in enumerate(rows):
        if page_size is not None and i >= page_size:
            r = r.replace("<tr", "<tr hidden", 1)
        body.append(r)
    pager = f' data-page-size="{page_size}"' if page_size else ""
    extra = f" {attrs}" if attrs else ""
    return (f'<table class="{esc(cls)}"{pager}{extra}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def tr(cells: Iterable[str], cls: str = "") -> str:
    """A row of pre-escaped cells (strings starting with '<td' are used as they are)."""
    out = []
    for c in cells:
        out.append(c if c.startswith("<td") else f"<td>{c}</td>")
    c = f' class="{esc(cls)}"' if cls else ""
    return f"<tr{c}>{''.join(out)}</tr>"


def num(v: Any, fmt: str = "{:,}", sort: Any = None) -> str:
    if v is None:
        return '<td class="num" data-v="">—</td>'
    s = sort if sort is not None else v
    return f'<td class="num" data-v="{esc(s)}">{esc(fmt.format(v))}</td>'
