"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

Playwright cannot download its own browser here, so it is told to use /usr/bin/chromium
(`make system-deps` installs it as root; deploy/scripts/browser-deps.sh). It opens the
overview, a request page and the doubtful-rows page over real HTTP, checks the charts were
drawn with data, that no console error or failed request happened, and saves screenshots
under tests/artifacts/ (or $MI_WORKER_TEST_ARTIFACTS). Skipped with the reason only where
Playwright or Chromium is missing, and never in CI (CI=true fails instead).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator, List

import pytest
from dashboard_seed import seed_all

from conftest import ROOT
from mi_worker.dashboard.server import DashboardServer, open_read_only

CHROMIUM = os.environ.get("MI_WORKER_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("MI_WORKER_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))
IN_CI = os.environ.get("CI") == "true"


def _unavailable() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright not installed (pip install -e '.[test]')"
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium; make system-deps as root)"
    return ""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    reason = _unavailable()
    if reason:
        if IN_CI:
            pytest.fail(reason + " (CI must run the browser test)")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists()
                              else shutil.which("chromium"), headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def test_pages_render_with_charts_and_no_console_errors(browser, db_url, request):
    from mi_worker.db import connect
    db = connect(db_url)
    seeded = seed_all(db)
    db.close()
    ro = open_read_only(db_url)
    server = DashboardServer(ro, None, "127.0.0.1", 0).start()
    dialect = db_url.split(":", 1)[0]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="zh-CN")
    page = context.new_page()
    problems: List[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    # a navigation cancels what the previous page still loads (its icon): ERR_ABORTED is not
    # a failure of the page
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}")
            if "ERR_ABORTED" not in (r.failure or "") else None)
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}")
            if r.status >= 400 else None)
    try:
        page.goto(server.url + "/", wait_until="load")
        assert page.title().startswith("医保接口监控")
        for chart in ("#throughput-hour", "#throughput-day", "#latency-hour", "#latency-day"):
            svg = page.locator(f"{chart} svg.chart")
            assert svg.count() == 1, chart
            assert int(svg.get_attribute("data-points")) > 0, chart
            assert page.locator(f"{chart} svg rect.bar").count() > 0, chart
            box = svg.bounding_box()
            assert box and box["width"] > 200 and box["height"] > 50, (chart, box)
        assert page.locator("#workers .state.UP").count() == 1
        assert page.locator("#workers .state.DOWN").count() == 1
        # the stylesheet (a file inside the wheel) was applied, no CDN involved
        assert page.eval_on_selector("header", "e => getComputedStyle(e).display") == "flex"
        page.screenshot(path=str(ARTIFACTS / f"dashboard-overview-{dialect}.png"), full_page=True)

        page.click("text=English")
        assert page.title().startswith("NHSA gateway monitor")
        page.goto(server.url + "/?lang=zh")

        page.goto(server.url + f"/requests/{seeded.uncertain_id}")
        assert page.locator("#chain tr.child").count() == 1
        assert page.locator("#attempts tr.attempt").count() == 1
        page.screenshot(path=str(ARTIFACTS / f"dashboard-request-{dialect}.png"), full_page=True)

        page.goto(server.url + "/doubtful")
        rows = page.locator("#doubtful tr.row")
        assert rows.count() == 3
        page.screenshot(path=str(ARTIFACTS / f"dashboard-doubtful-{dialect}.png"), full_page=True)
        rows.first.locator("a").first.click()
        page.wait_for_url("**/requests/*")
        assert page.locator("#status").count() == 1

        page.goto(server.url + "/requests?status=ERROR")
        assert page.locator("#requests tr.row").count() == len(seeded.ids["ERROR"])
    finally:
        context.close()
        server.stop()
        ro.close()
    assert not problems, problems
