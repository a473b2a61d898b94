"""Message templates: fetched per WABA (paged), cached with a TTL, checked before every template send."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

from activities.whatsapp.client import WhatsAppClient
from activities.whatsapp.messages import as_param, body_params
from activities.whatsapp.models import Template, TemplateParam
from activities.whatsapp.spec import TEMPLATE_CACHE_SECONDS
from core.errors import ConfigurationError, PermanentError

CACHE_KEY = "whatsapp.templates"
POSITIONAL_RE = re.compile(r"\{\{\s*(\d+)\s*\}\}")
NAMED_RE = re.compile(r"\{\{\s*([a-z0-9_]+)\s*\}\}")
# After a miss, look again at most this often (a template approved minutes ago must become usable).
MISS_REFETCH_SECONDS = 5.0
BODY_KINDS = ("text", "currency", "date_time")


@dataclass
class _Cache:
    fetched_at: float = 0.0
    by_key: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _cache(client: WhatsAppClient) -> _Cache:
    caches: dict[str, _Cache] = client.act.rt.extras.setdefault(CACHE_KEY, {})
    return caches.setdefault(client.act.connection.id, _Cache())


def invalidate(client: WhatsAppClient) -> None:
    _cache(client).fetched_at = 0.0


async def all_templates(client: WhatsAppClient, *, refresh: bool = False) -> dict[tuple[str, str], dict[str, Any]]:
    """{(name, language): template}, from cache while fresh (one fetch per connection at a time)."""
    cache = _cache(client)
    ttl = float(client.act.settings.get("template_cache_seconds") or TEMPLATE_CACHE_SECONDS)
    async with cache.lock:
        if refresh or time.monotonic() - cache.fetched_at > ttl:
            if not client.waba_id:
                raise ConfigurationError("connection has no waba_id setting: templates cannot be looked up",
                                         code="waba_id_missing", provider="whatsapp")
            items = await client.templates()
            cache.by_key = {(str(t.get("name")), str(t.get("language"))): t for t in items}
            cache.fetched_at = time.monotonic()
        return cache.by_key


async def find(client: WhatsAppClient, name: str, language: str) -> dict[str, Any]:
    """The template definition, or a ConfigurationError naming what is missing."""
    found = (await all_templates(client)).get((name, language))
    if found is None and time.monotonic() - _cache(client).fetched_at > MISS_REFETCH_SECONDS:
        found = (await all_templates(client, refresh=True)).get((name, language))
    if found is None:
        langs = sorted(lang for (n, lang) in _cache(client).by_key if n == name)
        hint = f"; it exists in {', '.join(langs)}" if langs else ""
        raise ConfigurationError(f"template {name!r} does not exist in language {language}{hint}",
                                 code="template_not_found", provider="whatsapp",
                                 details={"template": name, "language": language})
    return found


def category_of(tpl: dict[str, Any]) -> str:
    return str(tpl.get("category") or "utility").lower()


def check(tpl: dict[str, Any], t: Template) -> str:
    """Approved, and the parameters fit the placeholders in count and kind; returns the category."""
    status = str(tpl.get("status") or "UNKNOWN").upper()
    if status != "APPROVED":
        raise ConfigurationError(
            f"template {t.name!r} ({t.language}) is {status}, not APPROVED: it cannot be sent until Meta "
            "approves it" + (" again (quality)" if status in ("PAUSED", "DISABLED", "FLAGGED") else ""),
            code=f"template_{status.lower()}", provider="whatsapp",
            details={"template": t.name, "language": t.language, "status": status})
    named = str(tpl.get("parameter_format") or "POSITIONAL").upper() == "NAMED"
    components = {str(c.get("type", "")).upper(): c for c in tpl.get("components") or []}
    _check_header(t, components.get("HEADER"))
    _check_body(t, components.get("BODY"), named)
    _check_buttons(t, components.get("BUTTONS"))
    return category_of(tpl)


def _mismatch(t: Template, where: str, expected: int, got: int) -> PermanentError:
    return PermanentError(
        f"template {t.name!r} {where}: expected {expected} parameter{'s' if expected != 1 else ''}, got {got}",
        code="template_params_mismatch", provider="whatsapp",
        details={"template": t.name, "component": where, "expected": expected, "got": got})


def _kind(t: Template, where: str, allowed: tuple[str, ...], p: TemplateParam) -> None:
    if p.type not in allowed:
        raise PermanentError(
            f"template {t.name!r} {where}: parameter of type {p.type!r} where the template expects "
            f"{' or '.join(allowed)}", code="template_param_format", provider="whatsapp",
            details={"template": t.name, "component": where})


def _check_header(t: Template, comp: dict[str, Any] | None) -> None:
    params = [as_param(v) for v in t.header]
    if comp is None:
        if params:
            raise _mismatch(t, "header", 0, len(params))
        return
    fmt = str(comp.get("format") or "TEXT").upper()
    if fmt == "TEXT":
        expected = 1 if NAMED_RE.search(comp.get("text") or "") else 0  # at most one header variable
        if len(params) != expected:
            raise _mismatch(t, "header", expected, len(params))
        for p in params:
            _kind(t, "header", ("text",), p)
        return
    if len(params) != 1:
        raise _mismatch(t, f"header ({fmt.lower()})", 1, len(params))
    _kind(t, "header", (fmt.lower(),), params[0])


def _check_body(t: Template, comp: dict[str, Any] | None, named: bool) -> None:
    params = body_params("template.body", t.body)
    text = (comp or {}).get("text") or ""
    if named:
        wanted = list(dict.fromkeys(NAMED_RE.findall(text)))
        got = [p.parameter_name or "" for p in params]
        if isinstance(t.body, list) and params:
            raise PermanentError(
                f"template {t.name!r} uses NAMED parameters ({', '.join(wanted)}): pass body as an object",
                code="template_params_mismatch", provider="whatsapp")
        missing = [w for w in wanted if w not in got]
        extra = [g for g in got if g not in wanted]
        if missing or extra:
            raise PermanentError(
                f"template {t.name!r} body: named parameters do not match"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unexpected {', '.join(extra)}" if extra else ""),
                code="template_params_mismatch", provider="whatsapp",
                details={"template": t.name, "missing": missing, "unexpected": extra})
    else:
        indices = {int(i) for i in POSITIONAL_RE.findall(text)}
        expected = max(indices) if indices else 0
        if isinstance(t.body, dict) and params:
            raise PermanentError(f"template {t.name!r} uses positional parameters: pass body as a list",
                                 code="template_params_mismatch", provider="whatsapp")
        if len(params) != expected:
            raise _mismatch(t, "body", expected, len(params))
    for p in params:
        _kind(t, "body", BODY_KINDS, p)


def _check_buttons(t: Template, comp: dict[str, Any] | None) -> None:
    buttons = (comp or {}).get("buttons") or []
    for b in t.buttons:
        if b.index >= len(buttons):
            raise PermanentError(f"template {t.name!r} has {len(buttons)} buttons; no button at index {b.index}",
                                 code="template_params_mismatch", provider="whatsapp")
        kind = str(buttons[b.index].get("type", "")).upper()
        if (kind == "URL" and b.sub_type != "url") or (kind == "QUICK_REPLY" and b.sub_type != "quick_reply"):
            raise PermanentError(f"template {t.name!r} button {b.index} is {kind}, not {b.sub_type}",
                                 code="template_param_format", provider="whatsapp")
    for i, spec in enumerate(buttons):
        if str(spec.get("type", "")).upper() != "URL" or not POSITIONAL_RE.search(spec.get("url") or ""):
            continue
        given = [b for b in t.buttons if b.index == i]
        if not given or len(given[0].parameters) != 1:
            raise _mismatch(t, f"button {i} (url)", 1, len(given[0].parameters) if given else 0)


def info(tpl: dict[str, Any]) -> dict[str, Any]:
    """The fields TemplateInfo keeps."""
    return {"name": str(tpl.get("name")), "language": str(tpl.get("language")),
            "status": str(tpl.get("status")), "category": tpl.get("category"), "id": tpl.get("id"),
            "parameter_format": tpl.get("parameter_format"), "components": tpl.get("components") or []}
