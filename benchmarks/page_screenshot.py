"""Screenshot of the built leaderboard page's privacy–utility plot and attack × defense matrix (the
`div.grid2` block), in Debian's headless Chromium driven by Playwright.

    mibench leaderboard build                       # writes leaderboard/site/index.html
    python benchmarks/page_screenshot.py [--site leaderboard/site] [--out leaderboard/screenshot.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def main() -> None:
    """Write the screenshot and print its path and size."""
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--site", type=Path, default=REPO / "leaderboard" / "site")
    ap.add_argument("--out", type=Path, default=REPO / "leaderboard" / "screenshot.png")
    ap.add_argument("--width", type=int, default=1400)
    a = ap.parse_args()
    index = (a.site / "index.html").resolve()
    if not index.exists():
        raise SystemExit(f"error: {index} does not exist — fix: run `mibench leaderboard build` first")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": a.width, "height": 900})
        page.goto(index.as_uri())
        page.locator("div.grid2").first.screenshot(path=str(a.out))
        browser.close()
    print(f"{a.out}: {a.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
