"""The leaderboard page in headless Chromium (Debian's package driven by Playwright): sorting,
filtering, entry details, the plot, and escaping of hostile strings."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mibench.leaderboard.build import build

from entry_factory import make_entry, write_entries

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.browser


def _browser_or_skip():
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        if os.environ.get("MIBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is required (CI installs Debian's chromium package)")
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    return sync_playwright


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("lb")
    entries = [
        make_entry("a", target="synthfaces32-resnet", defense="none", attack="ppa", acc1=0.62, natural=0.93),
        make_entry("b", target="synthfaces32-resnet-nls", defense="nls", attack="ppa", acc1=0.18, natural=0.91),
        make_entry("c", target="synthfaces32-resnet", defense="none", attack="ifgmi", acc1=0.75, natural=0.93),
        make_entry("d", target='<script>window.__pwned = 1</script><img src=x onerror="window.__pwned=2">',
                   defense="ls", attack="lokt", acc1=0.40, natural=0.92),
    ]
    write_entries(root / "entries", entries)
    res = build(root)
    return res["page"].resolve().as_uri(), root


@pytest.fixture(scope="module")
def page(page_url):
    sync_playwright = _browser_or_skip()
    url, _ = page_url
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page()
        dialogs = []
        pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        pg.goto(url)
        pg.dialogs = dialogs
        yield pg
        browser.close()


def _visible_column(page, cls):
    return page.eval_on_selector_all(f"#entries tr.entry:not([hidden]) td.{cls}", "els => els.map(e => e.textContent)")


def test_sort_by_attack_accuracy(page):
    page.click("th[data-key=acc1] button")
    assert _visible_column(page, "acc1") == ["75.0", "62.0", "40.0", "18.0"]
    page.click("th[data-key=acc1] button")
    assert _visible_column(page, "acc1") == ["18.0", "40.0", "62.0", "75.0"]


def test_filter_by_defense(page):
    page.select_option("#f-defense", "nls")
    assert _visible_column(page, "target") == ["synthfaces32-resnet-nls"]
    assert page.text_content("#count") == "1 entry"
    page.select_option("#f-defense", "")
    assert len(_visible_column(page, "target")) == 4


def test_open_entry_details_shows_grid_and_config(page):
    row = page.locator("#entries tr.entry[data-id=a]")
    details = page.locator("#" + row.get_attribute("aria-controls"))
    assert details.is_hidden()
    row.click()
    assert details.is_visible()
    assert details.locator("img").get_attribute("src") == "assets/a.png"
    assert page.evaluate("() => document.querySelector('#entries tr.entry[data-id=a] + tr img').naturalWidth") > 0
    assert '"steps": 40' in details.locator("pre").text_content()


def test_plot_renders_one_point_per_entry(page):
    assert page.locator("#plot circle.point").count() == 4
    box = page.locator("#plot").bounding_box()
    assert box["width"] > 100 and box["height"] > 100


def test_hostile_target_name_renders_as_text(page):
    assert page.evaluate("() => window.__pwned") is None
    assert not page.dialogs
    cell = page.locator("#entries tr.entry[data-id=d] td.target")
    assert cell.text_content().startswith("<script>window.__pwned = 1</script>")


def test_screenshot(page, page_url, tmp_path):
    out = Path(os.environ.get("MIBENCH_SCREENSHOT", tmp_path / "leaderboard.png"))
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 10_000
