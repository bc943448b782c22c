"""Headless Chromium for checking and screenshotting reports (tests, bench, docs).

Uses the system's browser and driver only (Debian's `chromium` and `chromium-driver`), passes
both paths explicitly and puts Selenium Manager offline, so nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Iterator

BROWSER_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def find_chromium() -> tuple[str | None, str | None, str]:
    """(browser path, driver path, reason when one is missing)."""
    browser = os.environ.get("SPLITBRAIN_CHROMIUM") or next(
        (p for p in BROWSER_CANDIDATES if os.access(p, os.X_OK)), None) or shutil.which("chromium")
    driver = os.environ.get("SPLITBRAIN_CHROMEDRIVER") or next(
        (p for p in DRIVER_CANDIDATES if os.access(p, os.X_OK)), None) or shutil.which("chromedriver")
    if browser is None:
        return None, driver, "chromium is not installed (Debian: apt-get install chromium chromium-driver)"
    if driver is None:
        return browser, None, "chromedriver is not installed (Debian: apt-get install chromium-driver)"
    return browser, driver, ""


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 1000) -> Iterator["object"]:
    """A selenium WebDriver on headless Chromium, quit on exit."""
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path, reason = find_chromium()
    if reason or browser is None:
        raise RuntimeError(reason)
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1",
                "--allow-file-access-from-files", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list[dict]:
    """Console entries of level SEVERE since the last call (the log is drained by reading it)."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def load_time_ms(driver) -> float:
    """Navigation start to the end of the load event of the current page, in ms."""
    return float(driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return n ? n.loadEventEnd - n.startTime"
        " : performance.timing.loadEventEnd - performance.timing.navigationStart;"))


def screenshot_full_page(driver, path: str, max_height: int = 16000) -> None:
    """A PNG of the whole page (Chrome DevTools' beyond-viewport capture)."""
    import base64
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    width, height = int(size["width"]), min(int(size["height"]), max_height)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
