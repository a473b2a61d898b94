"""Requests to the Cloud API, built on one Action (limits per number and per customer)."""

from __future__ import annotations

from typing import Any

from activities.limiter import Limit
from activities.pipeline import Action, Response
from activities.whatsapp.spec import DEFAULT_THROUGHPUT_MPS, PAIR_LIMIT_PERIOD_SECONDS

PHONE_FIELDS = (
    "id,display_phone_number,verified_name,quality_rating,code_verification_status,name_status,"
    "messaging_limit_tier,status,platform_type,throughput"
)


class WhatsAppClient:
    """Cloud API calls for one connection (phone number id and WABA id from its settings)."""

    def __init__(self, act: Action) -> None:
        self.act = act
        self.phone_number_id = str(act.settings.get("phone_number_id", ""))
        self.waba_id = str(act.settings.get("waba_id", ""))
        self.version = str(act.settings.get("api_version") or act.rt.settings.whatsapp_api_version)

    def url(self, *parts: str) -> str:
        return "/".join([self.act.base_url().rstrip("/"), self.version, *parts])

    def throughput_limit(self) -> Limit:
        mps = int(self.act.settings.get("throughput_mps") or DEFAULT_THROUGHPUT_MPS)
        return Limit("whatsapp.throughput", self.phone_number_id, mps, 1.0)

    def pair_limit(self, wa_id: str) -> Limit:
        return Limit("whatsapp.pair", f"{self.phone_number_id}:{wa_id}", 1, PAIR_LIMIT_PERIOD_SECONDS)

    async def send(self, payload: dict[str, Any], wa_id: str, *, category: str | None = None) -> Response:
        """POST /{phone-number-id}/messages with the per-number and per-pair limits applied."""
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": wa_id, **payload}
        return await self.act.call(
            "POST",
            self.url(self.phone_number_id, "messages"),
            json=body,
            limits=[self.throughput_limit(), self.pair_limit(wa_id)],
            category=category,
            reference=lambda b: ((b or {}).get("messages") or [{}])[0].get("id"),
        )

    async def phone_number(self) -> dict[str, Any]:
        resp = await self.act.call("GET", self.url(self.phone_number_id), params={"fields": PHONE_FIELDS})
        return resp.json()
