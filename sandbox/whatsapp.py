"""WhatsApp Cloud API fake: Graph error bodies and codes, limits, signed status webhooks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from sandbox.state import SandboxState

VERSION_RE = re.compile(r"^v[0-9]+\.[0-9]+$")


def graph_error(
    status: int, code: int, message: str, *, etype: str = "OAuthException", details: str | None = None,
    subcode: int | None = None, transient: bool | None = None, headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The Graph API error envelope (message, type, code, error_data, fbtrace_id)."""
    err: dict[str, Any] = {"message": message, "type": etype, "code": code,
                           "fbtrace_id": base64.b64encode(os.urandom(12)).decode()}
    if details is not None:
        err["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if subcode is not None:
        err["error_subcode"] = subcode
    if transient is not None:
        err["is_transient"] = transient
    return JSONResponse({"error": err}, status_code=status, headers=headers)


def new_wamid() -> str:
    return "wamid." + base64.b64encode(b"HBgL" + os.urandom(24)).decode()


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
    registered: bool = True
    throughput_mps: int = 80
    webhook_url: str | None = None
    status_delay_ms: float = 20.0
    deliver: bool = True
    read: bool = True


@dataclass
class WhatsAppFakeState:
    numbers: dict[str, PhoneNumberConfig] = field(default_factory=dict)
    expired_tokens: set[str] = field(default_factory=set)
    undeliverable: set[str] = field(default_factory=set)
    sent_log: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    webhook_deliveries: list[dict[str, Any]] = field(default_factory=list)
    throughput_errors: int = 0


class WhatsAppFake:
    """Routes mounted under /whatsapp (Graph) and /_sandbox/whatsapp (control)."""

    def __init__(self, sandbox: SandboxState) -> None:
        self.sandbox = sandbox
        self.state = WhatsAppFakeState()
        self._http: httpx.AsyncClient | None = None

    # ---- helpers ---------------------------------------------------------------------------
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10)
        return self._http

    def authorize(self, request: Request, pid: str) -> JSONResponse | PhoneNumberConfig:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            return graph_error(401, 104, "An access token is required to request this resource.")
        token = auth[7:].strip()
        if token in self.state.expired_tokens:
            return graph_error(401, 190, "Error validating access token: Session has expired", subcode=463)
        owned = [n for n in self.state.numbers.values() if n.token == token]
        if not owned:
            return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        num = self.state.numbers.get(pid)
        if num is None:
            return graph_error(
                400, 100,
                f"Unsupported post request. Object with ID '{pid}' does not exist, cannot be loaded due to "
                "missing permissions, or does not support this operation.",
                etype="GraphMethodException", subcode=33,
            )
        if num.token != token:
            return graph_error(403, 200, "(#200) Permission denied", subcode=1349174)
        return num

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
        """Sliding one-second window per number, counted on accepted and rejected attempts alike."""
        log = self.state.sent_log[num.phone_number_id]
        now = time.monotonic()
        while log and log[0] <= now - 1.0:
            log.popleft()
        if len(log) >= num.throughput_mps:
            return True
        log.append(now)
        return False

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

    async def deliver_webhook(self, num: PhoneNumberConfig, doc: dict[str, Any]) -> int | None:
        """POST a signed delivery to the number's webhook URL, like Meta does."""
        if not num.webhook_url:
            return None
        raw = json.dumps(doc, separators=(",", ":")).encode()
        sig = "sha256=" + hmac.new(num.app_secret.encode(), raw, hashlib.sha256).hexdigest()
        try:
            resp = await self.http().post(num.webhook_url, content=raw, headers={
                "Content-Type": "application/json", "X-Hub-Signature-256": sig})
            status = resp.status_code
        except httpx.HTTPError:
            status = 0
        self.state.webhook_deliveries.append({"url": num.webhook_url, "status": status, "body": doc})
        return status

    def status_value(self, num: PhoneNumberConfig, msg: dict[str, Any], status: str,
                     errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        st: dict[str, Any] = {"id": msg["id"], "status": status, "timestamp": str(int(time.time())),
                              "recipient_id": msg["to"]}
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
            await self.deliver_webhook(num, self.envelope(num, self.status_value(num, msg, "failed", [failure])))
            return
        steps = ["sent"] + (["delivered"] if num.deliver else []) + (["read"] if num.deliver and num.read else [])
        for step in steps:
            msg["status"] = step
            await self.deliver_webhook(num, self.envelope(num, self.status_value(num, msg, step)))
            await asyncio.sleep(num.status_delay_ms / 1000)

    # ---- message validation (extended per type) -------------------------------------------
    def validate_message(self, body: dict[str, Any]) -> JSONResponse | None:
        if body.get("messaging_product") != "whatsapp":
            return graph_error(400, 100, "(#100) The parameter messaging_product is required.",
                               details="messaging_product must be 'whatsapp'")
        mtype = body.get("type", "text")
        if mtype == "text":
            text = body.get("text")
            if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not text["body"]:
                return graph_error(400, 100, "(#100) The parameter text['body'] is required.",
                                   details="text.body is required")
            if len(text["body"]) > 4096:
                return graph_error(400, 100, "(#100) Param text['body'] must be at most 4096 characters long.",
                                   details="text.body too long")
            return None
        return graph_error(400, 131051, "Unsupported message type", details=f"type {mtype!r} is not supported")

    def recipient_failure(self, num: PhoneNumberConfig, body: dict[str, Any], to: str) -> dict[str, Any] | None:
        if to in self.state.undeliverable:
            return {"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
                    "error_data": {"details": "Message Undeliverable."}}
        return None

    # ---- routes ---------------------------------------------------------------------------
    def router(self) -> APIRouter:
        r = APIRouter()

        @r.get("/{version}/{pid}")
        async def get_number(version: str, pid: str, request: Request) -> Response:
            if not VERSION_RE.match(version):
                return graph_error(400, 2500, f"Unknown path components: /{version}", etype="OAuthException")
            if (resp := await self.fault(await self.sandbox.fault_for("whatsapp"))) is not None:
                return resp
            num = self.authorize(request, pid)
            if isinstance(num, JSONResponse):
                return num
            data = num.model_dump(include={"display_phone_number", "verified_name", "quality_rating",
                                           "code_verification_status", "name_status", "status",
                                           "messaging_limit_tier"})
            data.update({"id": num.phone_number_id, "platform_type": "CLOUD_API",
                         "throughput": {"level": "STANDARD" if num.throughput_mps <= 80 else "HIGH"}})
            fields = request.query_params.get("fields")
            if fields:
                wanted = set(fields.split(",")) | {"id"}
                data = {k: v for k, v in data.items() if k in wanted}
            return JSONResponse(data)

        @r.post("/{version}/{pid}/messages")
        async def send(version: str, pid: str, request: Request) -> Response:
            if not VERSION_RE.match(version):
                return graph_error(400, 2500, f"Unknown path components: /{version}")
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
                return graph_error(400, 133010, "(#133010) Account not registered",
                                   details="Account not registered")
            if self.throughput_exceeded(num):
                self.state.throughput_errors += 1
                return graph_error(400, 130429, "(#130429) Rate limit hit",
                                   details="Message failed to send because there were too many messages sent "
                                           "from this phone number in a short period of time",
                                   subcode=2494055)
            if body.get("status") == "read":
                return JSONResponse({"success": True})
            if (invalid := self.validate_message(body)) is not None:
                return invalid
            to = re.sub(r"\D", "", str(body.get("to", "")))
            if not to:
                return graph_error(400, 100, "(#100) The parameter to is required.")
            if (pre := self.pre_send_checks(num, body, to)) is not None:
                return pre
            msg = {"id": new_wamid(), "to": to, "type": body.get("type", "text"), "body": body,
                   "status": "accepted", "phone_number_id": pid, **self.pricing_for(num, body, to)}
            self.state.messages[msg["id"]] = msg
            self.sandbox.spawn(self.status_sequence(num, msg, self.recipient_failure(num, body, to)))
            return JSONResponse({"messaging_product": "whatsapp",
                                 "contacts": [{"input": str(body.get("to")), "wa_id": to}],
                                 "messages": [{"id": msg["id"], "message_status": "accepted"}]})

        return r

    def pre_send_checks(self, num: PhoneNumberConfig, body: dict[str, Any], to: str) -> JSONResponse | None:
        """Synchronous refusals beyond validation (window, pair limit, templates: extended later)."""
        return None

    def pricing_for(self, num: PhoneNumberConfig, body: dict[str, Any], to: str) -> dict[str, Any]:
        return {"category": "service", "billable": False, "pricing_type": "free_customer_service"}

    def control_router(self) -> APIRouter:
        r = APIRouter()

        @r.post("/phone_numbers")
        async def add_number(cfg: PhoneNumberConfig) -> dict[str, Any]:
            self.state.numbers[cfg.phone_number_id] = cfg
            return {"ok": True}

        @r.patch("/phone_numbers/{pid}")
        async def patch_number(pid: str, patch: dict[str, Any]) -> dict[str, Any]:
            num = self.state.numbers[pid]
            self.state.numbers[pid] = num.model_copy(update=patch)
            return {"ok": True}

        @r.post("/tokens/expire")
        async def expire(body: dict[str, str]) -> dict[str, Any]:
            self.state.expired_tokens.add(body["token"])
            return {"ok": True}

        @r.post("/undeliverable")
        async def undeliverable(body: dict[str, list[str]]) -> dict[str, Any]:
            self.state.undeliverable.update(re.sub(r"\D", "", n) for n in body["numbers"])
            return {"ok": True}

        @r.get("/messages/{message_id}")
        async def message(message_id: str) -> dict[str, Any]:
            return self.state.messages.get(message_id, {})

        @r.get("/webhooks")
        async def webhooks() -> list[dict[str, Any]]:
            return self.state.webhook_deliveries

        @r.get("/stats")
        async def stats() -> dict[str, Any]:
            return {"messages": len(self.state.messages), "throughput_errors": self.state.throughput_errors}

        return r
