"""Meta webhook verification (X-Hub-Signature-256 on raw bytes) and parsing."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from pydantic import ValidationError

from activities.whatsapp.models import (
    MEDIA_TYPES,
    InboundButton,
    InboundContactCard,
    InboundContent,
    InboundLocation,
    InboundMedia,
    InboundMessage,
    InboundOrder,
    InboundReaction,
    InboundReply,
    InboundSystem,
    MessageContext,
    OrderItem,
    Referral,
    StatusEvent,
    WebhookBatch,
)

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
    return hmac.compare_digest(expected.encode(), header.removeprefix("sha256=").lower().encode())


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


def split_by_number(body: bytes) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """One envelope per business number (`metadata.phone_number_id`) of a verified delivery, and the parts that
    are not `messages` changes (listed, never fatal). A `messages` change without a number is keyed "".

    Meta posts every number of an app to one callback URL, and one delivery may carry changes of several
    numbers: each must run under the connection that owns its number.
    """
    doc = _load(body)
    if doc.get("object") != "whatsapp_business_account":
        return {}, [f"object:{doc.get('object')}"]
    parts: dict[str, dict[str, Any]] = {}
    unknown: list[str] = []
    for entry in doc.get("entry") or []:
        if not isinstance(entry, dict):
            raise MalformedWebhook("entry: not an object")
        for change in entry.get("changes") or []:
            if not isinstance(change, dict):
                raise MalformedWebhook("changes: not an object")
            if change.get("field") != "messages":
                unknown.append(f"field:{change.get('field')}")
                continue
            value = _dict(change.get("value"))
            pid = str(_dict(value.get("metadata")).get("phone_number_id") or "")
            env = parts.setdefault(pid, {"object": doc["object"], "entry": []})
            if not env["entry"] or env["entry"][-1]["id"] != entry.get("id"):
                env["entry"].append({"id": entry.get("id"), "changes": []})
            env["entry"][-1]["changes"].append(change)
    return parts, unknown


def _load(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedWebhook(f"body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise MalformedWebhook("body is not a JSON object")
    return doc


def _text(value: Any) -> str | None:
    """Lenient, for message content: Meta may add fields or send numbers where text is documented."""
    return None if value is None else str(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _media(kind: str, part: dict[str, Any]) -> InboundMedia:
    return InboundMedia(
        id=str(part.get("id") or ""), mime_type=_text(part.get("mime_type")), sha256=_text(part.get("sha256")),
        caption=_text(part.get("caption")), filename=_text(part.get("filename")),
        voice=part.get("voice") if kind == "audio" and isinstance(part.get("voice"), bool) else None,
        animated=part.get("animated") if kind == "sticker" and isinstance(part.get("animated"), bool) else None,
        url=_text(part.get("url")))


def _contact_card(card: dict[str, Any]) -> InboundContactCard:
    lists = {k: [x for x in card.get(k) or [] if isinstance(x, dict)]
             for k in ("phones", "emails", "addresses", "urls")}
    org = card.get("org") if isinstance(card.get("org"), dict) else None
    return InboundContactCard(name=_dict(card.get("name")), org=org, birthday=_text(card.get("birthday")),
                              vcard=_text(card.get("vcard")), **lists)


def _reply(inter: dict[str, Any]) -> InboundReply:
    kind = str(inter.get("type") or "")
    part = _dict(inter.get(kind))
    return InboundReply(type=kind, id=_text(part.get("id")), title=_text(part.get("title")),
                        description=_text(part.get("description")), name=_text(part.get("name")),
                        body=_text(part.get("body")), response_json=_text(part.get("response_json")))


def _context(ctx: dict[str, Any]) -> MessageContext | None:
    if not ctx:
        return None
    product = ctx.get("referred_product")
    return MessageContext(message_id=_text(ctx.get("id")), sender=_text(ctx.get("from")),
                          forwarded=bool(ctx.get("forwarded")),
                          frequently_forwarded=bool(ctx.get("frequently_forwarded")),
                          referred_product=product if isinstance(product, dict) else None)


# Message types whose part (`msg[type]`) Meta documents as an object.
OBJECT_PARTS = frozenset({"text", "location", "interactive", "button", "reaction", "order", "system"}
                         | set(MEDIA_TYPES))


def content(msg: dict[str, Any]) -> InboundContent:
    """Every inbound type Meta documents, normalized; a type we do not know keeps its object in `raw`."""
    kind = str(msg.get("type") or "unknown")
    part = _dict(msg.get(kind))
    if kind in OBJECT_PARTS and msg.get(kind) is not None and not isinstance(msg.get(kind), dict):
        # Meta always writes these as objects: anything else is not Meta's (and would lose the content).
        raise MalformedWebhook(f"messages.{kind} is a {type(msg.get(kind)).__name__}, not an object")
    if kind == "contacts" and not isinstance(msg.get("contacts") or [], list):
        raise MalformedWebhook("messages.contacts is not a list")
    out = InboundContent(type=kind, context=_context(_dict(msg.get("context"))),
                         errors=[e for e in msg.get("errors") or [] if isinstance(e, dict)])
    if isinstance(msg.get("referral"), dict):
        out.referral = Referral.model_validate({k: v for k, v in msg["referral"].items()
                                                if k in Referral.model_fields})
    if kind == "text":
        out.text = _text(part.get("body"))
    elif kind in MEDIA_TYPES:
        out.media = _media(kind, part)
        out.text = out.media.caption
    elif kind == "location":
        out.location = InboundLocation(latitude=float(part["latitude"]), longitude=float(part["longitude"]),
                                       name=_text(part.get("name")), address=_text(part.get("address")),
                                       url=_text(part.get("url")))
        out.text = out.location.name or out.location.address
    elif kind == "contacts":
        out.contacts = [_contact_card(c) for c in msg.get("contacts") or [] if isinstance(c, dict)]
        out.text = ", ".join(str(c.name.get("formatted_name")) for c in out.contacts if c.name.get("formatted_name"))
    elif kind == "interactive":
        out.reply = _reply(part)
        out.choice = out.reply.id
        out.text = out.reply.title or out.reply.body
    elif kind == "button":
        out.button = InboundButton(payload=_text(part.get("payload")), text=_text(part.get("text")))
        out.choice = out.button.payload
        out.text = out.button.text
    elif kind == "reaction":
        out.reaction = InboundReaction(message_id=_text(part.get("message_id")), emoji=_text(part.get("emoji")) or None)
        out.text = out.reaction.emoji
    elif kind == "order":
        items = [OrderItem.model_validate({k: v for k, v in i.items() if k in OrderItem.model_fields})
                 for i in part.get("product_items") or [] if isinstance(i, dict)]
        out.order = InboundOrder(catalog_id=_text(part.get("catalog_id")), text=_text(part.get("text")) or None,
                                 product_items=items)
        out.text = out.order.text
    elif kind == "system":
        out.system = InboundSystem.model_validate({k: _text(v) for k, v in part.items()
                                                   if k in InboundSystem.model_fields})
        out.text = out.system.body
    else:  # unsupported, or a type Meta added after this code: keep it whole
        out.raw = {k: v for k, v in msg.items() if k not in ("id", "from", "from_user_id", "timestamp", "context")}
    return out


def _status(st: dict[str, Any], pid: str) -> StatusEvent:
    recipient = (_str(st.get("recipient_id"), "statuses.recipient_id")
                 or _str(st.get("recipient_user_id"), "statuses.recipient_user_id"))
    if not recipient:
        raise KeyError("recipient_id")
    return StatusEvent(
        message_id=_str(st["id"], "statuses.id"), status=_str(st["status"], "statuses.status"),
        timestamp=_timestamp(st.get("timestamp"), "statuses.timestamp"), recipient_id=recipient,
        recipient_user_id=_str(st.get("recipient_user_id"), "statuses.recipient_user_id") or None,
        phone_number_id=pid,
        errors=[_obj(e, "statuses.errors[]") for e in _list(st.get("errors"), "statuses.errors")],
        pricing=_obj(st.get("pricing"), "statuses.pricing") or None,
        conversation=_obj(st.get("conversation"), "statuses.conversation") or None,
        biz_opaque_callback_data=_str(st.get("biz_opaque_callback_data"), "statuses.biz_opaque_callback_data")
        or None)


def _inbound(msg: dict[str, Any], pid: str, people: dict[str, dict[str, Any]]) -> InboundMessage:
    """A customer is their phone number (`from` / `wa_id`) when Meta shares it, else their BSUID
    (`from_user_id` / `user_id`); a message with neither is malformed (never an empty key)."""
    wa_id = _text(msg.get("from")) or None
    user_id = _text(msg.get("from_user_id")) or None
    person = people.get(wa_id or "") or people.get(user_id or "") or {}
    wa_id = wa_id or _text(person.get("wa_id")) or None
    user_id = user_id or _text(person.get("user_id")) or None
    customer = wa_id or user_id
    if not customer:
        raise KeyError("from / from_user_id")
    profile = _dict(person.get("profile"))
    body = content(msg)
    return InboundMessage(
        message_id=_str(msg["id"], "messages.id"), customer=customer, wa_id=wa_id, user_id=user_id,
        parent_user_id=_str(person.get("parent_user_id") or msg.get("from_parent_user_id"), "parent_user_id")
        or None,
        username=_text(profile.get("username")) or None, phone_number_id=pid,
        timestamp=_timestamp(msg.get("timestamp"), "messages.timestamp"), type=body.type, text=body.text,
        profile_name=_text(profile.get("name")),
        context_message_id=body.context.message_id if body.context else None, content=body)


def parse(body: bytes | dict[str, Any]) -> WebhookBatch:
    """Parse a verified delivery (raw bytes, or one envelope of `split_by_number`); unknown kinds are listed,
    never fatal."""
    doc = body if isinstance(body, dict) else _load(body)
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
    people: dict[str, dict[str, Any]] = {}
    for c in _list(value.get("contacts"), "value.contacts"):
        c = _obj(c, "contacts[]")
        for key in (c.get("wa_id"), c.get("user_id")):
            if key:
                people[_str(key, "contacts.wa_id")] = c
    for st in _list(value.get("statuses"), "value.statuses"):
        batch.statuses.append(_status(_obj(st, "statuses[]"), pid))
    for msg in _list(value.get("messages"), "value.messages"):
        batch.messages.append(_inbound(_obj(msg, "messages[]"), pid, people))
    for err in _list(value.get("errors"), "value.errors"):
        batch.errors.append({**_obj(err, "value.errors[]"), "phone_number_id": pid})
    known = {"messaging_product", "metadata", "contacts", "statuses", "messages", "errors"}
    batch.unknown.extend(f"value:{k}" for k in value if k not in known)
