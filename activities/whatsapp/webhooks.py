"""Meta webhook verification (X-Hub-Signature-256 on raw bytes) and parsing."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from pydantic import ValidationError

from activities.whatsapp.models import InboundMessage, StatusEvent, WebhookBatch

SIGNATURE_HEADER = "x-hub-signature-256"


class MalformedWebhook(ValueError):
    """The body is not the JSON envelope Meta sends."""


def sign(app_secret: str, body: bytes) -> str:
    """The header value Meta would send for `body` (used by the sandbox and tests)."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(app_secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of `sha256=<hex>` against the raw request bytes; never raises."""
    if not header or not app_secret:
        return False
    header = header.strip()
    if not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256=").lower())


def phone_number_ids(body: bytes) -> set[str]:
    """Which business numbers a delivery is for (to pick the app secret before trusting it)."""
    doc = _load(body)
    ids: set[str] = set()
    for entry in doc.get("entry") or []:
        for change in (entry or {}).get("changes") or []:
            pid = ((change or {}).get("value") or {}).get("metadata", {}).get("phone_number_id")
            if pid:
                ids.add(str(pid))
    return ids


def _load(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedWebhook(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedWebhook("body is not a JSON object")
    return doc


def _inbound_text(msg: dict[str, Any]) -> str | None:
    kind = msg.get("type")
    if kind == "text":
        return (msg.get("text") or {}).get("body")
    if kind == "button":
        return (msg.get("button") or {}).get("text")
    if kind == "interactive":
        inter = msg.get("interactive") or {}
        reply = inter.get("button_reply") or inter.get("list_reply") or {}
        return reply.get("title")
    if kind in ("image", "video", "document"):
        return (msg.get(kind) or {}).get("caption")
    return None


def parse(body: bytes) -> WebhookBatch:
    """Parse a verified delivery; unknown kinds are listed, never fatal."""
    doc = _load(body)
    if doc.get("object") != "whatsapp_business_account":
        return WebhookBatch(unknown=[f"object:{doc.get('object')}"])
    batch = WebhookBatch()
    for entry in doc.get("entry") or []:
        batch.waba_id = batch.waba_id or str(entry.get("id") or "") or None
        for change in entry.get("changes") or []:
            if change.get("field") != "messages":
                batch.unknown.append(f"field:{change.get('field')}")
                continue
            value = change.get("value") or {}
            pid = str((value.get("metadata") or {}).get("phone_number_id") or "")
            names = {c.get("wa_id"): (c.get("profile") or {}).get("name") for c in value.get("contacts") or []}
            try:
                for st in value.get("statuses") or []:
                    batch.statuses.append(
                        StatusEvent(
                            message_id=st["id"], status=st["status"], timestamp=int(st.get("timestamp", 0)),
                            recipient_id=str(st.get("recipient_id", "")), phone_number_id=pid,
                            errors=st.get("errors") or [], pricing=st.get("pricing"),
                            conversation=st.get("conversation"),
                            biz_opaque_callback_data=st.get("biz_opaque_callback_data"),
                        )
                    )
                for msg in value.get("messages") or []:
                    wa_id = str(msg.get("from", ""))
                    batch.messages.append(
                        InboundMessage(
                            message_id=msg["id"], wa_id=wa_id, phone_number_id=pid,
                            timestamp=int(msg.get("timestamp", 0)), type=str(msg.get("type", "unknown")),
                            text=_inbound_text(msg), profile_name=names.get(wa_id),
                            context_message_id=(msg.get("context") or {}).get("id"),
                            payload={k: v for k, v in msg.items()
                                     if k not in ("id", "from", "timestamp", "type", "context")},
                        )
                    )
            except (KeyError, TypeError, ValueError, ValidationError) as exc:
                raise MalformedWebhook(f"malformed messages change: {exc}") from None
            for err in value.get("errors") or []:
                batch.errors.append({**err, "phone_number_id": pid})
            known = {"messaging_product", "metadata", "contacts", "statuses", "messages", "errors"}
            batch.unknown.extend(f"value:{k}" for k in value if k not in known)
    return batch
