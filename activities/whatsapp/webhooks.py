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


MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z: anything later is not a Unix time Meta sends


def _obj(value: Any, where: str) -> dict[str, Any]:
    """A JSON object (absent means empty); anything else is a malformed delivery naming the place."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedWebhook(f"{where} is a {type(value).__name__}, not an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedWebhook(f"{where} is a {type(value).__name__}, not a list")
    return value


def _str(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedWebhook(f"{where} is a {type(value).__name__}, not a string")
    return str(value)


def _timestamp(value: Any, where: str) -> int:
    try:
        ts = int(value if value is not None else 0)
    except (TypeError, ValueError):
        raise MalformedWebhook(f"{where} {str(value)[:40]!r} is not a Unix time") from None
    if not 0 <= ts <= MAX_TIMESTAMP:
        raise MalformedWebhook(f"{where} {ts} is out of range")
    return ts


def phone_number_ids(body: bytes) -> set[str]:
    """Which business numbers a delivery is for (to pick the app secret before trusting it)."""
    doc = _load(body)
    ids: set[str] = set()
    for entry in _list(doc.get("entry"), "entry"):
        for change in _list(_obj(entry, "entry[]").get("changes"), "changes"):
            value = _obj(_obj(change, "changes[]").get("value"), "value")
            pid = _obj(value.get("metadata"), "value.metadata").get("phone_number_id")
            if pid:
                ids.add(str(pid))
    return ids


def _load(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedWebhook(f"body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise MalformedWebhook("body is not a JSON object")
    return doc


def _inbound_text(msg: dict[str, Any]) -> str | None:
    kind = msg.get("type")
    if kind == "text":
        return _obj(msg.get("text"), "message.text").get("body")
    if kind == "button":
        return _obj(msg.get("button"), "message.button").get("text")
    if kind == "interactive":
        inter = _obj(msg.get("interactive"), "message.interactive")
        reply = _obj(inter.get("button_reply") or inter.get("list_reply"), "message.interactive reply")
        return reply.get("title")
    if kind in ("image", "video", "document"):
        return _obj(msg.get(kind), f"message.{kind}").get("caption")
    return None


def parse(body: bytes) -> WebhookBatch:
    """Parse a verified delivery; unknown kinds are listed, never fatal; a shape Meta does not send is a
    MalformedWebhook naming the place (the route answers 400 and keeps the raw body for replay)."""
    doc = _load(body)
    if doc.get("object") != "whatsapp_business_account":
        return WebhookBatch(unknown=[f"object:{str(doc.get('object'))[:60]}"])
    batch = WebhookBatch()
    try:
        for entry in _list(doc.get("entry"), "entry"):
            entry = _obj(entry, "entry[]")
            batch.waba_id = batch.waba_id or _str(entry.get("id"), "entry.id") or None
            for change in _list(entry.get("changes"), "entry.changes"):
                change = _obj(change, "changes[]")
                if change.get("field") != "messages":
                    batch.unknown.append(f"field:{str(change.get('field'))[:60]}")
                    continue
                _messages_change(batch, _obj(change.get("value"), "changes.value"))
    except (KeyError, TypeError, ValueError, ValidationError, AttributeError) as exc:
        if isinstance(exc, MalformedWebhook):
            raise
        raise MalformedWebhook(f"malformed messages change: {str(exc)[:300]}") from None
    return batch


def _messages_change(batch: WebhookBatch, value: dict[str, Any]) -> None:
    pid = _str(_obj(value.get("metadata"), "value.metadata").get("phone_number_id"), "metadata.phone_number_id")
    names: dict[Any, Any] = {}
    for c in _list(value.get("contacts"), "value.contacts"):
        c = _obj(c, "contacts[]")
        names[c.get("wa_id")] = _obj(c.get("profile"), "contacts.profile").get("name")
    for st in _list(value.get("statuses"), "value.statuses"):
        st = _obj(st, "statuses[]")
        errors = [_obj(e, "statuses.errors[]") for e in _list(st.get("errors"), "statuses.errors")]
        batch.statuses.append(StatusEvent(
            message_id=_str(st["id"], "statuses.id"), status=_str(st["status"], "statuses.status"),
            timestamp=_timestamp(st.get("timestamp"), "statuses.timestamp"),
            recipient_id=_str(st.get("recipient_id"), "statuses.recipient_id"), phone_number_id=pid,
            errors=errors, pricing=_obj(st.get("pricing"), "statuses.pricing") or None,
            conversation=_obj(st.get("conversation"), "statuses.conversation") or None,
            biz_opaque_callback_data=_str(st.get("biz_opaque_callback_data"), "statuses.biz_opaque_callback_data")
            or None,
        ))
    for msg in _list(value.get("messages"), "value.messages"):
        msg = _obj(msg, "messages[]")
        wa_id = _str(msg.get("from"), "messages.from")
        batch.messages.append(InboundMessage(
            message_id=_str(msg["id"], "messages.id"), wa_id=wa_id, phone_number_id=pid,
            timestamp=_timestamp(msg.get("timestamp"), "messages.timestamp"),
            type=_str(msg.get("type") or "unknown", "messages.type"),
            text=_inbound_text(msg), profile_name=names.get(wa_id),
            context_message_id=_obj(msg.get("context"), "messages.context").get("id"),
            payload={k: v for k, v in msg.items() if k not in ("id", "from", "timestamp", "type", "context")},
        ))
    for err in _list(value.get("errors"), "value.errors"):
        batch.errors.append({**_obj(err, "value.errors[]"), "phone_number_id": pid})
    known = {"messaging_product", "metadata", "contacts", "statuses", "messages", "errors"}
    batch.unknown.extend(f"value:{k}" for k in value if k not in known)
