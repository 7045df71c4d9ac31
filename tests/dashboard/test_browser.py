"""The dashboard page in Debian's headless Chromium, driven by Selenium through Debian's
chromedriver: while an edge receives a study the charts fill with the counts the audit
store holds, an event expands to its CloudEvents JSON, and a dead letter's replay button
makes it go. Screenshots go to the test's tmp folder (``DICOMBUS_DOCS_SCREENSHOT=1`` also
writes docs/dashboard.png)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import Node, dead_letter, stored_sizes
from helpers import import_peer, require_tool
from worker_support import store, wait_for

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
PAGE_TIMEOUT = 30.0

# The totals of an edge's chart: the sum of every series uPlot holds (data[0] is time).
CHART_TOTAL = """
const chart = window.dicombusDashboard.charts[arguments[0]]?.[arguments[1]];
if (!chart) return null;
return chart.data.slice(1).flat().reduce((a, b) => a + b, 0);
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = require_tool("chromium")
    chromedriver = require_tool("chromedriver")
    webdriver = import_peer("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1600",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(chromedriver))
    driver.set_script_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def chart_total(browser: Any, chart: str) -> float | None:
    total = browser.execute_script(CHART_TOTAL, "edge-test", chart)
    return None if total is None else float(total)


def test_the_charts_show_the_study_and_a_dead_letter_is_replayed(
    node: Node, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    uid = "1.2.826.0.1.3680043.10.1.77"
    dead_letter(node.routing_db, uid)
    before = len(stored_sizes(node))
    browser.get(node.dashboard)
    wait_for(
        lambda: browser.execute_script("return window.dicombusDashboard.refreshes"),
        "the page's first refresh",
        PAGE_TIMEOUT,
    )

    # The study arrives while the page is open, in a thread of its own.
    sent: list[str] = []
    sender = threading.Thread(target=lambda: sent.extend(store(node.edge_port, 4, calling="US1")))
    sender.start()
    sender.join(PAGE_TIMEOUT)
    assert len(sent) == 4
    wait_for(lambda: len(stored_sizes(node)) == before + 4, "the audit rows")
    instances, sizes = len(stored_sizes(node)), stored_sizes(node)

    wait_for(
        lambda: chart_total(browser, "instances_per_minute") == instances,
        "the instances chart to show the audit store's count",
        PAGE_TIMEOUT,
    )
    megabytes = chart_total(browser, "megabytes_per_minute")
    assert megabytes is not None and abs(megabytes - sum(sizes) / 1e6) < 1e-9
    associations = wait_for(
        lambda: browser.execute_script(
            "return window.dicombusDashboard.charts['edge-test'].associations_per_minute"
            ".series.slice(1).map(s => s.label)"
        ),
        "the associations chart",
    )
    assert "US1 accepted" in associations
    card = browser.find_element(By.CSS_SELECTOR, '.edge[data-edge="edge-test"]')
    assert "UP" in card.find_element(By.TAG_NAME, "h3").text
    assert card.find_elements(By.CSS_SELECTOR, "canvas")  # uPlot drew
    browser.save_screenshot(str(tmp_path / "dashboard.png"))
    if os.environ.get("DICOMBUS_DOCS_SCREENSHOT"):
        shutil.copyfile(tmp_path / "dashboard.png", DOCS_SCREENSHOT)

    # An event row expands to its CloudEvents JSON.
    first = browser.find_element(By.CSS_SELECTOR, "#events tr.event")
    first.click()
    detail = browser.find_element(By.CSS_SELECTOR, "#events tr.cloudevent:not([hidden]) pre")
    assert '"specversion": "1.0"' in detail.text

    row = f'#dead-letters tr[data-uid="{uid}"]'
    wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, row), "the dead letter's row", PAGE_TIMEOUT
    )
    browser.find_element(By.CSS_SELECTOR, f"{row} button.replay").click()
    wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, row), "the row to go", PAGE_TIMEOUT)
    browser.save_screenshot(str(tmp_path / "replayed.png"))
    assert node.get("api/routing")["dead_letters"] == []
