"""Regenerate the report screenshots in this folder (PNG, headless Chromium).

    python docs/screenshots/make_screenshots.py

Two synthetic runs (tests/fixtures/run_factory.py: a 5-node cluster, 10 clients, register
workload, a mixed fault schedule), one of them with an injected stale read, are checked by our
own checker (`splitbrain check`, with porcupine's visualization when Go is available) and
rendered; the pictures show the top of each report, the Raft timeline and the store index.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

from reports import render_index, render_run  # noqa: E402
from reports.browser import chromium  # noqa: E402
from tests.fixtures.run_factory import build_run  # noqa: E402

WIDTH = 1200


def check(run_dir: str) -> None:
    from checkers import cli
    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers(dest="command"))
    args = p.parse_args(["check", run_dir])
    args.func(args)


def shot(driver, path: str, top: float, bottom: float) -> None:
    data = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": top, "width": WIDTH, "height": bottom - top, "scale": 1}})
    with open(path, "wb") as f:
        f.write(base64.b64decode(data["data"]))
    print(f"{path}: {WIDTH}x{int(bottom - top)}")


def bottom_of(driver, css: str) -> float:
    return driver.execute_script(
        "const r = document.querySelector(arguments[0]).getBoundingClientRect(); "
        "return r.bottom + window.scrollY;", css)


def top_of(driver, css: str) -> float:
    return driver.execute_script(
        "const r = document.querySelector(arguments[0]).getBoundingClientRect(); return r.top + window.scrollY;", css)


def main() -> int:
    out = HERE
    tmp = tempfile.mkdtemp(prefix="splitbrain-screenshots-")
    try:
        valid = build_run(tmp, test="mixed-faults", timestamp="20261124T020000", ops=20_000, seed=2,
                          write_results=False)
        invalid = build_run(tmp, test="leader-isolation", timestamp="20261124T030000", ops=4_000, seed=1,
                            stale_read_key=True, write_results=False)
        for i, name in enumerate(("mixed-faults", "leader-isolation", "pause-storm")):
            for day in range(1, 4):
                build_run(tmp, test=name, timestamp=f"2026112{day}T0{i}0000", ops=1500, seed=10 * i + day,
                          stale_read_key=(name == "leader-isolation" and day == 2), write_results=False)
        for test in os.listdir(tmp):
            for ts in os.listdir(os.path.join(tmp, test)):
                check(os.path.join(tmp, test, ts))
        render_run(valid)
        render_run(invalid)
        render_index(tmp)
        with chromium(WIDTH, 1000) as d:
            d.get(f"file://{invalid}/report/index.html")
            # porcupine's view exists when Go could build the checker's helper; else end at the anomaly
            end = "#porcupine-frame" if d.find_elements("css selector", "#porcupine-frame") else "#anomaly"
            shot(d, os.path.join(out, "report-invalid.png"), 0, bottom_of(d, end) + 12)
            d.get(f"file://{valid}/report/index.html")
            shot(d, os.path.join(out, "report-valid.png"), 0, bottom_of(d, "#plot-throughput") + 8)
            shot(d, os.path.join(out, "report-raft.png"), top_of(d, "#raft") - 12,
                 bottom_of(d, "table.convergence") + 40)
            d.get(f"file://{tmp}/index.html")
            shot(d, os.path.join(out, "index.png"), 0, bottom_of(d, "#runs") + 40)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
