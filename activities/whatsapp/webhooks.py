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
            value = _obj(change.get("value"))
            pid = str(_obj(value.get("metadata")).get("phone_number_id") or "")
            env = parts.setdefault(pid, {"object": doc["object"], "entry": []})
            if not env["entry"] or env["entry"][-1]["id"] != entry.get("id"):
                env["entry"].append({"id": entry.get("id"), "changes": []})
            env["entry"][-1]["changes"].append(change)
    return parts, unknown


def _load(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedWebhook(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedWebhook("body is not a JSON object")
    return doc


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _media(kind: str, part: dict[str, Any]) -> InboundMedia:
    return InboundMedia(
        id=str(part.get("id") or ""), mime_type=_str(part.get("mime_type")), sha256=_str(part.get("sha256")),
        caption=_str(part.get("caption")), filename=_str(part.get("filename")),
        voice=part.get("voice") if kind == "audio" and isinstance(part.get("voice"), bool) else None,
        animated=part.get("animated") if kind == "sticker" and isinstance(part.get("animated"), bool) else None,
        url=_str(part.get("url")))


def _contact_card(card: dict[str, Any]) -> InboundContactCard:
    lists = {k: [x for x in card.get(k) or [] if isinstance(x, dict)]
             for k in ("phones", "emails", "addresses", "urls")}
    org = card.get("org") if isinstance(card.get("org"), dict) else None
    return InboundContactCard(name=_obj(card.get("name")), org=org, birthday=_str(card.get("birthday")),
                              vcard=_str(card.get("vcard")), **lists)


def _reply(inter: dict[str, Any]) -> InboundReply:
    kind = str(inter.get("type") or "")
    part = _obj(inter.get(kind))
    return InboundReply(type=kind, id=_str(part.get("id")), title=_str(part.get("title")),
                        description=_str(part.get("description")), name=_str(part.get("name")),
                        body=_str(part.get("body")), response_json=_str(part.get("response_json")))


def _context(ctx: dict[str, Any]) -> MessageContext | None:
    if not ctx:
        return None
    product = ctx.get("referred_product")
    return MessageContext(message_id=_str(ctx.get("id")), sender=_str(ctx.get("from")),
                          forwarded=bool(ctx.get("forwarded")),
                          frequently_forwarded=bool(ctx.get("frequently_forwarded")),
                          referred_product=product if isinstance(product, dict) else None)


def content(msg: dict[str, Any]) -> InboundContent:
    """Every inbound type Meta documents, normalized; a type we do not know keeps its object in `raw`."""
    kind = str(msg.get("type") or "unknown")
    part = _obj(msg.get(kind))
    out = InboundContent(type=kind, context=_context(_obj(msg.get("context"))),
                         errors=[e for e in msg.get("errors") or [] if isinstance(e, dict)])
    if isinstance(msg.get("referral"), dict):
        out.referral = Referral.model_validate({k: v for k, v in msg["referral"].items()
                                                if k in Referral.model_fields})
    if kind == "text":
        out.text = _str(part.get("body"))
    elif kind in MEDIA_TYPES:
        out.media = _media(kind, part)
        out.text = out.media.caption
    elif kind == "location":
        out.location = InboundLocation(latitude=float(part["latitude"]), longitude=float(part["longitude"]),
                                       name=_str(part.get("name")), address=_str(part.get("address")),
                                       url=_str(part.get("url")))
        out.text = out.location.name or out.location.address
    elif kind == "contacts":
        out.contacts = [_contact_card(c) for c in msg.get("contacts") or [] if isinstance(c, dict)]
        out.text = ", ".join(str(c.name.get("formatted_name")) for c in out.contacts if c.name.get("formatted_name"))
    elif kind == "interactive":
        out.reply = _reply(part)
        out.choice = out.reply.id
        out.text = out.reply.title or out.reply.body
    elif kind == "button":
        out.button = InboundButton(payload=_str(part.get("payload")), text=_str(part.get("text")))
        out.choice = out.button.payload
        out.text = out.button.text
    elif kind == "reaction":
        out.reaction = InboundReaction(message_id=_str(part.get("message_id")), emoji=_str(part.get("emoji")) or None)
        out.text = out.reaction.emoji
    elif kind == "order":
        items = [OrderItem.model_validate({k: v for k, v in i.items() if k in OrderItem.model_fields})
                 for i in part.get("product_items") or [] if isinstance(i, dict)]
        out.order = InboundOrder(catalog_id=_str(part.get("catalog_id")), text=_str(part.get("text")) or None,
                                 product_items=items)
        out.text = out.order.text
    elif kind == "system":
        out.system = InboundSystem.model_validate({k: _str(v) for k, v in part.items()
                                                   if k in InboundSystem.model_fields})
        out.text = out.system.body
    else:  # unsupported, or a type Meta added after this code: keep it whole
        out.raw = {k: v for k, v in msg.items() if k not in ("id", "from", "from_user_id", "timestamp", "context")}
    return out


def _status(st: dict[str, Any], pid: str) -> StatusEvent:
    recipient = str(st.get("recipient_id") or st.get("recipient_user_id") or "")
    if not recipient:
        raise KeyError("recipient_id")
    return StatusEvent(
        message_id=st["id"], status=st["status"], timestamp=int(st.get("timestamp", 0)), recipient_id=recipient,
        recipient_user_id=_str(st.get("recipient_user_id")), phone_number_id=pid, errors=st.get("errors") or [],
        pricing=st.get("pricing"), conversation=st.get("conversation"))


def _inbound(msg: dict[str, Any], pid: str, people: dict[str, dict[str, Any]]) -> InboundMessage:
    """A customer is their phone number (`from` / `wa_id`) when Meta shares it, else their BSUID
    (`from_user_id` / `user_id`); a message with neither is malformed (never an empty key)."""
    wa_id = _str(msg.get("from")) or None
    user_id = _str(msg.get("from_user_id")) or None
    person = people.get(wa_id or "") or people.get(user_id or "") or {}
    wa_id = wa_id or _str(person.get("wa_id")) or None
    user_id = user_id or _str(person.get("user_id")) or None
    customer = wa_id or user_id
    if not customer:
        raise KeyError("from / from_user_id")
    profile = _obj(person.get("profile"))
    body = content(msg)
    return InboundMessage(
        message_id=msg["id"], customer=customer, wa_id=wa_id, user_id=user_id,
        parent_user_id=_str(person.get("parent_user_id") or msg.get("from_parent_user_id")) or None,
        username=_str(profile.get("username")) or None, phone_number_id=pid,
        timestamp=int(msg.get("timestamp", 0)), type=body.type, text=body.text, profile_name=_str(profile.get("name")),
        context_message_id=body.context.message_id if body.context else None, content=body)


def parse(body: bytes | dict[str, Any]) -> WebhookBatch:
    """Parse a verified delivery (raw bytes, or one envelope of `split_by_number`); unknown kinds are listed,
    never fatal."""
    doc = body if isinstance(body, dict) else _load(body)
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
            people: dict[str, dict[str, Any]] = {}
            for c in value.get("contacts") or []:
                if isinstance(c, dict):
                    for key in (c.get("wa_id"), c.get("user_id")):
                        if key:
                            people[str(key)] = c
            try:
                batch.statuses.extend(_status(st, pid) for st in value.get("statuses") or [])
                batch.messages.extend(_inbound(msg, pid, people) for msg in value.get("messages") or [])
            except (KeyError, TypeError, ValueError, ValidationError) as exc:
                raise MalformedWebhook(f"malformed messages change: {exc}") from None
            for err in value.get("errors") or []:
                batch.errors.append({**err, "phone_number_id": pid})
            known = {"messaging_product", "metadata", "contacts", "statuses", "messages", "errors"}
            batch.unknown.extend(f"value:{k}" for k in value if k not in known)
    return batch
