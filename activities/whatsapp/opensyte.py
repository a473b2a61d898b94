"""OpenSyte `WhatsAppAction` fields → one OutboundMessage and its recipients, variables resolved.

Pure and deterministic (workflows call it). OpenSyte uses two placeholder syntaxes: `{VAR}` /
`{user.name}` (its variable resolver) and `{{ var }}` (its prebuilt workflows); both are resolved here
from the `variables` map, dotted names walking nested objects. An unknown variable is refused rather
than sent to a customer as literal braces.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from activities.whatsapp.messages import fail
from activities.whatsapp.models import (
    MAX_MESSAGE_RECIPIENTS,
    Contact,
    Location,
    Media,
    MessageType,
    OutboundMessage,
    SendWhatsAppMessageInput,
    Template,
)

DOUBLE_BRACES = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
SINGLE_BRACES = re.compile(r"\{([A-Za-z0-9_.]+)\}")
OPENSYTE_TYPES: dict[str, MessageType] = {
    "TEXT": "text", "TEMPLATE": "template", "IMAGE": "image", "VIDEO": "video", "AUDIO": "audio",
    "DOCUMENT": "document", "LOCATION": "location", "CONTACT": "contacts",
}


def lookup(variables: dict[str, Any], name: str) -> Any:
    """`a.b.c` walks nested objects; a flat key `a.b.c` wins when present."""
    if name in variables:
        return variables[name]
    node: Any = variables
    for part in name.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(name)
    return node


def resolve_text(value: str, variables: dict[str, Any], field: str) -> str:
    def sub(m: re.Match[str]) -> str:
        try:
            found = lookup(variables, m.group(1))
        except KeyError:
            fail(f"{field}", f"no value for variable {m.group(0)} in `variables`", code="unknown_variable")
        return "" if found is None else str(found)

    return SINGLE_BRACES.sub(sub, DOUBLE_BRACES.sub(sub, value))


def resolve_deep(value: Any, variables: dict[str, Any], field: str) -> Any:
    """Strings anywhere inside lists and objects (template parameters, contact cards)."""
    if isinstance(value, str):
        return resolve_text(value, variables, field)
    if isinstance(value, list):
        return [resolve_deep(v, variables, f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: resolve_deep(v, variables, f"{field}.{k}") for k, v in value.items()}
    return value


def _one(field_a: str, a: Any, field_b: str, b: Any) -> Any:
    if a is not None and b is not None and a != b:
        fail(field_a, f"conflicts with {field_b}; give one of them")
    return a if a is not None else b


def _filename_from(url: str) -> str | None:
    name = PurePosixPath(unquote(urlparse(url).path)).name
    return name or None


def _message_type(inp: SendWhatsAppMessageInput) -> MessageType:
    mapped = OPENSYTE_TYPES.get(inp.message_type) if inp.message_type else None
    media_kind = (inp.media_type or "").lower() or None
    if media_kind is not None and media_kind not in ("image", "video", "audio", "document", "sticker"):
        fail("mediaType", f"must be one of image, video, audio, document (got {inp.media_type!r})")
    if mapped in ("image", "video", "audio", "document") and media_kind and media_kind != mapped:
        fail("mediaType", f"{inp.media_type!r} contradicts messageType {inp.message_type}")
    chosen = _one("type", inp.type, "messageType", mapped)
    if chosen is not None:
        return chosen
    if inp.template is not None or inp.template_name:
        return "template"
    if inp.media is not None or inp.media_url:
        if media_kind is None:
            fail("mediaType", "is required with mediaUrl when messageType is not given")
        return media_kind  # type: ignore[return-value]
    for kind, value in (("location", inp.location), ("contacts", inp.contacts), ("reaction", inp.reaction),
                        ("interactive", inp.interactive)):
        if value:
            return kind  # type: ignore[return-value]
    return "text"


def _template(inp: SendWhatsAppMessageInput, variables: dict[str, Any]) -> Template:
    if inp.template is not None:
        if inp.template_name and inp.template_name != inp.template.name:
            fail("templateName", "conflicts with template.name")
        data = inp.template.model_dump(mode="json", exclude_defaults=False)
        return Template.model_validate(resolve_deep(data, variables, "template"))
    if not inp.template_name:
        fail("templateName", "is required for messageType TEMPLATE")
    params = resolve_deep(inp.template_params, variables, "templateParams")
    base: dict[str, Any] = {"name": inp.template_name, "language": inp.template_language or "en_US"}
    if params is None:
        pass
    elif isinstance(params, list):
        base["body"] = params
    elif isinstance(params, dict) and set(params) & {"header", "body", "buttons"}:
        extra = set(params) - {"header", "body", "buttons"}
        if extra:
            fail("templateParams", f"unexpected keys {sorted(extra)} next to header/body/buttons")
        base |= params
    elif isinstance(params, dict):
        base["body"] = params  # named parameters
    else:
        fail("templateParams", "must be a list (positional), an object (named) or {header, body, buttons}")
    try:
        return Template.model_validate(base)
    except ValueError as exc:
        fail("templateParams", f"not a valid template parameter set ({exc.__class__.__name__})")


def _media(inp: SendWhatsAppMessageInput, kind: str, variables: dict[str, Any]) -> Media:
    if inp.media is not None:
        m = inp.media
        link = resolve_text(m.link, variables, "media.link") if m.link else None
        caption = resolve_text(m.caption, variables, "media.caption") if m.caption else None
        return m.model_copy(update={"link": link, "caption": _one("media.caption", caption, "caption",
                                                                  _caption(inp, variables))})
    if not inp.media_url:
        fail("mediaUrl", f"is required for messageType {kind.upper()}")
    link = resolve_text(inp.media_url, variables, "mediaUrl")
    return Media(link=link, caption=_caption(inp, variables),
                 filename=_filename_from(link) if kind == "document" else None)


def _caption(inp: SendWhatsAppMessageInput, variables: dict[str, Any]) -> str | None:
    return resolve_text(inp.caption, variables, "caption") if inp.caption else None


def normalize(inp: SendWhatsAppMessageInput) -> tuple[list[str], OutboundMessage]:
    """Recipients (variables resolved, duplicates dropped) and the message every one of them gets."""
    variables = inp.variables or {}
    raw = [*inp.to, *(inp.to_numbers or [])]
    recipients: list[str] = []
    for i, r in enumerate(raw):
        value = resolve_text(str(r), variables, f"to[{i}]").strip()
        if value and value not in recipients:
            recipients.append(value)
    if not recipients:
        fail("to", "at least 1 recipient is required (to / toNumbers)")
    if len(recipients) > MAX_MESSAGE_RECIPIENTS:
        fail("to", f"at most {MAX_MESSAGE_RECIPIENTS} recipients per message (got {len(recipients)}); "
                   "use BulkSendWhatsAppTemplate for more")
    kind = _message_type(inp)
    msg = OutboundMessage(type=kind, preview_url=inp.preview_url, reply_to_message_id=inp.reply_to_message_id)
    if kind == "text":
        text = _one("text", inp.text, "textMessage", inp.text_message)
        if text is None:
            fail("text", "is required for a text message (text / textMessage)")
        msg.text = resolve_text(text, variables, "text")
    elif kind == "template":
        msg.template = _template(inp, variables)
    elif kind in ("image", "video", "audio", "document", "sticker"):
        msg.media = _media(inp, kind, variables)
    elif kind == "location":
        loc = inp.location
        if loc is None and isinstance(inp.template_params, dict):
            try:
                loc = Location.model_validate(resolve_deep(inp.template_params, variables, "templateParams"))
            except ValueError:
                fail("templateParams", "for LOCATION give {latitude, longitude, name?, address?}")
        msg.location = loc
    elif kind == "contacts":
        contacts = inp.contacts
        if not contacts and inp.template_params is not None:
            params = resolve_deep(inp.template_params, variables, "templateParams")
            try:
                contacts = [Contact.model_validate(c) for c in (params if isinstance(params, list) else [params])]
            except ValueError:
                fail("templateParams", "for CONTACT give a contact card {name: {formatted_name}, phones: [...]}"
                                       " or a list of them")
        msg.contacts = contacts
    elif kind == "reaction":
        msg.reaction = inp.reaction
    elif kind == "interactive":
        if inp.interactive is not None:
            data = resolve_deep(inp.interactive.model_dump(mode="json"), variables, "interactive")
            msg.interactive = type(inp.interactive).model_validate(data)
    return recipients, msg
