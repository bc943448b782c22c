"""HTML reports: one self-contained page per run, and an index across the runs of a store.

    reports.render_run(run_dir) -> path of <run_dir>/report/index.html
    reports.render_index(store_dir) -> path of <store_dir>/index.html
    reports.cli.register(subparsers)  # adds `splitbrain report` and `splitbrain serve`
"""

from reports.load import ReportError
from reports.run_report import render_run


def render_index(store_dir, **kwargs):
    from reports.index_page import render_index as _render_index
    return _render_index(store_dir, **kwargs)


__all__ = ["render_run", "render_index", "ReportError"]
