"""Requests to the Cloud API, built on one Action (limits per number and per customer)."""

from __future__ import annotations

from typing import Any

from activities.whatsapp import intents
from activities.whatsapp.phone import is_bsuid
from activities.whatsapp.settings import WhatsAppSettings
from activities.whatsapp.spec import SPEC
from core.errors import ConfigurationError, IntegrationError, PermanentError
from core.limiter import Limit
from core.pipeline import Action, Response

THROUGHPUT = SPEC.rate_limits["throughput"]
PAIR = SPEC.rate_limits["pair"]

PHONE_FIELDS = (
    "id,display_phone_number,verified_name,quality_rating,code_verification_status,name_status,"
    "messaging_limit_tier,whatsapp_business_manager_messaging_limit,status,platform_type,throughput"
)
TEMPLATE_FIELDS = "id,name,language,status,category,components,parameter_format"
TEMPLATE_PAGE_SIZE = 100
MAX_TEMPLATE_PAGES = 200  # 20,000 templates; a WABA has at most a few hundred


class WhatsAppClient:
    """Cloud API calls for one connection (phone number id and WABA id from its settings)."""

    def __init__(self, act: Action) -> None:
        self.act = act
        self.phone_number_id = str(act.settings.get("phone_number_id", ""))
        self.waba_id = str(act.settings.get("waba_id", ""))
        self.version = str(act.settings.get("api_version") or act.rt.section(WhatsAppSettings).api_version)

    def url(self, *parts: str) -> str:
        return "/".join([self.act.base_url().rstrip("/"), self.version, *parts])

    def margin(self) -> float | None:
        """A connection's own jitter margin (`limit_margin_seconds`), else the spec's."""
        value = self.act.settings.get("limit_margin_seconds")
        return None if value is None else max(0.0, float(value))

    def throughput_limit(self) -> Limit:
        mps = int(self.act.settings.get("throughput_mps") or THROUGHPUT.limit)
        # Meta's ceiling is MAX_THROUGHPUT_MPS; a higher setting is taken as given (benchmarks lift it).
        return THROUGHPUT.window(self.phone_number_id, limit=max(1, mps), margin=self.margin())

    def pair_limit(self, wa_id: str) -> Limit:
        """`burst` messages per `burst * period`: never more than Meta's pair allowance (GCRA with that
        burst), and exactly one per period when burst is 1."""
        period = self.act.settings.get("pair_period_seconds")
        burst = max(1, int(self.act.settings.get("pair_burst") or PAIR.limit))
        per_message = float(period) if period else PAIR.period / PAIR.limit
        return PAIR.window(f"{self.phone_number_id}:{wa_id}", limit=burst, period=burst * per_message,
                           margin=self.margin())

    async def send(self, payload: dict[str, Any], wa_id: str, *, category: str | None = None,
                   intent_id: str | None = None) -> Response:
        """POST /{phone-number-id}/messages with the per-number and per-pair limits applied.

        `wa_id` is the customer key: a phone number's digits go in `to`, a BSUID (a customer who shares no
        number) in `recipient`, which Meta takes instead. `intent_id` rides along as `biz_opaque_callback_data`,
        so the status webhooks name the send even if its answer is lost.
        """
        if not wa_id:
            raise PermanentError("to: no recipient", code="invalid_recipient")
        if is_bsuid(wa_id):
            if category == "authentication":
                # Meta refuses one-tap/zero-tap/copy-code authentication templates to BSUIDs (131062).
                raise PermanentError("authentication templates can only be sent to a phone number, not to a "
                                     "business-scoped user id", code=131062, provider="whatsapp")
            address = {"recipient": wa_id}
        else:
            address = {"to": wa_id}
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", **address, **payload}
        if intent_id is not None:
            body["biz_opaque_callback_data"] = intents.callback_data(intent_id)
        try:
            return await self.act.call(
                "POST",
                self.url(self.phone_number_id, "messages"),
                json=body,
                limits=[self.throughput_limit(), self.pair_limit(wa_id)],
                category=category,
                reference=lambda b: ((b or {}).get("messages") or [{}])[0].get("id"),
            )
        except IntegrationError as err:
            raise self.own_settings_error(err) from None

    def own_settings_error(self, err: IntegrationError) -> IntegrationError:
        """Graph's 100/33 ("object does not exist") about this connection's own phone number id is the
        connection's misconfiguration, not a bad recipient: an administrator must fix the setting."""
        if err.code == 100 and err.details.get("subcode") == 33 and self.phone_number_id in err.message:
            return ConfigurationError(f"phone_number_id {self.phone_number_id} does not exist or this token may "
                                      f"not use it: check the connection's settings ({err.message})",
                                      code="phone_number_id_invalid", provider="whatsapp",
                                      details={**err.details, "setting": "phone_number_id"})
        return err

    async def mark_read(self, message_id: str, typing_indicator: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
        if typing_indicator:
            body["typing_indicator"] = {"type": "text"}
        # A read receipt is not a message: it takes throughput but no pair-limit slot.
        resp = await self.act.call("POST", self.url(self.phone_number_id, "messages"), json=body,
                                   limits=[self.throughput_limit()])
        return resp.json()

    async def phone_number(self) -> dict[str, Any]:
        resp = await self.act.call("GET", self.url(self.phone_number_id), params={"fields": PHONE_FIELDS})
        return resp.json()

    async def phone_action(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """register / deregister / request_code / verify_code."""
        resp = await self.act.call("POST", self.url(self.phone_number_id, action), json=body)
        return resp.json()

    async def templates(self) -> list[dict[str, Any]]:
        """Every message template of the WABA, following the paging cursors."""
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"fields": TEMPLATE_FIELDS, "limit": TEMPLATE_PAGE_SIZE}
        for _ in range(MAX_TEMPLATE_PAGES):
            body = (await self.act.call("GET", self.url(self.waba_id, "message_templates"), params=params)).json()
            out.extend(body.get("data") or [])
            paging = body.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                break
            params = {**params, "after": after}
        return out
