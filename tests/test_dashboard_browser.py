"""The operators' dashboard in headless Chromium: sign in once, per-organization views, a live Test inline,
Connect/Reconnect, expiry warnings only where nothing refreshes, charts, failures linked into the Temporal Web UI,
the audit trail with paging and filters (reads not logged), test-before-save, settings, alert routes. A
screenshot of each page is written under the test output (OSI_TEST_OUTPUT, default test-output/)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import WorkflowFailureError

from activities.whatsapp.models import SendWhatsAppMessageInput, SendWhatsAppMessageResult
from core.connections import add_connection
from store.models import UsageRecord
from tests import calendar_seed, seed
from vault.credentials import BearerTokenCredentials

# Chromium's own background traffic is refused by these machines' closed network: keep it quiet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(os.environ.get("OSI_TEST_OUTPUT", Path(__file__).resolve().parent.parent / "test-output")) / "dashboard"


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
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            yield await context.new_page()
        finally:
            await browser.close()


async def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def sign_in(page: Any, gateway: str, key: str, organization: str = "") -> None:
    await page.goto(f"{gateway}/dashboard")
    await page.fill("#key", key)
    if organization:
        await page.fill("#organization", organization)
    await page.click("#login button")


async def faults(sandbox: Any, provider: str, **cfg: Any) -> None:
    async with httpx.AsyncClient() as http:
        if cfg:
            (await http.put(f"{sandbox.url}/_sandbox/faults/{provider}", json=cfg)).raise_for_status()
        else:
            await http.delete(f"{sandbox.url}/_sandbox/faults")


async def test_overview_sign_in_once_test_inline_expiry_charts_failures(page, client, worker, runtime, sandbox,
                                                                        gateway, settings, task_queue) -> None:
    from playwright.async_api import expect

    wa = await seed.whatsapp_connection(runtime, sandbox.url, gateway)
    org = wa.organization_id
    # A refreshing OAuth grant (no warning) and a token that expires in three days (a warning).
    await calendar_seed.google_connection(runtime, sandbox.url, org=org, name="team")
    await add_connection(runtime, org, "WHATSAPP_BUSINESS", "expiring", {"phone_number_id": "999000111222333"},
                         BearerTokenCredentials(token=SecretStr("EAAexpiring"),
                                                expires_at=datetime.now(UTC) + timedelta(days=3, hours=1)))
    # Usage, cost (delivered statuses arrive by webhook) and a failed send.
    await client.execute_workflow("SendWhatsAppMessage", SendWhatsAppMessageInput(
        organization_id=org, to="+16505551234", text="hello"), id=f"dash-ok-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue, result_type=SendWhatsAppMessageResult)
    failed_id = f"dash-failed-{uuid.uuid4().hex[:8]}"
    with pytest.raises(WorkflowFailureError):  # nobody reached: the workflow ends Failed
        await client.execute_workflow("SendWhatsAppMessage", SendWhatsAppMessageInput(
            organization_id=org, to="12", text="hello"), id=failed_id, task_queue=task_queue,
            result_type=SendWhatsAppMessageResult)
    # Delivered marketing templates of yesterday and today, priced (what delivery webhooks record).
    for days_ago, cost in ((1, 0.025), (0, 0.05)):
        runtime.store.record_usage(UsageRecord(
            organization_id=org, connection_id=wa.connection_id, provider="whatsapp", action="whatsapp.send_template",
            outcome="ok", category="marketing", cost_amount=cost, currency="USD",
            at=datetime.now(UTC) - timedelta(days=days_ago)))
    key = runtime.store.issue_admin_key(org, "dana")
    note = runtime.store.notify_admins(org, "retries_exhausted", "send to +1650 failed 8 times")

    await page.goto(f"{gateway}/dashboard")
    await shot(page, "01-sign-in")
    await sign_in(page, gateway, "osk_wrong")
    await expect(page.locator("#error")).to_contain_text("not valid")
    await sign_in(page, gateway, key)
    await expect(page).to_have_url(f"{gateway}/dashboard/orgs/{org}")
    # Signed in once: the cookie carries the session (HttpOnly, SameSite=Strict; Secure only off on local http).
    (cookie,) = [c for c in await page.context.cookies() if c["name"] == "osi_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["secure"] is False
    assert key not in cookie["value"]
    await page.goto(f"{gateway}/dashboard")
    await expect(page).to_have_url(f"{gateway}/dashboard/orgs/{org}")

    rows = page.locator("#connections tbody tr")
    await expect(rows).to_have_count(3)
    default = page.locator('tr[data-connection="WHATSAPP_BUSINESS/default"]')
    team = page.locator('tr[data-connection="GOOGLE_CALENDAR/team"]')
    expiring = page.locator('tr[data-connection="WHATSAPP_BUSINESS/expiring"]')
    # Expiry warnings only for what nothing refreshes.
    await expect(team.locator(".credentials")).to_have_text("refreshes itself")
    await expect(team.locator(".expiry")).to_have_count(0)
    await expect(expiring.locator(".expiry")).to_have_text("expires in 4 days")
    await expect(default.locator(".expiry")).to_have_count(0)

    # Charts are pictures: calls by outcome, cost by category and by connection.
    assert await page.locator("#chart-calls rect[data-series='ok']").count() >= 1
    assert await page.locator("#chart-cost rect[data-series]").count() >= 1
    assert await page.locator("#chart-cost-connections rect[data-label='WHATSAPP_BUSINESS/default']").count() == 1

    # Failures link into the Temporal Web UI (our search attributes find them).
    link = page.locator("#failed-workflows a", has_text=failed_id)
    run_id = (await client.get_workflow_handle(failed_id).describe()).run_id
    await expect(link).to_have_attribute(
        "href", f"{settings.temporal_ui_url}/namespaces/default/workflows/{failed_id}/{run_id}/history")
    assert "OsiOrganization" in (await page.locator("#all-failed").get_attribute("href") or "")
    await expect(page.locator("#failures tbody")).to_contain_text(failed_id)
    await shot(page, "02-overview")

    # Reads are not audited: loading pages adds no rows.
    before = len(runtime.store.audit_log(org, limit=10_000))
    for _ in range(3):
        await page.reload()
    assert len(runtime.store.audit_log(org, limit=10_000)) == before

    # A live Test, its result inline in the row; a provider failure shows as failed.
    await default.locator("button.test").click()
    await expect(page.locator("#flash")).to_contain_text("WHATSAPP_BUSINESS/default: test passed")
    await expect(default.locator(".test-result")).to_contain_text("passed")
    await faults(sandbox, "whatsapp", errors_next=1)
    try:
        await default.locator("button.test").click()
        await expect(default.locator(".test-result")).to_contain_text("failed")
        await expect(default.locator(".health")).to_have_text("unhealthy")
    finally:
        await faults(sandbox, "whatsapp")
    # The failed call is in the charts: a temporary failure (HTTP 500) of this connection today.
    assert await page.locator("#chart-calls rect[data-series='TemporaryError']").count() == 1
    assert await page.locator("#chart-errors rect[data-series='WHATSAPP_BUSINESS/default']").count() == 1

    # Acknowledge an alert.
    mine = page.locator("#notifications tbody tr", has_text="send to +1650 failed 8 times")
    await expect(mine).to_have_count(1)
    await mine.locator("button").click()
    await expect(page.locator("#flash")).to_have_text("acknowledged")
    await expect(mine).to_have_count(0)
    assert [n.acknowledged for n in runtime.store.notifications(org) if n.id == note.id] == [True]

    # Reconnect (OAuth): the signed connect link of the provider's install route.
    async with page.expect_request(lambda r: "/oauth/google_calendar/install" in r.url) as req:
        await team.locator("button.reconnect").click()
    assert f"organization_id={org}" in (await req.value).url and "name=team" in (await req.value).url

    # A form without this session's CSRF token is refused.
    refused = await page.request.post(f"{gateway}/dashboard/orgs/{org}/connections/WHATSAPP_BUSINESS/default/test",
                                      form={"csrf": "forged"})
    assert refused.status == 403


async def test_a_connection_is_saved_only_after_its_test_passes(page, runtime, sandbox, gateway) -> None:
    from playwright.async_api import expect

    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    org = wa.organization_id
    await sign_in(page, gateway, runtime.store.issue_admin_key(org, "erin"))
    await expect(page).to_have_url(f"{gateway}/dashboard/orgs/{org}")
    alerts_before = len(runtime.store.notifications(org))

    form = page.locator("#add-whatsapp form")
    await page.locator("#add-whatsapp summary").click()
    await form.locator("input[name=name]").fill("shop")
    await form.locator("input[name='setting.phone_number_id']").fill("abc")
    await form.locator("input[name='secret.token']").fill("x")
    await form.locator("button").click()
    await expect(page.locator("#flash")).to_contain_text("not saved: the connection test failed")
    assert [c.name for c in runtime.store.list_connections(org)] == ["default"]
    assert len(runtime.store.notifications(org)) == alerts_before  # no alert about a discarded connection
    await shot(page, "03-add-refused")

    # Explicitly saved without a passing test.
    await page.locator("#add-whatsapp summary").click()
    await form.locator("input[name=name]").fill("shop")
    await form.locator("input[name='setting.phone_number_id']").fill("abc")
    await form.locator("input[name='secret.token']").fill("x")
    await form.locator("input[name=keep_untested]").check()
    await form.locator("button").click()
    await expect(page.locator("#flash")).to_contain_text("WHATSAPP_BUSINESS/shop: saved without a passing test")

    # A real number and token: tested, then saved.
    pid = str(uuid.uuid4().int)[:15]
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/phone_numbers",
                        json={"phone_number_id": pid, "token": "EAAgood-token", "app_secret": "s" * 16})
    await page.locator("#add-whatsapp summary").click()
    await form.locator("input[name=name]").fill("sales")
    await form.locator("input[name='setting.phone_number_id']").fill(pid)
    await form.locator("input[name='secret.token']").fill("EAAgood-token")
    await form.locator("button").click()
    await expect(page.locator("#flash")).to_contain_text("WHATSAPP_BUSINESS/sales: tested and saved")
    await expect(page.locator('tr[data-connection="WHATSAPP_BUSINESS/sales"] .health')).to_have_text("healthy")
    assert "EAAgood-token" not in await page.content()

    # The connection page: what is wrong and how to fix it; settings changed in place; removal confirmed.
    await page.locator('tr[data-connection="WHATSAPP_BUSINESS/shop"] a').click()
    await expect(page.locator("#diagnosis")).to_contain_text("credentials")
    await expect(page.locator("#fixes")).to_contain_text("app secret")
    await shot(page, "04-connection")
    await page.fill("#settings-form input[name='setting.phone_number_id']", pid)
    await page.fill("#settings-form input[name=new_key]", "throughput_mps")
    await page.fill("#settings-form input[name=new_value]", "40")
    await page.click("#settings-form button")
    await expect(page.locator("#flash")).to_have_text("settings saved")
    shop = runtime.store.find_connection(org, "WHATSAPP_BUSINESS", "shop")
    assert shop.settings["phone_number_id"] == pid and shop.settings["throughput_mps"] == "40"
    await page.click("#remove-form button")
    await expect(page.locator("#flash")).to_contain_text("type the connection's name")
    await page.fill("#remove-form input[name=confirm]", "shop")
    await page.click("#remove-form button")
    await expect(page.locator("#flash")).to_contain_text("WHATSAPP_BUSINESS/shop removed")
    assert sorted(c.name for c in runtime.store.list_connections(org)) == ["default", "sales"]


async def test_audit_paging_filters_alert_routes_and_organizations(page, runtime, sandbox, gateway) -> None:
    from playwright.async_api import expect

    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    other = await seed.whatsapp_connection(runtime, sandbox.url)
    org = wa.organization_id
    for i in range(60):
        runtime.store.audit(org, "operator", "whatsapp.optin.add", "ok", target=f"+1650555{i:04d}")
    runtime.store.audit(org, "operator", "connection.rotate", "ok", target="WHATSAPP_BUSINESS/default")

    # A key for every organization picks one; an organization's key sees only its own.
    await sign_in(page, gateway, runtime.store.issue_admin_key(None, "ops"))
    await expect(page.locator("#orgs")).to_contain_text(org)
    await shot(page, "05-organizations")
    await page.fill("#org-id", org)
    await page.click("form[action='/dashboard/go'] button")
    await expect(page).to_have_url(f"{gateway}/dashboard/orgs/{org}")

    await page.click("nav >> text=Audit trail")
    await expect(page.locator("#audit tbody tr")).to_have_count(50)
    assert "events · page 1 of" in await page.locator("#audit-count").inner_text()
    await page.click("#older")
    await expect(page.locator("#audit-count")).to_contain_text("page 2 of")
    await page.fill("#audit-filter input[name=action]", "connection.rotate")
    await page.click("#audit-filter button")
    await expect(page.locator("#audit tbody tr")).to_have_count(1)
    await expect(page.locator("#audit tbody")).to_contain_text("WHATSAPP_BUSINESS/default")
    await shot(page, "06-audit")

    await page.click("nav >> text=Alerts")
    await page.fill("#route-url", "http://alerts.example.com/hook")
    await page.click("#add-webhook-route button")
    await expect(page.locator("#flash")).to_contain_text("https")
    await page.fill("#route-url", "https://alerts.example.com/hook")
    await page.select_option("#route-severity", "error")
    await page.click("#add-webhook-route button")
    await expect(page.locator("#flash")).to_contain_text("signing secret (shown once): whsec_")
    routes = page.locator("#routes tbody tr")
    await expect(routes).to_contain_text("https://alerts.example.com/hook")
    await shot(page, "07-alerts")
    await routes.locator("button").click()
    await expect(page.locator("#flash")).to_have_text("route removed")

    # Signed out, then an organization's own key: another organization is refused.
    await page.click("header form.who button")
    await expect(page.locator("#login")).to_be_visible()
    await sign_in(page, gateway, runtime.store.issue_admin_key(org, "finn"))
    denied = await page.goto(f"{gateway}/dashboard/orgs/{other.organization_id}")
    assert denied is not None and denied.status == 403
