"""WhatsApp Cloud API fake: every message type with Meta's validation errors, templates with statuses and
parameter checks, registration and verification, the 24 h window, pair/throughput/messaging limits,
opt-outs, signed status webhooks, and inbound customer messages on demand (signed like Meta's)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
import phonenumbers
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from sandbox.graph_errors import graph_error, param_invalid, param_missing
from sandbox.limits import SlidingWindow
from sandbox.state import SandboxState
from sandbox.whatsapp_media import MediaEndpoints

VERSION_RE = re.compile(r"^v[0-9]+\.[0-9]+$")
PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
WINDOW_SECONDS = 24 * 3600
TIER_LIMITS: dict[str, int | None] = {
    "TIER_50": 50, "TIER_250": 250, "TIER_1K": 1000, "TIER_2K": 2000, "TIER_10K": 10_000,
    "TIER_100K": 100_000, "TIER_UNLIMITED": None,
}
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
CALLBACK_DATA_MAX = 512  # biz_opaque_callback_data: "an arbitrary string ... maximum 512 characters"
GRAPH_DOCS = "https://developers.facebook.com/docs/graph-api"


def tier_limit(tier: str) -> int | None:
    """TIER_250 → 250, TIER_10K → 10000, TIER_UNLIMITED → None; any TIER_<n> works for tests."""
    if tier in TIER_LIMITS:
        return TIER_LIMITS[tier]
    m = re.fullmatch(r"TIER_(\d+)(K?)", tier)
    return int(m.group(1)) * (1000 if m.group(2) else 1) if m else 250


def async_error(code: int, title: str, details: str) -> dict[str, Any]:
    """An error object as it appears in a failed status webhook."""
    return {"code": code, "title": title, "message": title, "error_data": {"details": details},
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}


def new_wamid() -> str:
    return "wamid." + base64.b64encode(b"HBgL" + os.urandom(24)).decode()


# Meta's business-scoped user id: country code, period, up to 128 alphanumerics (parent: "CC.ENT.…").
BSUID_RE = re.compile(r"^[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}$")


def bsuid_for(portfolio: str, wa_id: str) -> str:
    """The BSUID Meta gives a user within one business portfolio: stable, and different per portfolio."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse("+" + wa_id)) or "US"
    except phonenumbers.NumberParseException:
        region = "US"
    digits = str(int.from_bytes(hashlib.sha256(f"{portfolio}:{wa_id}".encode()).digest()[:8], "big"))
    return f"{region}.{digits}"


class PhoneNumberConfig(BaseModel):
    """A business phone number the fake knows, with its token and webhook settings."""

    phone_number_id: str
    token: str
    app_secret: str
    waba_id: str = "100000000000001"
    display_phone_number: str = "+1 555-010-0001"
    verified_name: str = "OpenSyte Sandbox"
    quality_rating: str = "GREEN"
    code_verification_status: str = "VERIFIED"
    name_status: str = "APPROVED"
    status: str = "CONNECTED"
    messaging_limit_tier: str = "TIER_250"
    messaging_limit_window_seconds: float = 86400.0
    registered: bool = True
    two_step_pin: str | None = None
    throughput_mps: int = 80
    pair_period_seconds: float = 6.0
    pair_burst: int = 45
    enforce_window: bool = True
    webhook_url: str | None = None
    status_delay_ms: float = 20.0
    deliver: bool = True
    read: bool = True


class TemplateConfig(BaseModel):
    """A message template of a WABA as Meta lists it."""

    waba_id: str
    name: str
    language: str = "en_US"
    status: str = "APPROVED"
    category: str = "UTILITY"
    parameter_format: str = "POSITIONAL"
    components: list[dict[str, Any]] = Field(default_factory=list)
    id: str = Field(default_factory=lambda: str(secrets.randbelow(10**15) + 10**15))


class InboundRequest(BaseModel):
    """Tell the fake a customer wrote: it delivers Meta's signed webhook to the number's URL.

    Like Meta since its BSUID rollout, every delivery carries the user's business-scoped id (`user_id`,
    `from_user_id`); `share_phone: false` (or no `from`) delivers it the way Meta does for a user with a
    username who shares no phone number: no `from`, no `wa_id`. `message` delivers any message object as given
    (every type Meta documents: video, audio, document, sticker, location, contacts, order, system, referral…).
    """

    phone_number_id: str
    from_: str | None = Field(default=None, alias="from")
    user_id: str | None = Field(default=None, description="the BSUID (default: derived from the phone number)")
    username: str | None = None
    share_phone: bool = True
    message: dict[str, Any] | None = None
    type: str = "text"
    text: str | None = None
    profile_name: str = "Sandbox Customer"
    context_message_id: str | None = None
    button_payload: str | None = None
    reply_id: str | None = None
    reply_title: str | None = None
    reaction_message_id: str | None = None
    emoji: str | None = None
    timestamp: int | None = Field(default=None, description="epoch seconds; default now (older = closed window)")
    redeliver: int = Field(default=0, description="deliver the same webhook this many extra times")
    message_id: str | None = None


@dataclass
class WhatsAppFakeState:
    numbers: dict[str, PhoneNumberConfig] = field(default_factory=dict)
    templates: dict[str, list[TemplateConfig]] = field(default_factory=lambda: defaultdict(list))
    expired_tokens: set[str] = field(default_factory=set)
    undeliverable: set[str] = field(default_factory=set)
    experiment: set[str] = field(default_factory=set)
    # wa_id → the send status Meta answers for marketing templates to them (held_for_quality_assessment, paused)
    quality_hold: dict[str, str] = field(default_factory=dict)
    marketing_opt_out: set[str] = field(default_factory=set)
    sent_log: dict[str, SlidingWindow] = field(default_factory=lambda: defaultdict(SlidingWindow))
    pair_tat: dict[str, float] = field(default_factory=dict)
    windows: dict[str, float] = field(default_factory=dict)  # "pid:wa_id" → last inbound (epoch s)
    initiations: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    codes: dict[str, str] = field(default_factory=dict)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    inbound: dict[str, dict[str, Any]] = field(default_factory=dict)
    bsuid_phones: dict[str, str] = field(default_factory=dict)  # BSUID → wa_id, once the user shared it
    webhook_deliveries: list[dict[str, Any]] = field(default_factory=list)
    throughput_errors: int = 0
    # Per number, for benchmarks: messages admitted, 130429s, first and last admitted arrival (sandbox clock).
    per_number: dict[str, dict[str, Any]] = field(default_factory=dict)
    pair_errors: int = 0
    window_failures: int = 0
    tier_failures: int = 0


class WhatsAppFake:
    """Routes mounted under /whatsapp (Graph) and /_sandbox/whatsapp (control)."""

    def __init__(self, sandbox: SandboxState) -> None:
        self.sandbox = sandbox
        self.state = WhatsAppFakeState()
        self._http: httpx.AsyncClient | None = None
        self.media = MediaEndpoints(self)

    # ---- helpers ---------------------------------------------------------------------------
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10)
        return self._http

    def _token(self, request: Request) -> JSONResponse | str:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            return graph_error(401, 104, "An access token is required to request this resource.")
        token = auth[7:].strip()
        if token in self.state.expired_tokens:
            return graph_error(401, 190, "Error validating access token: Session has expired", subcode=463)
        if not any(n.token == token for n in self.state.numbers.values()):
            return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        return token

    def _missing_object(self, oid: str, method: str = "POST") -> JSONResponse:
        """Graph's answer for an id it cannot find (a wrong phone number id, say): HTTP 400, code 100,
        subcode 33, GraphMethodException, Meta's exact sentence, and the WWW-Authenticate echo of it."""
        message = (f"Unsupported {method.lower()} request. Object with ID '{oid}' does not exist, cannot be "
                   "loaded due to missing permissions, or does not support this operation. Please read the "
                   f"Graph API documentation at {GRAPH_DOCS}")
        # Header values are latin-1 and the id is whatever the client put in the path: keep it ASCII.
        quoted = message.replace('"', '\\"').encode("ascii", "backslashreplace").decode()
        return graph_error(400, 100, message, etype="GraphMethodException", subcode=33,
                           headers={"WWW-Authenticate": f'OAuth "Facebook Platform" "invalid_request" "{quoted}"'})

    def authorize(self, request: Request, pid: str) -> JSONResponse | PhoneNumberConfig:
        token = self._token(request)
        if isinstance(token, JSONResponse):
            return token
        num = self.state.numbers.get(pid)
        if num is None:
            return self._missing_object(pid, request.method)
        if num.token != token:
            return graph_error(403, 200, "(#200) Permission denied", subcode=1349174)
        return num

    def authorize_waba(self, request: Request, waba_id: str) -> JSONResponse | str:
        token = self._token(request)
        if isinstance(token, JSONResponse):
            return token
        owned = [n for n in self.state.numbers.values() if n.waba_id == waba_id]
        if not owned:
            return self._missing_object(waba_id, request.method)
        if not any(n.token == token for n in owned):
            return graph_error(403, 200, "(#200) Permission denied", subcode=1349174)
        return waba_id

    async def fault(self, kind: str | None) -> JSONResponse | None:
        cfg = self.sandbox.faults.get("whatsapp")
        headers = {"Retry-After": str(cfg.retry_after)} if cfg and cfg.retry_after is not None else None
        if kind == "outage":
            return graph_error(503, 2, "Service temporarily unavailable", transient=True, headers=headers)
        if kind == "5xx":
            status = cfg.error_status if cfg else 500
            return graph_error(status, 2, "An unexpected error has occurred. Please retry your request later.",
                               transient=True, headers=headers)
        if kind == "429":
            return graph_error(429, 4, "(#4) Application request limit reached", subcode=2446079,
                               transient=True, headers=headers)
        return None

    def throughput_exceeded(self, num: PhoneNumberConfig) -> bool:
        """Sliding one-second window per number (`throughput_mps`: 80 by default, 500 or 1000 once Meta
        upgraded the number). Counted at the request's arrival at Meta (`SandboxState.arrival()`, after
        any inbound network delay), not when it was parsed; only admitted messages occupy the window."""
        at = self.sandbox.arrival()
        seen = self.state.per_number.setdefault(num.phone_number_id, {"admitted": 0, "rejected_130429": 0,
                                                                      "first": at, "last": at})
        if not self.state.sent_log[num.phone_number_id].admit(at, num.throughput_mps, 1.0):
            seen["rejected_130429"] += 1
            return True
        seen["admitted"] += 1
        seen["first"], seen["last"] = min(seen["first"], at), max(seen["last"], at)
        return False

    def pair_exceeded(self, num: PhoneNumberConfig, to: str) -> bool:
        """GCRA: one message per period, a burst of `pair_burst` borrowed ahead, then blocked until repaid.
        Counted at arrival, like the throughput limit."""
        key = f"{num.phone_number_id}:{to}"
        now = self.sandbox.arrival()
        tat = max(self.state.pair_tat.get(key, now), now)
        if tat - now > (num.pair_burst - 1) * num.pair_period_seconds + 1e-6:
            return True
        self.state.pair_tat[key] = tat + num.pair_period_seconds
        return False

    def window_open(self, num: PhoneNumberConfig, to: str) -> bool:
        last = self.state.windows.get(f"{num.phone_number_id}:{self.customer_key(to)}")
        return last is not None and time.time() < last + WINDOW_SECONDS

    # ---- webhooks -------------------------------------------------------------------------
    def envelope(self, num: PhoneNumberConfig, value: dict[str, Any]) -> dict[str, Any]:
        return {
            "object": "whatsapp_business_account",
            "entry": [{
                "id": num.waba_id,
                "changes": [{
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": re.sub(r"\D", "", num.display_phone_number),
                                     "phone_number_id": num.phone_number_id},
                        **value,
                    },
                    "field": "messages",
                }],
            }],
        }

    async def post_signed(self, url: str, raw: bytes, signature: str) -> int:
        try:
            resp = await self.http().post(url, content=raw, headers={
                "Content-Type": "application/json", "X-Hub-Signature-256": signature})
            return resp.status_code
        except httpx.HTTPError:
            return 0

    async def deliver_webhook(self, num: PhoneNumberConfig, doc: dict[str, Any]) -> int | None:
        """POST a signed delivery to the number's webhook URL, like Meta does."""
        if not num.webhook_url:
            return None
        raw = json.dumps(doc, separators=(",", ":")).encode()
        sig = "sha256=" + hmac.new(num.app_secret.encode(), raw, hashlib.sha256).hexdigest()
        status = await self.post_signed(num.webhook_url, raw, sig)
        self.state.webhook_deliveries.append({"url": num.webhook_url, "status": status, "body": doc,
                                              "raw": raw.decode(), "signature": sig})
        return status

    def status_value(self, num: PhoneNumberConfig, msg: dict[str, Any], status: str,
                     errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        st: dict[str, Any] = {"id": msg["id"], "status": status, "timestamp": str(int(time.time()))}
        if msg.get("recipient_user_id"):
            # Sent to a BSUID: the phone number appears only if the user shares it.
            phone = self.state.bsuid_phones.get(msg["recipient_user_id"])
            if phone and msg.get("phone_shared", True):
                st["recipient_id"] = phone
            st["recipient_user_id"] = msg["recipient_user_id"]
        else:
            st["recipient_id"] = msg["to"]
        if msg.get("biz_opaque_callback_data") is not None:
            # Meta echoes the send's opaque string in every status of that message, failures included.
            st["biz_opaque_callback_data"] = msg["biz_opaque_callback_data"]
        if status in ("sent", "delivered", "read") and not errors:
            st["pricing"] = {"billable": msg.get("billable", True), "pricing_model": "PMP",
                             "type": msg.get("pricing_type", "regular"), "category": msg.get("category", "service")}
        if errors:
            st["errors"] = errors
        return {"statuses": [st]}

    async def status_sequence(self, num: PhoneNumberConfig, msg: dict[str, Any],
                              failure: dict[str, Any] | None = None) -> None:
        await asyncio.sleep(num.status_delay_ms / 1000)
        if failure is not None:
            msg["status"] = "failed"
            await self.deliver_webhook(num, self.envelope(num, self.status_value(num, msg, "failed", [failure])))
            return
        steps = ["sent"] + (["delivered"] if num.deliver else []) + (["read"] if num.deliver and num.read else [])
        for step in steps:
            msg["status"] = step
            await self.deliver_webhook(num, self.envelope(num, self.status_value(num, msg, step)))
            await asyncio.sleep(num.status_delay_ms / 1000)

    def inbound_message(self, num: PhoneNumberConfig, req: InboundRequest) -> dict[str, Any]:
        """A customer's message in Meta's webhook shape (text, button, interactive, reaction, image, or any
        `message` object), with the sender's BSUID and, when shared, phone number."""
        wa_id = re.sub(r"\D", "", req.from_ or "") or None
        user_id = req.user_id or (bsuid_for(num.waba_id, wa_id) if wa_id else None)
        if not user_id:
            raise ValueError("from or user_id is required")
        if wa_id:
            self.state.bsuid_phones[user_id] = wa_id
        shared = wa_id if req.share_phone else None
        msg: dict[str, Any] = {"id": req.message_id or new_wamid(),
                               "timestamp": str(req.timestamp or int(time.time())), "type": req.type}
        if shared:
            msg["from"] = shared
        msg["from_user_id"] = user_id
        if req.context_message_id:
            msg["context"] = {"from": re.sub(r"\D", "", num.display_phone_number), "id": req.context_message_id}
        if req.message is not None:
            msg.update({k: v for k, v in req.message.items() if k not in ("id", "from", "from_user_id", "timestamp")})
        elif req.type == "text":
            msg["text"] = {"body": req.text or ""}
        elif req.type == "button":
            msg["button"] = {"payload": req.button_payload or req.text or "", "text": req.text or ""}
        elif req.type == "interactive":
            kind = "list_reply" if req.reply_id and req.reply_id.startswith("row") else "button_reply"
            msg["interactive"] = {"type": kind, kind: {"id": req.reply_id or "", "title": req.reply_title or ""}}
        elif req.type == "reaction":
            msg["reaction"] = {"message_id": req.reaction_message_id or "", "emoji": req.emoji or ""}
        elif req.type == "image":
            # The customer's photo is kept like uploaded media: GET /{media-id} and the download work.
            item = self.media.received(num.phone_number_id, "image/jpeg", b"\xff\xd8\xff\xe0" + os.urandom(64))
            msg["image"] = {"caption": req.text, "mime_type": item.mime_type,
                            "sha256": base64.b64encode(bytes.fromhex(item.sha256)).decode(), "id": item.media_id}
        else:
            msg["errors"] = [async_error(131051, "Message type unknown", "Message type is not currently supported")]
            msg["type"] = "unsupported"
        profile: dict[str, Any] = {"name": req.profile_name}
        if req.username:
            profile["username"] = req.username
        contact: dict[str, Any] = {"profile": profile}
        if shared:
            contact["wa_id"] = shared
        contact["user_id"] = user_id
        if msg["type"] == "system":  # system messages carry no contacts array
            return {"messages": [msg]}
        return {"contacts": [contact], "messages": [msg]}

    def customer_key(self, who: str) -> str:
        """Windows and limits are per user: a BSUID whose phone number we know counts as that number."""
        return self.state.bsuid_phones.get(who, who)

    # ---- message validation (Meta's limits and errors) --------------------------------------
    def validate_message(self, body: dict[str, Any]) -> JSONResponse | None:
        if body.get("messaging_product") != "whatsapp":
            return graph_error(400, 100, "(#100) The parameter messaging_product is required.",
                               details="messaging_product must be 'whatsapp'")
        if (bad := self._v_callback_data(body)) is not None:
            return bad
        mtype = body.get("type", "text")
        check = {"text": self._v_text, "location": self._v_location, "contacts": self._v_contacts,
                 "reaction": self._v_reaction, "interactive": self._v_interactive,
                 "template": self._v_template_shape}.get(mtype)
        if mtype in MEDIA_KINDS:
            return self._v_media(mtype, body.get(mtype))
        if check is None:
            return graph_error(400, 131051, "Unsupported message type", details=f"type {mtype!r} is not supported")
        return check(body.get(mtype))

    def _v_callback_data(self, body: dict[str, Any]) -> JSONResponse | None:
        """Optional opaque string, at most 512 characters; Meta does not interpret it. The wording is
        Graph's usual one for a parameter too long (Meta documents the limit, not the error text)."""
        if "biz_opaque_callback_data" not in body:
            return None
        data = body["biz_opaque_callback_data"]
        if not isinstance(data, str):
            return graph_error(400, 100, "(#100) Param biz_opaque_callback_data must be a string.",
                               details="biz_opaque_callback_data must be a string")
        if len(data) > CALLBACK_DATA_MAX:
            return graph_error(400, 100, f"(#100) Param biz_opaque_callback_data must be at most "
                                         f"{CALLBACK_DATA_MAX} characters long.",
                               details=f"biz_opaque_callback_data is {len(data)} characters long; "
                                       f"the maximum is {CALLBACK_DATA_MAX}")
        return None

    def _v_text(self, text: Any) -> JSONResponse | None:
        if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not text["body"]:
            return graph_error(400, 100, "(#100) The parameter text['body'] is required.",
                               details="text.body is required")
        if len(text["body"]) > 4096:
            return graph_error(400, 100, "(#100) Param text['body'] must be at most 4096 characters long.",
                               details="text.body too long")
        return None

    def _v_media(self, kind: str, media: Any) -> JSONResponse | None:
        if not isinstance(media, dict) or bool(media.get("id")) == bool(media.get("link")):
            return graph_error(400, 100, f"(#100) Param {kind} must contain exactly one of id or link",
                               details=f"{kind}: exactly one of id or link is required")
        if media.get("link"):
            url = urlparse(str(media["link"]))
            if url.scheme not in ("http", "https") or not url.netloc:
                return graph_error(400, 100, f"(#100) Param {kind}['link'] must be a valid URL")
        if "caption" in media and kind in ("audio", "sticker"):
            return graph_error(400, 100, f"(#100) Param {kind}['caption'] is not a valid parameter")
        if len(str(media.get("caption") or "")) > 1024:
            return param_invalid(f"{kind}.caption: max length 1024")
        if "filename" in media and kind != "document":
            return graph_error(400, 100, f"(#100) Param {kind}['filename'] is not a valid parameter")
        return None

    def _v_location(self, loc: Any) -> JSONResponse | None:
        if not isinstance(loc, dict) or "latitude" not in loc or "longitude" not in loc:
            return param_missing("location: latitude and longitude are required")
        try:
            lat, lon = float(loc["latitude"]), float(loc["longitude"])
        except (TypeError, ValueError):
            return param_invalid("location: latitude and longitude must be numbers")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return param_invalid("location: latitude must be in [-90, 90] and longitude in [-180, 180]")
        return None

    def _v_contacts(self, contacts: Any) -> JSONResponse | None:
        if not isinstance(contacts, list) or not 1 <= len(contacts) <= 5:
            return param_invalid("contacts: 1 to 5 contacts are required")
        for c in contacts:
            if not isinstance(c, dict) or not (c.get("name") or {}).get("formatted_name"):
                return param_missing("contacts.name.formatted_name is required")
        return None

    def _v_reaction(self, r: Any) -> JSONResponse | None:
        if not isinstance(r, dict) or not r.get("message_id"):
            return param_missing("reaction.message_id is required")
        if not isinstance(r.get("emoji"), str):
            return param_missing("reaction.emoji is required")
        return None

    def _v_interactive(self, it: Any) -> JSONResponse | None:
        if not isinstance(it, dict) or it.get("type") not in ("button", "list", "cta_url", "product", "product_list"):
            return param_invalid("interactive.type must be button or list")
        body = (it.get("body") or {}).get("text")
        if not body:
            return param_missing("interactive.body.text is required")
        if len(body) > 1024:
            return param_invalid("Body text length invalid. Min length: 1, Max length: 1024")
        if len(str((it.get("footer") or {}).get("text") or "")) > 60:
            return param_invalid("Footer text length invalid. Min length: 1, Max length: 60")
        header = it.get("header") or {}
        if header.get("type") == "text" and not 1 <= len(str(header.get("text") or "")) <= 60:
            return param_invalid("Header text length invalid. Min length: 1, Max length: 60")
        action = it.get("action") or {}
        if it["type"] == "button":
            buttons = action.get("buttons") or []
            if not 1 <= len(buttons) <= 3:
                return param_invalid("Buttons count invalid. Min: 1, Max: 3")
            ids = []
            for b in buttons:
                reply = b.get("reply") or {}
                if not 1 <= len(str(reply.get("title") or "")) <= 20:
                    return param_invalid("Button title length invalid. Min length: 1, Max length: 20")
                if not 1 <= len(str(reply.get("id") or "")) <= 256:
                    return param_invalid("Button id length invalid. Min length: 1, Max length: 256")
                ids.append(reply.get("id"))
            if len(set(ids)) != len(ids):
                return param_invalid("Button ids must be unique")
            return None
        if it["type"] != "list":
            return None
        if not 1 <= len(str(action.get("button") or "")) <= 20:
            return param_invalid("Button text length invalid. Min length: 1, Max length: 20")
        sections = action.get("sections") or []
        if not 1 <= len(sections) <= 10:
            return param_invalid("Sections count invalid. Min: 1, Max: 10")
        rows = [r for s in sections for r in (s.get("rows") or [])]
        if len(rows) > 10:
            return param_invalid("Total row count exceed max allowed count: 10")
        for s in sections:
            title = str(s.get("title") or "")
            if (len(sections) > 1 and not title) or len(title) > 24:
                return param_invalid("Section title length invalid. Min length: 1, Max length: 24")
            if not s.get("rows"):
                return param_invalid("Rows count invalid. Min: 1")
        for r in rows:
            if not 1 <= len(str(r.get("title") or "")) <= 24:
                return param_invalid("Row title length invalid. Min length: 1, Max length: 24")
            if not 1 <= len(str(r.get("id") or "")) <= 200:
                return param_invalid("Row id length invalid. Min length: 1, Max length: 200")
            if len(str(r.get("description") or "")) > 72:
                return param_invalid("Row description length invalid. Max length: 72")
        if len({r.get("id") for r in rows}) != len(rows):
            return param_invalid("Row ids must be unique")
        return None

    def _v_template_shape(self, t: Any) -> JSONResponse | None:
        if not isinstance(t, dict) or not t.get("name"):
            return param_missing("template.name is required")
        if not (t.get("language") or {}).get("code"):
            return param_missing("template.language.code is required")
        return None

    # ---- templates ------------------------------------------------------------------------
    def find_template(self, waba_id: str, name: str, language: str) -> TemplateConfig | None:
        for t in self.state.templates.get(waba_id, []):
            if t.name == name and t.language == language:
                return t
        return None

    def check_template(self, num: PhoneNumberConfig, t: dict[str, Any]) -> JSONResponse | TemplateConfig:
        """Existence, status and parameters, with Meta's 132xxx codes."""
        name, lang = str(t["name"]), str(t["language"]["code"])
        tpl = self.find_template(num.waba_id, name, lang)
        if tpl is None or tpl.status not in ("APPROVED", "PAUSED", "DISABLED"):
            return graph_error(404, 132001, "(#132001) Template name does not exist in the translation",
                               details=f"template name ({name}) does not exist in {lang}")
        if tpl.status == "PAUSED":
            return graph_error(400, 132015, "(#132015) Template is Paused",
                               details="Template is paused due to low quality so it cannot be sent in a template "
                                       "message.")
        if tpl.status == "DISABLED":
            return graph_error(400, 132016, "(#132016) Template is Disabled",
                               details="Template has been paused too many times due to low quality and is now "
                                       "permanently disabled.")
        sent = {str(c.get("type", "")).lower(): c for c in t.get("components") or [] if c.get("type") != "button"}
        named = tpl.parameter_format.upper() == "NAMED"
        for comp in tpl.components:
            ctype = str(comp.get("type", "")).upper()
            if ctype not in ("HEADER", "BODY"):
                continue
            params = (sent.get(ctype.lower()) or {}).get("parameters") or []
            fmt = str(comp.get("format") or "TEXT").upper()
            if ctype == "HEADER" and fmt != "TEXT":
                if len(params) != 1:
                    return self._count_error("header", len(params), 1)
                if params[0].get("type") != fmt.lower():
                    return graph_error(400, 132012, "(#132012) Parameter format does not match format in the "
                                                    "created template",
                                       details=f"header: Format mismatch, expected {fmt}, received "
                                               f"{str(params[0].get('type')).upper()}")
                continue
            wanted = list(dict.fromkeys(PLACEHOLDER_RE.findall(comp.get("text") or "")))
            expected = len(wanted) if named else max((int(w) for w in wanted if w.isdigit()), default=0)
            if len(params) != expected:
                return self._count_error(ctype.lower(), len(params), expected)
            if named:
                names = [p.get("parameter_name") for p in params]
                if sorted(n or "" for n in names) != sorted(wanted):
                    return graph_error(400, 132000, "(#132000) Number of parameters does not match the expected "
                                                    "number of params",
                                       details=f"{ctype.lower()}: parameter names {names} do not match {wanted}")
            for p in params:
                if p.get("type") not in ("text", "currency", "date_time"):
                    return graph_error(400, 132012, "(#132012) Parameter format does not match format in the "
                                                    "created template",
                                       details=f"{ctype.lower()}: parameter type {p.get('type')} not allowed")
        return tpl

    def _count_error(self, where: str, got: int, expected: int) -> JSONResponse:
        return graph_error(400, 132000, "(#132000) Number of parameters does not match the expected number of params",
                           details=f"{where}: number of localizable_params ({got}) does not match the expected "
                                   f"number of params ({expected})")

    def template_page(self, waba_id: str, request: Request) -> dict[str, Any]:
        items = self.state.templates.get(waba_id, [])
        name = request.query_params.get("name")
        if name:
            items = [t for t in items if t.name == name]
        limit = max(1, min(int(request.query_params.get("limit") or 25), 1000))
        after = request.query_params.get("after")
        start = int(base64.b64decode(after).decode()) if after else 0
        page = items[start:start + limit]
        fields = request.query_params.get("fields")
        data = [t.model_dump(exclude={"waba_id"}) for t in page]
        if fields:
            wanted = set(fields.split(",")) | {"id"}
            data = [{k: v for k, v in d.items() if k in wanted} for d in data]
        doc: dict[str, Any] = {"data": data}
        if items:
            cursors = {"before": base64.b64encode(str(start).encode()).decode(),
                       "after": base64.b64encode(str(start + len(page)).encode()).decode()}
            doc["paging"] = {"cursors": cursors}
            if start + len(page) < len(items):
                doc["paging"]["next"] = (f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
                                         f"?limit={limit}&after={cursors['after']}")
        return doc

    # ---- send ------------------------------------------------------------------------------
    def authentication_template(self, num: PhoneNumberConfig, body: dict[str, Any]) -> bool:
        t = body.get("template") or {}
        tpl = self.find_template(num.waba_id, str(t.get("name")), str((t.get("language") or {}).get("code")))
        return tpl is not None and tpl.category.upper() == "AUTHENTICATION"

    def pre_send_checks(self, num: PhoneNumberConfig, body: dict[str, Any], to: str) -> JSONResponse | None:
        """Synchronous refusals after validation: pair limit, templates."""
        if self.pair_exceeded(num, to):
            self.state.pair_errors += 1
            return graph_error(400, 131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                               details="Message failed to send because there were too many messages sent from "
                                       "this phone number to the same phone number in a short period of time.")
        if body.get("type") == "template":
            checked = self.check_template(num, body["template"])
            if isinstance(checked, JSONResponse):
                return checked
        return None

    def pricing_for(self, num: PhoneNumberConfig, body: dict[str, Any], to: str) -> dict[str, Any]:
        """Per-message pricing: templates billed by category (utility free inside a window), service free."""
        if body.get("type") != "template":
            return {"category": "service", "billable": False, "pricing_type": "free_customer_service"}
        t = body["template"]
        tpl = self.find_template(num.waba_id, str(t["name"]), str(t["language"]["code"]))
        category = (tpl.category if tpl else "UTILITY").lower()
        if category == "utility" and self.window_open(num, to):
            return {"category": category, "billable": False, "pricing_type": "free_customer_service"}
        return {"category": category, "billable": True, "pricing_type": "regular"}

    def recipient_failure(self, num: PhoneNumberConfig, body: dict[str, Any], to: str) -> dict[str, Any] | None:
        """Failures Meta reports only later, by status webhook."""
        if to in self.state.undeliverable:
            return async_error(131026, "Message undeliverable", "Message Undeliverable.")
        if to in self.state.experiment:
            return async_error(130472, "User's number is part of an experiment",
                               "Failed to send message because this user's phone number is part of an experiment")
        is_template = body.get("type") == "template"
        if not is_template and num.enforce_window and not self.window_open(num, to):
            self.state.window_failures += 1
            return async_error(131047, "Re-engagement message",
                               "Message failed to send because more than 24 hours have passed since the customer "
                               "last replied to this number.")
        if is_template:
            pricing = self.pricing_for(num, body, to)
            if pricing["category"] == "marketing" and to in self.state.marketing_opt_out:
                return async_error(131050, "Unable to deliver the message. This recipient has chosen to stop "
                                           "receiving marketing messages on WhatsApp from your business",
                                   "User stopped marketing messages")
            if not self.window_open(num, to) and not self.take_initiation(num, to):
                self.state.tier_failures += 1
                # Meta documents no dedicated code for the messaging limit; the fake reports 131000 with details.
                return async_error(131000, "Something went wrong",
                                   f"Messaging limit reached: {num.messaging_limit_tier} unique customers outside "
                                   "a customer service window in a moving 24 hours")
        return None

    def take_initiation(self, num: PhoneNumberConfig, to: str) -> bool:
        limit = tier_limit(num.messaging_limit_tier)
        if limit is None:
            return True
        seen = self.state.initiations[num.waba_id]
        now = time.time()
        for k in [k for k, at in seen.items() if at <= now - num.messaging_limit_window_seconds]:
            del seen[k]
        if to in seen:
            return True
        if len(seen) >= limit:
            return False
        seen[to] = now
        return True

    # ---- routes ---------------------------------------------------------------------------
    def router(self) -> APIRouter:
        r = APIRouter()

        @r.get("/media-files/{media_id}")  # before /{version}/{id}, which would take it
        async def media_file(media_id: str, request: Request) -> Response:
            return self.media.download(request, media_id)

        @r.delete("/{version}/{media_id}")
        async def delete_media(version: str, media_id: str, request: Request) -> Response:
            if not VERSION_RE.match(version):
                return graph_error(400, 2500, f"Unknown path components: /{version}")
            return self.media.delete(request, media_id)

        @r.get("/{version}/{oid}/message_templates")
        async def list_templates(version: str, oid: str, request: Request) -> Response:
            if not VERSION_RE.match(version):
                return graph_error(400, 2500, f"Unknown path components: /{version}")
            if (resp := await self.fault(await self.sandbox.fault_for("whatsapp"))) is not None:
                return resp
            ok = self.authorize_waba(request, oid)
            if isinstance(ok, JSONResponse):
                return ok
            return JSONResponse(self.template_page(oid, request))

        @r.get("/{version}/{oid}/phone_numbers")
        async def phone_numbers(version: str, oid: str, request: Request) -> Response:
            ok = self.authorize_waba(request, oid)
            if isinstance(ok, JSONResponse):
                return ok
            data = [self.number_view(n) | {"account_mode": "LIVE", "host_platform": "CLOUD_API"}
                    for n in self.state.numbers.values() if n.waba_id == oid]
            return JSONResponse({"data": data})

        @r.get("/{version}/{pid}")
        async def get_number(version: str, pid: str, request: Request) -> Response:
            if not VERSION_RE.match(version):
                return graph_error(400, 2500, f"Unknown path components: /{version}", etype="OAuthException")
            if (resp := await self.fault(await self.sandbox.fault_for("whatsapp"))) is not None:
                return resp
            if pid in self.media.media:  # GET /{media-id}: Graph ids share one namespace
                item = self.media.owned(request, pid)
                return item if isinstance(item, Response) else self.media.view(request, item)
            num = self.authorize(request, pid)
            if isinstance(num, JSONResponse):
                return num
            data = self.number_view(num)
            fields = request.query_params.get("fields")
            if fields:
                wanted = set(fields.split(",")) | {"id"}
                data = {k: v for k, v in data.items() if k in wanted}
            return JSONResponse(data)

        @r.post("/{version}/{pid}/{action}")
        async def phone_action(version: str, pid: str, action: str, request: Request) -> Response:
            if not VERSION_RE.match(version):
                return graph_error(400, 2500, f"Unknown path components: /{version}")
            if action == "messages":
                return await self.send(pid, request)
            if action == "media":
                if (resp := await self.fault(await self.sandbox.fault_for("whatsapp"))) is not None:
                    return resp
                return await self.media.upload(pid, request)
            if action not in ("register", "deregister", "request_code", "verify_code"):
                return graph_error(400, 100, f"(#100) Unknown path components: /{action}")
            if (resp := await self.fault(await self.sandbox.fault_for("whatsapp"))) is not None:
                return resp
            num = self.authorize(request, pid)
            if isinstance(num, JSONResponse):
                return num
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                return graph_error(400, 100, "(#100) Invalid JSON for postbody")
            return self.phone_admin(num, action, body if isinstance(body, dict) else {})

        return r

    @staticmethod
    def message_view(msg: dict[str, Any]) -> dict[str, Any]:
        keys = ("id", "phone_number_id", "to", "type", "status", "biz_opaque_callback_data", "accepted_at")
        return {k: msg.get(k) for k in keys}

    def number_view(self, num: PhoneNumberConfig) -> dict[str, Any]:
        data = num.model_dump(include={"display_phone_number", "verified_name", "quality_rating",
                                       "code_verification_status", "name_status", "status", "messaging_limit_tier"})
        limit = tier_limit(num.messaging_limit_tier)
        data.update({"id": num.phone_number_id, "platform_type": "CLOUD_API",
                     "whatsapp_business_manager_messaging_limit": f"TIER_{limit}" if limit else "TIER_UNLIMITED",
                     "throughput": {"level": "STANDARD" if num.throughput_mps <= 80 else "HIGH"}})
        return data

    def phone_admin(self, num: PhoneNumberConfig, action: str, body: dict[str, Any]) -> Response:
        pid = num.phone_number_id
        if action == "register":
            if body.get("messaging_product") != "whatsapp":
                return graph_error(400, 100, "(#100) The parameter messaging_product is required.")
            pin = str(body.get("pin") or "")
            if not re.fullmatch(r"\d{6}", pin):
                return graph_error(400, 100, "Invalid PIN format. PIN must be exactly 6 digits")
            if num.two_step_pin is not None and pin != num.two_step_pin:
                return graph_error(400, 133005, "(#133005) Two step verification PIN Mismatch",
                                   details="Two step verification PIN Mismatch")
            self.state.numbers[pid] = num.model_copy(update={"registered": True, "status": "CONNECTED",
                                                             "two_step_pin": pin})
            return JSONResponse({"success": True})
        if action == "deregister":
            self.state.numbers[pid] = num.model_copy(update={"registered": False, "status": "DISCONNECTED"})
            return JSONResponse({"success": True})
        if action == "request_code":
            if body.get("code_method") not in ("SMS", "VOICE"):
                return graph_error(400, 100, "(#100) Param code_method must be one of {SMS, VOICE}")
            if not body.get("language"):
                return graph_error(400, 100, "(#100) The parameter language is required.")
            self.state.codes[pid] = f"{secrets.randbelow(10**6):06d}"
            return JSONResponse({"success": True})
        code = str(body.get("code") or "")
        if not code:
            return graph_error(400, 100, "(#100) The parameter code is required.")
        if self.state.codes.get(pid) != code:
            return graph_error(400, 136025, "(#136025) Verify code error", details="Code couldn't be verified")
        self.state.codes.pop(pid, None)
        self.state.numbers[pid] = num.model_copy(update={"code_verification_status": "VERIFIED"})
        return JSONResponse({"success": True})

    async def send(self, pid: str, request: Request) -> Response:
        if (resp := await self.fault(await self.sandbox.fault_for("whatsapp"))) is not None:
            return resp
        num = self.authorize(request, pid)
        if isinstance(num, JSONResponse):
            return num
        try:
            body = json.loads(await request.body())
        except ValueError:
            return graph_error(400, 100, "(#100) Invalid JSON for postbody")
        if not isinstance(body, dict):
            return graph_error(400, 100, "(#100) Invalid JSON for postbody")
        if not num.registered:
            return graph_error(400, 133010, "(#133010) Account not registered", details="Account not registered")
        if self.throughput_exceeded(num):
            self.state.throughput_errors += 1
            return graph_error(400, 130429, "(#130429) Rate limit hit",
                               details="Message failed to send because there were too many messages sent "
                                       "from this phone number in a short period of time",
                               subcode=2494055)
        if body.get("status") == "read":
            if body.get("messaging_product") != "whatsapp" or not body.get("message_id"):
                return graph_error(400, 100, "(#100) The parameter message_id is required.")
            return JSONResponse({"success": True})
        if (invalid := self.validate_message(body)) is not None:
            return invalid
        to = re.sub(r"\D", "", str(body.get("to") or ""))
        bsuid = str(body.get("recipient") or "") if not body.get("to") else ""
        if bsuid and not BSUID_RE.match(bsuid):
            return graph_error(400, 100, "(#100) Invalid parameter: recipient is not a valid business-scoped user id")
        if not to and not bsuid:
            return graph_error(400, 100, "(#100) The parameter to is required.")
        if bsuid and body.get("type") == "template" and self.authentication_template(num, body):
            return graph_error(400, 131062, "(#131062) Business-scoped User ID recipients are not supported for "
                                            "this message.")
        to = to or bsuid
        if (pre := self.pre_send_checks(num, body, to)) is not None:
            return pre
        pricing = self.pricing_for(num, body, to)
        msg = {"id": new_wamid(), "to": to, "type": body.get("type", "text"), "body": body,
               "status": "accepted", "phone_number_id": pid, "accepted_at": time.time(),
               "biz_opaque_callback_data": body.get("biz_opaque_callback_data"),
               "recipient_user_id": bsuid or None, **pricing}
        self.state.messages[msg["id"]] = msg
        # Meta may hold a marketing message for a quality assessment (then deliver or drop it) or pause it.
        hold = self.state.quality_hold.get(to) if pricing["category"] == "marketing" else None
        if hold != "paused":
            self.sandbox.spawn(self.status_sequence(num, msg, self.recipient_failure(num, body, to)))
        contact = {"input": bsuid, "user_id": bsuid} if bsuid else {"input": str(body.get("to")), "wa_id": to}
        return JSONResponse({"messaging_product": "whatsapp", "contacts": [contact],
                             "messages": [{"id": msg["id"], "message_status": hold or "accepted"}]})

    def control_router(self) -> APIRouter:
        r = APIRouter()

        @r.post("/phone_numbers")
        async def add_number(cfg: PhoneNumberConfig) -> dict[str, Any]:
            self.state.numbers[cfg.phone_number_id] = cfg
            if not self.state.templates.get(cfg.waba_id):
                # Every new WABA has Meta's sample template.
                self.state.templates[cfg.waba_id].append(TemplateConfig(
                    waba_id=cfg.waba_id, name="hello_world", category="UTILITY",
                    components=[{"type": "HEADER", "format": "TEXT", "text": "Hello World"},
                                {"type": "BODY", "text": "Welcome and congratulations!! This message demonstrates "
                                                         "your ability to send a WhatsApp message notification "
                                                         "from the Cloud API."}]))
            return {"ok": True}

        @r.patch("/phone_numbers/{pid}")
        async def patch_number(pid: str, patch: dict[str, Any]) -> dict[str, Any]:
            num = self.state.numbers[pid]
            self.state.numbers[pid] = num.model_copy(update=patch)
            return {"ok": True}

        @r.post("/templates")
        async def add_template(tpl: TemplateConfig) -> dict[str, Any]:
            items = self.state.templates[tpl.waba_id]
            items[:] = [t for t in items if not (t.name == tpl.name and t.language == tpl.language)] + [tpl]
            return {"ok": True, "id": tpl.id}

        @r.patch("/templates/{waba_id}/{name}/{language}")
        async def patch_template(waba_id: str, name: str, language: str, patch: dict[str, Any]) -> dict[str, Any]:
            items = self.state.templates[waba_id]
            for i, t in enumerate(items):
                if t.name == name and t.language == language:
                    items[i] = t.model_copy(update=patch)
                    return {"ok": True}
            return {"ok": False}

        @r.post("/tokens/expire")
        async def expire(body: dict[str, str]) -> dict[str, Any]:
            self.state.expired_tokens.add(body["token"])
            return {"ok": True}

        @r.post("/undeliverable")
        async def undeliverable(body: dict[str, list[str]]) -> dict[str, Any]:
            self.state.undeliverable.update(re.sub(r"\D", "", n) for n in body["numbers"])
            return {"ok": True}

        @r.post("/quality_hold")
        async def quality_hold(body: dict[str, Any]) -> dict[str, Any]:
            """Marketing templates to these customers are answered `held_for_quality_assessment` (statuses
            follow later) or `paused` (no statuses)."""
            status = str(body.get("status") or "held_for_quality_assessment")
            if status not in ("held_for_quality_assessment", "paused"):
                return {"ok": False, "error": "status: held_for_quality_assessment or paused"}
            for n in body.get("numbers") or []:
                self.state.quality_hold[re.sub(r"\D", "", str(n))] = status
            return {"ok": True}

        @r.post("/experiment")
        async def experiment(body: dict[str, list[str]]) -> dict[str, Any]:
            self.state.experiment.update(re.sub(r"\D", "", n) for n in body["numbers"])
            return {"ok": True}

        @r.post("/marketing_opt_out")
        async def marketing_opt_out(body: dict[str, list[str]]) -> dict[str, Any]:
            self.state.marketing_opt_out.update(re.sub(r"\D", "", n) for n in body["numbers"])
            return {"ok": True}

        @r.post("/inbound")
        async def inbound(req: InboundRequest) -> Response:
            """A customer writes: open the window and deliver Meta's signed webhook (plus redeliveries)."""
            num = self.state.numbers.get(req.phone_number_id)
            if num is None:
                return JSONResponse({"error": f"unknown phone_number_id {req.phone_number_id}"}, status_code=404)
            try:
                value = self.inbound_message(num, req)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=422)
            msg = value["messages"][0]
            user_id = msg["from_user_id"]
            key = f"{num.phone_number_id}:{self.customer_key(user_id)}"
            self.state.windows[key] = max(self.state.windows.get(key, 0.0), float(msg["timestamp"]))
            self.state.inbound[msg["id"]] = msg
            statuses = [await self.deliver_webhook(num, self.envelope(num, value)) for _ in range(1 + req.redeliver)]
            return JSONResponse({"message_id": msg["id"], "wa_id": msg.get("from"), "user_id": user_id,
                                 "deliveries": statuses})

        @r.post("/redeliver")
        async def redeliver(body: dict[str, int]) -> dict[str, Any]:
            """Meta retries deliveries: post the last N again, byte for byte with the same signature."""
            last = self.state.webhook_deliveries[-int(body.get("count", 1)):]
            statuses = [await self.post_signed(d["url"], d["raw"].encode(), d["signature"]) for d in last]
            return {"statuses": statuses}

        @r.get("/codes/{pid}")
        async def code(pid: str) -> dict[str, Any]:
            """The verification code 'sent by SMS' (what a person would read on the phone)."""
            return {"code": self.state.codes.get(pid)}

        @r.get("/messages")
        async def messages(callback_data: str | None = None, phone_number_id: str | None = None,
                           to: str | None = None) -> dict[str, Any]:
            """Accepted messages (whether or not the client got the answer), filtered by their
            biz_opaque_callback_data, number and recipient: count them per intent."""
            wa_id = re.sub(r"\D", "", to) if to else None
            found = [self.message_view(m) for m in self.state.messages.values()
                     if (callback_data is None or m.get("biz_opaque_callback_data") == callback_data)
                     and (phone_number_id is None or m["phone_number_id"] == phone_number_id)
                     and (wa_id is None or m["to"] == wa_id)]
            return {"count": len(found), "messages": found}

        @r.get("/messages/{message_id}")
        async def message(message_id: str) -> dict[str, Any]:
            return self.state.messages.get(message_id, {})

        @r.get("/webhooks")
        async def webhooks() -> list[dict[str, Any]]:
            return self.state.webhook_deliveries

        @r.get("/stats")
        async def stats() -> dict[str, Any]:
            s = self.state
            return {"messages": len(s.messages), "throughput_errors": s.throughput_errors,
                    "pair_errors": s.pair_errors, "window_failures": s.window_failures,
                    "tier_failures": s.tier_failures, "numbers": s.per_number}

        return r
