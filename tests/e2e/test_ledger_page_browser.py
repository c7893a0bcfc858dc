"""The Exchange ledger page as a person uses it, in a real browser: Debian's Chromium, headless, driven by
Playwright (its own browser downloads are never used: ``executable_path`` is Debian's binary).

The sandbox world, an exchange run by Airflow (`airflow dags test`), a real ``airflow api-server``; the person
logs in with the simple auth manager's password file, opens "Exchange ledger" from Airflow's navigation,
searches an invoice number, opens the task log of one of its lines, and downloads the run's workbook.
Screenshots go to ``.test-output/ledger_page_browser/`` (the README's come from there).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.airflow_api import REPO, api_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]
OUTPUT = REPO / ".test-output" / "ledger_page_browser"
FLOW = "billing_invoice_lines_to_erp"


def _chromium() -> str:
    found = os.environ.get("LEDGERLINK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("Debian's chromium is missing in CI: .ci/run installs it (apt-get install chromium)")
    pytest.skip("Debian's chromium is not installed here (apt-get install -y chromium; .ci/run installs it)")


@pytest.fixture(scope="module")
def chromium_path() -> str:
    return _chromium()


def test_a_person_finds_an_invoice_opens_its_log_and_downloads_the_workbook(chromium_path, world, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shutil.rmtree(OUTPUT, ignore_errors=True)
    OUTPUT.mkdir(parents=True)
    logical_date = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    run = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", FLOW, logical_date], env=world["env"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ledger = sa.create_engine(f"sqlite:///{world['home'] / 'ledger.db'}")
    with ledger.connect() as conn:
        line = conn.scalar(sa.text("SELECT source_key FROM snapshots WHERE chunk_id IS NOT NULL ORDER BY source_key"))
        run_id = conn.scalar(sa.text("SELECT run_id FROM runs WHERE flow = :f"), {"f": FLOW})
    invoice = line.rsplit("-", 1)[0]

    with api_server(world["env"], tmp_path / "api-server.log") as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
            page = context.new_page()
            # Not logged in: the page sends the person to Airflow's login, and back after it.
            page.goto(f"{server['url']}/ledgerlink/")
            page.wait_for_selector("input[name=username]", timeout=60_000)
            page.fill("input[name=username]", server["username"])
            page.fill("input[name=password]", server["password"])
            page.screenshot(path=OUTPUT / "01-login.png")
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{server['url']}/ledgerlink/**", timeout=60_000)

            # Inside Airflow's UI: the navigation entry's page, framed.
            page.goto(f"{server['url']}/plugin/exchange-ledger")
            frame = page.frame_locator("iframe").first
            expect(frame.locator("h1")).to_have_text("Exchange ledger", timeout=60_000)
            frame.locator("#q").fill(invoice)
            frame.locator("#search button").click()
            steps = frame.locator("tr.step")
            expect(steps.first).to_be_visible(timeout=30_000)
            expect(frame.locator("tr.step", has_text=line)).to_have_count(1)
            expect(frame.locator("tr.step", has_text=line)).to_contain_text("erp")
            expect(frame.locator("tr.step", has_text=line)).to_contain_text(run_id)
            page.screenshot(path=OUTPUT / "02-search-invoice.png", full_page=True)

            # Its task log: the line went in the run's load task.
            frame.locator("tr.step", has_text=line).locator("a.task-log-link").click()
            page.wait_for_url("**/tasks/load**", timeout=60_000)
            assert f"/dags/{FLOW}/runs/" in page.url
            expect(page.get_by_text("load").first).to_be_visible(timeout=60_000)
            page.wait_for_timeout(2000)  # the log panel fills in
            page.screenshot(path=OUTPUT / "03-task-log.png")

            # The run's workbook, downloaded from the Runs tab.
            page.goto(f"{server['url']}/plugin/exchange-ledger")
            frame = page.frame_locator("iframe").first
            frame.locator("a[data-tab=runs]").click()
            card = frame.locator("div.run", has_text=FLOW).first
            expect(card).to_be_visible(timeout=30_000)
            expect(card.locator("table")).to_contain_text("difference")
            page.screenshot(path=OUTPUT / "04-runs.png", full_page=True)
            with page.expect_download(timeout=60_000) as download_info:
                card.locator("a.workbook-link").click()
            download = download_info.value
            saved = OUTPUT / "workbook.xlsx"
            download.save_as(saved)
            frame.locator("a[data-tab=chart]").click()
            expect(frame.locator("#per-day-chart")).to_be_visible(timeout=30_000)
            page.screenshot(path=OUTPUT / "05-per-day.png")
            # The other tabs render (an error would show as a note instead)
            frame.locator("a[data-tab=map]").click()
            expect(frame.locator("main")).to_contain_text("billing_customers_to_onec", timeout=30_000)
            expect(frame.locator("main")).to_contain_text("master: ERP")
            page.screenshot(path=OUTPUT / "06-map.png", full_page=True)
            frame.locator("a[data-tab=planned]").click()
            expect(frame.locator("main h2")).to_have_text("Waiting to go, or sent without the target's word yet",
                                                          timeout=30_000)
            frame.locator("a[data-tab=held]").click()
            expect(frame.locator("main h2")).to_have_text("Held back, and why", timeout=30_000)
            expect(frame.locator("p.note")).to_have_count(0)
        finally:
            browser.close()

    from openpyxl import load_workbook

    workbook = load_workbook(saved, read_only=True)
    assert workbook.sheetnames, "the download is a workbook"
    expected = Path(world["home"]) / "reports"
    assert any(p.read_bytes() == saved.read_bytes() for p in expected.rglob("reconciliation.xlsx"))
