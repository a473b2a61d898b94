"""The operator dashboard in headless Chromium: log in, read health, acknowledge, test a connection."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests import seed

# Chromium's own background traffic is refused by these machines' closed network: keep it quiet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    return os.environ.get("OSI_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    path = chromium_path()
    if path is None:
        # CI installs Chromium and sets OSI_REQUIRE_BROWSER, so there this test can never be skipped.
        if os.environ.get("OSI_REQUIRE_BROWSER"):
            pytest.fail("OSI_REQUIRE_BROWSER is set but no Chromium was found (apt-get install chromium)")
        pytest.skip("no Chromium on this machine (apt-get install chromium, or set OSI_CHROMIUM)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


async def test_dashboard_shows_health_acknowledges_and_tests(page, runtime, sandbox, gateway) -> None:
    from playwright.async_api import expect

    wa = await seed.whatsapp_connection(runtime, sandbox.url, gateway)
    key = runtime.store.issue_admin_key(wa.organization_id, "dana")
    note = runtime.store.notify_admins(wa.organization_id, "retries_exhausted", "send to +1650 failed 8 times")

    await page.goto(f"{gateway}/dashboard")
    await page.fill("#org", wa.organization_id)
    await page.fill("#key", "osk_wrong")
    await page.click("text=Load")
    await expect(page.locator("#error")).to_contain_text("401")

    await page.fill("#key", key)
    await page.click("text=Load")
    await expect(page.locator("#error")).to_be_empty()
    row = page.locator("#connections tbody tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("WHATSAPP_BUSINESS")
    await expect(row).to_contain_text("default")

    notes = page.locator("#notifications tbody tr")
    await expect(notes).to_contain_text("send to +1650 failed 8 times")
    await notes.locator("text=acknowledge").click()
    await expect(notes).to_have_count(0)
    assert [n.acknowledged for n in runtime.store.notifications(wa.organization_id) if n.id == note.id] == [True]

    # The provider fails the next call: the dashboard's "test" shows it as unhealthy with the failure.
    async with httpx.AsyncClient() as http:
        (await http.put(f"{sandbox.url}/_sandbox/faults/whatsapp", json={"errors_next": 1})).raise_for_status()
    try:
        await row.locator("text=test").click()
        await expect(row.locator("td.unhealthy")).to_have_text("unhealthy")
        failures = page.locator("#failures tbody tr")
        await expect(failures).to_have_count(1)
        await expect(failures).to_contain_text("WHATSAPP_BUSINESS/default")
        await expect(failures).to_contain_text("whatsapp.test_connection")
        await expect(failures).to_contain_text("500")
        await expect(page.locator("#audit tbody")).to_contain_text("admin:key:dana")
    finally:
        async with httpx.AsyncClient() as http:
            await http.delete(f"{sandbox.url}/_sandbox/faults")

    # A second WhatsApp number, added from the page (a duplicate name is refused), then removed.
    await page.fill("#wa-name", "default")
    await page.fill("#wa-phone", "123456789012345")
    await page.fill("#wa-token", "EAAdashboard-token")
    await page.click("#add-whatsapp button")
    await expect(page.locator("#wa-message")).to_contain_text("409")
    await page.fill("#wa-name", "support")
    await page.fill("#wa-token", "EAAdashboard-token")
    await page.click("#add-whatsapp button")
    await expect(page.locator("#wa-message")).to_have_text("added")
    await expect(page.locator("#wa-token")).to_have_value("")
    support = page.locator("#connections tbody tr", has_text="support")
    await expect(support).to_have_count(1)
    page.once("dialog", lambda d: d.accept())
    await support.locator("text=remove").click()
    await expect(support).to_have_count(0)
    assert [c.name for c in runtime.store.list_connections(wa.organization_id)] == ["default"]

    # A passing test turns it healthy again.
    await row.locator("text=test").click()
    await expect(row.locator("td.healthy")).to_have_text("healthy")

    # Alert routes: a refused URL says why; a webhook route shows its signing secret once, then can go.
    await page.fill("#route-target", "http://alerts.example.com/hook")
    await page.click("text=Add route")
    await expect(page.locator("#route-message")).to_contain_text("https")
    await page.fill("#route-target", "https://alerts.example.com/hook")
    await page.select_option("#route-severity", "error")
    await page.click("text=Add route")
    await expect(page.locator("#route-message")).to_contain_text("signing secret (shown once): whsec_")
    routes = page.locator("#routes tbody tr")
    await expect(routes).to_have_count(1)
    await expect(routes).to_contain_text("https://alerts.example.com/hook")
    await expect(routes).to_contain_text("error")
    await routes.locator("text=remove").click()
    await expect(routes).to_have_count(0)
    from store.alerts import AlertStore

    assert list(AlertStore(runtime.store).routes(wa.organization_id)) == []
