"""Reports in a real browser: Debian's headless Chromium through the system chromedriver (never a
download). The page shows the verdict, the plots and porcupine's view, with no console errors,
from the file system and from `splitbrain serve`."""

import threading
import time

import pytest

from reports.browser import chromium, console_errors, find_chromium, load_time_ms
from tests.fixtures.run_factory import build_run

_browser, _driver, _reason = find_chromium()
if _reason:
    print(f"\nskipping browser tests: {_reason}")
    pytest.skip(_reason, allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402 - only when a browser exists


@pytest.fixture(scope="module")
def driver():
    with chromium(1280, 1000) as d:
        d.set_page_load_timeout(60)
        yield d


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    valid = build_run(root, test="leader-isolation", timestamp="20261101T020000", ops=3000, seed=2)
    invalid = build_run(root, test="leader-isolation", timestamp="20261102T020000", ops=8000, seed=1,
                        stale_read_key=True, keys=40)
    from reports import render_index, render_run
    render_run(valid)
    render_run(invalid)
    render_index(root)
    return root, valid, invalid


def open_page(driver, url):
    driver.get(url)
    assert driver.execute_script("return document.documentElement.getAttribute('data-ready')") == "1"


def resources_outside(driver, allowed_prefix):
    urls = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [u for u in urls if not u.startswith(allowed_prefix)]


def test_a_valid_report_shows_its_verdict_and_plots_without_console_errors(driver, store):
    _, valid, _ = store
    open_page(driver, f"file://{valid}/report/index.html")
    banner = driver.find_element(By.ID, "verdict")
    assert banner.get_attribute("data-verdict") == "valid"
    assert banner.find_element(By.CLASS_NAME, "verdict").text == "VALID"
    for plot in ("plot-latency", "plot-quantiles", "plot-throughput", "plot-raft"):
        svg = driver.find_element(By.CSS_SELECTOR, f"#{plot} svg.timeplot")
        assert svg.is_displayed() and svg.size["height"] > 100, plot
    assert driver.find_elements(By.CSS_SELECTOR, "#plot-latency path.pts-ok")
    assert console_errors(driver) == []
    assert resources_outside(driver, "file://") == []


def test_an_invalid_report_shows_the_anomaly_and_porcupines_view(driver, store):
    _, _, invalid = store
    open_page(driver, f"file://{invalid}/report/index.html")
    assert driver.find_element(By.ID, "verdict").get_attribute("data-verdict") == "invalid"
    words = driver.find_element(By.CSS_SELECTOR, "#anomaly p.words").text
    assert words.startswith("Read of ") and "returned a value overwritten at" in words
    frame = driver.find_element(By.ID, "porcupine-frame")
    assert frame.is_displayed() and frame.size["height"] > 300
    driver.switch_to.frame(frame)
    try:
        status = driver.find_element(By.ID, "porcupine-status")
        assert "Illegal" in status.text and status.get_attribute("data-loaded") == "1"  # its own script ran
    finally:
        driver.switch_to.default_content()
    assert console_errors(driver) == []


def test_long_tables_are_paginated_and_the_pager_works(driver, store):
    _, _, invalid = store
    open_page(driver, f"file://{invalid}/report/index.html")
    table = driver.find_element(By.CSS_SELECTOR, "table.keys")
    visible = lambda: [r for r in table.find_elements(By.CSS_SELECTOR, "tbody tr") if r.is_displayed()]  # noqa: E731
    first_page = [r.text for r in visible()]
    assert len(first_page) == 25 and "invalid" in first_page[0]
    pager = driver.find_element(By.CSS_SELECTOR, "table.keys + .pager")
    assert "page 1 of" in pager.text
    pager.find_elements(By.TAG_NAME, "button")[1].click()
    assert "page 2 of" in pager.text
    assert [r.text for r in visible()] != first_page and visible()


def test_the_index_sorts_by_a_column_when_its_header_is_clicked(driver, store):
    root, _, _ = store
    open_page(driver, f"file://{root}/index.html")
    rows = lambda: [r.get_attribute("class") for r in driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr")]  # noqa: E731
    assert rows() == ["run invalid", "run valid"]
    ops_header = [th for th in driver.find_elements(By.CSS_SELECTOR, "#runs th") if th.text.startswith("ops")][0]
    ops_header.click()  # ascending: the 3,000-op valid run first
    assert rows() == ["run valid", "run invalid"]
    ops_header.click()
    assert rows() == ["run invalid", "run valid"]
    assert console_errors(driver) == []


def test_reports_work_when_served_by_splitbrain_serve(driver, store):
    from reports.cli import make_server
    root, _, invalid = store
    srv = make_server(str(root), "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        open_page(driver, f"{base}/")
        driver.find_element(By.CSS_SELECTOR, "#runs tr.invalid a.run-link").click()
        assert driver.find_element(By.ID, "verdict").get_attribute("data-verdict") == "invalid"
        driver.switch_to.frame(driver.find_element(By.ID, "porcupine-frame"))
        assert driver.find_element(By.ID, "porcupine-status").get_attribute("data-loaded") == "1"
        driver.switch_to.default_content()
        assert console_errors(driver) == []
        assert resources_outside(driver, base) == []
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def test_load_time_of_a_100k_operation_report_is_measured(driver, tmp_path):
    """Prints the figure (benchmarks, not tests, judge speed); asserts the page is complete."""
    from reports import render_run
    run = build_run(tmp_path, ops=100_000, seed=7, stale_read_key=True)
    started = time.monotonic()
    path = render_run(run)
    rendered = time.monotonic() - started
    open_page(driver, f"file://{path}")
    ms = load_time_ms(driver)
    print(f"\n100k-op report: rendered in {rendered:.1f} s, loaded in Chromium in {ms:.0f} ms")
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg.timeplot")) == 5  # with the clock-skew plot
    assert driver.find_element(By.ID, "verdict").get_attribute("data-verdict") == "invalid"
    assert console_errors(driver) == []
