"""WhatsApp Temporal activities; each runs through the shared action pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import activity

from activities.errors import IntegrationError
from activities.whatsapp.client import WhatsAppClient
from activities.whatsapp.models import PhoneNumberInput, PhoneNumberStatus, SendResult, SendTextInput
from activities.whatsapp.phone import normalize_e164

if TYPE_CHECKING:
    from activities.pipeline import Action
    from activities.runtime import Runtime


class WhatsAppActivities:
    """Activities bound to the worker's runtime (store, Vault, HTTP, limiter)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def _plugin(self) -> Any:
        from activities.whatsapp.plugin import PLUGIN

        return PLUGIN

    async def _send(self, act: Action, payload: dict[str, Any], to: str, key: str | None,
                    category: str | None = None) -> SendResult:
        wa_id = normalize_e164(to)
        if key:
            done = await self.rt.store.run(self.rt.store.get_idempotent, key)
            if done:
                return SendResult.model_validate(done)
        resp = await WhatsAppClient(act).send(payload, wa_id, category=category)
        body = resp.json()
        msg = (body.get("messages") or [{}])[0]
        contact = (body.get("contacts") or [{}])[0]
        result = SendResult(to=to, status=msg.get("message_status", "accepted"), message_id=msg.get("id"),
                            wa_id=contact.get("wa_id", wa_id))
        if key:
            await self.rt.store.run(self.rt.store.put_idempotent, key, act.organization_id, act.name,
                                    result.model_dump())
        return result

    @activity.defn(name="whatsapp.send_text")
    async def send_text(self, inp: SendTextInput) -> SendResult:
        """Send one free-form text message."""
        async with self.rt.action(self._plugin(), inp.organization_id, inp.connection, "whatsapp.send_text",
                                  target=inp.to) as act:
            payload: dict[str, Any] = {"type": "text", "text": {"body": inp.text, "preview_url": inp.preview_url}}
            if inp.reply_to_message_id:
                payload["context"] = {"message_id": inp.reply_to_message_id}
            return await self._send(act, payload, inp.to, act.idempotency_key(inp.idempotency_key, inp.to),
                                    category="service")

    @activity.defn(name="whatsapp.get_phone_number")
    async def get_phone_number(self, inp: PhoneNumberInput) -> PhoneNumberStatus:
        """Status of the connection's business phone number."""
        async with self.rt.action(self._plugin(), inp.organization_id, inp.connection,
                                  "whatsapp.get_phone_number") as act:
            data = await WhatsAppClient(act).phone_number()
            return PhoneNumberStatus.model_validate({k: v for k, v in data.items()
                                                     if k in PhoneNumberStatus.model_fields})

    def all(self) -> list[Any]:
        return [self.send_text, self.get_phone_number]


async def test_connection(act: Action) -> dict[str, Any]:
    """A real provider call: look up the phone number and report what is missing."""
    data = await WhatsAppClient(act).phone_number()
    problems: list[str] = []
    if data.get("code_verification_status") not in (None, "VERIFIED"):
        problems.append(f"phone number not verified ({data.get('code_verification_status')})")
    if data.get("quality_rating") in ("RED", "YELLOW"):
        problems.append(f"quality rating is {data.get('quality_rating')}")
    if data.get("status") in ("DISCONNECTED", "UNVERIFIED", "PENDING", "FLAGGED", "RESTRICTED"):
        problems.append(f"number status is {data.get('status')}")
    return {"ok": not problems, "problems": problems, "phone_number": data}


__all__ = ["IntegrationError", "WhatsAppActivities", "test_connection"]
