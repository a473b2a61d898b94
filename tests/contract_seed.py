"""One organization with a connection of every kind, for tests that start every workflow as OpenSyte would."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from activities.slack.seed import create_workspace, direct_connection, ensure_app
from activities.whatsapp.store import WhatsAppStore
from core.runtime import Runtime
from tests import calendar_seed, seed

GREETING = {"name": "greeting", "language": "en_US", "category": "MARKETING",
            "components": [{"type": "BODY", "text": "Hi {{1}}, your code is {{2}}."}]}
ORDER_UPDATE = {"name": "order_update", "language": "en_US", "category": "UTILITY",
                "components": [{"type": "BODY", "text": "Hi {{1}}, your order {{2}} ships on {{3}}."}]}


@dataclass
class ContractOrg:
    """What the seeded organization offers (handed to the TypeScript test as JSON)."""

    organization_id: str
    whatsapp_phone_number_id: str
    whatsapp_customers: list[str]
    slack_team_id: str
    slack_channel: str
    slack_user: str
    google_email: str
    outlook_email: str
    guest_email: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def contract_org(rt: Runtime, sandbox_url: str, gateway_url: str, org: str | None = None, *,
                       google_email: str | None = None, outlook_email: str | None = None,
                       slack_ids: tuple[str, str] | None = None) -> ContractOrg:
    """WhatsApp (templates greeting + order_update, opted-in customers), Slack (a workspace with #general and
    ann; fixed ids when `slack_ids` = (channel, user)), Google Calendar and Outlook connections, all named
    `default`, in one organization."""
    org = org or f"org_{uuid.uuid4().hex[:10]}"
    customers = ["+16505551234", "+16505551235", "+16505551236"]
    wa = await seed.whatsapp_connection(rt, sandbox_url, org=org,
                                        settings={"messaging_limit": "unlimited", "require_opt_in": True})
    async with httpx.AsyncClient() as http:
        for template in (GREETING, ORDER_UPDATE):
            r = await http.post(f"{sandbox_url}/_sandbox/whatsapp/templates", json={"waba_id": wa.waba_id, **template})
            r.raise_for_status()
    WhatsAppStore(rt.store).opt_in(org, wa.phone_number_id, [c.lstrip("+") for c in customers], "contract test")
    await ensure_app(rt, sandbox_url, gateway_url)
    channel_id, user_id = slack_ids or (None, None)
    ws = await create_workspace(sandbox_url, users={"ann": {"email": "ann@example.com", "id": user_id}},
                                channels={"general": {"members": ["ann"], "id": channel_id}})
    await direct_connection(rt, sandbox_url, org, ws)
    google = await calendar_seed.google_connection(rt, sandbox_url, org=org, email=google_email,
                                                   time_zone="Europe/Berlin")
    outlook = await calendar_seed.outlook_connection(rt, sandbox_url, org=org, email=outlook_email,
                                                     time_zone="America/New_York")
    guest = f"{calendar_seed.uid('guest')}@example.com"
    await calendar_seed.google_user(sandbox_url, guest, "Europe/London")
    return ContractOrg(org, wa.phone_number_id, customers, ws.team_id, ws.channels["general"], ws.users["ann"],
                       google.email, outlook.email, guest)
