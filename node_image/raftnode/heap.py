"""What the node's frozen heap asks of code that holds asyncio transports.

The driver calls gc.freeze() about once a second (server.py: full collections would otherwise scan
the whole log). The collector never looks at frozen objects again, so an object that was alive at
a freeze and later dies inside a reference cycle is never freed: only reference counting frees
it, and reference counting cannot free a cycle.

CPython 3.11's selector transport is such a cycle once closed: it keeps a bound method of itself,
`_read_ready_cb` (CPython drops it on close from 3.12 on, gh-100348). Every connection that
outlived a freeze then leaked its transport, socket and buffers (about 1 KiB; a soak with a new
wrk every minute left 16 a minute on the leader). Protocols call release_closed_transport from
connection_lost to break that cycle, so reference counting frees the transport.
"""

from __future__ import annotations


def release_closed_transport(transport) -> None:
    """Drop the closed transport's reference to its own read callback (a no-op where there is
    none: another transport class, or a Python that already drops it)."""
    if getattr(transport, "_read_ready_cb", None) is not None:
        # Safe in connection_lost: the loop stopped reading this transport before calling it.
        transport._read_ready_cb = None
