"""Compliance rules before a send: opt-in / opt-out, the 24 h customer-service window, the portfolio's
messaging limit, and the STOP keywords that opt a customer out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from activities.whatsapp.models import InboundMessage
from activities.whatsapp.spec import (
    CUSTOMER_SERVICE_WINDOW_SECONDS,
    DEFAULT_MESSAGING_LIMIT,
    MESSAGING_LIMIT_TIERS,
    SPEC,
)
from activities.whatsapp.store import WhatsAppContact
from core.errors import PermanentError

DEFAULT_OPT_OUT_KEYWORDS = ("STOP", "STOP ALL", "UNSUBSCRIBE", "OPT OUT", "OPT-OUT", "OPTOUT")
DEFAULT_MARKETING_OPT_OUT_KEYWORDS = ("STOP PROMOTIONS",)


def _bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass(frozen=True)
class Policy:
    """The organization's rules for one connection (its settings; defaults follow Meta's policy)."""

    require_opt_in: bool = True
    allow_opted_out: bool = False
    window_gate: str = "known"
    auto_opt_out: bool = True
    opt_out_keywords: tuple[str, ...] = DEFAULT_OPT_OUT_KEYWORDS
    marketing_opt_out_keywords: tuple[str, ...] = DEFAULT_MARKETING_OPT_OUT_KEYWORDS

    @classmethod
    def of(cls, settings: dict[str, Any]) -> Policy:
        gate = str(settings.get("window_gate") or "known").lower()
        return cls(
            require_opt_in=_bool(settings.get("require_opt_in"), True),
            allow_opted_out=_bool(settings.get("allow_opted_out"), False),
            window_gate=gate if gate in ("known", "strict", "off") else "known",
            auto_opt_out=_bool(settings.get("auto_opt_out"), True),
            opt_out_keywords=tuple(k.upper() for k in settings.get("opt_out_keywords") or DEFAULT_OPT_OUT_KEYWORDS),
            marketing_opt_out_keywords=tuple(
                k.upper() for k in settings.get("marketing_opt_out_keywords") or DEFAULT_MARKETING_OPT_OUT_KEYWORDS),
        )


def window_closes_at(contact: WhatsAppContact | None) -> datetime | None:
    last = contact.last_inbound_at if contact else None
    return last + timedelta(seconds=CUSTOMER_SERVICE_WINDOW_SECONDS) if last else None


def window_open(contact: WhatsAppContact | None, now: datetime) -> bool | None:
    """True/False when the store has seen the customer write; None when it knows nothing."""
    closes = window_closes_at(contact)
    if closes is None:
        return None
    return now < closes


def refusal(policy: Policy, contact: WhatsAppContact | None, *, template: bool, category: str,
            now: datetime) -> PermanentError | None:
    """Why this send must not happen, or None. Checked before any provider call."""
    if contact is not None and contact.opted_out and not policy.allow_opted_out:
        when = contact.opted_out_at
        return PermanentError(
            f"recipient opted out{' on ' + when.isoformat(timespec='seconds') if when else ''}"
            f"{' (' + contact.opt_out_source + ')' if contact.opt_out_source else ''}: no message may be sent",
            code="opted_out", provider="whatsapp")
    if template:
        if category == "marketing" and contact is not None and contact.marketing_opted_out \
                and not policy.allow_opted_out:
            return PermanentError("recipient stopped marketing messages (131050): marketing template refused",
                                  code="marketing_opted_out", provider="whatsapp")
        if policy.require_opt_in and not (contact is not None and contact.opted_in):
            return PermanentError("recipient has no recorded opt-in: template refused "
                                  "(record one with `osi whatsapp optin add`, or change the require_opt_in policy)",
                                  code="no_opt_in", provider="whatsapp")
        return None
    if policy.window_gate == "off":
        return None
    state = window_open(contact, now)
    if state is False or (state is None and policy.window_gate == "strict"):
        closes = window_closes_at(contact)
        since = f" (it closed {closes.isoformat(timespec='seconds')})" if closes else " (the customer never wrote)"
        return PermanentError(
            "outside the 24-hour customer service window" + since + ": free-form messages are refused; "
            "send an approved template instead (Meta 131047)", code="window_closed", provider="whatsapp")
    return None


def skip_reason(err: PermanentError) -> str:
    return str(err.code)


def messaging_limit(settings: dict[str, Any]) -> int | None:
    """Unique customers outside a window per moving 24 h for the portfolio; None is unlimited."""
    raw = settings.get("messaging_limit", DEFAULT_MESSAGING_LIMIT)
    if raw is None:
        return DEFAULT_MESSAGING_LIMIT
    if isinstance(raw, str):
        key = raw.strip().upper()
        if key in MESSAGING_LIMIT_TIERS:
            return MESSAGING_LIMIT_TIERS[key]
        if key in ("NONE", "0", "-1"):
            return None
        raw = int(key.replace("_", "").replace(",", ""))
    limit = int(raw)
    return None if limit <= 0 else limit


def messaging_limit_window(settings: dict[str, Any]) -> float:
    """The moving window plus the jitter margin (a slot frees a little after Meta frees it)."""
    margin = settings.get("limit_margin_seconds")
    spec = SPEC.rate_limits["messaging_limit"]
    return float(settings.get("messaging_limit_window_seconds") or spec.period) + (
        spec.margin if margin is None else max(0.0, float(margin)))


def portfolio_id(settings: dict[str, Any]) -> str:
    return str(settings.get("portfolio_id") or settings.get("waba_id") or settings.get("phone_number_id"))


def _inbound_words(m: InboundMessage) -> list[str]:
    """The text, and the id of a tapped button or row or a template button's payload ("STOP" buttons)."""
    words = [m.text or "", (m.content.choice if m.content else None) or ""]
    return [" ".join(w.upper().split()) for w in words if w]


def opt_out_keyword(policy: Policy, m: InboundMessage) -> tuple[str, bool] | None:
    """(keyword, marketing_only) when an inbound message is an opt-out request."""
    if not policy.auto_opt_out:
        return None
    for word in _inbound_words(m):
        if word in policy.marketing_opt_out_keywords:
            return word, True
        if word in policy.opt_out_keywords:
            return word, False
    return None
