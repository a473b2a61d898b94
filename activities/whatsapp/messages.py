"""Cloud API message bodies built from our models, after checking Meta's documented limits.

Pure functions (no I/O): activities call them before any provider call and workflows call them to
reject bad input early. Every refusal is a PermanentError whose message names the field and the limit.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn
from urllib.parse import urlparse

from activities.whatsapp.models import (
    LANGUAGE_PATTERN,
    Contact,
    Interactive,
    Location,
    Media,
    OutboundMessage,
    ParamValue,
    Reaction,
    Template,
    TemplateButtonParams,
    TemplateParam,
)
from core.errors import PermanentError

# Meta's limits (Cloud API OpenAPI: ActionObject, SectionObject, HeaderObject, BodyObject, FooterObject).
TEXT_MAX = 4096
CAPTION_MAX = 1024
BUTTONS_MIN, BUTTONS_MAX = 1, 3
BUTTON_ID_MAX, BUTTON_TITLE_MAX = 256, 20
LIST_BUTTON_MAX = 20
SECTIONS_MIN, SECTIONS_MAX = 1, 10
SECTION_TITLE_MAX = 24
ROWS_MAX = 10
ROW_ID_MAX, ROW_TITLE_MAX, ROW_DESCRIPTION_MAX = 200, 24, 72
HEADER_TEXT_MAX, BODY_TEXT_MAX, FOOTER_TEXT_MAX = 60, 1024, 60
CONTACTS_MIN, CONTACTS_MAX = 1, 5
TEMPLATE_NAME_MAX = 512
REACTION_EMOJI_MAX_CODEPOINTS = 10  # one emoji may be a ZWJ sequence of several code points
CAPTION_TYPES = ("image", "video", "document")

LANGUAGE_RE = re.compile(LANGUAGE_PATTERN)
PARAM_NAME_RE = re.compile(r"^[a-z0-9_]+$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


def fail(field: str, problem: str, code: str = "invalid_message") -> NoReturn:
    """Refuse before any call; the message names the field and the limit."""
    raise PermanentError(f"{field}: {problem}", code=code, details={"field": field})


def _text(field: str, value: str | None, limit: int, *, required: bool = True) -> None:
    if value is None or value == "":
        if required:
            fail(field, "is required")
        return
    if len(value) > limit:
        fail(field, f"at most {limit} characters allowed (got {len(value)})")


def _count(field: str, items: list[Any], low: int, high: int, what: str) -> None:
    if not low <= len(items) <= high:
        fail(field, f"{low}-{high} {what} allowed (got {len(items)})")


def _unique(field: str, values: list[str]) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            fail(field, f"ids must be unique ({v!r} repeats)")
        seen.add(v)


def _link(field: str, link: str) -> None:
    parsed = urlparse(link)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        fail(field, f"must be an http(s) URL (got {link[:80]!r})")


def media_object(field: str, media: Media | None, kind: str) -> dict[str, Any]:
    """Exactly one of id or link; caption only on image/video/document; filename only on documents."""
    if media is None:
        fail(field, f"{kind} needs a media object with `id` or `link`")
    if bool(media.id) == bool(media.link):
        fail(field, "exactly one of `id` (uploaded media) or `link` (URL) is required")
    out: dict[str, Any] = {}
    if media.link:
        _link(f"{field}.link", media.link)
        out["link"] = media.link
    else:
        out["id"] = media.id
    if media.caption:
        if kind not in CAPTION_TYPES:
            fail(f"{field}.caption", f"{kind} messages take no caption (only {', '.join(CAPTION_TYPES)})")
        _text(f"{field}.caption", media.caption, CAPTION_MAX)
        out["caption"] = media.caption
    if media.filename:
        if kind != "document":
            fail(f"{field}.filename", "only documents take a filename")
        out["filename"] = media.filename
    return out


def location_object(field: str, loc: Location | None) -> dict[str, Any]:
    if loc is None:
        fail(field, "latitude and longitude are required")
    if not -90 <= loc.latitude <= 90:
        fail(f"{field}.latitude", f"must be between -90 and 90 (got {loc.latitude})")
    if not -180 <= loc.longitude <= 180:
        fail(f"{field}.longitude", f"must be between -180 and 180 (got {loc.longitude})")
    out: dict[str, Any] = {"latitude": loc.latitude, "longitude": loc.longitude}
    if loc.name:
        out["name"] = loc.name
    if loc.address:
        out["address"] = loc.address
    return out


def contacts_list(field: str, contacts: list[Contact]) -> list[dict[str, Any]]:
    _count(field, contacts, CONTACTS_MIN, CONTACTS_MAX, "contacts")
    out = []
    for i, c in enumerate(contacts):
        if not str(c.name.get("formatted_name") or "").strip():
            fail(f"{field}[{i}].name.formatted_name", "is required")
        out.append(c.model_dump(exclude_none=True, exclude_defaults=True) | {"name": c.name})
    return out


def reaction_object(field: str, r: Reaction | None) -> dict[str, Any]:
    if r is None or not r.message_id:
        fail(f"{field}.message_id", "the message to react to is required")
    emoji = r.emoji
    if emoji:
        # No text: an emoji has a non-ASCII code point and no letters or spaces (keycaps like 1️⃣ pass).
        if (len(emoji) > REACTION_EMOJI_MAX_CODEPOINTS or not any(ord(ch) > 0x7F for ch in emoji)
                or any(ch.isspace() or (ch.isascii() and ch.isalpha()) for ch in emoji)):
            fail(f"{field}.emoji", "must be a single emoji (or empty to remove the reaction)")
    return {"message_id": r.message_id, "emoji": emoji}


def interactive_object(field: str, it: Interactive | None) -> dict[str, Any]:
    if it is None:
        fail(field, "interactive content is required")
    out: dict[str, Any] = {"type": it.type}
    _text(f"{field}.body", it.body, BODY_TEXT_MAX)
    out["body"] = {"text": it.body}
    if it.footer:
        _text(f"{field}.footer", it.footer, FOOTER_TEXT_MAX)
        out["footer"] = {"text": it.footer}
    if it.header is not None:
        h = it.header
        if h.type == "text":
            _text(f"{field}.header.text", h.text, HEADER_TEXT_MAX)
            out["header"] = {"type": "text", "text": h.text}
        else:
            if it.type == "list":
                fail(f"{field}.header.type", "list messages take only a text header")
            out["header"] = {"type": h.type, h.type: media_object(f"{field}.header.media", h.media, h.type)}
    if it.type == "button":
        if it.sections:
            fail(f"{field}.sections", "reply-button messages take `buttons`, not sections")
        _count(f"{field}.buttons", it.buttons, BUTTONS_MIN, BUTTONS_MAX, "reply buttons")
        for i, b in enumerate(it.buttons):
            _text(f"{field}.buttons[{i}].id", b.id, BUTTON_ID_MAX)
            _text(f"{field}.buttons[{i}].title", b.title, BUTTON_TITLE_MAX)
        _unique(f"{field}.buttons", [b.id for b in it.buttons])
        out["action"] = {"buttons": [{"type": "reply", "reply": {"id": b.id, "title": b.title}}
                                     for b in it.buttons]}
        return out
    if it.buttons:
        fail(f"{field}.buttons", "list messages take `sections`, not reply buttons")
    _text(f"{field}.button", it.button, LIST_BUTTON_MAX)
    _count(f"{field}.sections", it.sections, SECTIONS_MIN, SECTIONS_MAX, "sections")
    total = sum(len(s.rows) for s in it.sections)
    if total > ROWS_MAX:
        fail(f"{field}.sections", f"at most {ROWS_MAX} rows in total across sections (got {total})")
    sections = []
    for si, s in enumerate(it.sections):
        sf = f"{field}.sections[{si}]"
        _text(f"{sf}.title", s.title, SECTION_TITLE_MAX, required=len(it.sections) > 1)
        if not s.rows:
            fail(f"{sf}.rows", "each section needs at least 1 row")
        rows = []
        for ri, row in enumerate(s.rows):
            _text(f"{sf}.rows[{ri}].id", row.id, ROW_ID_MAX)
            _text(f"{sf}.rows[{ri}].title", row.title, ROW_TITLE_MAX)
            _text(f"{sf}.rows[{ri}].description", row.description, ROW_DESCRIPTION_MAX, required=False)
            rows.append({"id": row.id, "title": row.title}
                        | ({"description": row.description} if row.description else {}))
        sections.append(({"title": s.title} if s.title else {}) | {"rows": rows})
    _unique(f"{field}.sections.rows", [r.id for s in it.sections for r in s.rows])
    out["action"] = {"button": it.button, "sections": sections}
    return out


# ---- templates ------------------------------------------------------------------------------
def as_param(value: ParamValue, *, default_type: str = "text") -> TemplateParam:
    """A plain string or number is a text parameter (a quick-reply button's is a payload)."""
    if isinstance(value, TemplateParam):
        return value
    if default_type == "payload":
        return TemplateParam(type="payload", payload=str(value))
    return TemplateParam(type="text", text=str(value))


def param_object(field: str, p: TemplateParam) -> dict[str, Any]:
    out: dict[str, Any] = {"type": p.type}
    if p.type == "text":
        if p.text is None or p.text == "":
            fail(f"{field}.text", "a text parameter needs a non-empty `text`")
        out["text"] = p.text
    elif p.type == "payload":
        if not p.payload:
            fail(f"{field}.payload", "a payload parameter needs `payload`")
        out["payload"] = p.payload
    elif p.type == "currency":
        if p.currency is None:
            fail(f"{field}.currency", "a currency parameter needs amount_1000, code and fallback_value")
        if not CURRENCY_RE.match(p.currency.code):
            fail(f"{field}.currency.code", f"must be an ISO 4217 code like USD (got {p.currency.code!r})")
        if not p.currency.fallback_value:
            fail(f"{field}.currency.fallback_value", "is required")
        out["currency"] = p.currency.model_dump()
    elif p.type == "date_time":
        if p.date_time is None or not p.date_time.fallback_value:
            fail(f"{field}.date_time.fallback_value", "is required")
        out["date_time"] = p.date_time.model_dump(exclude_none=True)
    elif p.type in ("image", "video", "document"):
        out[p.type] = media_object(f"{field}.{p.type}", getattr(p, p.type), p.type)
    elif p.type == "location":
        out["location"] = location_object(f"{field}.location", p.location)
    if p.parameter_name:
        out["parameter_name"] = p.parameter_name
    return out


def body_params(field: str, body: list[ParamValue] | dict[str, ParamValue]) -> list[TemplateParam]:
    """Positional (list) or named (object) body parameters as TemplateParams."""
    if isinstance(body, dict):
        out = []
        for name, value in body.items():
            if not PARAM_NAME_RE.match(name):
                fail(f"{field}.{name}", "named parameters use lowercase letters, digits and underscores")
            p = as_param(value)
            out.append(p.model_copy(update={"parameter_name": name}))
        return out
    params = [as_param(v) for v in body]
    for i, p in enumerate(params):
        if p.parameter_name:
            fail(f"{field}[{i}].parameter_name", "positional parameters take no name (pass an object for named)")
    return params


def template_object(field: str, t: Template | None) -> dict[str, Any]:
    if t is None:
        fail(field, "template name and language are required")
    _text(f"{field}.name", t.name, TEMPLATE_NAME_MAX)
    if not LANGUAGE_RE.match(t.language or ""):
        fail(f"{field}.language", f"must be a language code like en_US (got {t.language!r})")
    components: list[dict[str, Any]] = []
    if t.header:
        params = [param_object(f"{field}.header[{i}]", as_param(v)) for i, v in enumerate(t.header)]
        for i, p in enumerate(params):
            if p["type"] == "text" and len(p["text"]) > HEADER_TEXT_MAX:
                fail(f"{field}.header[{i}].text", f"at most {HEADER_TEXT_MAX} characters allowed")
        components.append({"type": "header", "parameters": params})
    body = body_params(f"{field}.body", t.body)
    if body:
        components.append({"type": "body", "parameters": [param_object(f"{field}.body[{i}]", p)
                                                          for i, p in enumerate(body)]})
    for bi, b in enumerate(t.buttons):
        components.append(button_component(f"{field}.buttons[{bi}]", b))
    out: dict[str, Any] = {"name": t.name, "language": {"code": t.language}}
    if components:
        out["components"] = components
    return out


def button_component(field: str, b: TemplateButtonParams) -> dict[str, Any]:
    if b.index < 0 or b.index > 9:
        fail(f"{field}.index", f"must be 0-9 (got {b.index})")
    default = "payload" if b.sub_type == "quick_reply" else "text"
    params = [param_object(f"{field}.parameters[{i}]", as_param(v, default_type=default))
              for i, v in enumerate(b.parameters)]
    return {"type": "button", "sub_type": b.sub_type, "index": str(b.index), "parameters": params}


# ---- whole messages ----------------------------------------------------------------------------
def build_payload(msg: OutboundMessage, field: str = "message") -> dict[str, Any]:
    """The `type` and type object of a Cloud API message (recipient added by the client)."""
    t = msg.type
    payload: dict[str, Any] = {"type": t}
    if t == "text":
        _text(f"{field}.text", msg.text, TEXT_MAX)
        payload["text"] = {"body": msg.text, "preview_url": msg.preview_url}
    elif t in ("image", "video", "audio", "document", "sticker"):
        payload[t] = media_object(f"{field}.media", msg.media, t)
    elif t == "location":
        payload["location"] = location_object(f"{field}.location", msg.location)
    elif t == "contacts":
        payload["contacts"] = contacts_list(f"{field}.contacts", msg.contacts)
    elif t == "reaction":
        payload["reaction"] = reaction_object(f"{field}.reaction", msg.reaction)
    elif t == "interactive":
        payload["interactive"] = interactive_object(f"{field}.interactive", msg.interactive)
    elif t == "template":
        payload["template"] = template_object(f"{field}.template", msg.template)
    else:  # pragma: no cover - the model's Literal admits nothing else
        fail(f"{field}.type", f"unsupported message type {t!r}")
    if msg.reply_to_message_id:
        if t == "reaction":
            fail(f"{field}.reply_to_message_id", "a reaction names its message in reaction.message_id")
        payload["context"] = {"message_id": msg.reply_to_message_id}
    return payload


def is_free_form(msg: OutboundMessage) -> bool:
    """Everything but a template needs an open customer-service window."""
    return msg.type != "template"


def validate(msg: OutboundMessage, field: str = "message") -> None:
    """Raise a PermanentError naming the field and limit when `msg` breaks a documented limit."""
    build_payload(msg, field)


def summary(msg: OutboundMessage) -> str | None:
    """A short text for the conversation view (no media bytes, no parameters)."""
    if msg.type == "text":
        return msg.text
    if msg.type == "template" and msg.template:
        return f"[template {msg.template.name}]"
    if msg.type in ("image", "video", "audio", "document", "sticker"):
        return msg.media.caption if msg.media and msg.media.caption else f"[{msg.type}]"
    if msg.type == "interactive" and msg.interactive:
        return msg.interactive.body
    return f"[{msg.type}]"
