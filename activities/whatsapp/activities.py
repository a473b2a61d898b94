"""WhatsApp Temporal activities; each runs through the shared action pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from temporalio import activity

from activities.whatsapp import media, sending, templates
from activities.whatsapp.client import WhatsAppClient
from activities.whatsapp.models import (
    BulkBatchInput,
    BulkBatchResult,
    ContactLookupInput,
    ContactSnapshot,
    DownloadMediaInput,
    DownloadMediaResult,
    MarkReadInput,
    Media,
    MediaInfo,
    MediaRefInput,
    MessageTimeline,
    MessageTimelines,
    MessageTimelinesInput,
    OutboundMessage,
    PhoneActionResult,
    PhoneNumberInput,
    PhoneNumberStatus,
    Reaction,
    RequestCodeInput,
    SendContactsInput,
    SendInteractiveInput,
    SendLocationInput,
    SendMediaInput,
    SendMessageInput,
    SendReactionInput,
    SendResult,
    SendTemplateInput,
    SendTextInput,
    StatusStep,
    TemplateInfo,
    TemplatesInput,
    TemplatesResult,
    UploadMediaInput,
    UploadMediaResult,
    VerifyCodeInput,
)
from activities.whatsapp.provider import PROVIDER
from activities.whatsapp.store import WhatsAppMessageRecord, WhatsAppStore
from core.errors import ConfigurationError, IntegrationError, PermanentError
from vault.client import CredentialsMissing
from vault.credentials import ApiKeyCredentials

if TYPE_CHECKING:
    from core.pipeline import Action
    from core.runtime import Runtime

PIN_PATH_SUFFIX = "registration-pin"


def pin_path(rt: Runtime, organization_id: str, connection: str) -> str:
    """Where the number's two-step verification PIN lives in Vault (never in workflow inputs)."""
    return rt.vault.connection_path(organization_id, "WHATSAPP_BUSINESS", connection) + "/" + PIN_PATH_SUFFIX


class WhatsAppActivities:
    """Activities bound to the worker's runtime (store, Vault, HTTP, limiter)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # ---- messages --------------------------------------------------------------------------
    @activity.defn(name="whatsapp.send_text")
    async def send_text(self, inp: SendTextInput) -> SendResult:
        """Send one free-form text message (preview_url, reply context)."""
        msg = OutboundMessage(type="text", text=inp.text, preview_url=inp.preview_url,
                              reply_to_message_id=inp.reply_to_message_id)
        return await sending.send_one(self.rt, inp.organization_id, inp.connection, inp.to, msg, inp.idempotency_key)

    @activity.defn(name="whatsapp.send_media")
    async def send_media(self, inp: SendMediaInput) -> SendResult:
        """Image, video, audio, document (with filename) or sticker, by link or uploaded media id."""
        msg = OutboundMessage(type=inp.media_type, reply_to_message_id=inp.reply_to_message_id,
                              media=Media(link=inp.link, id=inp.id, caption=inp.caption, filename=inp.filename))
        return await sending.send_one(self.rt, inp.organization_id, inp.connection, inp.to, msg, inp.idempotency_key)

    @activity.defn(name="whatsapp.send_location")
    async def send_location(self, inp: SendLocationInput) -> SendResult:
        msg = OutboundMessage(type="location", location=inp.location, reply_to_message_id=inp.reply_to_message_id)
        return await sending.send_one(self.rt, inp.organization_id, inp.connection, inp.to, msg, inp.idempotency_key)

    @activity.defn(name="whatsapp.send_contacts")
    async def send_contacts(self, inp: SendContactsInput) -> SendResult:
        msg = OutboundMessage(type="contacts", contacts=inp.contacts, reply_to_message_id=inp.reply_to_message_id)
        return await sending.send_one(self.rt, inp.organization_id, inp.connection, inp.to, msg, inp.idempotency_key)

    @activity.defn(name="whatsapp.send_reaction")
    async def send_reaction(self, inp: SendReactionInput) -> SendResult:
        msg = OutboundMessage(type="reaction", reaction=Reaction(message_id=inp.message_id, emoji=inp.emoji))
        return await sending.send_one(self.rt, inp.organization_id, inp.connection, inp.to, msg, inp.idempotency_key)

    @activity.defn(name="whatsapp.send_interactive")
    async def send_interactive(self, inp: SendInteractiveInput) -> SendResult:
        """Reply buttons (1-3) or a list (≤10 sections, ≤10 rows), limits checked first."""
        msg = OutboundMessage(type="interactive", interactive=inp.interactive,
                              reply_to_message_id=inp.reply_to_message_id)
        return await sending.send_one(self.rt, inp.organization_id, inp.connection, inp.to, msg, inp.idempotency_key)

    @activity.defn(name="whatsapp.send_template")
    async def send_template(self, inp: SendTemplateInput) -> SendResult:
        """An approved template with header/body/button parameters (positional or named)."""
        msg = OutboundMessage(type="template", template=inp.template)
        return await sending.send_one(self.rt, inp.organization_id, inp.connection, inp.to, msg, inp.idempotency_key)

    @activity.defn(name="whatsapp.send_message")
    async def send_message(self, inp: SendMessageInput) -> SendResult:
        """Any message type to one recipient (what SendWhatsAppMessage and conversations use)."""
        return await sending.send_one(self.rt, inp.organization_id, inp.connection, inp.to, inp.message,
                                      inp.idempotency_key, conversation_id=inp.conversation_id)

    @activity.defn(name="whatsapp.mark_read")
    async def mark_read(self, inp: MarkReadInput) -> bool:
        """Mark an inbound message as read (optionally with a typing indicator)."""
        return await sending.mark_read(self.rt, inp.organization_id, inp.connection, inp.message_id,
                                       inp.typing_indicator)

    @activity.defn(name="whatsapp.send_template_batch")
    async def send_template_batch(self, inp: BulkBatchInput) -> BulkBatchResult:
        """A batch of a bulk template send: concurrent within the limits, heartbeating progress."""
        return await sending.send_batch(self.rt, inp)

    # ---- templates -------------------------------------------------------------------------
    @activity.defn(name="whatsapp.list_templates")
    async def list_templates(self, inp: TemplatesInput) -> TemplatesResult:
        """Every template of the WABA (paged fetch, cached with a TTL)."""
        async with self.rt.action(PROVIDER, inp.organization_id, inp.connection,
                                  "whatsapp.list_templates") as act:
            found = await templates.all_templates(WhatsAppClient(act), refresh=inp.refresh)
            return TemplatesResult(templates=[TemplateInfo.model_validate(templates.info(t))
                                              for t in found.values()])

    # ---- phone number ----------------------------------------------------------------------
    @activity.defn(name="whatsapp.get_phone_number")
    async def get_phone_number(self, inp: PhoneNumberInput) -> PhoneNumberStatus:
        """Status of the connection's business phone number."""
        async with self.rt.action(PROVIDER, inp.organization_id, inp.connection,
                                  "whatsapp.get_phone_number") as act:
            data = await WhatsAppClient(act).phone_number()
            return PhoneNumberStatus.model_validate({k: v for k, v in data.items()
                                                     if k in PhoneNumberStatus.model_fields})

    @activity.defn(name="whatsapp.request_code")
    async def request_code(self, inp: RequestCodeInput) -> PhoneActionResult:
        """Ask Meta to send a verification code to the number by SMS or voice."""
        async with self.rt.action(PROVIDER, inp.organization_id, inp.connection, "whatsapp.request_code") as act:
            body = await WhatsAppClient(act).phone_action(
                "request_code", {"code_method": inp.code_method, "language": inp.language})
            return PhoneActionResult(success=bool(body.get("success")), action="request_code")

    @activity.defn(name="whatsapp.verify_code")
    async def verify_code(self, inp: VerifyCodeInput) -> PhoneActionResult:
        async with self.rt.action(PROVIDER, inp.organization_id, inp.connection, "whatsapp.verify_code") as act:
            code = inp.code.strip()
            if not code.isdigit() or len(code) != 6:
                raise PermanentError("code: the verification code has exactly 6 digits", code="invalid_code")
            body = await WhatsAppClient(act).phone_action("verify_code", {"code": code})
            return PhoneActionResult(success=bool(body.get("success")), action="verify_code")

    @activity.defn(name="whatsapp.register")
    async def register(self, inp: PhoneNumberInput) -> PhoneActionResult:
        """Register the number for Cloud API with its 6-digit PIN, read from Vault."""
        return await register(self.rt, inp.organization_id, inp.connection)

    @activity.defn(name="whatsapp.deregister")
    async def deregister(self, inp: PhoneNumberInput) -> PhoneActionResult:
        async with self.rt.action(PROVIDER, inp.organization_id, inp.connection, "whatsapp.deregister") as act:
            body = await WhatsAppClient(act).phone_action("deregister", {})
            return PhoneActionResult(success=bool(body.get("success")), action="deregister")

    # ---- media -------------------------------------------------------------------------------
    @activity.defn(name="whatsapp.upload_media")
    async def upload_media(self, inp: UploadMediaInput) -> UploadMediaResult:
        """Fetch `source_url` (public hosts only), check Meta's type and size limits, upload; the id can be
        sent with send_media for 30 days."""
        return await media.upload(self.rt, inp)

    @activity.defn(name="whatsapp.media_info")
    async def media_info(self, inp: MediaRefInput) -> MediaInfo:
        """URL (short-lived, needs the token), type, size and hash of uploaded or received media."""
        return await media.info(self.rt, inp)

    @activity.defn(name="whatsapp.delete_media")
    async def delete_media(self, inp: MediaRefInput) -> bool:
        return await media.delete(self.rt, inp)

    @activity.defn(name="whatsapp.download_media")
    async def download_media(self, inp: DownloadMediaInput) -> DownloadMediaResult:
        """Media a customer sent (its id is in the inbound message's content): Meta's URL lookup, then the
        download with the connection's token; returned inline (small files) or PUT to `upload_url`."""
        return await media.download(self.rt, inp)

    # ---- store lookups for conversations ---------------------------------------------------
    @activity.defn(name="whatsapp.contact_snapshot")
    async def contact_snapshot(self, inp: ContactLookupInput) -> ContactSnapshot:
        """What the store knows of a customer when a conversation (re)starts."""
        c = await self.rt.store.run(WhatsAppStore(self.rt.store).contact, inp.organization_id,
                                    inp.phone_number_id, inp.wa_id)
        if c is None:
            return ContactSnapshot()
        last = c.last_inbound_at
        return ContactSnapshot(opted_in=c.opted_in, opted_out=c.opted_out, profile_name=c.profile_name,
                               last_inbound_at=int(last.timestamp()) if last else None)

    @activity.defn(name="whatsapp.message_timelines")
    async def message_timelines(self, inp: MessageTimelinesInput) -> MessageTimelines:
        """The store's delivery record (status timeline, error, pricing, cost) of a customer's latest messages:
        the store owns these facts, conversations ask for them here."""
        rows = await self.rt.store.run(WhatsAppStore(self.rt.store).timelines, inp.organization_id,
                                       inp.phone_number_id, inp.customer, inp.message_ids, inp.limit)
        return MessageTimelines(messages=[timeline_of(r) for r in rows])

    def all(self) -> list[Any]:
        return [self.send_text, self.send_media, self.send_location, self.send_contacts, self.send_reaction,
                self.send_interactive, self.send_template, self.send_message, self.mark_read,
                self.send_template_batch, self.list_templates, self.get_phone_number, self.request_code,
                self.verify_code, self.register, self.deregister, self.contact_snapshot, self.upload_media,
                self.media_info, self.delete_media, self.download_media, self.message_timelines]


def timeline_of(r: WhatsAppMessageRecord) -> MessageTimeline:
    steps = [StatusStep(status=str(t.get("status")), at=int(t.get("at") or 0),
                        error=t.get("error") if isinstance(t.get("error"), dict) else None) for t in r.timeline]
    error = {"code": r.error_code, "title": r.error_title} if r.error_code else None
    return MessageTimeline(
        message_id=r.message_id, direction="in" if r.direction == "in" else "out", type=r.type,
        template=r.template_name, category=r.category, status=r.status, timeline=steps, error=error,
        pricing_category=r.pricing_category, billable=r.billable, cost=r.cost_amount if r.cost_recorded else None,
        currency=r.currency if r.cost_recorded else None, at=int(r.created_at.timestamp()))


async def store_pin(rt: Runtime, organization_id: str, connection: str, pin: str) -> None:
    """Keep the two-step verification PIN in Vault (the CLI prompts for it, hidden)."""
    if not pin.isdigit() or len(pin) != 6:
        raise PermanentError("pin: the two-step verification PIN has exactly 6 digits", code="invalid_pin")
    await rt.vault.write(pin_path(rt, organization_id, connection), ApiKeyCredentials(api_key=SecretStr(pin)))


async def register(rt: Runtime, organization_id: str, connection: str) -> PhoneActionResult:
    async with rt.action(PROVIDER, organization_id, connection, "whatsapp.register") as act:
        try:
            creds = await rt.vault.read(pin_path(rt, organization_id, connection), use_cache=False)
        except CredentialsMissing:
            raise ConfigurationError("no registration PIN stored: run `osi whatsapp phone register` to set it",
                                     code="pin_missing", provider="whatsapp") from None
        if not isinstance(creds, ApiKeyCredentials):
            raise ConfigurationError("the stored registration PIN has the wrong shape", code="pin_missing")
        body = await WhatsAppClient(act).phone_action(
            "register", {"messaging_product": "whatsapp", "pin": creds.api_key.get_secret_value()})
        return PhoneActionResult(success=bool(body.get("success")), action="register")


async def test_connection(act: Action) -> dict[str, Any]:
    """A real provider call: look up the phone number and report what is missing."""
    data = await WhatsAppClient(act).phone_number()
    problems: list[str] = []
    if data.get("code_verification_status") not in (None, "VERIFIED"):
        problems.append(f"phone number not verified ({data.get('code_verification_status')}): "
                        "osi whatsapp phone request-code / verify-code")
    if data.get("quality_rating") in ("RED", "YELLOW"):
        problems.append(f"quality rating is {data.get('quality_rating')}")
    if data.get("status") in ("DISCONNECTED", "UNVERIFIED", "PENDING", "FLAGGED", "RESTRICTED"):
        problems.append(f"number status is {data.get('status')}")
    if data.get("name_status") in ("DECLINED", "EXPIRED"):
        problems.append(f"display name is {data.get('name_status')}")
    # A send refused with 133010 marks the connection unhealthy with that code until a call succeeds.
    if str((act.connection.health_detail or {}).get("code")) == "133010":
        problems.append("number not registered for Cloud API (133010 on the last send): osi whatsapp phone register")
    return {"ok": not problems, "problems": problems, "phone_number": data}


__all__ = ["IntegrationError", "WhatsAppActivities", "register", "store_pin", "test_connection"]
